"""Registry of drafting backends (timm-style: a decorator registers a factory under a name)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from fusion_models.inputs import CaseInputs
from schemas.fusion import FusionOutput
from schemas.report import EvidenceChainReport, HistologyEvidence, MechanismEvidence, Provenance, SpatialEvidence
from toolkit.registry import Registry


@dataclass(frozen=True)
class DraftInputs:
    """Everything a backend may use. Clinical notes arrive inside `inputs` as data only."""

    inputs: CaseInputs
    fusion: FusionOutput
    spatial: list[SpatialEvidence]
    histology: list[HistologyEvidence]
    mechanism: list[MechanismEvidence]
    provenance: Provenance
    programme_of: dict[str, str]  # pathway id -> programme key, from the knowledge base


class DraftingBackend(Protocol):
    name: str

    def draft(self, d: DraftInputs) -> EvidenceChainReport: ...


BackendFactory = Callable[..., DraftingBackend]
_REGISTRY: Registry[BackendFactory] = Registry("drafting backend")


def register_drafting_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    return _REGISTRY.register(name)


def _ensure_builtin() -> None:
    # Importing the module runs its @register_drafting_backend decorators.
    from agents.llm import deterministic  # noqa: F401


def list_drafting_backends() -> list[str]:
    _ensure_builtin()
    return _REGISTRY.names()


def create_drafting_backend(name: str, **kwargs) -> DraftingBackend:
    _ensure_builtin()
    return _REGISTRY.get(name)(**kwargs)
