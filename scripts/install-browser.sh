#!/usr/bin/env bash
# Installs the browser the web chat's browser tests (tests/test_web_browser.py) drive: Debian's
# chromium at /usr/bin/chromium. Playwright drives it through its Python package (a dev
# dependency, installed with the project); playwright's own browser download is never used.
# Run as root on a fresh Debian machine; a no-op when chromium is already there.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ ! -x "$CHROMIUM" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        echo "install-browser: $CHROMIUM is missing and installing it needs root" >&2
        exit 1
    fi
    "${as_root[@]}" apt-get update
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

"$CHROMIUM" --version 2>/dev/null | grep -i chromium || {
    echo "install-browser: $CHROMIUM does not run" >&2
    exit 1
}
