"""load_case: read the case bundle. A bad case.json stops the case; a bad modality file is recorded."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from langgraph.runtime import Runtime

from agents import resources
from agents.context import Settings
from agents.state import CaseState
from fusion_models.inputs import load_case_inputs


def node(state: CaseState, runtime: Runtime[Settings]) -> dict:
    settings = runtime.context
    inputs = load_case_inputs(
        Path(state["case_dir"]),
        encoder=resources.encoder(settings),
        patch_size=settings.patch_size,
        max_patches=settings.max_patches,
        known_genes=resources.knowledge(settings).symbol_lookup,
        needs=replace(resources.fusion_model(settings).input_needs(), other_cancer_type=settings.other_cancer_type),
    )
    return {"inputs": inputs}
