"""segmentation_models_pytorch oracle for myoscope's UNet / UNet++ (src/segmentation/models/).

For each variant below this script builds the smp 0.6.0 model with encoder_weights=None, fills
EVERY parameter and buffer from a formula that crates/myoscope/tests/segmentation_parity.rs
reproduces bit for bit, runs an eval-mode forward on a formula input and writes
crates/myoscope/tests/fixtures/smp_<variant>.json: the build settings, the formula parameters,
smp's state-dict names and shapes (what an smp-trained checkpoint holds) and the output logits
(a strided subset plus whole-tensor sums).

The formula, for the k-th name of the sorted state-dict names (num_batches_tracked left out: tch's
batch norm has no such counter, and with a fixed momentum PyTorch never reads it) and flat index i
of that tensor (row-major):

    u = ((i * 2654435761 + k * 2246822519) mod 2^32) / 2^32          in [0, 1), exact in f64
    running_mean, any bias:            0.2 * (u - 0.5)
    running_var:                       0.5 + u
    batch-norm weight (has a sibling running_mean):  0.5 + 0.5 * u
    other weights (convs):             gain * (2u - 1) * sqrt(3 / fan_in),  fan_in = numel / shape[0]
    input x[n, c, h, w], flat index i: 2 * ((i * 2654435761 + 1013904223) mod 2^32) / 2^32 - 1

all computed in float64 and rounded once to float32, so both sides hold identical weights. gain = 2
(He-uniform: variance 2 / fan_in) keeps activations O(1) through the ReLUs and the mismatched batch
statistics; bottleneck ResNets and EfficientNets, whose residual sums grow faster under these
statistics, use 1.5 (stored in each fixture), so float32 rounding noise stays far below the 1e-4
tolerance. (Measured: swapping smp's x·sigmoid(x) swish for SiLU, a one-ulp change per value,
moves the EfficientNet logits by < 1e-7 at gain 1.5 but 4e-5 at gain 2.)

EfficientNet variants use smp's `timm-efficientnet-b*` encoders. `unet_tf_efficientnet_lite0` swaps
into smp's Unet the `timm-tf_efficientnet_lite0` encoder class rebuilt with TensorFlow "SAME"
padding and BN eps 1e-3 (timm's `tf_efficientnet_lite0` numerics, which the ImageNet weights need
and myoscope's Lite0 trunk implements); smp's own entry uses PyTorch padding and eps 1e-5.

Run with:  .venv-ref/bin/python scripts/smp_oracle.py [variant ...]
(needs `pip install segmentation-models-pytorch==0.6.0` in .venv-ref)
"""
import json
import sys
from functools import partial
from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import timm
import torch

FIXTURES = Path(__file__).resolve().parent.parent / "crates/myoscope/tests/fixtures"
GAIN = 2.0
# About this many output values are stored; the sums cover the rest.
SAMPLES = 1500

VARIANTS = {
    # The DEDL configuration: UNet-ResNet34, depth 3, scSE, one DAPI channel, nucleus/background.
    "unet_resnet34": dict(arch="unet", encoder="resnet34", depth=3, decoder_channels=[256, 128, 64],
                          attention="scse", in_channels=1, classes=2, hw=(64, 64)),
    "unetplusplus_resnet34": dict(arch="unetplusplus", encoder="resnet34", depth=3,
                                  decoder_channels=[256, 128, 64], attention="scse", in_channels=1,
                                  classes=2, hw=(64, 64)),
    # Bottleneck blocks and a non-square input.
    "unet_resnet50": dict(arch="unet", encoder="resnet50", depth=3, decoder_channels=[256, 128, 64],
                          attention="scse", in_channels=1, classes=2, hw=(64, 96), gain=1.5),
    # Full depth, no attention, RGB, three classes.
    "unet_resnet18_depth5": dict(arch="unet", encoder="resnet18", depth=5,
                                 decoder_channels=[256, 128, 64, 32, 16], attention="none",
                                 in_channels=3, classes=3, hw=(64, 64)),
    "unet_efficientnet_b0": dict(arch="unet", encoder="timm-efficientnet-b0", depth=3,
                                 decoder_channels=[256, 128, 64], attention="scse", in_channels=1,
                                 classes=2, hw=(64, 64), gain=1.5),
    # Width and depth multipliers (B3: 1.2, 1.4), depth 4, UNet++.
    "unetplusplus_efficientnet_b3_depth4": dict(arch="unetplusplus", encoder="timm-efficientnet-b3",
                                                depth=4, decoder_channels=[256, 128, 64, 32],
                                                attention="scse", in_channels=2, classes=2,
                                                hw=(64, 64), gain=1.5),
    "unet_tf_efficientnet_lite0": dict(arch="unet", encoder="tf_efficientnet_lite0", depth=3,
                                       decoder_channels=[256, 128, 64], attention="scse",
                                       in_channels=1, classes=2, hw=(64, 64)),
}


def hash_unit(i, offset):
    """((i * 2654435761 + offset) mod 2^32) / 2^32 for a uint64 index array, in float64."""
    h = (i * np.uint64(2654435761) + np.uint64(offset % 2**32)) % np.uint64(2**32)
    return h.astype(np.float64) / 2.0**32


def fill_value(name, k, shape, names, gain):
    n = int(np.prod(shape)) if len(shape) else 1
    u = hash_unit(np.arange(n, dtype=np.uint64), k * 2246822519)
    stem = name.rsplit(".", 1)[0]
    if name.endswith(".running_mean") or name.endswith(".bias"):
        v = 0.2 * (u - 0.5)
    elif name.endswith(".running_var"):
        v = 0.5 + u
    elif name.endswith(".weight") and stem + ".running_mean" in names:
        v = 0.5 + 0.5 * u
    else:
        fan_in = n // shape[0]
        v = gain * (2.0 * u - 1.0) * np.sqrt(3.0 / fan_in)
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def tf_lite0_encoder(in_channels, depth):
    """smp's timm-tf_efficientnet_lite0 encoder with timm tf_efficientnet_lite0's TF numerics."""
    from segmentation_models_pytorch.encoders.timm_efficientnet import (
        EfficientNetBaseEncoder, gen_efficientnet_lite_kwargs)
    from timm.layers import BatchNormAct2d

    kwargs = gen_efficientnet_lite_kwargs(1.0, 1.0, 0.2)
    kwargs["pad_type"] = "same"
    kwargs["norm_layer"] = partial(BatchNormAct2d, eps=1e-3)
    enc = EfficientNetBaseEncoder(stage_idxs=[2, 3, 5], out_channels=[3, 32, 24, 40, 112, 320],
                                  depth=depth, **kwargs)
    enc.set_in_channels(in_channels, pretrained=False)
    return enc


def build(v):
    cls = {"unet": smp.Unet, "unetplusplus": smp.UnetPlusPlus}[v["arch"]]
    encoder = v["encoder"]
    lite = encoder == "tf_efficientnet_lite0"
    model = cls(
        "timm-tf_efficientnet_lite0" if lite else encoder,
        encoder_depth=v["depth"],
        encoder_weights=None,
        decoder_channels=tuple(v["decoder_channels"]),
        decoder_attention_type=None if v["attention"] == "none" else v["attention"],
        in_channels=v["in_channels"],
        classes=v["classes"],
    )
    if lite:
        model.encoder = tf_lite0_encoder(v["in_channels"], v["depth"])
    return model.eval()


def run(variant):
    v = VARIANTS[variant]
    torch.manual_seed(0)
    model = build(v)
    state = model.state_dict()
    names = sorted(k for k in state if not k.endswith("num_batches_tracked"))
    name_set = set(names)
    gain = v.get("gain", GAIN)
    filled = {name: fill_value(name, k, tuple(state[name].shape), name_set, gain)
              for k, name in enumerate(names)}
    missing, unexpected = model.load_state_dict(filled, strict=False)
    assert not unexpected and all(m.endswith("num_batches_tracked") for m in missing), missing

    h, w = v["hw"]
    shape = (1, v["in_channels"], h, w)
    n = int(np.prod(shape))
    x = torch.from_numpy((2.0 * hash_unit(np.arange(n, dtype=np.uint64), 1013904223) - 1.0)
                         .astype(np.float32).reshape(shape))
    with torch.no_grad():
        y = model(x)
    assert tuple(y.shape) == (1, v["classes"], h, w), y.shape
    flat = y.flatten().double()
    stride = max(1, flat.numel() // SAMPLES)
    # A position-weighted sum catches values moved between places that plain sums miss.
    weights = torch.arange(flat.numel(), dtype=torch.float64) % 97 / 97.0
    fixture = {
        "generated_by": "scripts/smp_oracle.py",
        "versions": {"torch": torch.__version__, "segmentation_models_pytorch": smp.__version__,
                     "timm": timm.__version__},
        "variant": variant,
        "model": {k: v[k] for k in ("arch", "encoder", "depth", "decoder_channels", "attention",
                                    "in_channels", "classes")},
        "fill": {"gain": gain, "weight_multiplier": 2654435761, "tensor_offset": 2246822519,
                 "input_offset": 1013904223},
        "input_shape": list(shape),
        "parameters": [[name, list(state[name].shape)] for name in names],
        "output_shape": list(y.shape),
        "output_stride": stride,
        "output_samples": [float(t) for t in flat[::stride]],
        "output_sum": float(flat.sum()),
        "output_abs_sum": float(flat.abs().sum()),
        "output_weighted_sum": float((flat * weights).sum()),
        "output_min": float(flat.min()),
        "output_max": float(flat.max()),
    }
    path = FIXTURES / f"smp_{variant}.json"
    path.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
    print(f"{path.name}: {len(names)} tensors, output {list(y.shape)} "
          f"range [{fixture['output_min']:.3f}, {fixture['output_max']:.3f}], "
          f"mean |y| {fixture['output_abs_sum'] / flat.numel():.3f}, {path.stat().st_size} bytes")


if __name__ == "__main__":
    for name in sys.argv[1:] or VARIANTS:
        run(name)
