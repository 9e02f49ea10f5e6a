"""fusion: run the fusion model on the loaded inputs (calibrated probabilities, attributions)."""

from __future__ import annotations

from langgraph.runtime import Runtime

from agents import resources
from agents.context import Settings
from agents.state import CaseState
from fusion_models.inference import predict


def node(state: CaseState, runtime: Runtime[Settings]) -> dict:
    settings = runtime.context
    output = predict(
        resources.fusion_model(settings),
        state["inputs"],
        resources.knowledge(settings),
        top_patches=settings.top_patches,
    )
    return {"fusion": output}
