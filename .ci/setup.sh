#!/usr/bin/env bash
# What the tests need beyond `pip install -e '.[test,encoders]'`: each .ci/setup.d/*.sh, in name order.
# Every step is idempotent (it checks before it installs) and works on a fresh Debian machine as root.
set -euo pipefail
cd "$(dirname "$0")/.."
for step in .ci/setup.d/*.sh; do
    [ -e "$step" ] || continue
    echo "setup: $step"
    bash "$step"
done
