"""Drafting backends, chosen by name: they fill the evidence-chain schema from the evidence.

`deterministic` (default) needs no model; LLM backends register under their own
names behind the same `DraftingBackend` interface.
"""

from agents.llm.registry import DraftInputs, DraftingBackend, create_drafting_backend, list_drafting_backends, register_drafting_backend

__all__ = ["DraftInputs", "DraftingBackend", "create_drafting_backend", "list_drafting_backends", "register_drafting_backend"]
