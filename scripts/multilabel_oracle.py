#!/usr/bin/env python3
"""Reference values for myoscope's multi-label scores and losses (issue 7, DEDL classification).

    .venv-ref/bin/python scripts/multilabel_oracle.py     # after scripts/setup-reference.sh

Writes crates/myoscope/tests/fixtures/multilabel.json:
- metrics: seeded label sets and probabilities (including a class nobody carries, a class
  nobody is predicted to carry and samples with no labels at all), thresholded as "p > t", and
  scikit-learn's precision_recall_fscore_support per class, micro/macro/weighted precision,
  recall and F1, samples-averaged F1 and exact-match accuracy, all with zero_division=0;
- losses: logits, targets and class weights with the loss and its gradient from PyTorch
  autograd: torchvision.ops.sigmoid_focal_loss (alpha=-1, then times α, for the scale form;
  alpha=α for Lin et al.'s balanced form) and binary_cross_entropy_with_logits, each element
  times its class weight, averaged over samples and classes.
"""
import json
import pathlib

import numpy as np
import sklearn
import torch
import torch.nn.functional as F
import torchvision
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
from torchvision.ops import sigmoid_focal_loss

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "crates/myoscope/tests/fixtures"


def metrics_case(name, rng, n, k, thresholds, empty_class=None, never_predicted=None):
    truth = rng.random((n, k)) < rng.uniform(0.1, 0.6, size=k)
    probs = np.clip(truth * 0.35 + rng.random((n, k)) * 0.65, 0.0, 1.0)
    if empty_class is not None:
        truth[:, empty_class] = False
    if never_predicted is not None:
        probs[:, never_predicted] = np.minimum(probs[:, never_predicted], thresholds[never_predicted])
    truth[0, :] = False  # a sample with no true label
    probs[0, :] = np.minimum(probs[0, :], thresholds)  # ... and none predicted
    pred = probs > np.asarray(thresholds)
    p, r, f, s = precision_recall_fscore_support(truth, pred, average=None, zero_division=0)
    avg = {}
    for a in ("micro", "macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(truth, pred, average=a, zero_division=0)
        avg[a] = {"precision": float(ap), "recall": float(ar), "f1": float(af)}
    return {
        "name": name,
        "thresholds": list(map(float, thresholds)),
        "truth": truth.astype(int).tolist(),
        "probabilities": probs.tolist(),
        "per_class": {
            "precision": p.tolist(),
            "recall": r.tolist(),
            "f1": f.tolist(),
            "support": s.tolist(),
        },
        "averages": avg,
        "samples_f1": float(f1_score(truth, pred, average="samples", zero_division=0)),
        "exact_match_accuracy": float(accuracy_score(truth, pred)),
    }


def loss_case(name, rng, n, k, kind, alpha=1.0, gamma=2.0, weighted=True):
    logits = torch.tensor(rng.normal(0.0, 2.0, size=(n, k)), dtype=torch.float32, requires_grad=True)
    targets = torch.tensor((rng.random((n, k)) < 0.4).astype(np.float32))
    weights = torch.tensor(rng.uniform(0.2, 1.0, size=k), dtype=torch.float32) if weighted else torch.ones(k)
    if kind == "bce":
        per = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    elif kind == "scale":
        per = sigmoid_focal_loss(logits, targets, alpha=-1, gamma=gamma, reduction="none") * alpha
    else:
        per = sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="none")
    loss = (per * weights.unsqueeze(0)).mean()
    loss.backward()
    return {
        "name": name,
        "kind": kind,
        "alpha": alpha,
        "gamma": gamma,
        "logits": logits.detach().tolist(),
        "targets": targets.tolist(),
        "weights": weights.tolist() if weighted else None,
        "loss": float(loss),
        "grad": logits.grad.tolist(),
    }


def main():
    rng = np.random.default_rng(7)
    metrics = [
        metrics_case("five_cell_types", rng, 40, 5, [0.5] * 5),
        metrics_case("absent_and_never_predicted", rng, 30, 4, [0.5] * 4, empty_class=1, never_predicted=2),
        metrics_case("tuned_thresholds", rng, 64, 7, [0.3, 0.5, 0.62, 0.45, 0.5, 0.7, 0.55]),
    ]
    losses = [
        loss_case("focal_scale_paper", rng, 16, 5, "scale", alpha=1.0, gamma=2.0),
        loss_case("focal_scale_half_gamma3", rng, 12, 7, "scale", alpha=0.5, gamma=3.0),
        loss_case("focal_balanced", rng, 16, 5, "balanced", alpha=0.25, gamma=2.0),
        loss_case("focal_unweighted", rng, 8, 3, "scale", alpha=1.0, gamma=2.0, weighted=False),
        loss_case("bce_weighted", rng, 16, 5, "bce"),
    ]
    out = {
        "sklearn_version": sklearn.__version__,
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "metrics": metrics,
        "losses": losses,
    }
    path = FIXTURES / "multilabel.json"
    path.write_text(json.dumps(out) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
