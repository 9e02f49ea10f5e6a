"""The workflow state: what each node reads and the partial update it returns."""

from __future__ import annotations

from typing import Literal, TypedDict

from agents.consistency import FlagText
from schemas.fusion import FusionOutput
from schemas.imaging import ImagingFeatures
from schemas.report import (
    EvidenceChainReport,
    HistologyEvidence,
    LocalisedText,
    MechanismEvidence,
    NarrativeSection,
    Review,
    SpatialEvidence,
)
from schemas.review import StampedEdit


class CaseState(TypedDict, total=False):
    """One case travelling through the graph.

    `case_dir`, `out_dir` and `fingerprint` come in; every other key is written by exactly one node
    (the review keys also by the review service when it reopens a closed report). The state holds
    paths, fingerprints and pydantic outputs only: it is checkpointed at every step and must survive
    a pause; nodes get the case's arrays from `agents.resources.case_inputs(state, settings)`.
    """

    case_dir: str
    out_dir: str
    fingerprint: dict[str, str]  # runner: input and settings fingerprints, stored beside the report
    input_fingerprint: str  # load_case: key of the case's loaded inputs (agents.resources.case_inputs)
    fusion: FusionOutput  # fusion
    spatial_evidence: list[SpatialEvidence]  # vision_analysis
    histology_evidence: list[HistologyEvidence]  # vision_analysis
    imaging_features: ImagingFeatures  # vision_analysis, when Settings.imaging_features
    mechanism_evidence: list[MechanismEvidence]  # retrieval
    draft: EvidenceChainReport  # drafting
    # drafting: the sections the backend wrote (Sentence.source 'language_model', or 'template' when it fell
    # back), and the template fill of the same sections, sentence for sentence, to replace a failing one.
    draft_narrative: list[NarrativeSection]
    fallback_narrative: list[NarrativeSection]
    report: EvidenceChainReport  # consistency_check, then write_report (as written)
    flag_texts: dict[str, FlagText]  # consistency_check: each flag's text in every language
    basis_texts: dict[str, LocalisedText]  # consistency_check: each conclusion's confidence basis (task -> text)
    outputs: dict[str, str]  # write_report: kind -> written path
    # human_review (agents/review/workflow.py):
    edits: list[StampedEdit]  # every accepted edit, re-applied after each re-check
    review: Review  # the review block the next write carries
    shown: EvidenceChainReport  # the report as the reviewer saw it when they acted
    closed_versions: dict[str, str]  # report.v<n>.json -> the closed version's report.json, byte for byte
    next_step: Literal["revise", "write", "end"]  # where human_review routes
