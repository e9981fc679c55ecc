#!/usr/bin/env bash
# Transfer learning on Herlev (normal vs abnormal): MobileNetV2 and EfficientNet-Lite0, each
# trained once from its imported ImageNet weights and once from random initialisation, with
# identical settings, split and seed; prints best validation accuracy and epoch per run.
#
#     scripts/fetch_weights.sh && target/release/myoscope weights import-fetched
#     scripts/herlev_transfer.sh [MOBILENET_EPOCHS] [EFFICIENTNET_EPOCHS]   # into runs/transfer/
#
# Defaults 8 and 3: on the 2-core CPU machine a MobileNetV2 epoch takes about 80 s and an
# EfficientNet-Lite0 epoch (5×5 depthwise convs, TF padding) about 160 s. The learning rate is
# constant, so the first k epochs of a longer run are the same as a k-epoch run.
set -euo pipefail
cd "$(dirname "$0")/.."
MNV2_EPOCHS="${1:-8}"
LITE_EPOCHS="${2:-3}"
DATA="${HERLEV:-../shared/data/herlev-pap-smear/manifest.csv}"
BIN=target/release/myoscope
OUT=runs/transfer
mkdir -p "$OUT"
for run in "mobilenet_v2 mobilenet_v2-b0353104 $MNV2_EPOCHS" "efficientnet_lite0 efficientnet-lite0-57934424 $LITE_EPOCHS"; do
    set -- $run
    arch=$1 weights=$2 EPOCHS=$3
    common=(--data "$DATA" --label group --group image_id --input-size 224 --grid 2
            --epochs "$EPOCHS" --batch-size 16 --lr 1e-3 --seed 0 --device cpu --quiet)
    for init in imagenet random; do
        dir="$OUT/$arch-$init"
        state="$dir/checkpoints/state.json"
        if [ -f "$state" ] && python3 -c "import json,sys; sys.exit(json.load(open('$state'))['epochs_done'] < $EPOCHS)"; then
            echo "$dir: done"; continue
        fi
        if [ -f "$state" ]; then
            "$BIN" train --out "$dir" --resume --quiet
        elif [ "$init" = imagenet ]; then
            "$BIN" train "${common[@]}" --weights "$weights" --out "$dir"
        else
            "$BIN" train "${common[@]}" --arch "$arch" --out "$dir"
        fi
    done
done
echo
printf '%-34s %-7s %-10s %-11s %s\n' run epochs best_acc best_epoch median_epoch_s
for dir in "$OUT"/*/; do
    python3 - "$dir" <<'PY'
import json, statistics, sys
d = sys.argv[1]
s = json.load(open(d + "checkpoints/state.json"))
secs = [e.get("seconds", float("nan")) for e in s["history"]]
print(f"{d.rstrip('/').split('/')[-1]:<34} {s['epochs_done']:<7} {s['best_validation_accuracy']:<10.4f} {s['best_epoch']:<11} {statistics.median(secs):.1f}")
PY
done
