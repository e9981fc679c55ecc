"""segmentation_models_pytorch oracle for myoscope's segmentation metrics
(crates/myoscope/src/segmentation/metrics.rs).

Draws seeded random small masks (binary, three classes, a class absent from both masks, a
perfect prediction, an empty prediction, everything empty), computes smp.metrics.get_stats and
iou_score / f1_score / accuracy under every reduction, and pixel accuracy with plain torch, and
writes crates/myoscope/tests/fixtures/smp_metrics.json with the inputs. The Rust test
crates/myoscope/tests/segmentation_metrics_oracle.rs must agree to 1e-6.

smp returns NaN for the `micro` reduction when every count is zero (no zero_division there); the
fixture writes such a value as null and myoscope gives zero_division instead (documented).

Run with:  .venv-ref/bin/python scripts/seg_metrics_oracle.py
(.venv-ref needs segmentation-models-pytorch==0.6.0 beside torch 2.13.)
"""
import json
import math
from pathlib import Path

import segmentation_models_pytorch as smp
import torch

OUT = Path(__file__).resolve().parent.parent / "crates/myoscope/tests/fixtures/smp_metrics.json"
REDUCTIONS = ["micro", "macro", "micro-imagewise", "macro-imagewise", "none"]
METRICS = {"iou": smp.metrics.iou_score, "dice": smp.metrics.f1_score, "accuracy": smp.metrics.accuracy}


def noisy(truth, classes, flip, gen):
    """The truth with a fraction `flip` of its pixels given a random class."""
    change = torch.rand(truth.shape, generator=gen) < flip
    random = torch.randint(0, classes, truth.shape, generator=gen)
    return torch.where(change, random, truth)


def as_list(x):
    if isinstance(x, torch.Tensor):
        x = x.tolist()
    if isinstance(x, list):
        return [as_list(v) for v in x]
    return None if isinstance(x, float) and math.isnan(x) else x


def case(name, pred, truth, mode, num_classes, zero_division=1.0):
    """pred, truth: N×H×W long. In binary mode any nonzero value is foreground."""
    if mode == "binary":
        p, t = (pred > 0).long().unsqueeze(1), (truth > 0).long().unsqueeze(1)
        tp, fp, fn, tn = smp.metrics.get_stats(p, t, mode="binary")
        agree = (pred > 0) == (truth > 0)
    else:
        tp, fp, fn, tn = smp.metrics.get_stats(pred, truth, mode="multiclass", num_classes=num_classes)
        agree = pred == truth
    scores = {
        metric: {
            r: as_list(fn_(tp, fp, fn, tn, reduction=r, zero_division=zero_division).double())
            for r in REDUCTIONS
        }
        for metric, fn_ in METRICS.items()
    }
    return {
        "name": name,
        "mode": mode,
        "num_classes": num_classes,
        "zero_division": zero_division,
        "shape": list(truth.shape),
        "predicted": pred.flatten().tolist(),
        "truth": truth.flatten().tolist(),
        "stats": {"tp": tp.tolist(), "fp": fp.tolist(), "fn": fn.tolist(), "tn": tn.tolist()},
        "scores": scores,
        "pixel_accuracy": agree.double().mean().item(),
        "pixel_accuracy_per_image": agree.flatten(1).double().mean(1).tolist(),
    }


def main():
    gen = torch.Generator().manual_seed(20240611)
    cases = []

    # Binary: the truth holds instance labels 0..4 (foreground = nonzero), the prediction 0/1.
    truth = torch.randint(0, 5, (3, 6, 7), generator=gen) * (torch.rand(3, 6, 7, generator=gen) < 0.4)
    pred = noisy((truth > 0).long(), 2, 0.25, gen)
    cases.append(case("binary", pred, truth, "binary", 1))

    truth = torch.randint(0, 3, (3, 7, 9), generator=gen)
    cases.append(case("three_classes", noisy(truth, 3, 0.3, gen), truth, "multiclass", 3))

    # Class 3 never appears; class 2 is missing from the second image's truth and prediction.
    truth = torch.randint(0, 3, (2, 8, 8), generator=gen)
    truth[1] = truth[1].clamp(max=1)
    pred = noisy(truth, 3, 0.2, gen)
    pred[1] = pred[1].clamp(max=1)
    cases.append(case("absent_class", pred, truth, "multiclass", 4, 1.0))
    cases.append(case("absent_class_zero_division_0", pred, truth, "multiclass", 4, 0.0))

    truth = torch.randint(0, 3, (2, 5, 6), generator=gen)
    cases.append(case("perfect", truth.clone(), truth, "multiclass", 3))

    # The second image has no nuclei at all, so its foreground IoU is 0/0 → zero_division.
    truth = (torch.rand(2, 6, 6, generator=gen) < 0.3).long()
    truth[1] = 0
    empty = torch.zeros_like(truth)
    cases.append(case("empty_prediction_binary", empty, truth, "binary", 1))
    cases.append(case("empty_prediction_multiclass", empty, truth, "multiclass", 2))

    # Nothing anywhere: smp's micro reduction is NaN here (written as null).
    nothing = torch.zeros(2, 4, 5, dtype=torch.long)
    cases.append(case("all_empty_binary", nothing, nothing.clone(), "binary", 1))

    doc = {
        "generator": "scripts/seg_metrics_oracle.py",
        "torch": torch.__version__,
        "segmentation_models_pytorch": smp.__version__,
        "cases": cases,
    }
    OUT.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(cases)} cases)")


if __name__ == "__main__":
    main()
