"""The workflow state: what each node reads and the partial update it returns."""

from __future__ import annotations

from typing import TypedDict

from agents.consistency import FlagText
from fusion_models.inputs import CaseInputs
from schemas.fusion import FusionOutput
from schemas.report import (
    EvidenceChainReport,
    HistologyEvidence,
    LocalisedText,
    MechanismEvidence,
    NarrativeSection,
    SpatialEvidence,
)


class CaseState(TypedDict, total=False):
    """One case travelling through the graph.

    `case_dir`, `out_dir` and `fingerprint` come in; every other key is written by exactly one node.
    """

    case_dir: str
    out_dir: str
    fingerprint: dict[str, str]  # runner: input and settings fingerprints, stored beside the report
    inputs: CaseInputs  # load_case
    fusion: FusionOutput  # fusion
    spatial_evidence: list[SpatialEvidence]  # vision_analysis
    histology_evidence: list[HistologyEvidence]  # vision_analysis
    mechanism_evidence: list[MechanismEvidence]  # retrieval
    draft: EvidenceChainReport  # drafting
    # drafting: the sections the backend wrote (Sentence.source 'language_model', or 'template' when it fell
    # back), and the template fill of the same sections, sentence for sentence, to replace a failing one.
    draft_narrative: list[NarrativeSection]
    fallback_narrative: list[NarrativeSection]
    report: EvidenceChainReport  # consistency_check, then human_review
    flag_texts: dict[str, FlagText]  # consistency_check: each flag's text in every language
    basis_texts: dict[str, LocalisedText]  # consistency_check: each conclusion's confidence basis (task -> text)
    outputs: dict[str, str]  # write_report: kind -> written path
