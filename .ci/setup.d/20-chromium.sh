#!/usr/bin/env bash
# Browser tests (tests/test_webapp_browser.py) drive Debian's Chromium through Playwright's
# executable_path; Playwright's own browser download is never used. Either Debian build will do:
# chromium, or chromium-headless-shell where that is what the machine has. fonts-noto-cjk renders
# the Chinese pages in the screenshots.
set -euo pipefail
missing=()
if [ ! -x /usr/bin/chromium ] && [ ! -x /usr/bin/chromium-headless-shell ]; then
    missing+=(chromium)
fi
if ! dpkg -s fonts-noto-cjk >/dev/null 2>&1; then
    missing+=(fonts-noto-cjk)
fi
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
