"""vision_analysis: imaging habitats -> spatial evidence; slide attention + findings -> histology evidence.

It reads only FusionOutput's common fields (habitat attribution, time-point attention, patch and
pathway-to-patch attention), whichever model family or fusion head filled them.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from agents import resources
from agents.context import Settings
from agents.evidence.histology import histology_evidence
from agents.evidence.spatial import spatial_evidence
from agents.state import CaseState


def node(state: CaseState, runtime: Runtime[Settings]) -> dict:
    inputs, fusion = resources.case_inputs(state, runtime.context), state["fusion"]
    spatial = spatial_evidence(inputs.imaging, fusion.habitat_attribution, fusion.timepoint_attention)
    slide_files = {slide.slide_id: slide.file for slide in inputs.slides}
    histology = histology_evidence(inputs.findings, fusion, slide_files, spatial)
    return {"spatial_evidence": spatial, "histology_evidence": histology}
