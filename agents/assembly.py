"""The fixed parts of a report, built by code for every drafting backend.

Modalities, conclusions with their probabilities and cited evidence (from the vote rules in
agents/evidence/votes.py), the WHO CNS5 integrated diagnosis, markers, evidence items and
provenance never come from a language model. A drafting backend only writes sentences about them
(agents/llm), so conclusions, flags and recommendations are the same whichever backend runs. This
module never reads `clinical_notes` or a reference report.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.clinical import glioma_markers, integrated_diagnosis, marker_status, molecular_data
from agents.evidence.risk import risk_group
from agents.evidence.votes import cite, diagnosis_citations, evidence_votes
from fusion_models.gates import outside_trained_cancer_types
from fusion_models.inputs import CaseInputs
from schemas.common import MODALITIES
from schemas.fusion import FusionOutput, TaskPrediction
from schemas.report import (
    Conclusion,
    DiagnosisLayers,
    EvidenceChainReport,
    HistologyEvidence,
    Marker,
    MechanismEvidence,
    Modalities,
    Provenance,
    Review,
    SpatialEvidence,
    Uncertainty,
)

PRELIMINARY_BASIS = "calibrated model probability; not yet checked across modalities"
DIAGNOSIS_BASIS = "WHO CNS5 rules over the tested markers and histology; posterior from the model; not yet checked"


@dataclass(frozen=True)
class DraftInputs:
    """Everything the fixed parts are built from. Clinical notes arrive inside `inputs` as data only."""

    inputs: CaseInputs
    fusion: FusionOutput
    spatial: list[SpatialEvidence]
    histology: list[HistologyEvidence]
    mechanism: list[MechanismEvidence]
    provenance: Provenance
    programme_of: dict[str, str]  # pathway id -> programme key, from the knowledge base


def assemble_draft(d: DraftInputs) -> EvidenceChainReport:
    """The report before the cross-modal checks: every fixed part, no narrative."""
    inputs = d.inputs
    missing = inputs.missing_modalities()
    predictions = [p for p in d.fusion.predictions if p.task != "diagnosis"]
    subtype = d.fusion.prediction("molecular_subtype")
    # The glioma profile (markers, WHO CNS5 rules) says nothing about another cancer type.
    glioma = not outside_trained_cancer_types(inputs)
    markers = glioma_markers(
        molecular_data(inputs.genomics, inputs.findings), d.mechanism,
        subtype.probabilities if subtype is not None else None,
    ) if glioma else []
    diagnosis = [_diagnosis(markers, d)] if glioma else []
    return EvidenceChainReport(
        case_id=inputs.manifest.case_id,
        cancer_type=inputs.manifest.cancer_type,
        provenance=d.provenance,
        modalities=Modalities(present=inputs.present_modalities(), missing=missing, unusable=list(inputs.unusable)),
        conclusions=[*diagnosis, *(_conclusion(p, d) for p in predictions)],
        spatial_evidence=d.spatial,
        histology_evidence=d.histology,
        mechanism_evidence=d.mechanism,
        markers=markers,
        modality_contributions={k: round(v, 4) for k, v in d.fusion.modality_contributions.items()},
        uncertainty=Uncertainty(level="low", statement="Not yet checked across modalities.", missing_modalities=missing),
        review=Review(status="draft"),
    )


def _conclusion(prediction: TaskPrediction, d: DraftInputs) -> Conclusion:
    label, _ = prediction.top()
    votes = evidence_votes(prediction.task, d.spatial, d.histology, d.mechanism, d.programme_of)
    supporting, contradicting = cite(label, votes)
    class_probabilities = _rounded(prediction.probabilities, label)
    return Conclusion(
        task=prediction.task,
        label=label,
        probability=class_probabilities[label],
        class_probabilities=class_probabilities,
        score=None if prediction.score is None else round(prediction.score, 4),
        risk_group=risk_group(prediction),
        confidence="low",
        confidence_basis=PRELIMINARY_BASIS,
        modalities_used=list(d.fusion.modalities_used),
        supporting_evidence=supporting,
        contradicting_evidence=contradicting,
        prediction_set=list(prediction.prediction_set),
        prediction_set_coverage=prediction.set_coverage,
    )


def _diagnosis(markers: list[Marker], d: DraftInputs) -> Conclusion:
    grade, subtype = d.fusion.prediction("grade"), d.fusion.prediction("molecular_subtype")
    dx = integrated_diagnosis(
        marker_status(markers), d.inputs.findings,
        grade.probabilities if grade is not None else None,
        subtype.probabilities if subtype is not None else None,
    )
    supporting, contradicting = diagnosis_citations(dx.label, d.spatial, d.histology, d.mechanism, d.programme_of)
    class_probabilities = _rounded(dx.posterior, max(dx.posterior, key=dx.posterior.__getitem__))
    probability = class_probabilities.get(dx.label, round(dx.probability, 4))
    tested = {m.source for m in markers if m.status in ("detected", "not_detected")}
    used = set(d.fusion.modalities_used)
    used |= {"pathology"} if d.inputs.findings is not None else set()
    used |= {"genomics"} if tested & {"mutation_call", "copy_number"} else set()
    return Conclusion(
        task="diagnosis",
        label=dx.label,
        probability=probability,
        class_probabilities=class_probabilities,
        confidence="low",
        confidence_basis=DIAGNOSIS_BASIS,
        modalities_used=[m for m in MODALITIES if m in used],
        supporting_evidence=supporting,
        contradicting_evidence=contradicting,
        diagnosis_layers=DiagnosisLayers(
            histology=dx.histology, cns_who_grade=dx.grade, molecular=dx.molecular, integrated=dx.label,
            rules_applied=[f"{r.id}: {r.statement} [{r.citation()}]" for r in dx.rules],
            missing_tests=list(dx.missing_tests), settled=dx.settled,
            model_agreement=round(dx.model_agreement, 4),
        ),
    )


def _rounded(probabilities: dict[str, float], label: str) -> dict[str, float]:
    """Round to 4 places while keeping the sum at 1 (the remainder goes to the top label)."""
    out = {k: round(v, 4) for k, v in probabilities.items()}
    out[label] = round(out[label] + 1.0 - sum(out.values()), 4)
    return out
