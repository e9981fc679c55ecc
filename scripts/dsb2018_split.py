#!/usr/bin/env python3
"""Writes configs/dsb2018-fluorescence-split.csv: the fixed train/validation/test split of the
DSB2018 fluorescence subset (../shared/data/nuclei-dsb2018, 541 images) that myoscope and the
PyTorch reference both read.

The fluorescence images come from a handful of acquisition set-ups that differ in size (256²,
360², 696×520, ...), and each set-up looks different; a plain shuffle could leave a rare set-up
out of the test set. So the split is stratified by image size: within each size, a seeded shuffle
gives 70 % train, 10 % validation, 20 % test (at least one test image per size with >= 3 images).
Standard library only; re-running gives the same file.

    python3 scripts/dsb2018_split.py [--data ../shared/data/nuclei-dsb2018] [--out FILE]
"""
import argparse
import csv
import random
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "nuclei-dsb2018"))
    ap.add_argument("--out", default=str(ROOT / "configs" / "dsb2018-fluorescence-split.csv"))
    ap.add_argument("--seed", type=int, default=2018)
    a = ap.parse_args()

    by_size = defaultdict(list)
    with open(Path(a.data) / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["modality"] == "fluorescence":
                by_size[(int(row["width"]), int(row["height"]))].append(row["id"])

    rng = random.Random(a.seed)
    rows = []
    for size in sorted(by_size):
        ids = sorted(by_size[size])
        rng.shuffle(ids)
        n = len(ids)
        n_test = max(1, round(0.2 * n)) if n >= 3 else 0
        n_val = max(1, round(0.1 * n)) if n >= 5 else 0
        for i, id_ in enumerate(ids):
            split = "test" if i < n_test else "validation" if i < n_test + n_val else "train"
            rows.append((f"images/{id_}.png", f"masks/{id_}.png", split, f"{size[0]}x{size[1]}"))
    rows.sort()
    with open(a.out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["image", "mask", "split", "size"])
        w.writerows(rows)
    counts = defaultdict(int)
    for r in rows:
        counts[r[2]] += 1
    print(f"wrote {a.out}: {len(rows)} images, " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
