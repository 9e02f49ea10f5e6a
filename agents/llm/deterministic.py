"""The default drafting backend: fills the report from the evidence with fixed rules, no model.

It never reads `clinical_notes` or a reference report, so free text cannot change
a conclusion, flag or recommendation.
"""

from __future__ import annotations

from agents.evidence.risk import risk_group
from agents.evidence.votes import cite, evidence_votes
from agents.llm.registry import DraftInputs, register_drafting_backend
from schemas.fusion import TaskPrediction
from schemas.report import Conclusion, EvidenceChainReport, Modalities, Review, Uncertainty

PRELIMINARY_BASIS = "calibrated model probability; not yet checked across modalities"


class DeterministicDrafter:
    name = "deterministic"

    def draft(self, d: DraftInputs) -> EvidenceChainReport:
        inputs = d.inputs
        present = inputs.present_modalities()
        missing = inputs.missing_modalities()
        return EvidenceChainReport(
            case_id=inputs.manifest.case_id,
            cancer_type=inputs.manifest.cancer_type,
            provenance=d.provenance,
            modalities=Modalities(present=present, missing=missing, unusable=list(inputs.unusable)),
            conclusions=[self._conclusion(p, d) for p in d.fusion.predictions],
            spatial_evidence=d.spatial,
            histology_evidence=d.histology,
            mechanism_evidence=d.mechanism,
            modality_contributions={k: round(v, 4) for k, v in d.fusion.modality_contributions.items()},
            uncertainty=Uncertainty(level="low", statement="Not yet checked across modalities.", missing_modalities=missing),
            review=Review(status="draft"),
        )

    @staticmethod
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


def _rounded(probabilities: dict[str, float], label: str) -> dict[str, float]:
    """Round to 4 places while keeping the sum at 1 (the remainder goes to the top label)."""
    out = {k: round(v, 4) for k, v in probabilities.items()}
    out[label] = round(out[label] + 1.0 - sum(out.values()), 4)
    return out


@register_drafting_backend("deterministic")
def deterministic() -> DeterministicDrafter:
    return DeterministicDrafter()
