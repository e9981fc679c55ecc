#!/usr/bin/env bash
# A second environment, .venv-ref, with the complete PyPI torch wheel that Python can import:
# the reference for `myoscope bench` and for regenerating test fixtures (scripts/oracles.py).
# scikit-learn and SciPy are the oracles for metrics and statistics; torchvision the reference
# trunks for scripts/reference_cv.py; timm the EfficientNet-Lite reference for
# scripts/weights_reference.py; segmentation_models_pytorch the UNet/UNet++ and metrics reference for
# scripts/smp_oracle.py, scripts/seg_metrics_oracle.py and scripts/dsb2018_reference.py; onnx and onnxruntime
# for scripts/onnx_check.py, scripts/onnx_accuracy.py and scripts/onnx_profile.py. Not needed to build, test or use myoscope.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-ref/bin/python ] || "${PYTHON:-python3}" -m venv .venv-ref
.venv-ref/bin/python -m pip install --quiet torch==2.13.0 torchvision==0.28.0 numpy==2.4.6 \
    scikit-learn==1.9.1 scipy==1.17.1 timm==1.0.29 segmentation-models-pytorch==0.6.0 \
    onnx==1.23.2 onnxruntime==1.31.1
.venv-ref/bin/python -c "import torch, torchvision, sklearn, scipy, timm, segmentation_models_pytorch as smp; print(\"reference torch\", torch.__version__, \"smp\", smp.__version__, \"torchvision\", torchvision.__version__, \"scikit-learn\", sklearn.__version__, \"scipy\", scipy.__version__, \"timm\", timm.__version__)"
