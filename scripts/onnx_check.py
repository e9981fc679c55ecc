"""Validates .onnx files written by `myoscope export onnx` with the official ONNX checker
(structure, operator schemas for the declared opset, and full shape inference), and prints each
model's inputs and outputs with their inferred shapes.

  .venv-ref/bin/python scripts/onnx_check.py runs/x/model.onnx [more.onnx ...]
  (needs `pip install onnx==1.23.2`)
"""
import sys

import onnx
from onnx import shape_inference


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def main(paths):
    if not paths:
        sys.exit(__doc__)
    for path in paths:
        onnx.checker.check_model(path, full_check=True)
        model = shape_inference.infer_shapes(onnx.load(path), check_type=True, strict_mode=True)
        g = model.graph
        ops = sorted({n.op_type for n in g.node})
        print(f"{path}: valid (IR {model.ir_version}, opset {model.opset_import[0].version}, "
              f"{len(g.node)} nodes, {len(g.initializer)} initializers; ops: {', '.join(ops)})")
        for v in g.input:
            print(f"  input  {v.name} {dims(v)}")
        for v in g.output:
            print(f"  output {v.name} {dims(v)}")


if __name__ == "__main__":
    main(sys.argv[1:])
