#!/usr/bin/env bash
# Train the mini video model on a lent GPU by a recipe file, then measure it; one
# device call (the tool's run):
#
#   command: bash scripts/device/train-vgm.sh
#   carry:   [".whl"]          (made here by scripts/device/fetch-wheels.sh)
#   timeout_s: 600
#
# Arguments (all optional): RECIPE (default configs/train/vgm-gpu.yaml) and
# MINUTES (default 7), the training's time limit: past it the run stops at its
# next checkpoint, writes no model, and the same command on the still-warm machine
# (the tool keeps runs/ between calls) resumes there.
# Under $OUT, fetched back by the tool: train.log; once the recipe is done also
# vgm-model.tar.gz (the model folder with training.json), measure.json and
# measure.log (base success and pass@1..5 on the test split, measured there: a
# first look; the numbers the docs report are measured again on a CPU, with 20
# samples). PER_FAMILY and SAMPLES change the measurement's size.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/device/env.sh

RECIPE="${1:-configs/train/vgm-gpu.yaml}"
MINUTES="${2:-7}"
WORK=runs/train_vgm-gpu
MODEL=runs/vgm-gpu-model
# Worker processes hand their batches over through /dev/shm: ~30 MB each for a
# 128-video batch with its noise, 4 ahead per worker. A container's /dev/shm can
# be small (64 MB is a common default), so take no more workers than it holds.
shm_mb=$(df -Pm /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')
shm_mb="${shm_mb:-0}"
fits=$(( shm_mb / 150 ))
cores=$(( $(nproc) > 4 ? $(nproc) - 4 : 1 ))
WORKERS="${WORKERS:-$(( fits < cores ? fits : cores ))}"
echo "[device] /dev/shm: ${shm_mb} MB free; data workers: $WORKERS"
if [ "$WORKERS" -lt 1 ]; then
    echo "[device] no room in /dev/shm for worker processes: the loop renders its own" \
        "batches (slower; WORKERS=N overrides)"
    WORKERS=0
fi

rm -rf "$MODEL"
"$PYTHON" -m evals.mini.train_vgm --config "$RECIPE" --device "$DEVICE" \
    --work-dir "$WORK" --out "$MODEL" --max-minutes "$MINUTES" \
    --data-workers "$WORKERS" --threads 4 --checkpoint-every 250 2>&1 | tee "$OUT/train.log"
if [ ! -f "$MODEL/training.json" ]; then
    echo "[device] stopped at the time limit; run the same command again to resume"
    exit 0
fi
tar -czf "$OUT/vgm-model.tar.gz" -C "$MODEL" .
"$PYTHON" -m evals.mini.measure_vgm --model "$MODEL" --device "$DEVICE" \
    --per-family "${PER_FAMILY:-50}" --samples "${SAMPLES:-5}" --threads 4 \
    --out "$OUT/measure.json" 2>&1 | tee "$OUT/measure.log"
