# Sourced at the start of a command on a lent GPU machine (the device tool), in
# the repository root, with .whl/ carried (scripts/device/fetch-wheels.sh made it):
# installs the wheels the machine's image lacks into a folder that comes first
# on the path, so the repository's code runs with the versions it is tested with.
#
#   source scripts/device/env.sh
#
# PYTHON (default python3, the image's Python with PyTorch) and DEVICE (default
# cuda; cpu rehearses the scripts on a machine without a GPU) may be set first.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
SITE="${SITE:-/tmp/vlm-teacher-site}"
OUT="${OUT:-runs/device-out}"   # the device tool sets OUT; elsewhere a local folder
mkdir -p "$OUT"

if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "[device] no wheels in .whl/: run 'bash scripts/device/fetch-wheels.sh' here first" \
        "and carry .whl with the call" >&2
    exit 2
fi
wanted=$(cat .whl/PYTHON_VERSION)
have=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if [ "$wanted" != "$have" ]; then
    echo "[device] .whl/ holds wheels for Python $wanted, this Python is $have:" \
        "run 'PYTHON_VERSION=$have bash scripts/device/fetch-wheels.sh' here" >&2
    exit 2
fi
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

"$PYTHON" - "$DEVICE" <<'PY'
import sys

import diffusers
import torch
import transformers

device = sys.argv[1]
print(f"[device] torch {torch.__version__}, transformers {transformers.__version__}, "
      f"diffusers {diffusers.__version__}")
if device.startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit("[device] no CUDA GPU visible to torch")
    props = torch.cuda.get_device_properties(0)
    print(f"[device] {props.name}, {props.total_memory / 2**30:.0f} GiB")
PY
