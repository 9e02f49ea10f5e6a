"""Registry of drafting backends (timm-style: a decorator registers a factory under a name).

A drafting backend turns a `DraftRequest` into a `DraftFill`: the language of a report, never its
fixed parts (agents/assembly.py builds those for every backend).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from agents.context import Settings
from schemas.drafting import DraftFill, DraftRequest
from schemas.report import LLMCall
from toolkit.registry import Registry


@dataclass(frozen=True)
class Drafted:
    """A backend's fill, who wrote it, and the model call behind it (None when no model was asked)."""

    fill: DraftFill
    source: Literal["template", "language_model"]
    call: LLMCall | None = None


class DraftingBackend(Protocol):
    name: str

    def fill(self, request: DraftRequest) -> Drafted: ...


BackendFactory = Callable[[Settings], DraftingBackend]
_REGISTRY: Registry[BackendFactory] = Registry("drafting backend")


def register_drafting_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    return _REGISTRY.register(name)


def _ensure_builtin() -> None:
    # Importing the modules runs their @register_drafting_backend decorators.
    from agents.llm import deterministic, drafter  # noqa: F401


def list_drafting_backends() -> list[str]:
    _ensure_builtin()
    return _REGISTRY.names()


def create_drafting_backend(name: str, settings: Settings) -> DraftingBackend:
    _ensure_builtin()
    return _REGISTRY.get(name)(settings)
