"""Hidden tumour biology of a demo case: the truth every modality observes with noise.

The demo is a glioma cohort. Joint frequencies, programme activities and survival
follow the published adult diffuse glioma picture (TCGA pan-glioma, Ceccarelli et al.,
Cell 2016; WHO CNS 2021) closely enough that a model trained on it learns the real
direction of every effect, never the real effect sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GRADES: tuple[str, ...] = ("G2", "G3", "G4")
SUBTYPES: tuple[str, ...] = ("IDHwt", "IDHmut-codel", "IDHmut-non-codel")
PROGRAMME_KEYS: tuple[str, ...] = ("hypoxia", "angiogenesis", "proliferation", "dna_repair", "emt", "immune")

# Case counts per (grade, subtype) in the TCGA pan-glioma cohort; codel gliomas are never grade 4.
JOINT_COUNTS: dict[tuple[str, str], int] = {
    ("G2", "IDHmut-codel"): 57,
    ("G2", "IDHmut-non-codel"): 91,
    ("G2", "IDHwt"): 8,
    ("G3", "IDHmut-codel"): 50,
    ("G3", "IDHmut-non-codel"): 65,
    ("G3", "IDHwt"): 52,
    ("G4", "IDHmut-non-codel"): 3,
    ("G4", "IDHwt"): 69,
}

# Mean programme activity per grade, then a shift per subtype: IDH-mutant gliomas are
# immune-cold and less mesenchymal; IDH-wild-type ones more hypoxic.
_GRADE_PROGRAMMES: dict[str, dict[str, float]] = {
    "G2": {
        "hypoxia": -0.5,
        "angiogenesis": -0.5,
        "proliferation": -0.5,
        "dna_repair": -0.3,
        "emt": -0.3,
        "immune": -0.2,
    },
    "G3": {"hypoxia": -0.1, "angiogenesis": -0.1, "proliferation": 0.3, "dna_repair": 0.1, "emt": -0.1, "immune": 0.0},
    "G4": {"hypoxia": 0.75, "angiogenesis": 0.75, "proliferation": 0.75, "dna_repair": 0.4, "emt": 0.4, "immune": 0.3},
}
_SUBTYPE_SHIFT: dict[str, dict[str, float]] = {
    "IDHwt": {"hypoxia": 0.15, "emt": 0.2, "immune": 0.2},
    "IDHmut-codel": {"emt": -0.2, "immune": -0.3},
    "IDHmut-non-codel": {"immune": -0.2},
}
PROGRAMME_NOISE_SD = 0.15

# Median overall survival in months under standard treatment (published era-typical figures).
_MEDIAN_SURVIVAL: dict[tuple[str, str], float] = {
    ("G2", "IDHwt"): 36.0,
    ("G3", "IDHwt"): 22.0,
    ("G4", "IDHwt"): 15.0,
    ("G2", "IDHmut-non-codel"): 120.0,
    ("G3", "IDHmut-non-codel"): 72.0,
    ("G4", "IDHmut-non-codel"): 36.0,
    ("G2", "IDHmut-codel"): 180.0,
    ("G3", "IDHmut-codel"): 120.0,
}
AGE_LOG_HAZARD_PER_YEAR = 0.03
FOLLOW_UP_MONTHS = (6.0, 96.0)


@dataclass(frozen=True)
class TumourBiology:
    """Truth of one case plus the knobs that say how each modality sees it."""

    grade: str
    subtype: str
    programmes: dict[str, float]
    age_years: float
    sex: str
    survival_months: float
    event: bool
    egfr_amplified: bool
    cdkn2a_deleted: bool
    enhancing: bool  # imaging shows an enhancing rim around a necrotic core
    sampled_region: str  # habitat the specimen came from
    histology_grade: str  # grade the specimen shows; lower when the biopsy missed the tumour core
    lesion_radius_mm: float

    @property
    def idh_mutant(self) -> bool:
        return self.subtype != "IDHwt"

    @property
    def codeleted(self) -> bool:
        return self.subtype == "IDHmut-codel"

    def molecular_high_grade(self) -> bool:
        """What a molecular pathologist reads as grade 4 (WHO CNS 2021 criteria, simplified)."""
        if self.idh_mutant:
            return self.cdkn2a_deleted
        return self.egfr_amplified or self.cdkn2a_deleted or self.programmes["proliferation"] > 0.4


def sample_grade_subtype(
    rng: np.random.Generator, grade: str | None = None, subtype: str | None = None
) -> tuple[str, str]:
    """Draw (grade, subtype) from the joint frequencies, conditioned on whichever is given."""
    pairs = [p for p in JOINT_COUNTS if (grade is None or p[0] == grade) and (subtype is None or p[1] == subtype)]
    if not pairs:
        raise ValueError(f"no glioma of grade {grade!r} and subtype {subtype!r}")
    weights = np.array([JOINT_COUNTS[p] for p in pairs], dtype=float)
    return pairs[int(rng.choice(len(pairs), p=weights / weights.sum()))]


def programme_activity(rng: np.random.Generator, grade: str, subtype: str) -> dict[str, float]:
    """Per-programme activity in [-1, 1]: grade mean + subtype shift + noise."""
    shift = _SUBTYPE_SHIFT[subtype]
    return {
        key: float(
            np.clip(_GRADE_PROGRAMMES[grade][key] + shift.get(key, 0.0) + rng.normal(0.0, PROGRAMME_NOISE_SD), -1, 1)
        )
        for key in PROGRAMME_KEYS
    }


def hazard_per_month(grade: str, subtype: str, age_years: float, proliferation: float) -> float:
    """Exponential hazard: median by grade/subtype, older age and proliferation worse."""
    base = math.log(2.0) / _MEDIAN_SURVIVAL[(grade, subtype)]
    return base * math.exp(AGE_LOG_HAZARD_PER_YEAR * (age_years - 50.0) + 0.3 * proliferation)


def simulate_survival(rng: np.random.Generator, hazard: float) -> tuple[float, bool]:
    """Event time from the hazard, censored by a uniform administrative follow-up."""
    event_time = rng.exponential(1.0 / hazard)
    follow_up = rng.uniform(*FOLLOW_UP_MONTHS)
    # Floor at ~3 days: a zero survival time breaks Cox and log-rank code downstream.
    return round(float(max(min(event_time, follow_up), 0.1)), 2), bool(event_time <= follow_up)


def _driver_events(rng: np.random.Generator, grade: str, subtype: str) -> tuple[bool, bool]:
    # EGFR amplification is an IDH-wild-type event; CDKN2A/B homozygous deletion makes an
    # IDH-mutant astrocytoma grade 4, so it only occurs there at grade 4.
    if subtype == "IDHwt":
        p_egfr, p_cdkn2a = (0.45, 0.6) if grade == "G4" else (0.2, 0.25)
    elif subtype == "IDHmut-non-codel":
        p_egfr, p_cdkn2a = 0.0, (0.6 if grade == "G4" else 0.0)
    else:
        p_egfr, p_cdkn2a = 0.0, 0.0
    return bool(rng.random() < p_egfr), bool(rng.random() < p_cdkn2a)


def _enhancing(rng: np.random.Generator, grade: str, subtype: str) -> bool:
    p = {"G2": 0.0, "G3": 0.3 if subtype == "IDHwt" else 0.1, "G4": 1.0}[grade]
    return bool(rng.random() < p)


def default_sampled_region(enhancing: bool) -> str:
    """Where a neurosurgeon aims a biopsy: the enhancing rim when there is one."""
    return "enhancing" if enhancing else "non_enhancing_core"


def sample_biology(rng: np.random.Generator, grade: str | None = None, subtype: str | None = None) -> TumourBiology:
    """One tumour with realistic joint frequencies; `grade`/`subtype` condition the draw."""
    grade, subtype = sample_grade_subtype(rng, grade, subtype)
    programmes = programme_activity(rng, grade, subtype)
    age = float(np.clip(rng.normal(60.0 if subtype == "IDHwt" else 40.0, 10.0), 20.0, 85.0))
    survival, event = simulate_survival(rng, hazard_per_month(grade, subtype, age, programmes["proliferation"]))
    egfr, cdkn2a = _driver_events(rng, grade, subtype)
    enhancing = _enhancing(rng, grade, subtype)
    radius = float(rng.uniform(15.0, 22.0) if grade == "G4" else rng.uniform(12.0, 20.0))
    return TumourBiology(
        grade=grade,
        subtype=subtype,
        programmes=programmes,
        age_years=round(age, 1),
        sex=str(rng.choice(["F", "M"])),
        survival_months=survival,
        event=event,
        egfr_amplified=egfr,
        cdkn2a_deleted=cdkn2a,
        enhancing=enhancing,
        sampled_region=default_sampled_region(enhancing),
        histology_grade=grade,
        lesion_radius_mm=round(radius, 2),
    )
