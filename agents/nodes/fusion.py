"""fusion: run the fusion model on the loaded inputs (calibrated probabilities, attributions)."""

from __future__ import annotations

from langgraph.runtime import Runtime

from agents import resources
from agents.context import Settings
from agents.state import CaseState


def node(state: CaseState, runtime: Runtime[Settings]) -> dict:
    settings = runtime.context
    inputs = state["inputs"]
    output = resources.fusion_model(settings).predict(inputs, resources.knowledge(settings), top_patches=settings.top_patches)
    # The gates' findings travel with the model's own OOD scores, so one rule set reads them all.
    if inputs.ood:
        output = output.model_copy(update={"ood": [*inputs.ood, *output.ood]})
    return {"fusion": output}
