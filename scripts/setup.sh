#!/usr/bin/env bash
# Sets up myoscope on a fresh machine: a virtual environment inside the project with the
# pinned PyTorch wheel (whose libtorch tch links against), then a release build.
#
#   scripts/setup.sh          CPU-only libtorch (≈1.2 GB; no GPU needed)
#   scripts/setup.sh --cuda   the full CUDA wheel set (≈4.7 GB) for NVIDIA GPUs
#   --no-build                only the environment (scripts/test.sh uses this)
#
# Nothing is downloaded except from PyPI and crates.io.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.13.0
mode=cpu
build=1
for arg in "$@"; do
  case "$arg" in
    --cuda) mode=cuda ;;
    --no-build) build=0 ;;
    *) echo "unknown option $arg (use --cuda, --no-build)" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -m pip show torch 2>/dev/null | grep -q "^Version: ${TORCH_VERSION}"; then
  echo "==> installing torch==${TORCH_VERSION} ($mode) into .venv"
  if [ "$mode" = cuda ]; then
    .venv/bin/python -m pip install --quiet "torch==${TORCH_VERSION}"
  else
    # libtorch_cpu needs the CUDA runtime and CUPTI stubs to load, nothing else of CUDA.
    .venv/bin/python -m pip install --quiet --no-deps "torch==${TORCH_VERSION}" \
      nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
  fi
elif [ "$mode" = cuda ] && ! .venv/bin/python -m pip show nvidia-cublas >/dev/null 2>&1; then
  echo "==> adding the CUDA libraries to .venv"
  .venv/bin/python -m pip install --quiet "torch==${TORCH_VERSION}"
fi

# ONNX Runtime for `--engine onnx`: only its libonnxruntime.so is used (loaded at run time).
ORT_VERSION=1.31.1
if ! .venv/bin/python -m pip show onnxruntime 2>/dev/null | grep -q "^Version: ${ORT_VERSION}"; then
  echo "==> installing onnxruntime==${ORT_VERSION} (the ONNX engine's library) into .venv"
  .venv/bin/python -m pip install --quiet --no-deps "onnxruntime==${ORT_VERSION}"
fi

site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ln -sfn "$site/torch" .venv/libtorch
echo "==> libtorch: $(readlink .venv/libtorch)"

if [ "$build" = 1 ]; then
  echo "==> building myoscope (release)"
  cargo build --release --locked
  echo "==> ready: target/release/myoscope"
fi
