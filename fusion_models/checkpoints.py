"""Reading a checkpoint: its family and config come from inside the file, never from its name.

Two encodings exist: a torch file (a zip archive; the attention-MIL family) and a JSON
document (the linear family). Both carry `family` (the registered model-family name) and
`config`; the family then decodes the rest. Files written before the `family` field are
identified once from their format and config name, with a note to retrain.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion_models.gates import InputNeeds
from fusion_models.inputs import CaseInputs
from fusion_models.registry import ModelFamily, model_family
from knowledge.sources import KnowledgeBase
from schemas.common import Modality
from schemas.errors import InputError
from schemas.fusion import FusionOutput

ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive
_identified: set[Path] = set()


class LegacyCheckpointWarning(FutureWarning):
    """A checkpoint without the family field; it loads, and retraining writes the field."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    family: ModelFamily
    model: Any

    @property
    def name(self) -> str:
        return self.family.name

    @property
    def config(self) -> Any:
        return self.family.config_of(self.model)

    def predict(self, inputs: CaseInputs, kb: KnowledgeBase, *, top_patches: int) -> FusionOutput:
        return self.family.predict(self.model, inputs, kb, top_patches=top_patches)

    def input_needs(self) -> InputNeeds:
        return self.family.input_needs(self.model)

    def reads(self) -> tuple[Modality, ...]:
        return self.family.reads(self.config)


def _decode(path: Path) -> tuple[dict[str, Any], bytes]:
    if not path.is_file():
        raise InputError(str(path), "checkpoint", "no trained model here; run `evchain train --model NAME` first")
    raw = path.read_bytes()
    if raw.startswith(ZIP_MAGIC):
        from fusion_models.inference import read_torch_payload  # torch only for torch checkpoints

        return read_torch_payload(path, formats=None)[0], raw  # the family checks its own format
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InputError(str(path), "checkpoint", "neither a torch nor a JSON checkpoint") from None
    if not isinstance(payload, dict):
        raise InputError(str(path), "checkpoint", "a JSON checkpoint is an object with format, family and config")
    return payload, raw


def _config_name(payload: dict[str, Any]) -> Any:
    config = payload.get("config")
    if isinstance(config, str):  # torch checkpoints store the config as its JSON text
        config = json.loads(config)
    return config.get("name") if isinstance(config, dict) else None


def _family_name(path: Path, payload: dict[str, Any]) -> str:
    name = payload.get("family")
    if name is not None:
        if not isinstance(name, str):
            raise InputError(str(path), "family", f"must be a model-family name, got {name!r}")
        return name
    name = _config_name(payload)
    if not isinstance(name, str):
        raise InputError(str(path), "family", "missing, and no config name to identify the model by")
    if path not in _identified:
        _identified.add(path)
        warnings.warn(
            f"{path}: checkpoint ({payload.get('format')}) has no family field; identified as {name!r} "
            f"from its config. Retrain (`evchain train --model {name}`) to write it.",
            LegacyCheckpointWarning,
            stacklevel=3,
        )
    return name


def checkpoint_family(path: Path) -> tuple[str, dict[str, Any], bytes]:
    """(family name, decoded payload, raw bytes) of the checkpoint at `path`."""
    path = Path(path)
    payload, raw = _decode(path)
    return _family_name(path, payload), payload, raw


def _family(path: Path, name: str) -> ModelFamily:
    try:
        return model_family(name)
    except ValueError as error:
        raise InputError(str(path), "family", str(error)) from None


def load_checkpoint(path: Path, *, expected: str | None = None) -> LoadedCheckpoint:
    """The trained model at `path`, decoded by the family it names; `expected`: the model the caller asked for."""
    path = Path(path)
    name, payload, raw = checkpoint_family(path)
    if expected is not None:
        check_model(path, name, expected)
    family = _family(path, name)
    return LoadedCheckpoint(family, family.load(path, payload, raw))


def check_model(path: Path, found: str, expected: str) -> None:
    """A checkpoint of another model than the one asked for is bad input, naming both."""
    if found != expected:
        raise InputError(
            str(path), "family",
            f"checkpoint holds model {found!r}, but --model is {expected!r}; pass --model {found} "
            f"or the checkpoint of {expected} (default checkpoints/{expected}.*)",
        )


def default_checkpoint(model: str) -> Path:
    """checkpoints/<model><suffix of its family>."""
    return model_family(model).default_checkpoint()
