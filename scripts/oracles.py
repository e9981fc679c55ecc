"""Regenerates the reference values our tests compare against, from PyTorch itself.

    .venv-ref/bin/python scripts/oracles.py      # after scripts/setup-reference.sh

Writes crates/myoscope/tests/fixtures/*.json: RAdam and Adam trajectories from torch.optim.RAdam / Adam and
ROC/AUC/confusion/accuracy from scikit-learn. The RAdam problems are defined by closed-form
formulas (sines and cosines of indices), so the Rust tests rebuild the same inputs without
reading any tensor file; the metric cases carry their (seeded) inputs in the JSON.
"""
import json
import math
import pathlib

import numpy as np
import torch

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "crates/myoscope/tests/fixtures"


def formula(shape, a, b, scale, fn):
    n = math.prod(shape)
    idx = torch.arange(n, dtype=torch.float32)
    return (fn(idx * a + b) * scale).reshape(shape)


def radam_problem():
    """A small tanh MLP regression: enough curvature that RAdam's warm-up and rectified
    phases both matter over 200 steps."""
    params = {
        "w1": formula((8, 5), 0.37, 0.0, 0.5, torch.sin),
        "b1": formula((5,), 1.0, 0.0, 0.1, torch.cos),
        "w2": formula((5, 3), 0.21, 0.3, 0.5, torch.cos),
    }
    x = formula((16, 8), 0.13, 1.0, 1.0, torch.sin)
    y = formula((16, 3), 0.07, 0.0, 1.0, torch.cos)
    return params, x, y


def radam_case(lr, weight_decay, decoupled, steps=200):
    return optimiser_case(
        lambda ps: torch.optim.RAdam(ps, lr=lr, weight_decay=weight_decay,
                                     decoupled_weight_decay=decoupled),
        lr, weight_decay, decoupled, steps)


def adam_case(lr, weight_decay, steps=200):
    """torch.optim.Adam with coupled L2 weight decay: the DEDL segmentation optimiser."""
    return optimiser_case(
        lambda ps: torch.optim.Adam(ps, lr=lr, weight_decay=weight_decay),
        lr, weight_decay, False, steps)


def optimiser_case(make, lr, weight_decay, decoupled, steps):
    params, x, y = radam_problem()
    ps = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    opt = make(list(ps.values()))
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((torch.tanh(x @ ps["w1"] + ps["b1"]) @ ps["w2"] - y) ** 2).mean()
        losses.append(loss.item())
        loss.backward()
        opt.step()
    return {
        "lr": lr,
        "weight_decay": weight_decay,
        "decoupled_weight_decay": decoupled,
        "steps": steps,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "params": {k: v.detach().flatten().tolist() for k, v in ps.items()},
    }


def nullable(values):
    """JSON has no infinity: sklearn's first ROC threshold (+inf) becomes null."""
    return [None if not math.isfinite(v) else float(v) for v in values]


def binary_case(name, y, s):
    from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

    y = np.asarray(y, dtype=int)
    s = np.asarray(s, dtype=float)
    fpr, tpr, thr = roc_curve(y, s)
    case = {
        "name": name,
        "truth": y.tolist(),
        "scores": s.tolist(),
        "fpr": fpr.tolist(),
        "tpr": tpr.tolist(),
        "thresholds": nullable(thr),
        "auc": float(roc_auc_score(y, s)),
        "at_threshold": [],
    }
    for t in (0.5, float(s[y == 1].min())):
        tn, fp, fn, tp = confusion_matrix(y, (s >= t).astype(int), labels=[0, 1]).ravel()
        case["at_threshold"].append(
            {"threshold": t, "tp": int(tp), "tn": int(tn), "fp": int(fp), "fn": int(fn)}
        )
    return case


def multiclass_case(name, y, probs, predicted):
    from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score

    k = probs.shape[1]
    per_class = [float(roc_auc_score((y == c).astype(int), probs[:, c])) for c in range(k)]
    return {
        "name": name,
        "classes": k,
        "truth": y.tolist(),
        "probabilities": probs.tolist(),
        "macro_auc": float(roc_auc_score(y, probs, multi_class="ovr", average="macro")),
        "per_class_auc": per_class,
        "predicted": predicted.tolist(),
        "confusion": confusion_matrix(y, predicted, labels=list(range(k))).tolist(),
        "accuracy": float(accuracy_score(y, predicted)),
    }


def sklearn_metrics():
    """ROC, AUC, confusion and accuracy from scikit-learn on small seeded problems: tied
    scores, all-distinct scores, long collinear runs (where drop_intermediate matters)."""
    import sklearn

    rng = np.random.default_rng(20261123)
    y = rng.integers(0, 2, 60)
    binary = [
        binary_case("distinct", y, np.clip(0.5 + 0.25 * (y - 0.5) + rng.normal(0, 0.2, 60), 0, 1)),
        binary_case("ties", y, np.round(np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, 60), 0, 1), 1)),
        # Ten negatives then ten positives on a lattice: many collinear points.
        binary_case("collinear", [0] * 10 + [1] * 10 + [0, 1] * 5, [i / 30 for i in range(30)]),
        binary_case("three", [0, 1, 1], [0.2, 0.6, 0.4]),
    ]
    multiclass = []
    for k, n in ((3, 45), (4, 80)):
        y = np.arange(n) % k
        rng.shuffle(y)
        logits = rng.normal(0, 1, (n, k))
        logits[np.arange(n), y] += 1.2
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        probs = np.round(probs, 6)
        probs /= probs.sum(1, keepdims=True)
        multiclass.append(multiclass_case(f"{k}-class", y, probs, probs.argmax(1)))
    return {"sklearn_version": sklearn.__version__, "binary": binary, "multiclass": multiclass}


def main():
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / "sklearn_metrics.json").write_text(json.dumps(sklearn_metrics(), indent=1) + "\n")
    print(f"wrote {FIXTURES / 'sklearn_metrics.json'}")
    radam = {
        "torch_version": torch.__version__,
        "problem": "loss = mean((tanh(x @ w1 + b1) @ w2 - y)^2); see scripts/oracles.py",
        "cases": [
            radam_case(1e-2, 0.0, False),
            radam_case(1e-2, 0.1, False),
            radam_case(3e-3, 0.1, True),
        ],
    }
    (FIXTURES / "radam.json").write_text(json.dumps(radam, indent=1) + "\n")
    print(f"wrote {FIXTURES / 'radam.json'}")
    adam = {
        "torch_version": torch.__version__,
        "problem": radam["problem"],
        "cases": [adam_case(1e-2, 0.0), adam_case(3.6e-4, 1e-5, steps=300), adam_case(3e-3, 0.1)],
    }
    (FIXTURES / "adam.json").write_text(json.dumps(adam, indent=1) + "\n")
    print(f"wrote {FIXTURES / 'adam.json'}")


if __name__ == "__main__":
    main()
