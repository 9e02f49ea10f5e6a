"""Expensive components, built once per process and shared by every case of a batch.

Each loader is keyed by the settings fields it depends on, so two runs with
different settings in one process never share a wrong component.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from agents.context import Settings
from fusion_models.encoders import create_encoder
from fusion_models.checkpoints import LoadedCheckpoint, load_checkpoint
from fusion_models.inputs import CaseInputs, load_case_inputs
from knowledge.embedders import create_embedder
from knowledge.index import KnowledgeIndex
from knowledge.sources import load_knowledge


@lru_cache(maxsize=4)
def _encoder(name: str, weights: Path | None):
    return create_encoder(name, weights=weights)


@lru_cache(maxsize=4)
def _fusion_model(checkpoint: Path, mtime_ns: int, model: str) -> LoadedCheckpoint:
    # The mtime is part of the key so that a retrained checkpoint is picked up in the same process.
    return load_checkpoint(checkpoint, expected=model)


@lru_cache(maxsize=4)
def _index(source: str, embedder: str, cache_dir: Path) -> KnowledgeIndex:
    kb = load_knowledge(source)
    return KnowledgeIndex.cached(kb, create_embedder(embedder), cache_dir)


def encoder(settings: Settings):
    return _encoder(settings.encoder, settings.encoder_weights)


def fusion_model(settings: Settings) -> LoadedCheckpoint:
    path = Path(settings.checkpoint)
    return _fusion_model(path, path.stat().st_mtime_ns if path.exists() else 0, settings.fusion_model)


def knowledge(settings: Settings):
    return load_knowledge(settings.knowledge_source)


@lru_cache(maxsize=4096)
def _knowledge_hits(source: str, embedder: str, cache_dir: Path, query: str, k: int) -> tuple[str, ...]:
    return tuple(hit.pathway_id for hit in _index(source, embedder, cache_dir).search(query, k=k))


def knowledge_hits(settings: Settings, query: str) -> list[str]:
    """Pathway ids the index finds for `query`; remembered per process, since a query embedding costs ~0.5 s
    on a CPU and cases (and re-runs of one case with another model) ask the same questions."""
    return list(_knowledge_hits(settings.knowledge_source, settings.embedder, Path(settings.cache_dir), query,
                                settings.knowledge_hits))


@lru_cache(maxsize=4)
def _chat_model(backend: str, model: str | None, base_url: str | None, timeout_s: float, max_retries: int):
    from agents.llm.chat import create_chat_model

    return create_chat_model(backend, model=model, base_url=base_url, timeout_s=timeout_s, max_retries=max_retries)


def chat_model(settings: Settings, backend: str):
    """The chat model `backend` as the settings configure it (a ChatModelUnavailable is raised, not cached)."""
    return _chat_model(backend, settings.llm_model, settings.llm_base_url, settings.llm_timeout_s, settings.llm_max_retries)


@lru_cache(maxsize=4)
def drafting_backend(settings: Settings):
    """The drafting backend the settings name (its chat model is built on first use, see `chat_model`)."""
    from agents.llm import create_drafting_backend

    return create_drafting_backend(settings.drafting_backend, settings)


def case_inputs(state: Mapping, settings: Settings) -> CaseInputs:
    """The case's loaded inputs (volumes, slide features): read once per process and fingerprint.

    They never enter the graph state, so no checkpoint carries them; a node that runs
    again after a pause (in a new process) reads the case folder again.
    """
    return _case_inputs(state["case_dir"], state["input_fingerprint"], settings)


@lru_cache(maxsize=2)
def _case_inputs(case_dir: str, input_fingerprint: str, settings: Settings) -> CaseInputs:
    # The fingerprint is part of the key so that a changed case folder is read again.
    return load_case_inputs(
        Path(case_dir),
        encoder=encoder(settings),
        patch_size=settings.patch_size,
        max_patches=settings.max_patches,
        known_genes=knowledge(settings).symbol_lookup,
        needs=replace(fusion_model(settings).input_needs(), other_cancer_type=settings.other_cancer_type),
    )
