#!/usr/bin/env bash
# Make sure a headless Chromium exists for the HTML report test
# (tests/test_report_browser.py). `make test` calls this before pytest.
#
# - Chromium already installed: nothing to do.
# - Missing, running as root with apt-get (Debian, CI images): install Debian's
#   `chromium` package.
# - Missing and not root: say so loudly; the browser test then skips with the
#   same message (it never skips silently).
set -euo pipefail

for name in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$name" >/dev/null 2>&1; then
        exit 0
    fi
done

if [ "$(id -u)" -ne 0 ]; then
    echo "[ensure-chromium] WARNING: Chromium is not installed and this is not root:" \
         "the HTML report will NOT be checked in a browser." \
         "Install it with: sudo apt-get install -y chromium" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "[ensure-chromium] no apt-get here: install Chromium with your package manager" >&2
    exit 1
fi
echo "[ensure-chromium] installing chromium (Debian package)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null
