"""vision_analysis: imaging habitats -> spatial evidence (+ the imaging features file, when asked for);
slide attention + findings -> histology evidence.

It reads only FusionOutput's common fields (habitat attribution, time-point attention, patch and
pathway-to-patch attention), whichever model family or fusion head filled them.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from agents import resources
from agents.context import Settings
from agents.evidence.histology import histology_evidence
from agents.evidence.imaging_features import cite_features, imaging_features
from agents.evidence.spatial import spatial_evidence
from agents.state import CaseState


def node(state: CaseState, runtime: Runtime[Settings]) -> dict:
    inputs, fusion = resources.case_inputs(state, runtime.context), state["fusion"]
    spatial = spatial_evidence(inputs.imaging, fusion.habitat_attribution, fusion.timepoint_attention)
    slide_files = {slide.slide_id: slide.file for slide in inputs.slides}
    histology = histology_evidence(inputs.findings, fusion, slide_files, spatial)
    update = {"histology_evidence": histology}
    if runtime.context.imaging_features:
        features = imaging_features(inputs.manifest.case_id, inputs.imaging)
        update["imaging_features"], spatial = features, cite_features(spatial, features)
    return update | {"spatial_evidence": spatial}
