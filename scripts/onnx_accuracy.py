"""Accuracy of the same model run by different engines: reads `predictions.csv` files written by
`myoscope predict --engine ... --out DIR` on a labelled manifest, and prints per engine the
photo accuracy, the macro one-vs-rest AUC (scikit-learn) and the largest probability difference
from the first file (the reference, e.g. libtorch fp32).

  .venv-ref/bin/python scripts/onnx_accuracy.py torch=preds-torch/predictions.csv \
      onnx=preds-onnx/predictions.csv int8=preds-int8/predictions.csv
"""
import csv
import sys

import numpy as np
from sklearn.metrics import roc_auc_score


def read(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    classes = [k[2:] for k in rows[0] if k.startswith("p_")]
    probs = np.array([[float(r["p_" + c]) for c in classes] for r in rows])
    truth = np.array([classes.index(r["truth"]) for r in rows])
    return [r["path"] for r in rows], classes, probs, truth


def main(args):
    if not args:
        sys.exit(__doc__)
    ref = None
    for arg in args:
        name, path = arg.split("=", 1)
        paths, classes, probs, truth = read(path)
        acc = float((probs.argmax(1) == truth).mean())
        auc = roc_auc_score(truth, probs, multi_class="ovr", average="macro", labels=list(range(len(classes))))
        line = f"{name:<8} photos {len(paths)}  accuracy {acc:.4f}  macro OvR AUC {auc:.4f}"
        if ref is None:
            ref = (paths, probs, acc, auc)
        else:
            assert paths == ref[0], "the files list different photos"
            line += (f"  ΔAUC {auc - ref[3]:+.4f}  Δaccuracy {acc - ref[2]:+.4f}"
                     f"  max |Δp| {np.abs(probs - ref[1]).max():.4f}")
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
