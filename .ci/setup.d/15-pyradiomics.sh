#!/usr/bin/env bash
# pyradiomics computes the IBSI radiomic features per habitat (fusion_models/imaging/radiomics.py; the `radiomics`
# extra). 3.0.1 ships only as an sdist whose C extensions compile against numpy; under pip's build isolation it
# fetches an old numpy that cannot build against Python 3.11 + numpy 2, so it is built with --no-build-isolation
# against the venv's own numpy (setuptools and wheel must be there first). 3.1.0 does not build here at all.
set -euo pipefail
if ! .venv/bin/python -c "import radiomics" 2>/dev/null; then
    .venv/bin/pip install -q setuptools wheel 'SimpleITK>=2.3' 'PyWavelets>=1.4' 'pykwalify>=1.6' 'six>=1.10'
    .venv/bin/pip install -q --no-build-isolation 'pyradiomics==3.0.1'
fi
