"""Which answers an evidence item is compatible with: the shared basis for citing and checking.

Each function maps one evidence item to the set of labels it supports (empty =
says nothing about that question). Drafting cites supporting/contradicting
evidence from these sets; the consistency rules compare modalities through them.
The rules follow WHO CNS5 (2021) for adult diffuse glioma: necrosis or
microvascular proliferation, or (IDH-wild-type) EGFR amplification / CDKN2A/B
homozygous deletion, mean grade 4; IDH mutation with 1p/19q codeletion means
oligodendroglioma (CIC/FUBP1 are its typical partners), ATRX loss astrocytoma.
"""

from __future__ import annotations

from collections.abc import Sequence

from agents.evidence.mechanism import IDH_WILD_TYPE_ID
from schemas.report import HistologyEvidence, MechanismEvidence, SpatialEvidence

GRADES = ("G2", "G3", "G4")
SUBTYPES = ("IDHwt", "IDHmut-codel", "IDHmut-non-codel")
HIGH = frozenset({"G4"})
NOT_LOW = frozenset({"G3", "G4"})
LOW = frozenset({"G2", "G3"})
NONE: frozenset[str] = frozenset()

# A pathway score beyond this (singscore units, range -0.5..0.5) counts as active or quiet.
ACTIVE_SCORE = 0.1
KI67_HIGH_PERCENT = 10.0
KI67_LOW_PERCENT = 5.0
MIN_HABITAT_ML = 0.5

PATCH_PATTERN_GRADES = {
    "necrosis": HIGH,
    "microvascular_proliferation": HIGH,
    "high_cellularity": NOT_LOW,
    "infiltrating_tumour": LOW,
}
PATHWAY_PROGRAMME_GRADES = {"hypoxia": HIGH, "angiogenesis": HIGH, "proliferation": NOT_LOW}


def spatial_grades(item: SpatialEvidence, has_enhancing_necrosis: bool) -> frozenset[str]:
    if item.unit_level != "habitat" or (item.volume_ml or 0.0) < MIN_HABITAT_ML:
        return NONE
    if item.phenotype == "necrotic_core":
        return HIGH
    if item.phenotype == "enhancing":
        return HIGH if has_enhancing_necrosis else NOT_LOW
    if item.phenotype == "non_enhancing_core":
        return LOW
    return NONE


def histology_grades(item: HistologyEvidence) -> frozenset[str]:
    if item.origin == "pathologist_findings":
        v = item.value
        if item.pattern == "who_grade" and isinstance(v, (int, float)) and not isinstance(v, bool):
            return frozenset({f"G{int(v)}"}) & frozenset(GRADES) or (LOW if v < 2 else NONE)
        if item.pattern in ("necrosis", "microvascular_proliferation") and isinstance(v, bool):
            return HIGH if v else LOW
        if item.pattern == "cellularity":
            return {"high": NOT_LOW, "low": LOW}.get(str(v), NONE)
        if item.pattern == "ki67_percent" and isinstance(v, (int, float)):
            return NOT_LOW if v >= KI67_HIGH_PERCENT else (LOW if v < KI67_LOW_PERCENT else NONE)
        return NONE
    return PATCH_PATTERN_GRADES.get(item.pattern, NONE)


def mechanism_grades(item: MechanismEvidence, programme_of: dict[str, str]) -> frozenset[str]:
    if item.kind == "copy_number":
        return HIGH
    if item.pathway_id == IDH_WILD_TYPE_ID:
        return HIGH
    if item.kind == "driver_mutation" and item.pathway_id in ("MUT:IDH1", "MUT:IDH2"):
        return LOW
    if item.kind == "pathway_activity" and item.activity is not None:
        grades = PATHWAY_PROGRAMME_GRADES.get(programme_of.get(item.pathway_id, ""), NONE)
        if item.activity >= ACTIVE_SCORE:
            return grades
        if item.activity <= -ACTIVE_SCORE and grades:
            return frozenset({"G2"})
    return NONE


def subtype_labels(item: MechanismEvidence | HistologyEvidence) -> frozenset[str]:
    if isinstance(item, HistologyEvidence):
        text = str(item.value).lower() if item.pattern == "histology" else ""
        if "oligodendroglioma" in text:
            return frozenset({"IDHmut-codel"})
        if "glioblastoma" in text:
            return frozenset({"IDHwt"})
        return NONE
    gene_event = item.pathway_id
    if gene_event in ("MUT:IDH1", "MUT:IDH2"):
        return frozenset({"IDHmut-codel", "IDHmut-non-codel"})
    if gene_event in (IDH_WILD_TYPE_ID, "CNV:EGFR", "CNV:CDKN2A", "CNV:CDKN2B"):
        return frozenset({"IDHwt"})
    if gene_event in ("MUT:CIC", "MUT:FUBP1"):
        return frozenset({"IDHmut-codel"})
    if gene_event == "MUT:ATRX":
        return frozenset({"IDHmut-non-codel"})
    return NONE


def latest_habitats(spatial: Sequence[SpatialEvidence]) -> list[SpatialEvidence]:
    """Habitats of the latest time point large enough to read."""
    latest = spatial[-1].timepoint if spatial else None
    return [
        s for s in spatial
        if s.unit_level == "habitat" and s.timepoint == latest and (s.volume_ml or 0.0) >= MIN_HABITAT_ML
    ]


def has_enhancing_necrosis(spatial: list[SpatialEvidence]) -> bool:
    """True when the latest time point shows a necrotic core inside an enhancing rim."""
    return {"enhancing", "necrotic_core"} <= {s.phenotype for s in latest_habitats(spatial)}


def evidence_votes(
    task: str,
    spatial: list[SpatialEvidence],
    histology: list[HistologyEvidence],
    mechanism: list[MechanismEvidence],
    programme_of: dict[str, str],
) -> dict[str, frozenset[str]]:
    """Evidence id -> labels it supports, for 'grade' or 'molecular_subtype'."""
    if task == "grade":
        rim = has_enhancing_necrosis(spatial)
        latest = spatial[-1].timepoint if spatial else None
        votes = {s.id: spatial_grades(s, rim) for s in spatial if s.timepoint == latest}
        votes |= {h.id: histology_grades(h) for h in histology}
        votes |= {m.id: mechanism_grades(m, programme_of) for m in mechanism}
    elif task == "molecular_subtype":
        votes = {h.id: subtype_labels(h) for h in histology}
        votes |= {m.id: subtype_labels(m) for m in mechanism}
    else:
        return {}
    return {k: v for k, v in votes.items() if v}


def cite(label: str, votes: dict[str, frozenset[str]]) -> tuple[list[str], list[str]]:
    """(supporting, contradicting) evidence ids for a label."""
    supporting = [eid for eid, labels in votes.items() if label in labels]
    contradicting = [eid for eid, labels in votes.items() if label not in labels]
    return supporting, contradicting


def diagnosis_citations(
    label: str,
    spatial: list[SpatialEvidence],
    histology: list[HistologyEvidence],
    mechanism: list[MechanismEvidence],
    programme_of: dict[str, str],
) -> tuple[list[str], list[str]]:
    """Evidence for and against an integrated diagnosis: the grade and molecular-subtype evidence of what it states."""
    # Imported here: the clinical package reads these votes through agents.consistency at import time.
    from agents.clinical.profile import FAMILY_SUBTYPE, family_and_grade

    family, grade = family_and_grade(label)
    supporting: list[str] = []
    contradicting: list[str] = []
    parts = [("grade", f"G{grade}" if grade is not None else None),
             ("molecular_subtype", FAMILY_SUBTYPE.get(family) if family is not None else None)]
    for task, part in parts:
        if part is not None:
            s, c = cite(part, evidence_votes(task, spatial, histology, mechanism, programme_of))
            supporting += s
            contradicting += c
    return list(dict.fromkeys(supporting)), [e for e in dict.fromkeys(contradicting) if e not in supporting]
