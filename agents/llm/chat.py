"""Chat models by name: the one thing every language-model backend implements.

A chat model turns chat messages into text decoded under a JSON Schema. Rendering
prompts, validating, retrying and falling back live above it (agents/llm/structured.py),
so a new backend (another server, another runtime) is one class registered here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from toolkit.registry import Registry


@dataclass(frozen=True)
class Completion:
    """One model answer and what it cost."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    retries: int = 0  # transport retries the backend needed (timeouts, 5xx); validation retries are counted above it


class ChatModelError(RuntimeError):
    """A call failed in a way a retry or the deterministic fallback should handle; the message is one line."""


class ChatModelUnavailable(ChatModelError):
    """The backend cannot be used at all (server down, wrong model name, missing folder): retrying will not help."""


class ChatModel(Protocol):
    backend: str  # registered name
    model: str  # model folder name or served model name

    def complete(
        self, messages: list[dict[str, str]], json_schema: dict[str, Any], *, max_tokens: int, temperature: float = 0.0
    ) -> Completion:
        """Answer `messages` (role/content dicts) with JSON text constrained to `json_schema`."""
        ...


ChatModelFactory = Callable[..., ChatModel]
_REGISTRY: Registry[ChatModelFactory] = Registry("chat model backend")


def register_chat_model(name: str) -> Callable[[ChatModelFactory], ChatModelFactory]:
    return _REGISTRY.register(name)


def _ensure_builtin() -> None:
    # Importing a backend module runs its @register_chat_model decorator.
    from agents.llm import openai_backend, transformers_backend  # noqa: F401


def list_chat_models() -> list[str]:
    _ensure_builtin()
    return _REGISTRY.names()


def create_chat_model(name: str, **kwargs: Any) -> ChatModel:
    _ensure_builtin()
    return _REGISTRY.get(name)(**kwargs)
