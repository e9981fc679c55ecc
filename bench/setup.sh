#!/usr/bin/env bash
# Creates bench/.venv, the Python environment of `myoscope bench`'s PyTorch side
# (bench/torch_cases.py): pinned CPU-only PyTorch, torchvision, numpy and pillow from PyPI.
#
#   bench/setup.sh                     a new bench/.venv (≈1.3 GB, CPU-only torch)
#   bench/setup.sh --python PY         make bench/.venv/bin/python run an existing Python that
#                                      already has these packages (e.g. .venv-ref/bin/python)
#
# Nothing is downloaded except from PyPI.
set -euo pipefail

TORCH=2.13.0
TORCHVISION=0.28.0
NUMPY=2.4.6
PILLOW=13.0.0

reuse=""
while [ $# -gt 0 ]; do
  case "$1" in
    --python) p="${2:?--python needs a path}"; reuse="$(cd "$(dirname "$p")" && pwd)/$(basename "$p")"; shift 2 ;;
    *) echo "unknown option $1 (use --python PATH)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")"

if [ -n "$reuse" ]; then
  "$reuse" -c 'import torch, torchvision, numpy, PIL' \
    || { echo "$reuse cannot import torch, torchvision, numpy and PIL" >&2; exit 1; }
  mkdir -p .venv/bin
  # A wrapper, not a link: a link would make that Python look for its venv next to the link.
  rm -f .venv/bin/python
  printf '#!/bin/sh\nexec "%s" "$@"\n' "$reuse" > .venv/bin/python
  chmod +x .venv/bin/python
  echo "==> bench/.venv/bin/python runs $reuse"
  exit 0
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating bench/.venv"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -m pip show torch 2>/dev/null | grep -q "^Version: ${TORCH}"; then
  echo "==> installing torch==${TORCH} (CPU-only) and torchvision==${TORCHVISION}"
  # As scripts/setup.sh: the torch wheel without its CUDA dependencies; libtorch_cpu needs only
  # the CUDA runtime and CUPTI stubs to load. torch's own pure-Python dependencies follow.
  .venv/bin/python -m pip install --quiet --no-deps "torch==${TORCH}" "torchvision==${TORCHVISION}" \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
  .venv/bin/python -m pip install --quiet filelock==4.3.2 typing-extensions==4.16.0 sympy==1.14.0 \
    mpmath==1.3.0 networkx==3.6.1 jinja2==3.1.6 markupsafe==3.0.4 fsspec==2026.9.0
fi
.venv/bin/python -m pip install --quiet "numpy==${NUMPY}" "pillow==${PILLOW}"
.venv/bin/python -c 'import torch, torchvision, numpy, PIL; print("==> bench/.venv: torch", torch.__version__, "torchvision", torchvision.__version__, "numpy", numpy.__version__, "pillow", PIL.__version__)'
