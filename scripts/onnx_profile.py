"""Where an ONNX model spends its time in ONNX Runtime (CPU): runs it on a random batch with
ONNX Runtime's profiler on and prints the kernel time per operator type, slowest first.
This is how the int8 graph's layout was chosen (README, ONNX section).

  .venv-ref/bin/python scripts/onnx_profile.py runs/x/model.int8.onnx --threads 2 --size 640
"""
import argparse
import collections
import json
import os
import tempfile
import time

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    ort.set_default_logger_severity(3)
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    s = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((a.batch, 3, a.size, a.size), dtype=np.float32)
    for _ in range(a.warmup):
        s.run(None, {"image": x})
    t = time.perf_counter()
    for _ in range(a.runs):
        s.run(None, {"image": x})
    wall = (time.perf_counter() - t) / a.runs
    events = json.load(open(s.end_profiling()))
    time_us, nodes = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"].get("op_name")
            time_us[op] += e["dur"]
            nodes[op] += 1
    total = sum(time_us.values())
    n = a.warmup + a.runs
    print(f"{a.model}: {wall * 1000:.1f} ms per run (mean of {a.runs}), batch {a.batch}, "
          f"{a.size}², {a.threads} thread(s), onnxruntime {ort.__version__}")
    for op, us in time_us.most_common(12):
        print(f"  {op:<24} {us / 1e3 / n:8.1f} ms/run {100 * us / total:5.1f}%  {nodes[op] // n} node(s)")


if __name__ == "__main__":
    main()
