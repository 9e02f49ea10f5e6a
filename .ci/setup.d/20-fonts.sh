#!/usr/bin/env bash
# CJK glyphs for the Chinese text inside report figures (agents/figures): Debian's fonts-noto-cjk,
# installed only when missing. Without it figures fall back to English text with a logged warning.
set -euo pipefail
if ! fc-list :lang=zh family 2>/dev/null | grep -q "Noto Sans CJK"; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fonts-noto-cjk fontconfig >/dev/null
fi
