"""What a drafting backend is asked: the fixed parts of the draft, digested for a model to read."""

from __future__ import annotations

import json

from schemas.drafting import ConclusionDigest, DraftRequest, EvidenceDigest
from schemas.report import EvidenceChainReport

# Left out of what the model reads: where an item came from (file, labels, patch) is for the reader to
# trace, and coordinates, dates and retrieval references are long and no rationale needs them. The
# prompt is most of a small model's time on a CPU.
_NOT_FACTS = {"id", "source", "location_basis", "centroid_mm", "bbox_level0", "timepoint_date", "knowledge_refs"}


def draft_request(draft: EvidenceChainReport, clinical_notes: str | None) -> DraftRequest:
    evidence = [
        *(("spatial", e) for e in draft.spatial_evidence),
        *(("histology", e) for e in draft.histology_evidence),
        *(("mechanism", e) for e in draft.mechanism_evidence),
    ]
    return DraftRequest(
        case_id=draft.case_id,
        cancer_type=draft.cancer_type,
        modalities_present=list(draft.modalities.present),
        modalities_missing=list(draft.modalities.missing),
        conclusions=[
            ConclusionDigest(
                task=c.task, label=c.label, probability=c.probability, risk_group=c.risk_group,
                supporting_evidence=c.supporting_evidence,
                contradicting_evidence=c.contradicting_evidence, prediction_set=c.prediction_set,
            )
            for c in draft.conclusions
        ],
        evidence=[
            EvidenceDigest(id=item.id, kind=kind, facts=item.model_dump(mode="json", exclude_none=True, exclude=_NOT_FACTS))
            for kind, item in evidence
        ],
        clinical_notes=clinical_notes or None,
    )


def evidence_lines(request: DraftRequest) -> list[str]:
    """One line per evidence item, 'S3 (spatial): volume_ml=12.76; ...': data for the prompt, numbers as the
    report has them. Plain key=value pairs cost a small model about half the tokens of the same JSON."""
    return [
        f"{e.id} ({e.kind}): " + "; ".join(f"{k}={_value(v)}" for k, v in e.facts.items()) for e in request.evidence
    ]


def _value(v: object) -> str:
    if isinstance(v, list):
        return ",".join(_value(x) for x in v)
    if isinstance(v, str) and not (";" in v or "=" in v):
        return v
    return json.dumps(v, ensure_ascii=False)  # JSON spelling: false, not Python's False; free text quoted
