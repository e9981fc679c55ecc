"""Reference bytes for myoscope's hand-written ONNX protobuf encoder (crates/myoscope/src/onnx/proto.rs).

Builds a tiny model with the official `onnx.helper` (Conv with ints attributes, LeakyRelu with
a float attribute, Reshape by an int64 initializer, Softmax with a negative int attribute, a
symbolic batch dimension, metadata), checks it with `onnx.checker`, and writes its serialized
bytes to crates/myoscope/tests/fixtures/onnx_tiny.onnx. The Rust test builds the same model
with our encoder and must produce identical bytes.

Run with:  .venv-ref/bin/python scripts/onnx_oracle.py     (needs `pip install onnx==1.23.2`)
"""
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

OUT = Path(__file__).resolve().parent.parent / "crates/myoscope/tests/fixtures/onnx_tiny.onnx"


def main():
    w = (np.arange(3 * 2 * 3 * 3, dtype=np.float32) * 0.1 - 2.0).reshape(3, 2, 3, 3)
    weight = helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.tobytes(), raw=True)
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], np.array([-1, 48], np.int64).tobytes(), raw=True)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         strides=[1, 1], group=1),
        helper.make_node("LeakyRelu", ["y"], ["r"], name="act", alpha=0.1),
        helper.make_node("Reshape", ["r", "shape"], ["flat"], name="flatten"),
        helper.make_node("Softmax", ["flat"], ["p"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, 4, 4])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["batch", 48])],
        initializer=[weight, shape],
        doc_string="a tiny test model",
    )
    model = helper.make_model(graph, producer_name="myoscope", producer_version="0.1.0",
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(model, {"classes": "a\nb"})
    onnx.checker.check_model(model, full_check=True)
    OUT.write_bytes(model.SerializeToString())
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
