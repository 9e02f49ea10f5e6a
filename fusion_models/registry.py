"""One registry of model families: `@register_model_family(name)` over a function returning the family.

A family is one kind of trained model behind the workflow's single prediction interface
(`FusionOutput`): it declares its config and how it is trained (which writes its checkpoint),
loaded and run, and which modalities it reads. The attention-MIL fusion model
(fusion_models/neural_family.py: `glioma_demo`) and the penalised linear TCGA model
(fusion_models/tcga/family.py: `tcga_glioma`, `tcga_glioma_no_expression`) and the literature's
fusion heads (fusion_models/head_family.py: `glioma_heads`, one family whose `--head` picks the
registered head) are the families.
A checkpoint carries its family's name and config; fusion_models/checkpoints.py reads them
to pick the loader, never the file suffix. Like timm's `@register_model`, a new variant is a
registered function of a few lines, never a change to a model class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from toolkit.registry import Registry

if TYPE_CHECKING:
    from pydantic import BaseModel

    from fusion_models.gates import InputNeeds
    from fusion_models.inputs import CaseInputs
    from knowledge.sources import KnowledgeBase
    from schemas.common import Modality
    from schemas.fusion import FusionOutput

CHECKPOINT_DIR = Path("checkpoints")
# Modules whose import registers the built-in families; loaded on the first lookup, so that
# `import fusion_models.registry` stays light (no torch) for callers that only name a model.
BUILTIN_FAMILIES = ("fusion_models.neural_family", "fusion_models.tcga.family", "fusion_models.head_family")


class TrainResultLike(Protocol):
    checkpoint: Path

    def summary(self) -> str: ...


@dataclass(frozen=True)
class TrainingData:
    """What a family trains on: labelled cases in memory (e.g. the demo generator) or a labelled cohort folder.

    `cases`: (CaseInputs, labels) pairs, labels carrying the attributes the tasks' `target`s name.
    `folder`: labels.csv + cases/ (the TCGA layout, fusion_models/tcga/cohort.py).
    """

    description: str
    cases: Iterable[tuple[CaseInputs, Any]] | None = None
    folder: Path | None = None
    knowledge: str = "bundled"


class ModelFamily(ABC):
    """One kind of model. `name` is set by the registry; `config` is the registered variant's config."""

    name: str = ""
    suffix: ClassVar[str]  # of its checkpoint files: only for the default path, never for reading
    config: BaseModel

    def default_checkpoint(self) -> Path:
        return CHECKPOINT_DIR / f"{self.name}{self.suffix}"

    def fusion_heads(self) -> tuple[str, ...]:
        """Fusion heads `evchain train --head` can put on this family (the first is its default)."""
        return ()

    @abstractmethod
    def train(
        self, out: Path, data: TrainingData, *, epochs: int, seed: int, head: str | None = None, progress: bool = True
    ) -> TrainResultLike:
        """Fit on `data`, write the checkpoint `out` (family name and config inside) and its model card."""

    @abstractmethod
    def load(self, path: Path, payload: dict[str, Any], raw: bytes) -> Any:
        """The trained model from a checkpoint's decoded payload (read by fusion_models.checkpoints)."""

    @abstractmethod
    def predict(self, loaded: Any, inputs: CaseInputs, kb: KnowledgeBase, *, top_patches: int) -> FusionOutput:
        """One case -> calibrated predictions, contributions and attributions."""

    @abstractmethod
    def input_needs(self, loaded: Any) -> InputNeeds:
        """What the input gates check a case against (genes, expression scale, patch statistics)."""

    @abstractmethod
    def config_of(self, loaded: Any) -> BaseModel:
        """The config the checkpoint carried (not necessarily the registered one: an older version's)."""

    @abstractmethod
    def reads(self, config: BaseModel | None = None) -> tuple[Modality, ...]:
        """The modalities a model of `config` (default: the registered one) takes as input."""


FamilyFunction = Callable[[], ModelFamily]
_FAMILIES: Registry[FamilyFunction] = Registry("model family", missing=ValueError)
_INSTANCES: dict[str, ModelFamily] = {}
_builtins_loaded = False


def register_model_family(name: str) -> Callable[[FamilyFunction], FamilyFunction]:
    """Register a function returning the family (with its config) called `name`."""
    return _FAMILIES.register(name)


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_FAMILIES:
            import_module(module)


def list_model_families() -> list[str]:
    """Registered family names, sorted."""
    _load_builtins()
    return _FAMILIES.names()


def model_family(name: str) -> ModelFamily:
    """The family registered as `name` (built once); ValueError naming the registered ones otherwise."""
    _load_builtins()
    if name not in _INSTANCES:
        family = _FAMILIES.get(name)()
        if family.config.name != name:
            raise ValueError(f"model family registered as {name!r} calls itself {family.config.name!r}")
        family.name = name
        _INSTANCES[name] = family
    return _INSTANCES[name]
