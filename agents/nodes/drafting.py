"""drafting: the fixed parts of the report by code, then the language of it by the chosen backend.

The backend (Settings.drafting_backend) only writes sentences and picks what they cite; the template
fill of the same sentences goes into the state beside it, for the verifier to fall back on sentence
by sentence.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from agents import resources
from agents.assembly import DraftInputs, assemble_draft
from agents.context import Settings
from agents.evidence.clinical_context import clinical_context
from agents.llm import Drafted
from agents.llm.deterministic import template_fill
from agents.llm.request import draft_request
from agents.llm.sections import draft_sections
from agents.provenance import build_provenance
from agents.state import CaseState
from schemas.fusion import FusionOutput
from schemas.report import ModelInfo


def fusion_details(fusion: FusionOutput) -> dict[str, str]:
    """Which fusion head, how many ensemble members, and where each interpretability field came from."""
    details = {f"attribution.{field}": method for field, method in fusion.attribution_methods.items()}
    if fusion.fusion_head:
        details["fusion_head"] = fusion.fusion_head
    if fusion.ensemble_members:
        details["ensemble"] = (
            f"{fusion.ensemble_members} members, outputs averaged per task, then calibrated on held-out cases"
        )
    if fusion.node_attention:
        details["node_attention"] = ", ".join(f"{k} {v:.2f}" for k, v in fusion.node_attention.items())
    return details


def node(state: CaseState, runtime: Runtime[Settings]) -> dict:
    settings = runtime.context
    inputs, fusion = resources.case_inputs(state, settings), state["fusion"]
    kb = resources.knowledge(settings)
    encoder = resources.encoder(settings).info()
    models = [
        ModelInfo(name=fusion.model_name, version=fusion.model_version, weights_sha256=fusion.weights_sha256,
                  details=fusion_details(fusion)),
        ModelInfo(name=f"encoder:{encoder['name']}", version=str(encoder.get("version", "1")),
                  weights_sha256=encoder.get("weights_sha256")),
        ModelInfo(name=f"knowledge:{kb.name}", version=kb.version, weights_sha256=kb.sha256),
        ModelInfo(name=f"embedder:{settings.embedder}", version="1"),
        ModelInfo(name=f"drafting:{settings.drafting_backend}", version="1"),
    ]
    draft = assemble_draft(DraftInputs(
        inputs=inputs,
        fusion=fusion,
        spatial=state["spatial_evidence"],
        histology=state["histology_evidence"],
        mechanism=state["mechanism_evidence"],
        provenance=build_provenance(settings, models, inputs.files_read, inputs.conversions),
        programme_of={p.id: p.programme for p in kb.pathways if p.programme},
    ))
    # Quoted data from case.json, set here so that no drafting backend can reword or drop it.
    context = clinical_context(inputs.manifest, fusion.modality_contributions)
    draft = draft.model_copy(update={"clinical_context": context})
    request = draft_request(draft, inputs.manifest.clinical_notes)
    drafted = resources.drafting_backend(settings).fill(request)
    fallback = drafted if drafted.source == "template" else Drafted(fill=template_fill(request), source="template")
    if drafted.call is not None:
        provenance = draft.provenance.model_copy(update={"llm_calls": [*draft.provenance.llm_calls, drafted.call]})
        draft = draft.model_copy(update={"provenance": provenance})
    return {
        "draft": draft,
        "draft_narrative": draft_sections(drafted, request),
        "fallback_narrative": draft_sections(fallback, request),
    }
