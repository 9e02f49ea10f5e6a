"""Drafting backends, chosen by name: they write the language of a report, never its fixed parts.

`deterministic` (default, and every LLM backend's fallback) fills from phrase templates;
`transformers` and `openai` are the language-model drafter over the chat model of that name.
"""

from agents.llm.registry import Drafted, DraftingBackend, create_drafting_backend, list_drafting_backends, register_drafting_backend

__all__ = ["Drafted", "DraftingBackend", "create_drafting_backend", "list_drafting_backends", "register_drafting_backend"]
