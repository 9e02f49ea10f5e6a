"""fusion: run the fusion model on the loaded inputs (calibrated probabilities, attributions)."""

from __future__ import annotations

from langgraph.runtime import Runtime

from agents import resources
from agents.context import Settings
from agents.state import CaseState


def node(state: CaseState, runtime: Runtime[Settings]) -> dict:
    settings = runtime.context
    output = resources.fusion_model(settings).predict(
        state["inputs"], resources.knowledge(settings), top_patches=settings.top_patches
    )
    return {"fusion": output}
