#!/usr/bin/env bash
# xgrammar constrains the transformers drafting backend's decoding to a JSON Schema. --no-deps: its
# requirements pull a 1 GB triton that CPU decoding never uses (torch, transformers, numpy, pydantic
# are already installed; apache-tvm-ffi is its one missing runtime dependency).
set -euo pipefail
if ! .venv/bin/python -c "import xgrammar" 2>/dev/null; then
    .venv/bin/pip install -q --no-deps 'xgrammar==0.2.9' 'apache-tvm-ffi==0.1.15.post2'
fi
