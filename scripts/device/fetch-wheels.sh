#!/usr/bin/env bash
# Download the wheels a lent GPU machine lacks (scripts/device/wheels.txt) into
# .whl/ (git-ignored), for a device call to carry: run here, where pip reaches
# PyPI; the device machine reaches nothing.
#
#   bash scripts/device/fetch-wheels.sh          # for the device's Python 3.12
#   PYTHON_VERSION=3.11 bash scripts/device/fetch-wheels.sh   # another Python
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON_VERSION="${PYTHON_VERSION:-3.12}"
tag="cp${PYTHON_VERSION/./}"
rm -rf .whl
mkdir -p .whl
grep -v '^\s*#' scripts/device/wheels.txt | sed 's/#.*//' | awk 'NF' > .whl/requirements.txt
python3 -m pip download -q --no-deps --only-binary=:all: \
    --python-version "$PYTHON_VERSION" --implementation cp --abi "$tag" --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any \
    -d .whl -r .whl/requirements.txt
rm .whl/requirements.txt
echo "$PYTHON_VERSION" > .whl/PYTHON_VERSION
ls .whl/*.whl | wc -l | xargs echo "[fetch-wheels] wheels:"
du -sh .whl | cut -f1 | xargs echo "[fetch-wheels] size (carry limit 64 MiB with the tree):"
