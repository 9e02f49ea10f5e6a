"""What each modality says about grade and IDH status: the facts the consistency rules compare.

Grade logic follows WHO CNS5 (2021) for adult diffuse glioma: necrosis or microvascular
proliferation means grade 4 (astrocytic tumours); an IDH-wild-type diffuse astrocytic
glioma with EGFR amplification, TERT promoter mutation or +7/-10 is glioblastoma, grade 4
(cIMPACT-NOW 3); CDKN2A/B homozygous deletion makes an IDH-mutant astrocytoma grade 4.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from agents.consistency.grounding import ACTIVITY_DECIMALS, GISTIC_DECIMALS, fmt
from agents.evidence.mechanism import GISTIC_AMPLIFICATION, GISTIC_HOMOZYGOUS_DELETION, IDH_WILD_TYPE_ID
from agents.evidence.votes import latest_habitats
from prompts import Phrase
from schemas.case import PathologyFindings
from schemas.report import MechanismEvidence, SpatialEvidence

IDH_MUTATION_IDS = ("MUT:IDH1", "MUT:IDH2")
TERT_MUTATION_ID = "MUT:TERT"
EGFR_CNV_ID = "CNV:EGFR"
CDKN2_CNV_IDS = ("CNV:CDKN2A", "CNV:CDKN2B")
# Singscore runs -0.5..0.5; twice the 0.1 the drafting votes call "active" is a strong programme.
STRONG_ACTIVITY = 0.2
HYPOXIA_IDS = frozenset({"GO:0001666", "GO:0071456", "HALLMARK_HYPOXIA", "PROGENY:Hypoxia"})
PROLIFERATION_IDS = frozenset({"GO:0000278", "GO:0008283", "HALLMARK_E2F_TARGETS", "HALLMARK_G2M_CHECKPOINT"})

IdhStatus = Literal["mutant", "wildtype"]


latest_units = latest_habitats  # the rules read imaging through the same cut as the drafting votes


def largest_unit(spatial: Sequence[SpatialEvidence], phenotype: str) -> SpatialEvidence | None:
    units = [s for s in latest_units(spatial) if s.phenotype == phenotype]
    return max(units, key=lambda s: s.volume_ml or 0.0, default=None)


def imaging_grade_hint(spatial: Sequence[SpatialEvidence]) -> int | None:
    """Grade the imaging pattern suggests: 4 enhancing rim with necrotic core, 3 enhancing, 2 neither."""
    if not spatial:
        return None
    if largest_unit(spatial, "enhancing") is None:
        return 2
    return 4 if largest_unit(spatial, "necrotic_core") is not None else 3


def histology_low_grade(findings: PathologyFindings | None) -> bool:
    """WHO grade 2 or lower with neither necrosis nor microvascular proliferation reported."""
    return (
        findings is not None
        and findings.who_grade is not None
        and findings.who_grade <= 2
        and findings.necrosis is not True
        and findings.microvascular_proliferation is not True
    )


def histology_high_grade(findings: PathologyFindings | None) -> bool:
    return findings is not None and (
        findings.necrosis is True or findings.microvascular_proliferation is True or findings.who_grade == 4
    )


def histology_read(findings: PathologyFindings | None) -> bool:
    """Whether the pathologist's read says anything about grade."""
    return findings is not None and (findings.who_grade is not None or histology_high_grade(findings))


def histology_under_grades(spatial: Sequence[SpatialEvidence], findings: PathologyFindings | None) -> bool:
    """Histology grade below what an enhancing lesion suggests."""
    hint = imaging_grade_hint(spatial)
    return (
        findings is not None
        and findings.who_grade is not None
        and hint is not None
        and hint >= 3
        and findings.who_grade < hint
    )


def event(mechanism: Sequence[MechanismEvidence], event_id: str) -> MechanismEvidence | None:
    return next((m for m in mechanism if m.pathway_id == event_id), None)


def idh_mutations(mechanism: Sequence[MechanismEvidence]) -> list[MechanismEvidence]:
    return [m for m in mechanism if m.kind == "driver_mutation" and m.pathway_id in IDH_MUTATION_IDS]


def idh_status(mechanism: Sequence[MechanismEvidence]) -> IdhStatus | None:
    """From the mutation calls; None when no mutation calls were read."""
    if idh_mutations(mechanism):
        return "mutant"
    return "wildtype" if event(mechanism, IDH_WILD_TYPE_ID) is not None else None


def subtype_idh(label: str) -> IdhStatus | None:
    """IDH status a molecular-subtype label states ('IDHwt', 'IDH-wild-type', 'IDHmut-codel', ...)."""
    letters = re.sub(r"[^a-z]", "", label.lower())
    if "idhwt" in letters or "idhwildtype" in letters:
        return "wildtype"
    return "mutant" if "idhmut" in letters else None


@dataclass(frozen=True)
class Marker:
    """A molecular finding that implies grade 4, with the evidence behind it."""

    phrase: Phrase
    evidence: tuple[str, ...]


def _strongest_up(mechanism: Sequence[MechanismEvidence], ids: frozenset[str], keyword: str) -> MechanismEvidence | None:
    matching = [
        m for m in mechanism
        if m.kind == "pathway_activity" and m.activity is not None and m.activity >= STRONG_ACTIVITY
        and (m.pathway_id in ids or keyword in m.pathway_name.lower())
        and "negative regulation" not in m.pathway_name.lower()
    ]
    return max(matching, key=lambda m: m.activity or 0.0, default=None)


def grade4_markers(mechanism: Sequence[MechanismEvidence]) -> list[Marker]:
    """Molecular findings that mean grade 4 under WHO CNS5, or a strongly high-grade programme."""
    markers: list[Marker] = []
    wild_type = event(mechanism, IDH_WILD_TYPE_ID) if idh_status(mechanism) == "wildtype" else None
    egfr = event(mechanism, EGFR_CNV_ID)
    if wild_type is not None and egfr is not None and (egfr.activity or 0.0) >= GISTIC_AMPLIFICATION:
        gistic = fmt(egfr.activity or 0.0, GISTIC_DECIMALS)
        markers.append(Marker(Phrase("marker.idh_wt_egfr", {"gistic": gistic}), (wild_type.id, egfr.id)))
    tert = event(mechanism, TERT_MUTATION_ID)
    if wild_type is not None and tert is not None:
        markers.append(Marker(Phrase("marker.idh_wt_tert"), (wild_type.id, tert.id)))
    deletions = [
        m for m in (event(mechanism, i) for i in CDKN2_CNV_IDS)
        if m is not None and (m.activity or 0.0) <= GISTIC_HOMOZYGOUS_DELETION
    ]
    if deletions:
        gistic = fmt(min(m.activity or 0.0 for m in deletions), GISTIC_DECIMALS)
        markers.append(Marker(Phrase("marker.cdkn2_deletion", {"gistic": gistic}), tuple(m.id for m in deletions)))
    proliferation = _strongest_up(mechanism, PROLIFERATION_IDS, "prolifer")
    hypoxia = _strongest_up(mechanism, HYPOXIA_IDS, "hypoxi")
    if proliferation is not None and hypoxia is not None:
        fields = {
            "proliferation": fmt(proliferation.activity or 0.0, ACTIVITY_DECIMALS, signed=True),
            "hypoxia": fmt(hypoxia.activity or 0.0, ACTIVITY_DECIMALS, signed=True),
        }
        markers.append(Marker(Phrase("marker.proliferation_hypoxia", fields), (proliferation.id, hypoxia.id)))
    return markers
