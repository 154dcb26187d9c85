#!/usr/bin/env bash
# Create .venv in the repository (if missing) and install vlm-teacher into it.
#
# torch is installed first and pinned with a constraints file, so that no other
# package can pull a different torch build:
#   - with an NVIDIA GPU (nvidia-smi works): the default CUDA build from PyPI;
#   - without one: torch==2.13.0, the CPU build (any other spec would download
#     gigabytes of CUDA wheels).
# Override with TORCH_SPEC="torch==X.Y.Z".
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv
EXTRAS="${EXTRAS:-dev}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi

if [ -z "${TORCH_SPEC:-}" ]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
        TORCH_SPEC="torch"
    else
        TORCH_SPEC="torch==2.13.0"
    fi
fi

if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    echo "[setup] installing $TORCH_SPEC"
    "$VENV/bin/python" -m pip install -q "$TORCH_SPEC"
fi
TORCH_VERSION=$("$VENV/bin/python" -c "import torch; print(torch.__version__.split('+')[0])")
echo "torch==$TORCH_VERSION" > "$VENV/constraints.txt"

echo "[setup] installing vlm-teacher[$EXTRAS] (torch pinned to $TORCH_VERSION)"
"$VENV/bin/python" -m pip install -q -c "$VENV/constraints.txt" -e ".[$EXTRAS]"
touch "$VENV/.installed"
