#!/usr/bin/env python3
"""PyTorch reference for `myoscope segment train` on the DSB2018 fluorescence split.

The same protocol as myoscope's corrected preset, written with segmentation_models_pytorch:
smp.Unet("resnet34", encoder_depth=3, decoder_channels=(256, 128, 64),
decoder_attention_type="scse", in_channels=1, classes=2), random init; 8-bit images / 255;
masks: any label > 0 is nucleus; per epoch one random crop of TILE² per training image
(mirror-padded where the image is smaller), horizontal/vertical flips and a rotation in ±3°
applied to image and mask together (bilinear / nearest); cross-entropy weighted by inverse
pixel frequency normalised to sum 1; Adam lr 3.6e-4, weight decay 1e-5, cosine per epoch to
3.4e-4; the epoch with the best validation IoU kept; the test split scored with
smp.metrics (binary mode: the nucleus class).

Differences from myoscope that are not method: images are scored whole (mirror-padded to a
multiple of 8) instead of in overlapping tiles, and the random streams differ.

    scripts/setup-reference.sh     # .venv-ref with torch and segmentation-models-pytorch
    .venv-ref/bin/python scripts/dsb2018_reference.py --epochs 8 --out runs/dsb-ref.json
"""
import argparse
import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
import segmentation_models_pytorch as smp

ROOT = Path(__file__).resolve().parent.parent


def load(root, rows):
    out = []
    for r in rows:
        img = np.asarray(Image.open(root / r["image"]))
        if img.ndim == 3:
            img = img[..., 0]
        mask = (np.asarray(Image.open(root / r["mask"])) > 0).astype(np.int64)
        out.append((torch.from_numpy(img.astype(np.float32) / 255.0), torch.from_numpy(mask)))
    return out


def reflect_index(i, n):
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    j = torch.remainder(i, period)
    return torch.where(j >= n, period - j, j)


def random_crop(img, mask, side, g):
    h, w = img.shape

    def start(n):
        if n > side:
            return int(torch.randint(0, n - side + 1, (1,), generator=g))
        return -((side - n) // 2)

    y0, x0 = start(h), start(w)
    ys = reflect_index(torch.arange(y0, y0 + side), h)
    xs = reflect_index(torch.arange(x0, x0 + side), w)
    return img[ys][:, xs], mask[ys][:, xs]


def augment(img, mask, g, max_degrees=3.0):
    if torch.rand(1, generator=g) < 0.5:
        img, mask = img.flip(1), mask.flip(1)
    if torch.rand(1, generator=g) < 0.5:
        img, mask = img.flip(0), mask.flip(0)
    deg = float((torch.rand(1, generator=g) * 2 - 1) * max_degrees)
    a = math.radians(deg)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])
    grid = F.affine_grid(theta[None], [1, 1, *img.shape], align_corners=False)
    img = F.grid_sample(img[None, None], grid, mode="bilinear", padding_mode="reflection",
                        align_corners=False)[0, 0]
    mask = F.grid_sample(mask[None, None].float(), grid, mode="nearest",
                         padding_mode="reflection", align_corners=False)[0, 0].long()
    return img, mask


def predict_whole(model, img):
    h, w = img.shape
    ph, pw = (-h) % 8, (-w) % 8
    x = F.pad(img[None, None], (0, pw, 0, ph), mode="reflect")
    with torch.no_grad():
        logits = model(x)
    return logits[0, :, :h, :w].argmax(0)


def scores(model, data):
    model.eval()
    stats = [smp.metrics.get_stats(predict_whole(model, img)[None, None], mask[None, None],
                                   mode="binary") for img, mask in data]
    tp, fp, fn, tn = (torch.cat([s[i] for s in stats]) for i in range(4))
    return {
        "iou_micro": float(smp.metrics.iou_score(tp, fp, fn, tn, reduction="micro")),
        "iou_micro_imagewise": float(smp.metrics.iou_score(tp, fp, fn, tn, reduction="micro-imagewise")),
        "dice_micro": float(smp.metrics.f1_score(tp, fp, fn, tn, reduction="micro")),
        "pixel_accuracy": float(smp.metrics.accuracy(tp, fp, fn, tn, reduction="micro")),
        "images": len(data),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/nuclei-dsb2018"))
    ap.add_argument("--split", default=str(ROOT / "configs/dsb2018-fluorescence-split.csv"))
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="dsb2018-reference.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)

    with open(a.split, newline="") as f:
        rows = list(csv.DictReader(f))
    root = Path(a.data)
    train = load(root, [r for r in rows if r["split"] == "train"])
    val = load(root, [r for r in rows if r["split"] == "validation"])
    test = load(root, [r for r in rows if r["split"] == "test"])
    counts = np.array([sum(int((m == c).sum()) for _, m in train) for c in (0, 1)], dtype=np.float64)
    inv = 1.0 / counts
    weights = torch.tensor(inv / inv.sum(), dtype=torch.float32)

    model = smp.Unet("resnet34", encoder_weights=None, encoder_depth=3,
                     decoder_channels=(256, 128, 64), decoder_attention_type="scse",
                     in_channels=1, classes=2)
    base, min_lr = 3.6e-4, 3.4e-4
    opt = torch.optim.Adam(model.parameters(), lr=base, weight_decay=1e-5)
    best, best_state, history = -1.0, None, []
    for epoch in range(a.epochs):
        t0 = time.time()
        t = epoch / max(a.epochs - 1, 1)
        lr = min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * t))
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        order = torch.randperm(len(train), generator=g).tolist()
        losses = []
        for i in range(0, len(order), a.batch_size):
            xs, ys = [], []
            for k in order[i:i + a.batch_size]:
                img, mask = random_crop(*train[k], a.tile, g)
                img, mask = augment(img, mask, g)
                xs.append(img[None])
                ys.append(mask)
            logits = model(torch.stack(xs))
            loss = F.cross_entropy(logits, torch.stack(ys), weight=weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        v = scores(model, val)
        history.append({"epoch": epoch + 1, "lr": lr, "train_loss": float(np.mean(losses)),
                        "validation_iou": v["iou_micro"], "seconds": time.time() - t0})
        print(f"epoch {epoch + 1}/{a.epochs} loss {np.mean(losses):.4f} val IoU {v['iou_micro']:.4f} "
              f"({time.time() - t0:.1f}s)", flush=True)
        if v["iou_micro"] > best:
            best = v["iou_micro"]
            best_state = {k: x.clone() for k, x in model.state_dict().items()}
    model.load_state_dict(best_state)
    result = {
        "reference": "segmentation_models_pytorch " + smp.__version__ + ", torch " + torch.__version__,
        "epochs": a.epochs, "tile": a.tile, "batch_size": a.batch_size, "seed": a.seed,
        "class_weights": weights.tolist(),
        "best_validation_iou": best,
        "best_epoch": 1 + max(range(len(history)), key=lambda i: history[i]["validation_iou"]),
        "test": scores(model, test),
        "history": history,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["test"]))


if __name__ == "__main__":
    main()
