"""Side-by-side table of a myoscope cross-validation and its PyTorch reference.

    target/release/myoscope cv --config configs/herlev-two-step.toml --out runs/herlev --evaluate
    .venv-ref/bin/python scripts/reference_cv.py --ensemble runs/herlev --out runs/herlev-torch
    python3 scripts/compare_cv.py --ensemble runs/herlev --reference runs/herlev-torch

Reads DIR/evaluation/metrics.json (myoscope evaluate), the fold runs' metrics.json (training
seconds) and REF/metrics.json (scripts/reference_cv.py), and prints a Markdown table: per stage,
the ensemble's AUC and accuracy per image and per slide, the single models' mean ± sd, and the
ensemble's accuracy per true class (per image). Standard library only.
"""
import argparse
import json
import pathlib


def fmt(x, sd=None):
    if x is None:
        return "–"
    return f"{x:.3f}" if sd is None else f"{x:.3f} ± {sd:.3f}"


def ours_stages(metrics):
    out = {}
    for s in metrics["stages"]:
        e, sm = s["ensemble"], s["single_models"]
        out[s["stage"]] = {
            "per_image": e["per_image"],
            "per_slide": e["per_slide"],
            "single": {k: sm[k] for k in ("per_image", "per_slide")},
            "per_class_accuracy": e["per_image"]["per_class_accuracy"],
        }
    return out


def reference_stages(metrics):
    out = {}
    for key, s in metrics["stages"].items():
        out[key.replace("/", "-")] = {
            "per_image": s["per_image"],
            "per_slide": s["per_slide"],
            "single": s["single_model"],
            "per_class_accuracy": s["per_class_accuracy"],
        }
    return out


def training_seconds(ensemble):
    return sum(json.loads(p.read_text())["seconds"] for p in ensemble.glob("*/fold-*/metrics.json"))


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return (xs[n // 2] + xs[(n - 1) // 2]) / 2 if xs else None


def ours_epoch_seconds(ensemble, stage):
    """Median epoch time of a stage: robust to the odd epoch slowed by other work."""
    return median([e["seconds"] for p in ensemble.glob(f"{stage}/fold-*/metrics.json") for e in json.loads(p.read_text())["epochs"]])


def reference_epoch_seconds(ref_metrics, stage):
    s = ref_metrics["stages"].get(stage) or ref_metrics["stages"].get(stage.replace("step2-", "step2/"))
    return median([e["seconds"] for epochs in (s or {}).get("history", {}).values() for e in epochs])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ensemble", type=pathlib.Path, required=True)
    ap.add_argument("--reference", type=pathlib.Path, required=True)
    args = ap.parse_args()
    ours_metrics = json.loads((args.ensemble / "evaluation" / "metrics.json").read_text())
    ref_metrics = json.loads((args.reference / "metrics.json").read_text())
    ours, ref = ours_stages(ours_metrics), reference_stages(ref_metrics)
    print("| stage | figure | myoscope | PyTorch reference |")
    print("|---|---|---|---|")
    for stage in ours:
        o, r = ours[stage], ref.get(stage)
        if r is None:
            continue
        for level in ("per_image", "per_slide"):
            name = level.replace("_", " ")
            print(f"| {stage} | ensemble AUC {name} | {fmt(o[level]['auc'])} | {fmt(r[level]['auc'])} |")
            print(f"| {stage} | ensemble accuracy {name} | {fmt(o[level]['accuracy'])} | {fmt(r[level]['accuracy'])} |")
            os_, rs = o["single"][level], r["single"][level]
            print(f"| {stage} | single-model AUC {name} | {fmt(os_['auc_mean'], os_['auc_sd'])} | {fmt(rs['auc_mean'], rs['auc_sd'])} |")
            print(f"| {stage} | single-model accuracy {name} | {fmt(os_['accuracy_mean'], os_['accuracy_sd'])} | {fmt(rs['accuracy_mean'], rs['accuracy_sd'])} |")
        if stage.startswith("step2"):
            for cls, acc in o["per_class_accuracy"].items():
                print(f"| {stage} | accuracy of {cls} (per image) | {fmt(acc)} | {fmt(r['per_class_accuracy'].get(cls))} |")
    if "two_step" in ours_metrics:
        t = ours_metrics["two_step"]
        print(f"| two-step | group / subtype accuracy per slide (myoscope only) | {fmt(t['group_accuracy'])} / {fmt(t['subtype_accuracy'])} | |")
    for stage in ours:
        a, b = ours_epoch_seconds(args.ensemble, stage), reference_epoch_seconds(ref_metrics, stage)
        if a and b:
            print(f"| {stage} | median seconds per epoch (train + validation) | {a:.1f} | {b:.1f} ({b / a:.2f}× ours) |")
    print(f"| all | training seconds (sum over fold models) | {training_seconds(args.ensemble):.0f} | {ref_metrics['seconds']:.0f} (whole run) |")


if __name__ == "__main__":
    main()
