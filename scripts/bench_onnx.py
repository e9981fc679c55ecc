"""Inference speed of the aggregated classifier: PyTorch eager fp32 next to myoscope on libtorch
and on ONNX Runtime (fp32 export, and optionally an int8 file), interleaved round by round so
machine load hits every engine alike. Reports the median per engine and its speed ratio against
PyTorch (PyTorch time / engine time, so > 1 means faster than PyTorch).

  cargo build --release --example onnx_bench
  .venv-ref/bin/python scripts/bench_onnx.py --threads 2 [--int8 model-int8.onnx] [--rounds 3]

The PyTorch model is scripts/bench_torch.py's (torchvision-layout DenseNet-121, same geometry,
seed 0, eval mode, no_grad). Every process gets OMP_NUM_THREADS = --threads as well.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pytorch_worker(a):
    import torch

    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_torch import Aggregated

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Aggregated(a.grid, 2).eval()
    x = torch.randn(a.batch, 3, a.size, a.size)
    times = []
    with torch.no_grad():
        for i in range(a.warmup + a.iters):
            t = time.perf_counter()
            model(x)
            if i >= a.warmup:
                times.append(time.perf_counter() - t)
    print(json.dumps({"engine": f"pytorch {torch.__version__} eager fp32", "threads": torch.get_num_threads(),
                      "forward_s": statistics.median(times), "times": times}))


def run(cmd, env):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--grid", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--int8", help="an int8 .onnx written by `myoscope export onnx --int8`")
    ap.add_argument("--bin", default=os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target")) + "/release/examples/onnx_bench")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--pytorch-worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.pytorch_worker:
        return pytorch_worker(a)

    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    geo = ["--size", str(a.size), "--grid", str(a.grid), "--batch", str(a.batch), "--iters", str(a.iters),
           "--warmup", str(a.warmup), "--threads", str(a.threads)]
    engines = {
        "pytorch": [sys.executable, __file__, "--pytorch-worker"] + geo,
        "libtorch": [a.bin, "--engine", "torch"] + geo,
        "onnx": [a.bin, "--engine", "onnx"] + geo,
    }
    if a.int8:
        engines["onnx-int8"] = [a.bin, "--engine", "onnx", "--model", a.int8] + geo
    results = {k: [] for k in engines}
    names = {}
    for r in range(a.rounds):
        for key, cmd in engines.items():
            res = run(cmd, env)
            names[key] = res["engine"]
            results[key].append(res["forward_s"])
            print(f"round {r + 1}: {res['engine']:<60} {res['forward_s']:.3f} s", flush=True)
    base = statistics.median(results["pytorch"])
    print(f"\naggregated DenseNet-121 at {a.size}² ({a.grid}×{a.grid}), batch {a.batch}, {a.threads} threads; "
          f"median of {a.rounds} rounds × median of {a.iters} runs")
    summary = []
    for key in engines:
        m = statistics.median(results[key])
        summary.append({"engine": names[key], "forward_s": m, "rounds": results[key], "speed_vs_pytorch": base / m})
        print(f"{names[key]:<60} {m:8.3f} s   {base / m:5.2f}× PyTorch")
    if a.json:
        Path(a.json).write_text(json.dumps({"size": a.size, "grid": a.grid, "batch": a.batch, "threads": a.threads,
                                            "results": summary}, indent=2))


if __name__ == "__main__":
    main()
