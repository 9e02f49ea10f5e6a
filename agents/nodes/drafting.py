"""drafting: fill the evidence-chain schema with the chosen backend (deterministic by default)."""

from __future__ import annotations

from langgraph.runtime import Runtime

from agents import resources
from agents.context import Settings
from agents.evidence.clinical_context import clinical_context
from agents.llm import DraftInputs, create_drafting_backend
from agents.provenance import build_provenance
from agents.state import CaseState
from schemas.report import ModelInfo


def node(state: CaseState, runtime: Runtime[Settings]) -> dict:
    settings = runtime.context
    inputs, fusion = resources.case_inputs(state, settings), state["fusion"]
    kb = resources.knowledge(settings)
    encoder = resources.encoder(settings).info()
    models = [
        ModelInfo(name=fusion.model_name, version=fusion.model_version, weights_sha256=fusion.weights_sha256),
        ModelInfo(name=f"encoder:{encoder['name']}", version=str(encoder.get("version", "1")),
                  weights_sha256=encoder.get("weights_sha256")),
        ModelInfo(name=f"knowledge:{kb.name}", version=kb.version, weights_sha256=kb.sha256),
        ModelInfo(name=f"embedder:{settings.embedder}", version="1"),
        ModelInfo(name=f"drafting:{settings.drafting_backend}", version="1"),
    ]
    draft_inputs = DraftInputs(
        inputs=inputs,
        fusion=fusion,
        spatial=state["spatial_evidence"],
        histology=state["histology_evidence"],
        mechanism=state["mechanism_evidence"],
        provenance=build_provenance(settings, models, inputs.files_read, inputs.conversions),
        programme_of={p.id: p.programme for p in kb.pathways if p.programme},
    )
    draft = create_drafting_backend(settings.drafting_backend).draft(draft_inputs)
    # Quoted data from case.json, set here so that no drafting backend can reword or drop it.
    context = clinical_context(inputs.manifest, fusion.modality_contributions)
    return {"draft": draft.model_copy(update={"clinical_context": context})}
