#!/usr/bin/env python3
"""PyTorch reference for `myoscope multilabel cv`: the same protocol on the same fold file.

Reads a myoscope run folder (its config.toml and folds.csv) and trains, per seed and fold,
torchvision's or timm's version of the run's backbone with the same settings: resize to the
run's input size; ColorJitter(j, j, j), RandomPerspective(d, p), RandomApply(RandomAffine(r), p),
horizontal and vertical flips (p each); Adam without weight decay, CosineAnnealingLR from lr to
min_lr over the planned epochs; sigmoid focal loss (alpha multiplying every term, gamma) times
class weights from the fold's training labels (inverse frequency min-max normalised to
[low, 1]); early stopping on the run's monitor with its patience; SWA
(torch.optim.swa_utils.AveragedModel, update_bn) from swa_start; per-class thresholds tuned on
the validation fold with myoscope's rule, or 0.5; scores from scikit-learn on the test part.

    .venv-ref/bin/python scripts/multilabel_reference.py --run runs/bccd-mnv2 \
        --weights ~/.cache/myoscope/sources/mobilenet_v2-b0353104.pth --out runs/bccd-mnv2-ref.json

Differences that are not method: the random streams, and PIL's bilinear resize instead of
image-rs's triangle filter.
"""
import argparse
import csv
import json
import math
import time
import tomllib
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torchvision
import torchvision.transforms as T
from PIL import Image
from sklearn.metrics import f1_score, precision_recall_fscore_support


def class_weights(labels, low):
    counts = labels.sum(0)
    if (counts == 0).any():
        raise SystemExit("a class is absent from a fold's training part")
    inv = len(labels) / counts
    lo, hi = inv.min(), inv.max()
    if hi - lo <= 1e-15 * hi:
        return np.ones_like(inv)
    return low + (1 - low) * (inv - lo) / (hi - lo)


def focal(logits, targets, weights, alpha, gamma):
    bce = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = logits.sigmoid()
    p_t = p * targets + (1 - p) * (1 - targets)
    return (alpha * bce * (1 - p_t) ** gamma * weights).mean()


def tune(truth, probs):
    """myoscope's rule: per class the F1-maximising cut between distinct probabilities."""
    out = []
    for c in range(truth.shape[1]):
        t_c, p_c = truth[:, c], probs[:, c]
        positives = int(t_c.sum())
        if positives == 0:
            out.append(0.5)
            continue
        order = np.argsort(-p_c, kind="stable")
        ps, ts = p_c[order], t_c[order]
        best_f1, best_t, tp, fp, i = -1.0, 0.5, 0, 0, 0
        while i < len(ps):
            v = ps[i]
            while i < len(ps) and ps[i] == v:
                tp += int(ts[i]); fp += int(not ts[i]); i += 1
            nxt = ps[i] if i < len(ps) else min(v, 0.0) - 1e-6
            t = 0.5 * (v + nxt)
            f1 = 2 * tp / (tp + fp + positives)
            if f1 > best_f1 + 1e-12 or (abs(f1 - best_f1) <= 1e-12 and abs(t - 0.5) < abs(best_t - 0.5)):
                best_f1, best_t = f1, t
        out.append(best_t)
    return np.array(out)


def build(arch, k, weights):
    if arch == "mobilenet_v2":
        m = torchvision.models.mobilenet_v2()
        if weights:
            m.load_state_dict(torch.load(weights, map_location="cpu"))
        m.classifier[1] = nn.Linear(m.classifier[1].in_features, k)
    elif arch.startswith("resnet"):
        m = getattr(torchvision.models, arch)()
        if weights:
            m.load_state_dict(torch.load(weights, map_location="cpu"))
        m.fc = nn.Linear(m.fc.in_features, k)
    elif arch.startswith("efficientnet_lite"):
        # myoscope's efficientnet_liteN is timm's tf_efficientnet_liteN; the files use the
        # lukemelas names, mapped as scripts/weights_reference.py maps them.
        import sys
        import timm
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from weights_reference import LITE_REPEATS, lite_key_map
        m = timm.create_model(f"tf_{arch}", pretrained=False, num_classes=k)
        if weights:
            sd = torch.load(weights, map_location="cpu", weights_only=True)
            keymap = lite_key_map(sd.keys(), LITE_REPEATS[int(arch[-1])])
            sd = {keymap[n]: v for n, v in sd.items() if not n.startswith("_fc")}
            missing, _ = m.load_state_dict(sd, strict=False)
            assert all(n.startswith("classifier") for n in missing), missing
    else:
        import timm
        m = timm.create_model(arch, pretrained=False, num_classes=k)
        if weights:
            sd = torch.load(weights, map_location="cpu")
            sd = {n: v for n, v in sd.items() if not n.startswith(("classifier", "head", "fc"))}
            m.load_state_dict(sd, strict=False)
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, type=Path, help="a myoscope multilabel cv run folder")
    ap.add_argument("--weights", default=None, help="the .pth the myoscope run started from")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = tomllib.loads((a.run / "config.toml").read_text())
    tr, model_cfg, data = cfg["training"], cfg["model"], cfg["data"]
    labels_csv = Path(data["labels"])
    root = Path(data.get("root") or labels_csv.parent)
    cols = data.get("columns", {})
    image_col, labels_col = cols.get("image", "path"), cols.get("labels", "labels")
    ignore = set(cols.get("ignore", []))
    rows = {r[image_col]: r for r in csv.DictReader(open(labels_csv))}
    folds = list(csv.DictReader(open(a.run / "folds.csv")))
    names = [f["image"] for f in folds]
    label_sets = [[l for l in rows[n][labels_col].split(";") if l and l not in ignore] for n in names]
    classes = data.get("classes") or sorted({l for s in label_sets for l in s})
    y = np.array([[c in s for c in classes] for s in label_sets], dtype=np.float32)
    part = [f["part"] for f in folds]
    size = model_cfg["input_size"]
    norm = model_cfg.get("normalization", {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    images = [Image.open(root / n).convert("RGB").resize((size, size), Image.BILINEAR) for n in names]
    aug = tr["augmentation"]
    j = aug["colour_jitter"]
    train_tf = T.Compose([
        T.ColorJitter(j, j, j),
        T.RandomPerspective(aug["perspective"], p=aug["perspective_p"]),
        T.RandomApply([T.RandomAffine(aug["rotation_degrees"])], p=aug["rotation_p"]),
        T.RandomHorizontalFlip(aug["flip_p"]),
        T.RandomVerticalFlip(aug["flip_p"]),
        T.ToTensor(), T.Normalize(norm["mean"], norm["std"]),
    ])
    eval_tf = T.Compose([T.ToTensor(), T.Normalize(norm["mean"], norm["std"])])
    loss_cfg = tr["loss"]
    alpha, gamma = (loss_cfg.get("alpha", 1.0), loss_cfg.get("gamma", 2.0)) if loss_cfg["kind"] == "focal" else (1.0, 0.0)
    test = [i for i, p in enumerate(part) if p == "test"]
    n_folds = cfg["protocol"]["folds"]
    bs, epochs = tr["batch_size"], tr["epochs"]

    def probs_of(model, idx):
        model.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(idx), bs):
                xb = torch.stack([eval_tf(images[i]) for i in idx[s:s + bs]])
                out.append(model(xb).sigmoid())
        return torch.cat(out).numpy() if out else np.zeros((0, len(classes)))

    runs = []
    t_all = time.time()
    for seed in cfg["protocol"]["seeds"]:
        for k in range(n_folds):
            t0 = time.time()
            torch.manual_seed(seed * 1000 + k)
            val = [i for i, p in enumerate(part) if p == str(k)]
            train = [i for i, p in enumerate(part) if p not in ("test", str(k))]
            w = torch.tensor(class_weights(y[train], tr["class_weight_low"]), dtype=torch.float32)
            model = build(model_cfg["arch"], len(classes), a.weights)
            opt = torch.optim.Adam(model.parameters(), lr=tr["lr"], weight_decay=tr["weight_decay"])
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=tr["min_lr"])
            swa = torch.optim.swa_utils.AveragedModel(model) if tr["swa_start"] > 0 else None
            swa_n, best, stale, best_state, ran = 0, -math.inf, 0, None, 0
            for epoch in range(epochs):
                if tr["patience"] and stale >= tr["patience"]:
                    break
                model.train()
                order = np.random.default_rng(seed * 7919 + k * 31 + epoch).permutation(train)
                for s in range(0, len(order), bs):
                    chunk = order[s:s + bs]
                    if len(chunk) < 2:
                        continue
                    xb = torch.stack([train_tf(images[i]) for i in chunk])
                    loss = focal(model(xb), torch.from_numpy(y[chunk]), w, alpha, gamma)
                    opt.zero_grad(); loss.backward(); opt.step()
                sched.step()
                ran = epoch + 1
                pv = probs_of(model, val)
                logits = torch.logit(torch.from_numpy(pv).clamp(1e-7, 1 - 1e-7))
                vloss = focal(logits, torch.from_numpy(y[val]), w, alpha, gamma).item()
                vf1 = f1_score(y[val], pv > 0.5, average="macro", zero_division=0)
                score = -vloss if tr["monitor"] == "validation_loss" else vf1
                if score > best:
                    best, stale = score, 0
                    best_state = {n: v.clone() for n, v in model.state_dict().items()}
                else:
                    stale += 1
                if swa is not None and epoch + 1 >= tr["swa_start"]:
                    swa.update_parameters(model); swa_n += 1
                print(f"seed {seed} fold {k} epoch {epoch + 1}: val loss {vloss:.4f} macro F1 {vf1:.3f}", flush=True)
            if swa_n:
                loader = [torch.stack([eval_tf(images[i]) for i in train[s:s + bs]])
                          for s in range(0, len(train), bs) if len(train[s:s + bs]) >= 2]
                torch.optim.swa_utils.update_bn(loader, swa)
                final = swa.module
            else:
                model.load_state_dict(best_state); final = model
            pv = probs_of(final, val)
            th = tune(y[val].astype(bool), pv) if tr["thresholds"] == "tuned_on_validation" else np.full(len(classes), 0.5)
            pt = probs_of(final, test)
            pred = pt > th
            p, r, f, sup = precision_recall_fscore_support(y[test], pred, average=None, zero_division=0)
            runs.append({
                "seed": seed, "fold": k, "epochs_run": ran, "swa_epochs": swa_n,
                "per_class_f1": f.tolist(), "per_class_recall": r.tolist(), "per_class_precision": p.tolist(),
                "macro_f1": f1_score(y[test], pred, average="macro", zero_division=0),
                "micro_f1": f1_score(y[test], pred, average="micro", zero_division=0),
                "macro_recall": float(r.mean()),
                "seconds": time.time() - t0,
            })
            print(f"seed {seed} fold {k}: test macro F1 {runs[-1]['macro_f1']:.3f} ({runs[-1]['seconds']:.0f}s)", flush=True)

    def ms(v):
        v = np.asarray(v, dtype=float)
        return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    f1s = np.array([r["per_class_f1"] for r in runs])
    summary = {
        "arch": model_cfg["arch"], "classes": classes, "models": len(runs), "test_images": len(test),
        "per_class_f1": {c: ms(f1s[:, i]) for i, c in enumerate(classes)},
        "macro_f1": ms([r["macro_f1"] for r in runs]),
        "micro_f1": ms([r["micro_f1"] for r in runs]),
        "macro_recall": ms([r["macro_recall"] for r in runs]),
        "runs": runs, "seconds": time.time() - t_all,
        "torch": torch.__version__, "torchvision": torchvision.__version__,
    }
    a.out.write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: summary[k] for k in ("macro_f1", "micro_f1", "macro_recall")}))


if __name__ == "__main__":
    main()
