"""Situations a tumour board meets: how each kind of demo case draws its hidden biology and which inputs it has.

Register a new one with `@register_situation(...)`; `REQUIRED` says how many of each
every demo cohort holds (the rest are `typical`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from demo.biology import TumourBiology, sample_biology
from toolkit.registry import Registry

MODALITY_SETS = {
    "all": ("imaging", "pathology", "genomics"),
    "no_pathology": ("imaging", "genomics"),
    "imaging_only": ("imaging",),
}
BiologyMaker = Callable[[np.random.Generator, int | None], TumourBiology]


@dataclass(frozen=True)
class Situation:
    """A kind of case: how its tumour is drawn and which inputs the bundle has."""

    name: str
    biology: BiologyMaker  # (rng, variant) -> biology; variant picks a fixed flavour, None = random
    modalities: tuple[str, ...]
    notes: str
    timepoints: int = 1
    whole_slide: bool = False  # pathology as a slide image for the pipeline to tile, not patch features


SITUATIONS: Registry[Situation] = Registry("situation")


def register_situation(
    name: str, *, modalities: str = "all", notes: str, timepoints: int = 1, whole_slide: bool = False
) -> Callable[[BiologyMaker], BiologyMaker]:
    def decorator(maker: BiologyMaker) -> BiologyMaker:
        SITUATIONS.add(name, Situation(name, maker, MODALITY_SETS[modalities], notes, timepoints, whole_slide))
        return maker

    return decorator


_HIGH_GRADE_PROGRAMMES = ("hypoxia", "angiogenesis", "proliferation")


def _clamp_high_grade(programmes: dict[str, float], lo: float = -1.0, hi: float = 1.0) -> dict[str, float]:
    """Programmes with hypoxia, angiogenesis and proliferation held within [lo, hi]."""
    return {k: float(np.clip(v, lo, hi)) if k in _HIGH_GRADE_PROGRAMMES else v for k, v in programmes.items()}


def _glioblastoma(rng: np.random.Generator) -> TumourBiology:
    """A textbook IDH-wild-type glioblastoma: enhancing, necrotic, EGFR-amplified, CDKN2A-deleted."""
    bio = sample_biology(rng, grade="G4", subtype="IDHwt")
    return replace(
        bio,
        egfr_amplified=True,
        cdkn2a_deleted=True,
        programmes=_clamp_high_grade(bio.programmes, lo=0.5),
    )


@register_situation("consistent_high_grade", notes="All modalities agree on an IDH-wild-type glioblastoma.")
def _consistent_high_grade(rng: np.random.Generator, variant: int | None) -> TumourBiology:
    return _glioblastoma(rng)


@register_situation("consistent_low_grade", notes="All modalities agree on a grade 2 IDH-mutant glioma.")
def _consistent_low_grade(rng: np.random.Generator, variant: int | None) -> TumourBiology:
    codel = rng.random() < 0.5 if variant is None else variant % 2 == 0
    bio = sample_biology(rng, grade="G2", subtype="IDHmut-codel" if codel else "IDHmut-non-codel")
    return replace(bio, programmes=_clamp_high_grade(bio.programmes, hi=-0.2))


@register_situation(
    "biopsy_from_oedema",
    notes="Imaging and genomics show a glioblastoma; the biopsy came from oedema and under-grades it.",
)
def _biopsy_from_oedema(rng: np.random.Generator, variant: int | None) -> TumourBiology:
    return replace(_glioblastoma(rng), sampled_region="oedema", histology_grade="G2")


@register_situation(
    "genomics_discordant",
    notes="Non-enhancing lesion and grade 2 histology, but a molecular glioblastoma profile (WHO CNS 2021).",
)
def _genomics_discordant(rng: np.random.Generator, variant: int | None) -> TumourBiology:
    return replace(_glioblastoma(rng), enhancing=False, sampled_region="non_enhancing_core", histology_grade="G2")


@register_situation("missing_pathology", modalities="no_pathology", notes="No tissue yet: imaging and genomics only.")
def _missing_pathology(rng: np.random.Generator, variant: int | None) -> TumourBiology:
    return sample_biology(rng, grade="G4", subtype="IDHwt")


@register_situation("imaging_only", modalities="imaging_only", notes="Only MRI is available.")
def _imaging_only(rng: np.random.Generator, variant: int | None) -> TumourBiology:
    return sample_biology(rng, grade="G4", subtype="IDHwt")


@register_situation("longitudinal_growth", timepoints=2, notes="Two scans three months apart; the lesion grows.")
def _longitudinal_growth(rng: np.random.Generator, variant: int | None) -> TumourBiology:
    return replace(
        sample_biology(rng, grade="G3", subtype="IDHmut-non-codel"),
        enhancing=False,
        sampled_region="non_enhancing_core",
    )


@register_situation("slide_case", whole_slide=True, notes="Pathology is a whole-slide image for the pipeline to tile.")
def _slide_case(rng: np.random.Generator, variant: int | None) -> TumourBiology:
    return _typical(rng, variant)


_TYPICAL_GRADES = ("G3", "G2", "G4")


@register_situation("typical", notes="A typical case whose modalities agree.")
def _typical(rng: np.random.Generator, variant: int | None) -> TumourBiology:
    if variant is None:  # the training set: natural joint frequencies, disagreements included
        return sample_biology(rng)
    grade = _TYPICAL_GRADES[variant % len(_TYPICAL_GRADES)]
    if grade == "G4":
        return _glioblastoma(rng)
    bio = sample_biology(rng, grade=grade, subtype="IDHmut-codel" if rng.random() < 0.45 else "IDHmut-non-codel")
    return replace(bio, enhancing=False, sampled_region="non_enhancing_core")


# Cases every demo cohort has (situation -> count); the rest are typical.
REQUIRED: dict[str, int] = {
    "consistent_high_grade": 2,
    "consistent_low_grade": 2,
    "biopsy_from_oedema": 1,
    "genomics_discordant": 1,
    "missing_pathology": 1,
    "imaging_only": 1,
    "longitudinal_growth": 1,
    "slide_case": 1,
}
MIN_CASES = 16
