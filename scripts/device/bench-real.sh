#!/usr/bin/env bash
# Time one test-time optimization step of the real video-model architectures
# (random weights, bf16, native sizes: configs/reasoner/wan2.1-1.3b.yaml and
# wan2.2-ti2v-5b.yaml) on a lent GPU; one device call:
#
#   command: bash scripts/device/bench-real.sh
#   carry:   [".whl"]          (made here by scripts/device/fetch-wheels.sh)
#   timeout_s: 600
#
# Each config gets at most LIMIT seconds (default 240); one that fails (out of
# memory, say) is reported and the next still runs. Under $OUT: bench.jsonl (one
# JSON line per config, as `vlm-teacher bench step` prints it) and bench.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/device/env.sh

LIMIT="${LIMIT:-240}"
CONFIGS=("$@")
if [ ${#CONFIGS[@]} -eq 0 ]; then
    CONFIGS=(configs/reasoner/wan2.1-1.3b.yaml configs/reasoner/wan2.2-ti2v-5b.yaml)
fi
: > "$OUT/bench.jsonl"
for config in "${CONFIGS[@]}"; do
    echo "[device] bench step --config $config" | tee -a "$OUT/bench.log"
    # The console script is not installed there: run the CLI module itself.
    if timeout "$LIMIT" "$PYTHON" -m agent.cli bench step --config "$config" \
        --device "$DEVICE" --steps "${STEPS:-3}" --warmup 1 \
        > "$OUT/bench.last" 2>> "$OUT/bench.log"; then
        tail -n 1 "$OUT/bench.last" | tee -a "$OUT/bench.jsonl"
    else
        echo "[device] $config failed or ran past ${LIMIT}s (exit $?); see bench.log" \
            | tee -a "$OUT/bench.log"
    fi
done
rm -f "$OUT/bench.last"
