"""PyTorch reference of `myoscope cv`: Kabeya et al.'s cross-validated aggregated-patch
classifier, optionally in two steps (group, then subtype), trained and evaluated from the same
ensemble directory so the two tools can be reported side by side.

Run (after `myoscope cv` has written DIR/cv.toml and DIR/assignment.csv):

    .venv-ref/bin/python scripts/reference_cv.py --ensemble DIR --out OUT \
        [--arch resnet18] [--epochs N] [--device cpu|cuda|auto] [--cache-gib 3]

It writes OUT/metrics.json (figures per stage; keys described in `stage_report`) and
OUT/<stage>/test_probabilities.csv (the ensemble's class probabilities per test photo, columns
as myoscope's prediction CSV). Progress, one line per epoch, goes to stderr.

What it mirrors in crates/myoscope/src (the Rust code is the specification):
- models/aggregated.rs: the S×S input is cut into a g×g grid, the trunk runs once on all
  patches, the patch maps are stitched into a mosaic; GAP + linear gives the final logits, and
  one linear layer *shared by all patches* gives each patch's logits (only for g > 1).
- training/loss.rs: CE(final) + λ·Σ_j CE(patch_j), means over the batch, summed over patches.
- models/{resnet,densenet,mobilenet_v2}.rs: torchvision's trunks with the classifier removed;
  parameter names equal myoscope's (`conv1.weight`, `features.norm5.weight`, `fc.weight`,
  `patch_classifier.weight`), so either tool's state dict reads in the other.
- data/crop.rs, data/loader.rs: training and validation use the left and right squares of
  each photo (two items), testing the centre square; squares are resized with a triangle
  (bilinear, antialiased) filter -> PIL's BILINEAR.
- data/augment.rs: horizontal and vertical flip (p = 0.5 each), a quarter turn drawn from
  {0, 90, 180, 270}, and myoscope's own colour jitter formula (brightness, saturation, then
  contrast about the image's mean luma), then per-channel normalisation.
- training/trainer.rs, config.rs, radam.rs: RAdam (torch.optim.RAdam is what radam.rs was
  verified against), constant or cosine learning rate set once per epoch, validation accuracy
  on fold K's left+right squares after every epoch, best-accuracy weights kept (ties keep the
  earlier epoch), a run without validation images keeps the last epoch.
- cv/plan.rs: stages `main`, or `step1` (sorted group names) plus one step-2 stage per group
  with at least two subtypes; fold K of every stage is seeded with training.seed + K; step-2
  fold K starts from step-1 fold K's best trunk (BN statistics included) with new heads, all
  weights trainable; folds run fold by fold, every stage of a fold before the next fold.
- inference.rs, ensemble.rs, evaluation/cv_report.rs: softmax of the final logits on the
  centre square, ensemble = mean over the k models, slide = mean over its photos; a two-class
  stage's accuracy thresholds the positive class at 0.5, more classes take the argmax; the
  spread over single models is the sample SD (n - 1).

Not bit-identical to myoscope: the random streams (weight init, shuffling, augmentation draws)
are torch's and NumPy's, not tch's and ChaCha8; JPEG decoding and resampling round differently
by a grey level here and there.
"""
import argparse
import csv
import json
import math
import os
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sklearn
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from PIL import Image
from sklearn.metrics import roc_auc_score

# ----------------------------------------------------------------------------- configuration

# myoscope's defaults (config.rs, radam.rs, augment.rs, cv/config.rs): a cv.toml may leave out
# any field, and the Rust side then trains with these.
DEFAULTS = {
    "model": {
        "arch": "densenet121",
        "grid": 4,
        "input_size": 640,
        "patch_loss_weight": 1.0,
        "normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    },
    "training": {
        "epochs": 60,
        "batch_size": 4,
        "seed": 0,
        "device": "auto",
        "optimizer": {
            "lr": 1e-4,
            "beta1": 0.9,
            "beta2": 0.999,
            "eps": 1e-8,
            "weight_decay": 0.0,
            "decoupled_weight_decay": False,
        },
        "lr_schedule": {"kind": "constant"},
        "augmentation": {"flips": True, "rotate90": True, "colour_jitter": 0.1},
    },
    "cv": {"folds": 5, "test_fraction": 0.2, "seed": 0},
    "evaluation": {"positive_class": None},
}


def merged(defaults, given):
    """`given` over `defaults`, recursively; keys the reference does not use pass through."""
    out = dict(defaults)
    for key, value in (given or {}).items():
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            out[key] = merged(defaults[key], value)
        else:
            out[key] = value
    return out


def load_config(path):
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    cfg = merged(DEFAULTS, raw)
    cfg["hierarchy"] = raw.get("hierarchy")
    return cfg


def lr_at(schedule, base, epoch, epochs):
    """config.rs LrSchedule::lr_at: the rate of 0-based `epoch`, held for the whole epoch."""
    kind = schedule.get("kind", "constant")
    if kind == "constant":
        return base
    if kind == "cosine":
        t = epoch / (max(epochs, 2) - 1)
        low = schedule["min_lr"]
        return low + (base - low) * 0.5 * (1.0 + math.cos(math.pi * t))
    raise SystemExit(f"training.lr_schedule.kind '{kind}' is unknown; use 'constant' or 'cosine'")


# ----------------------------------------------------------------------------- protocol


@dataclass
class Row:
    path: str
    label: str
    group: str
    slide: str
    fold: str  # "1".."k" or "test"


@dataclass
class Stage:
    key: str  # the key in metrics.json: main, step1, step2/<group>
    name: str  # myoscope's stage (and folder) name: main, step1, step2-<group>
    classes: list
    group: str | None  # step 2: the group whose photos it sees

    def label_of(self, row, hierarchy):
        """The row's class in this stage, or None when the stage does not see the row."""
        if hierarchy is None:
            return row.label
        group = group_of(hierarchy, row.label)
        if self.group is None:
            return group
        return row.label if group == self.group else None


def group_of(hierarchy, subtype):
    for g in hierarchy["groups"]:
        if subtype in g["subtypes"]:
            return g["name"]
    return None


def read_assignment(path):
    with open(path, newline="") as f:
        rows = [Row(r["path"], r["label"], r["group"], r["slide"], r["fold"]) for r in csv.DictReader(f)]
    if not rows:
        raise SystemExit(f"{path} lists no photos")
    return rows


def stages_of(cfg, rows):
    """cv/plan.rs stages_of: class order is sorted names, as myoscope sorts classes."""
    h = cfg["hierarchy"]
    if h is None:
        return [Stage("main", "main", sorted({r.label for r in rows}), None)]
    unplaced = sorted({r.label for r in rows if group_of(h, r.label) is None})
    if unplaced:
        raise SystemExit(f"classes {unplaced} belong to no [hierarchy] group")
    stages = [Stage("step1", "step1", sorted(g["name"] for g in h["groups"]), None)]
    # A group with one subtype has no step-2 model: its subtype is its group.
    for g in sorted(h["groups"], key=lambda g: f"step2-{g['name']}"):
        if len(g["subtypes"]) >= 2:
            stages.append(Stage(f"step2/{g['name']}", f"step2-{g['name']}", sorted(g["subtypes"]), g["name"]))
    return stages


def positive_index(cfg, stage):
    """cv_report.rs positive_of: only two-class stages have one; default the second class."""
    if len(stage.classes) != 2:
        return None
    if cfg["hierarchy"] is not None:
        named = cfg["hierarchy"].get("positive_group") if stage.group is None else None
    else:
        named = cfg["evaluation"].get("positive_class")
    return stage.classes.index(named) if named in stage.classes else 1


# ----------------------------------------------------------------------------- images

LEFT, RIGHT, CENTRE = "left", "right", "centre"


def crop_box(w, h, crop):
    """crop.rs crop_box: squares of the short side at the two ends or the middle of the long side."""
    side = min(w, h)
    slack = max(w, h) - side
    offset = {LEFT: 0, RIGHT: slack, CENTRE: slack // 2}[crop]
    return (offset, 0, side) if w >= h else (0, offset, side)


def load_rgb(path):
    """decode.rs load_rgb: 8-bit RGB. PIL would clip 16-bit grey to 255 instead of scaling it
    like the image crate, so scale it here first."""
    with Image.open(path) as im:
        if im.mode.startswith("I"):
            a = np.asarray(im, dtype=np.float64)
            im = Image.fromarray(np.clip(np.round(a / 257.0), 0, 255).astype(np.uint8))
        return im.convert("RGB")


class Squares:
    """Cropped and resized squares as uint8 HWC arrays, cached while they fit the budget
    (loader.rs caches when every square of the data fits in 3 GiB)."""

    def __init__(self, size, budget_bytes, workers):
        self.size = size
        self.budget = budget_bytes
        self.used = 0
        self.cache = {}
        self.pool = ThreadPoolExecutor(max_workers=workers)  # PIL decodes without the GIL

    def square(self, key):
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        path, crop = key
        img = load_rgb(path)
        x, y, side = crop_box(img.width, img.height, crop)
        img = img.crop((x, y, x + side, y + side))
        if side != self.size:
            img = img.resize((self.size, self.size), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
        if self.used + arr.nbytes <= self.budget:
            self.cache[key] = arr
            self.used += arr.nbytes
        return arr

    def batch(self, keys):
        return np.stack(list(self.pool.map(self.square, keys)))


def edge_items(rows):
    """loader.rs edge_items: the left then the right square of every photo."""
    return [(r, crop) for r in rows for crop in (LEFT, RIGHT)]


def draw_augmentation(rng, aug):
    """One item's draws in augment.rs's order: h-flip, v-flip, quarter turns, then the three
    jitter factors; a disabled step draws nothing, as in the Rust short-circuits."""
    hflip = aug["flips"] and rng.random() < 0.5
    vflip = aug["flips"] and rng.random() < 0.5
    turns = int(rng.integers(4)) if aug["rotate90"] else 0
    s = float(aug["colour_jitter"])
    factors = 1.0 + rng.uniform(-s, s, size=3) if s > 0 else None  # brightness, contrast, saturation
    return hflip, vflip, turns, factors


# The image crate's rotate90 turns clockwise; np.rot90 turns anticlockwise for positive k.
ROT90_K = {0: 0, 1: -1, 2: 2, 3: 1}


def to_input(u8, norm, factors=None):
    """augment.rs to_chw: uint8 [B,H,W,3] -> normalised float [B,3,H,W], with myoscope's colour
    jitter (not torchvision's ColorJitter, whose order and contrast reference differ)."""
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float().div_(255.0)
    if factors is not None:
        f = torch.from_numpy(np.asarray(factors, dtype=np.float32)).view(-1, 3, 1, 1, 1)
        bright, contrast, sat = f[:, 0], f[:, 1], f[:, 2]
        grey = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        # The contrast pivot is the mean luma of the unjittered square, taken in double like Rust.
        mean_luma = grey.double().mean(dim=(1, 2, 3), keepdim=True).float()
        x = x * bright
        x = grey * bright + (x - grey * bright) * sat
        x = (mean_luma + (x - mean_luma) * contrast).clamp_(0.0, 1.0)
    mean = torch.tensor(norm["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(norm["std"], dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


def training_batch(squares, keys, rng, aug, norm):
    u8 = squares.batch(keys)
    draws = [draw_augmentation(rng, aug) for _ in keys]
    for i, (hflip, vflip, turns, _) in enumerate(draws):
        img = u8[i]
        if hflip:
            img = img[:, ::-1]
        if vflip:
            img = img[::-1]
        u8[i] = np.rot90(img, ROT90_K[turns])
    jitter = [d[3] for d in draws] if aug["colour_jitter"] > 0 else None
    return to_input(np.ascontiguousarray(u8), norm, jitter)


# ----------------------------------------------------------------------------- model


def trunk_family(arch):
    """Which torchvision layout an architecture has: decides how to run its trunk and the name
    of its classification layer (Backbone::head_name in Rust)."""
    if arch.startswith(("resnet", "resnext", "wide_resnet")):
        return "resnet", "fc"
    if arch.startswith("densenet"):
        return "densenet", "classifier"
    if arch == "mobilenet_v2":
        return "mobilenet_v2", "classifier.1"
    raise SystemExit(
        f"architecture '{arch}' has no torchvision counterpart here; pass --arch with one of "
        "resnet18, resnet34, resnet50, densenet121, mobilenet_v2"
    )


class AggregatedClassifier(nn.Module):
    """aggregated.rs. The torchvision model's modules are registered directly on this module so
    parameter names are torchvision's (and myoscope's); its own pooling/classifier is unused."""

    def __init__(self, arch, grid, num_classes):
        super().__init__()
        self.family, self.head_name = trunk_family(arch)
        tv = torchvision.models.get_model(arch, weights=None)
        for name, child in tv.named_children():
            self.add_module(name, child)
        self.grid = grid
        if self.family == "resnet":
            channels = tv.fc.in_features
            self.fc = nn.Linear(channels, num_classes)
            del self.avgpool
        elif self.family == "densenet":
            channels = tv.classifier.in_features
            self.classifier = nn.Linear(channels, num_classes)
        else:
            channels = tv.classifier[1].in_features
            # myoscope applies the head to the pooled mosaic directly: no dropout before it.
            self.classifier = nn.Sequential(nn.Identity(), nn.Linear(channels, num_classes))
        self.patch_classifier = nn.Linear(channels, num_classes) if grid > 1 else None

    def trunk(self, x):
        """Backbone::features: patch batch -> feature maps before pooling."""
        if self.family == "resnet":
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            return self.layer4(self.layer3(self.layer2(self.layer1(x))))
        if self.family == "densenet":
            # torchvision's DenseNet applies the final ReLU in forward(), myoscope in the trunk.
            return F.relu(self.features(x))
        return self.features(x)

    def forward(self, x):
        b, c, h, w = x.shape
        g = self.grid
        patches = x.view(b, c, g, h // g, g, w // g).permute(0, 2, 4, 1, 3, 5).reshape(b * g * g, c, h // g, w // g)
        maps = self.trunk(patches)
        n, cf, fh, fw = maps.shape
        mosaic = maps.view(b, g, g, cf, fh, fw).permute(0, 3, 1, 4, 2, 5).reshape(b, cf, g * fh, g * fw)
        logits = self.get_submodule(self.head_name)(mosaic.mean(dim=(2, 3)))
        patch_logits = None
        if self.patch_classifier is not None:
            patch_logits = self.patch_classifier(maps.mean(dim=(2, 3))).view(b, g * g, -1)
        return logits, patch_logits

    def output_layer_prefixes(self):
        """Names of the layers a step-2 model re-creates instead of taking from step 1."""
        return (f"{self.head_name}.", "patch_classifier.")


def aggregated_loss(logits, patch_logits, labels, patch_weight):
    """loss.rs: the mean over B·M patch terms times M is Σ_j mean_b CE(patch_j)."""
    loss = F.cross_entropy(logits, labels)
    if patch_logits is not None and patch_weight != 0.0:
        b, m, k = patch_logits.shape
        patch_labels = labels.unsqueeze(1).expand(b, m).reshape(b * m)
        loss = loss + patch_weight * m * F.cross_entropy(patch_logits.reshape(b * m, k), patch_labels)
    return loss


# ----------------------------------------------------------------------------- training


def evaluate(model, squares, items, labels, cfg, device):
    """trainer.rs evaluate: loss and accuracy without augmentation, BN in inference mode."""
    if not items:
        return float("nan"), float("nan")
    model.eval()
    bs = cfg["training"]["batch_size"]
    norm = cfg["model"]["normalization"]
    loss_sum, batches, correct = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, len(items), bs):
            chunk = items[start : start + bs]
            x = to_input(squares.batch([(r.path, c) for r, c in chunk]), norm).to(device)
            y = torch.tensor([labels[r.path] for r, _ in chunk], device=device)
            logits, patch = model(x)
            loss_sum += aggregated_loss(logits, patch, y, cfg["model"]["patch_loss_weight"]).item()
            batches += 1
            correct += (logits.argmax(-1) == y).sum().item()
    return loss_sum / batches, correct / len(items)


def train_fold(stage, fold, k, train_rows, val_rows, labels, cfg, squares, device, init_state):
    """trainer.rs train with a fixed split. Returns the best model (on `device`) and its record."""
    tr = cfg["training"]
    seed = tr["seed"] + fold  # plan.rs fold_config: fold K is seeded with training.seed + K
    torch.manual_seed(seed)
    model = AggregatedClassifier(cfg["model"]["arch"], cfg["model"]["grid"], len(stage.classes))
    if init_state is not None:
        heads = model.output_layer_prefixes()
        trunk = {n: t for n, t in init_state.items() if not n.startswith(heads)}
        missing, unexpected = model.load_state_dict(trunk, strict=False)
        assert not unexpected and all(n.startswith(heads) for n in missing), (missing, unexpected)
    model.to(device)
    opt_cfg = tr["optimizer"]
    opt = torch.optim.RAdam(
        model.parameters(),
        lr=opt_cfg["lr"],
        betas=(opt_cfg["beta1"], opt_cfg["beta2"]),
        eps=opt_cfg["eps"],
        weight_decay=opt_cfg["weight_decay"],
        decoupled_weight_decay=opt_cfg["decoupled_weight_decay"],
    )
    train_items = edge_items(train_rows)
    val_items = edge_items(val_rows)
    aug = tr["augmentation"]
    norm = cfg["model"]["normalization"]
    bs = tr["batch_size"]
    epochs = tr["epochs"]
    best_score, best_epoch, best_state, history = -math.inf, 0, None, []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        lr = lr_at(tr["lr_schedule"], opt_cfg["lr"], epoch, epochs)
        for group in opt.param_groups:
            group["lr"] = lr
        # One generator per (fold seed, epoch), like loader.rs's mix_seed(seed, epoch, ·): an
        # epoch's order and augmentations do not depend on how earlier epochs went.
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(train_items))
        model.train()
        loss_sum, batches, correct = 0.0, 0, 0
        for start in range(0, len(order), bs):
            chunk = [train_items[i] for i in order[start : start + bs]]
            x = training_batch(squares, [(r.path, c) for r, c in chunk], rng, aug, norm).to(device)
            y = torch.tensor([labels[r.path] for r, _ in chunk], device=device)
            logits, patch = model(x)
            loss = aggregated_loss(logits, patch, y, cfg["model"]["patch_loss_weight"])
            value = loss.item()
            if not math.isfinite(value):
                raise SystemExit(f"{stage.name} fold {fold}: training diverged at epoch {epoch + 1} (loss {value}); lower training.optimizer.lr")
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += value
            batches += 1
            correct += (logits.argmax(-1) == y).sum().item()
        train_loss, train_acc = loss_sum / max(batches, 1), correct / max(len(train_items), 1)
        val_loss, val_acc = evaluate(model, squares, val_items, labels, cfg, device)
        seconds = time.perf_counter() - t0
        print(
            f"{stage.name} fold {fold}/{k} epoch {epoch + 1}/{epochs}  train loss {train_loss:.4f} acc {train_acc:.3f}"
            f"  val loss {val_loss:.4f} acc {val_acc:.3f}  lr {lr:.2e}  ({seconds:.1f}s)",
            file=sys.stderr,
            flush=True,
        )
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_acc,
                        "validation_loss": val_loss, "validation_accuracy": val_acc, "seconds": seconds})
        # Strictly greater: ties keep the earlier epoch. Without validation the last epoch wins.
        score = epoch if not val_items else val_acc
        if score > best_score:
            best_score, best_epoch = score, epoch + 1
            best_state = {n: t.detach().to("cpu", copy=True) for n, t in model.state_dict().items()}
    model.load_state_dict(best_state)
    record = {
        "fold": fold,
        "train_images": len(train_rows),
        "validation_images": len(val_rows),
        "best_epoch": best_epoch,
        "best_validation_accuracy": best_score if val_items else None,
        "epochs": history,
    }
    return model, best_state, record


def predict(model, squares, rows, cfg, device):
    """inference.rs predict: softmax of the final logits on each photo's centre square."""
    model.eval()
    bs = cfg["training"]["batch_size"]
    out = []
    with torch.no_grad():
        for start in range(0, len(rows), bs):
            chunk = rows[start : start + bs]
            x = to_input(squares.batch([(r.path, CENTRE) for r in chunk]), cfg["model"]["normalization"]).to(device)
            out.append(torch.softmax(model(x)[0].float(), dim=-1).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


# ----------------------------------------------------------------------------- metrics


def auc_of(truth, probs, positive, n_classes):
    """Binary: AUC of the positive class. More classes: macro one-vs-rest AUC over the classes
    present in `truth` (scikit-learn refuses absent classes; the macro mean is the same). None
    where it is undefined (one class only)."""
    present = np.unique(truth)
    if len(present) < 2:
        return None
    if positive is not None:
        return float(roc_auc_score(truth == positive, probs[:, positive]))
    if len(present) == n_classes:
        return float(roc_auc_score(truth, probs, multi_class="ovr", average="macro", labels=list(range(n_classes))))
    return float(np.mean([roc_auc_score(truth == c, probs[:, c]) for c in present]))


def predicted_classes(probs, positive):
    """cv_report.rs predictions: a two-class stage calls the positive class at p >= 0.5 (ties go
    to the positive class), more classes take the first most probable class."""
    if positive is not None:
        return np.where(probs[:, positive] >= 0.5, positive, 1 - positive)
    return probs.argmax(axis=1)


def level(truth, probs, positive, n_classes):
    pred = predicted_classes(probs, positive)
    return {"auc": auc_of(truth, probs, positive, n_classes), "accuracy": float(np.mean(pred == truth))}


def slide_means(slide_of, probs):
    """Slide probability = mean over its photos; slides in sorted order, as in cv_report.rs."""
    names = sorted(set(slide_of))
    index = {s: i for i, s in enumerate(names)}
    ids = np.array([index[s] for s in slide_of])
    sums = np.zeros((len(names), probs.shape[1]))
    np.add.at(sums, ids, probs)
    return sums / np.bincount(ids, minlength=len(names))[:, None], ids


def spread(values):
    """Mean and sample SD (n - 1, as cv_report.rs mean_sd) of the figures that exist."""
    xs = [v for v in values if v is not None]
    if not xs:
        return None, None
    mean = float(np.mean(xs))
    return mean, float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0


def stage_report(stage, cfg, rows, truth, per_model, records):
    """One entry of metrics.json's "stages": the ensemble per image and per slide, each fold's
    model alone (mean and SD over folds), recall per class, and the per-fold table."""
    k = len(stage.classes)
    positive = positive_index(cfg, stage)
    slide_of = [r.slide for r in rows]
    _, ids = slide_means(slide_of, per_model[0])
    slide_truth = np.zeros(ids.max() + 1, dtype=int)
    slide_truth[ids] = truth  # units are single-class (checked by myoscope when it assigned folds)
    ensemble = np.mean(per_model, axis=0)
    ens_slide, _ = slide_means(slide_of, ensemble)
    pred = predicted_classes(ensemble, positive)
    single_img, single_slide = [], []
    for probs, rec in zip(per_model, records):
        single_img.append(level(truth, probs, positive, k))
        single_slide.append(level(slide_truth, slide_means(slide_of, probs)[0], positive, k))
        rec["test_images"] = len(rows)
        rec["per_image"] = single_img[-1]
        rec["per_slide"] = single_slide[-1]

    def summary(levels):
        auc_mean, auc_sd = spread([m["auc"] for m in levels])
        acc_mean, acc_sd = spread([m["accuracy"] for m in levels])
        return {"auc_mean": auc_mean, "auc_sd": auc_sd, "accuracy_mean": acc_mean, "accuracy_sd": acc_sd}

    return {
        "stage": stage.name,
        "classes": stage.classes,
        "positive_class": stage.classes[positive] if positive is not None else None,
        "test_images": len(rows),
        "test_slides": int(len(slide_truth)),
        "per_image": level(truth, ensemble, positive, k),
        "per_slide": level(slide_truth, ens_slide, positive, k),
        # Recall per true class of the ensemble, per photo; classes without test photos omitted.
        "per_class_accuracy": {c: float(np.mean(pred[truth == i] == i)) for i, c in enumerate(stage.classes) if np.any(truth == i)},
        "single_model": {"per_image": summary(single_img), "per_slide": summary(single_slide)},
        "folds": [{key: v for key, v in rec.items() if key != "epochs"} for rec in records],
        "history": {str(rec["fold"]): rec["epochs"] for rec in records},
    }


def write_probabilities(path, stage, rows, truth, probs):
    """Same columns as myoscope's per-image prediction CSV (inference.rs write_csv)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "slide", "truth", "predicted"] + [f"p_{c}" for c in stage.classes])
        for r, t, p in zip(rows, truth, probs):
            w.writerow([r.path, r.slide, stage.classes[t], stage.classes[int(np.argmax(p))]] + [f"{v:.6f}" for v in p])


def finite_or_none(x):
    """JSON has no NaN: undefined figures are written as null."""
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite_or_none(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# ----------------------------------------------------------------------------- main


def pick_device(name):
    if name in ("auto", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ensemble", required=True, type=Path, help="directory written by `myoscope cv` (cv.toml, assignment.csv)")
    ap.add_argument("--out", required=True, type=Path, help="where metrics.json goes")
    ap.add_argument("--arch", help="torchvision trunk instead of model.arch (resnet18, resnet34, resnet50, densenet121, mobilenet_v2)")
    ap.add_argument("--epochs", type=int, help="override training.epochs (quick checks)")
    ap.add_argument("--device", help="override training.device: cpu, cuda, cuda:N or auto")
    ap.add_argument("--cache-gib", type=float, default=3.0, help="memory for cached squares (myoscope: 3 GiB)")
    args = ap.parse_args()

    started = time.perf_counter()
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    cfg = load_config(args.ensemble / "cv.toml")
    if args.arch:
        cfg["model"]["arch"] = args.arch
    if args.epochs:
        cfg["training"]["epochs"] = args.epochs
    m = cfg["model"]
    trunk_family(m["arch"])  # fail before any work on an architecture torchvision lacks
    if m["grid"] < 1 or m["input_size"] % m["grid"] or m["input_size"] < 16 * m["grid"]:
        raise SystemExit(f"model.input_size {m['input_size']} does not suit a {m['grid']}×{m['grid']} grid (divisible, ≥ 16 px per patch)")
    device = pick_device(args.device or cfg["training"]["device"])
    rows = read_assignment(args.ensemble / "assignment.csv")
    k = int(cfg["cv"]["folds"])
    present = sorted({r.fold for r in rows if r.fold != "test"}, key=int)
    if present != [str(i) for i in range(1, k + 1)]:
        raise SystemExit(f"assignment.csv has folds {present}, cv.folds says {k}")
    stages = stages_of(cfg, rows)
    hierarchy = cfg["hierarchy"]
    print(
        f"reference_cv: torch {torch.__version__}, torchvision {torchvision.__version__}, {m['arch']} grid {m['grid']} "
        f"at {m['input_size']}px, {k} folds, stages {', '.join(s.name for s in stages)}, device {device}, {cores} threads",
        file=sys.stderr,
    )

    squares = Squares(m["input_size"], int(args.cache_gib * 2**30), workers=cores)
    # Per stage: the photos it sees (in assignment order), their class index keyed by path.
    seen = {}
    for s in stages:
        labels = {}
        for r in rows:
            lab = s.label_of(r, hierarchy)
            if lab is not None:
                labels[r.path] = s.classes.index(lab)
        seen[s.key] = ([r for r in rows if r.path in labels], labels)
    per_model = {s.key: [] for s in stages}
    records = {s.key: [] for s in stages}

    # Fold by fold, as cv/run.rs: step 2 of fold K needs only step 1 of fold K in memory.
    for fold in range(1, k + 1):
        step1_state = None
        for s in stages:
            stage_rows, labels = seen[s.key]
            train_rows = [r for r in stage_rows if r.fold not in ("test", str(fold))]
            val_rows = [r for r in stage_rows if r.fold == str(fold)]
            test_rows = [r for r in stage_rows if r.fold == "test"]
            print(f"== {s.name} fold {fold}/{k}: {len(train_rows)} training photos ({2 * len(train_rows)} squares), "
                  f"{len(val_rows)} validation, {len(test_rows)} test ==", file=sys.stderr)
            init = step1_state if s.group is not None else None
            model, best_state, record = train_fold(s, fold, k, train_rows, val_rows, labels, cfg, squares, device, init)
            if s.key == "step1":
                step1_state = best_state
            per_model[s.key].append(predict(model, squares, test_rows, cfg, device))
            records[s.key].append(record)
            del model

    report = {
        "framework": "pytorch",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "scikit_learn": sklearn.__version__,
        "arch": m["arch"],
        "grid": m["grid"],
        "input_size": m["input_size"],
        "epochs": cfg["training"]["epochs"],
        "folds": k,
        "device": str(device),
        "threads": cores,
        "stages": {},
    }
    for s in stages:
        stage_rows, labels = seen[s.key]
        test_rows = [r for r in stage_rows if r.fold == "test"]
        if not test_rows:
            print(f"warning: {s.name} has no test photos; no figures", file=sys.stderr)
            continue
        truth = np.array([labels[r.path] for r in test_rows])
        report["stages"][s.key] = stage_report(s, cfg, test_rows, truth, per_model[s.key], records[s.key])
        write_probabilities(args.out / s.name / "test_probabilities.csv", s, test_rows, truth, np.mean(per_model[s.key], axis=0))
    report["seconds"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "metrics.json", "w") as f:
        json.dump(finite_or_none(report), f, indent=2)
        f.write("\n")
    for key, st in report["stages"].items():
        print(f"{key}: per image AUC {st['per_image']['auc']} acc {st['per_image']['accuracy']:.3f}; "
              f"per slide AUC {st['per_slide']['auc']} acc {st['per_slide']['accuracy']:.3f}", file=sys.stderr)
    print(f"wrote {args.out / 'metrics.json'} ({report['seconds']:.0f}s)", file=sys.stderr)


if __name__ == "__main__":
    main()
