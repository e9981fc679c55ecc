#!/usr/bin/env bash
# A second environment, .venv-ref, with the complete PyPI torch wheel that Python can import:
# the reference for `myoscope bench` and for regenerating test fixtures (scripts/oracles.py).
# Not needed to build, test or use myoscope.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-ref/bin/python ] || "${PYTHON:-python3}" -m venv .venv-ref
.venv-ref/bin/python -m pip install --quiet torch==2.13.0 numpy==2.4.6
.venv-ref/bin/python -c 'import torch; print("reference torch", torch.__version__)'
