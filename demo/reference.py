"""What a careful clinician concludes about a demo case: reference report and expected checks.

Flags are derived from what the bundle shows (not from the situation's name), so a new
situation gets the right expectations without editing this module.
"""

from __future__ import annotations

from typing import Any

from demo.biology import TumourBiology
from schemas.reference import ReferenceConclusion, ReferenceFlag, ReferenceReport

EVIDENCE_MODALITIES: tuple[str, ...] = ("imaging", "pathology", "genomics")
# Habitats whose tissue shows the grade of an enhancing tumour.
CORE_REGIONS: frozenset[str] = frozenset({"enhancing", "necrotic_core"})


def high_grade_views(bio: TumourBiology, modalities: tuple[str, ...]) -> dict[str, bool]:
    """Per modality present: does what it shows read as grade 4?"""
    views = {
        "imaging": bio.enhancing,
        "pathology": bio.histology_grade == "G4",
        "genomics": bio.molecular_high_grade(),
    }
    return {m: views[m] for m in EVIDENCE_MODALITIES if m in modalities}


def missed_core(bio: TumourBiology, modalities: tuple[str, ...]) -> bool:
    """Imaging shows an enhancing tumour but the specimen came from elsewhere."""
    return (
        "imaging" in modalities
        and "pathology" in modalities
        and bio.enhancing
        and bio.sampled_region not in CORE_REGIONS
    )


def expected_flags(bio: TumourBiology, modalities: tuple[str, ...]) -> list[ReferenceFlag]:
    """Flags a careful reader raises: missing modalities, grade disagreement, off-target biopsy."""
    flags = []
    missing = [m for m in EVIDENCE_MODALITIES if m not in modalities]
    if missing:
        flags.append(ReferenceFlag(kind="missing_modality", modalities=missing))
    views = high_grade_views(bio, modalities)
    if len(set(views.values())) > 1:
        flags.append(ReferenceFlag(kind="cross_modal_disagreement", modalities=list(views)))
    if missed_core(bio, modalities):
        flags.append(ReferenceFlag(kind="sampling_mismatch", modalities=["imaging", "pathology"]))
    return flags


def grade_fixed_molecularly(bio: TumourBiology, modalities: tuple[str, ...]) -> bool:
    """WHO CNS5: IDH-wild-type with EGFR amplification, or IDH-mutant with CDKN2A/B deletion, is grade 4 whatever
    the specimen shows (cIMPACT-NOW 3 and 5), so no re-biopsy is needed to grade it."""
    if "genomics" not in modalities:
        return False
    return bio.cdkn2a_deleted if bio.idh_mutant else bio.egfr_amplified


def first_sampling_target(bio: TumourBiology, modalities: tuple[str, ...]) -> str | None:
    """The enhancing rim when it has not yet been sampled and a biopsy can still change the diagnosis; else none."""
    if not (bio.enhancing and "imaging" in modalities):
        return None
    if "pathology" not in modalities:
        return "enhancing"
    return "enhancing" if missed_core(bio, modalities) and not grade_fixed_molecularly(bio, modalities) else None


def diagnosis(bio: TumourBiology) -> str:
    """WHO CNS5 (2021) integrated diagnosis of the hidden biology, in the project's vocabulary.

    The tumour's own grade stands for its histology (the specimen may under-sample it).
    IDH-wildtype: EGFR amplification or grade 4 histology makes glioblastoma (cIMPACT-NOW 3);
    the demo simulates no TERT promoter or +7/-10 status, so a lower-grade IDH-wildtype tumour
    without EGFR amplification stays "NOS": the tests that could make it glioblastoma are not done.
    IDH-mutant astrocytoma with CDKN2A/B homozygous deletion is grade 4 (cIMPACT-NOW 5).
    """
    if bio.codeleted:
        return f"Oligodendroglioma, IDH-mutant and 1p/19q-codeleted, CNS WHO grade {bio.grade[1]}"
    if bio.idh_mutant:
        grade = "4" if bio.cdkn2a_deleted else bio.grade[1]
        return f"Astrocytoma, IDH-mutant, CNS WHO grade {grade}"
    if bio.egfr_amplified or bio.grade == "G4":
        return "Glioblastoma, IDH-wildtype, CNS WHO grade 4"
    return "Diffuse astrocytic glioma, IDH-wildtype, NOS"


def _imaging_sentence(bio: TumourBiology, timepoints: int) -> str:
    look = (
        "an enhancing rim around a necrotic core with surrounding oedema"
        if bio.enhancing
        else "a non-enhancing, FLAIR-hyperintense infiltrative lesion"
    )
    growth = " that grew between the two scans" if timepoints > 1 else ""
    return f"MRI shows {look}{growth}."


def _pathology_sentence(bio: TumourBiology) -> str:
    region = bio.sampled_region.replace("_", " ")
    look = {
        "G4": "a high-grade glioma with necrosis and microvascular proliferation",
        "G3": "a cellular, mitotically active diffuse glioma",
        "G2": "a low-cellularity diffusely infiltrating glioma",
    }[bio.histology_grade]
    return f"The specimen ({region} region) shows {look}."


def _genomics_sentence(bio: TumourBiology) -> str:
    events = ["IDH-mutant" if bio.idh_mutant else "IDH wild-type"]
    if bio.codeleted:
        events.append("1p/19q-codeleted (CIC/FUBP1 partners)")
    if bio.egfr_amplified:
        events.append("EGFR amplification")
    if bio.cdkn2a_deleted:
        events.append("CDKN2A/B homozygous deletion")
    high = [k for k in ("hypoxia", "angiogenesis", "proliferation") if bio.programmes[k] > 0.3]
    activity = f"; {', '.join(high)} programmes up" if high else ""
    return f"Molecular profile: {', '.join(events)}{activity}."


_FLAG_SENTENCES: dict[str, str] = {
    "missing_modality": "No {modalities} data are available, so the conclusion rests on fewer sources.",
    "cross_modal_disagreement": "The {modalities} findings do not agree on the grade; this needs tumour-board review.",
    "sampling_mismatch": "The biopsy missed the enhancing tumour; re-sampling the enhancing rim is recommended.",
}


def reference_text(bio: TumourBiology, modalities: tuple[str, ...], timepoints: int) -> str:
    """Short English reference report body."""
    sentences = [f"{diagnosis(bio)}."]
    if "imaging" in modalities:
        sentences.append(_imaging_sentence(bio, timepoints))
    if "pathology" in modalities:
        sentences.append(_pathology_sentence(bio))
    if "genomics" in modalities:
        sentences.append(_genomics_sentence(bio))
    for flag in expected_flags(bio, modalities):
        sentences.append(_FLAG_SENTENCES[flag.kind].format(modalities=", ".join(flag.modalities)))
    target = first_sampling_target(bio, modalities)
    if target and not missed_core(bio, modalities):
        sentences.append(f"Tissue should be taken from the {target} region.")
    return " ".join(sentences)


def reference_report(case_id: str, bio: TumourBiology, modalities: tuple[str, ...], timepoints: int) -> ReferenceReport:
    """The clinician's reference: integrated diagnosis, grade and subtype (the truth), expected flags and a short text."""
    return ReferenceReport(
        case_id=case_id,
        author="neuro-oncology tumour board (reference)",
        conclusions=[
            ReferenceConclusion(task="diagnosis", label=diagnosis(bio)),
            ReferenceConclusion(task="grade", label=bio.grade),
            ReferenceConclusion(task="molecular_subtype", label=bio.subtype),
        ],
        consistency_flags=expected_flags(bio, modalities),
        text=reference_text(bio, modalities, timepoints),
    )


def expected_block(bio: TumourBiology, modalities: tuple[str, ...], notes: str) -> dict[str, Any]:
    """The `expected` entry of ground_truth.json for one case."""
    return {
        "modalities_present": [m for m in (*EVIDENCE_MODALITIES, "clinical") if m in (*modalities, "clinical")],
        "flag_kinds": [f.kind for f in expected_flags(bio, modalities)],
        "first_sampling_target": first_sampling_target(bio, modalities),
        "notes": notes,
    }
