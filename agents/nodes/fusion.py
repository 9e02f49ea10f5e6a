"""fusion: run the fusion model on the loaded inputs (calibrated probabilities, attributions)."""

from __future__ import annotations

from langgraph.runtime import Runtime

from agents import resources
from agents.context import Settings
from agents.state import CaseState
from fusion_models.gates import outside_trained_cancer_types
from schemas.fusion import FusionOutput

NOT_RUN = "not run"


def node(state: CaseState, runtime: Runtime[Settings]) -> dict:
    settings = runtime.context
    inputs = resources.case_inputs(state, settings)
    model = resources.fusion_model(settings)
    if outside_trained_cancer_types(inputs):
        # Its answers would be answers for another cancer type: the report carries no conclusion.
        name = model.input_needs().model
        output = FusionOutput(
            model_name=name, model_version=NOT_RUN, predictions=[], modalities_used=[], modality_contributions={}
        )
    else:
        output = model.predict(inputs, resources.knowledge(settings), top_patches=settings.top_patches)
    # The gates' findings travel with the model's own OOD scores, so one rule set reads them all.
    if inputs.ood:
        output = output.model_copy(update={"ood": [*inputs.ood, *output.ood]})
    return {"fusion": output}
