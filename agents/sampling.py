"""Sampling plan: whether a (new) biopsy is needed for the integrated diagnosis, and where.

Decision. A new biopsy is planned only when tissue can still change the WHO CNS5 integrated
diagnosis: there is no histology yet (a first biopsy), or the specimen came from a region that
can under-grade an enhancing tumour and no molecular criterion has already fixed the highest
grade of the family (a repeat biopsy). Otherwise the plan is empty and says why: the diagnosis
is settled, or what is missing is a test on the existing specimen. The margin ring is never a
diagnostic target: it is for resection planning.

Observation model. Let D be the integrated diagnosis with posterior p over `CANDIDATES` (the
diagnosis conclusion's class probabilities). A specimen from region r is diagnostic with
probability y_r (its yield); a diagnostic specimen shows the histological grade of D, or one
grade lower with probability u_r (the region under-represents the most anaplastic tissue). A
first biopsy also gives tissue for molecular testing, so it reveals D's family (IDH-mutant
astrocytoma, oligodendroglioma, IDH-wildtype glioblastoma or not); a repeat biopsy adds only
the grade, because molecular tests can run on the tissue already taken. Then

    EIG(r) = H(D) - sum_o P(o | r) H(D | o, r)   bits,

the expected entropy reduction of the integrated-diagnosis posterior, computed exactly over the
outcomes o. Regions rank by EIG (ties: higher yield, then larger unit).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agents.clinical.profile import CANDIDATES, MOLECULAR_GRADE_RULES, Candidate, Family
from agents.consistency.grounding import BITS_DECIMALS, PROBABILITY_DECIMALS, VOLUME_DECIMALS, fmt
from prompts import Listing, Phrase, Term, localise
from schemas.case import PathologyFindings
from schemas.report import Conclusion, LocalisedText, SamplingTarget, SpatialEvidence


@dataclass(frozen=True)
class Region:
    """How a biopsy of one imaging habitat behaves: diagnostic yield and chance of showing one grade too low."""

    yield_: float
    undergrade: float


# Enhancing tumour present: the rim is the most anaplastic viable tissue, the edge of necrosis next;
# the non-enhancing core and peritumoral FLAIR signal may miss the highest grade.
REGIONS_ENHANCING: dict[str, Region] = {
    "enhancing": Region(0.90, 0.05),
    "necrotic_core": Region(0.60, 0.10),  # viable tissue at the edge of necrosis; necrosis alone is non-diagnostic
    "non_enhancing_core": Region(0.80, 0.35),
    "oedema": Region(0.40, 0.50),  # infiltrated or reactive brain around an enhancing tumour
}
# No enhancement: the solid non-enhancing core is where the highest grade is likeliest; the FLAIR signal
# around it is tumour in a diffuse (e.g. IDH-mutant) glioma, not oedema, but less cellular.
REGIONS_NON_ENHANCING: dict[str, Region] = {
    "non_enhancing_core": Region(0.85, 0.10),
    "oedema": Region(0.65, 0.30),
    "necrotic_core": Region(0.60, 0.10),
}
UNDER_GRADING_SITES = ("oedema", "non_enhancing_core", "necrotic_core")
TINY_UNIT_ML = 0.5
TINY_UNIT_FACTOR = 0.5  # stereotactic targeting error is a few mm, comparable with the unit
ALREADY_SAMPLED_FACTOR = 0.5  # a second pass through the same habitat mostly repeats the first answer
HIGHEST_GRADE: dict[Family, int] = {"astrocytoma": 4, "oligodendroglioma": 3, "glioblastoma": 4}
# Histological grade a candidate shows; an IDH-wildtype tumour without glioblastoma criteria reads grade 2-3.
HISTOLOGICAL_GRADE = {c.label: (c.grade if c.grade is not None else 3) for c in CANDIDATES}
_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class SamplingDecision:
    targets: list[SamplingTarget]
    statement: LocalisedText


def entropy_bits(distribution: Mapping[str, float]) -> float:
    """Shannon entropy in bits of a probability distribution over labels."""
    values = list(distribution.values())
    if not values or any(p < 0 for p in values) or not math.isclose(sum(values), 1.0, abs_tol=_SUM_TOLERANCE):
        raise ValueError(f"not a probability distribution: {dict(distribution)}")
    return max(0.0, -sum(p * math.log2(p) for p in values if p > 0))  # no "-0.0" for a certain prior


def outcome_likelihoods(candidate: Candidate, region: Region, reveals_family: bool) -> dict[tuple, float]:
    """P(outcome | D = candidate) for one biopsy: ('non-diagnostic',) or (family or '-', histological grade)."""
    if not 0.0 <= region.yield_ <= 1.0 or not 0.0 <= region.undergrade <= 1.0:
        raise ValueError(f"yield and under-grading must lie in [0, 1], got {region}")
    family = candidate.family if reveals_family else "-"
    grade = HISTOLOGICAL_GRADE[candidate.label]
    out: dict[tuple, float] = {("non-diagnostic",): 1.0 - region.yield_}
    lower = max(2, grade - 1)
    for seen, p in ((grade, 1.0 - region.undergrade), (lower, region.undergrade)):
        out[(family, seen)] = out.get((family, seen), 0.0) + region.yield_ * p
    return out


def expected_information_gain(posterior: Mapping[str, float], region: Region, reveals_family: bool) -> float:
    """H(D) - E_o[H(D | o)] for one biopsy of `region` (see the module docstring)."""
    h = entropy_bits(posterior)
    joint: dict[tuple, dict[str, float]] = {}
    for c in CANDIDATES:
        p = posterior.get(c.label, 0.0)
        if p <= 0:
            continue
        for outcome, likelihood in outcome_likelihoods(c, region, reveals_family).items():
            joint.setdefault(outcome, {})[c.label] = joint.get(outcome, {}).get(c.label, 0.0) + p * likelihood
    remaining = 0.0
    for masses in joint.values():
        total = sum(masses.values())
        if total > 0:
            remaining += total * entropy_bits({k: v / total for k, v in masses.items()})
    return max(0.0, h - remaining)


def region_model(unit: SpatialEvidence, enhancing: bool, findings: PathologyFindings | None) -> tuple[Region, list[Phrase]]:
    """The unit's region parameters after the size and already-sampled corrections, with notes saying which applied."""
    table = REGIONS_ENHANCING if enhancing else REGIONS_NON_ENHANCING
    region, notes = table[unit.phenotype], []
    y = region.yield_
    if unit.volume_ml is not None and unit.volume_ml < TINY_UNIT_ML:
        y *= TINY_UNIT_FACTOR
        notes.append(Phrase("sampling.note_small", {"threshold": f"{fmt(TINY_UNIT_ML, VOLUME_DECIMALS)} mL",
                                                    "factor": fmt(TINY_UNIT_FACTOR, 1)}))
    if findings is not None and findings.sampled_region == unit.phenotype:
        y *= ALREADY_SAMPLED_FACTOR
        notes.append(Phrase("sampling.note_sampled", {"factor": fmt(ALREADY_SAMPLED_FACTOR, 1)}))
    return Region(y, region.undergrade), notes


def latest_units(spatial: Sequence[SpatialEvidence]) -> list[SpatialEvidence]:
    """Habitats and margin ring of the latest time point: the anatomy a biopsy would target."""
    latest = spatial[-1].timepoint if spatial else None
    return [s for s in spatial if s.timepoint == latest and s.unit_level in ("habitat", "margin_ring")]


def enhancing_tumour(units: Sequence[SpatialEvidence]) -> bool:
    return any(u.phenotype == "enhancing" and (u.volume_ml or 0.0) > 0 for u in units)


def rationale_key(phenotype: str, enhancing: bool) -> str:
    """Why a habitat is (or is not) a good target depends on whether the tumour enhances."""
    return phenotype if enhancing else f"{phenotype}_non_enhancing"


def _molecular_grade_fixed(diagnosis: Conclusion) -> bool:
    layers = diagnosis.diagnosis_layers
    return layers is not None and bool({r.split(":", 1)[0] for r in layers.rules_applied} & set(MOLECULAR_GRADE_RULES))


def _at_highest_grade(diagnosis: Conclusion) -> bool:
    layers = diagnosis.diagnosis_layers
    candidate = next((c for c in CANDIDATES if c.label == diagnosis.label), None)
    return (layers is not None and candidate is not None and layers.cns_who_grade is not None
            and layers.cns_who_grade >= HIGHEST_GRADE.get(candidate.family, 5))


def biopsy_kind(
    diagnosis: Conclusion, pathology_present: bool, findings: PathologyFindings | None, enhancing: bool
) -> str | None:
    """'first', 'repeat', or None when no new tissue can change the integrated diagnosis."""
    if not pathology_present:
        return "first"
    off_target = findings is not None and findings.sampled_region in UNDER_GRADING_SITES and enhancing
    if off_target and not _molecular_grade_fixed(diagnosis) and not _at_highest_grade(diagnosis):
        return "repeat"
    return None


def _no_plan_statement(diagnosis: Conclusion, has_margin: bool) -> list[Phrase]:
    layers = diagnosis.diagnosis_layers
    tests = list(layers.missing_tests) if layers is not None else []
    if tests:
        phrases = [Phrase("sampling.tests_on_specimen", {"tests": Listing(tuple(Term("test", t) for t in tests))})]
    else:
        phrases = [Phrase("sampling.settled", {"label": Term("label", diagnosis.label)})]
    if _molecular_grade_fixed(diagnosis):
        phrases.append(Phrase("sampling.grade_fixed_molecularly", {"grade": str(layers.cns_who_grade)}))
    if has_margin:
        phrases.append(Phrase("sampling.margin_for_resection"))
    return phrases


def _statement(phrases: Sequence[Phrase]) -> LocalisedText:
    texts = [localise(p) for p in phrases]
    return LocalisedText(en=" ".join(t.en for t in texts), zh="".join(t.zh for t in texts))


def sampling_plan(
    spatial_evidence: Sequence[SpatialEvidence],
    diagnosis: Conclusion | None,
    findings: PathologyFindings | None,
    pathology_present: bool,
) -> SamplingDecision:
    """The plan (possibly empty) and the statement of why."""
    units = latest_units(spatial_evidence)
    if not units:
        return SamplingDecision([], _statement([Phrase("sampling.no_imaging")]))
    if diagnosis is None:
        return SamplingDecision([], _statement([Phrase("sampling.no_diagnosis")]))
    enhancing = enhancing_tumour(units)
    has_margin = any(u.unit_level == "margin_ring" for u in units)
    kind = biopsy_kind(diagnosis, pathology_present, findings, enhancing)
    if kind is None:
        return SamplingDecision([], _statement(_no_plan_statement(diagnosis, has_margin)))
    posterior = diagnosis.class_probabilities
    entropy = entropy_bits(posterior)
    table = REGIONS_ENHANCING if enhancing else REGIONS_NON_ENHANCING
    scored = []
    for unit in (u for u in units if u.unit_level == "habitat" and u.phenotype in table):
        region, notes = region_model(unit, enhancing, findings)
        eig = expected_information_gain(posterior, region, reveals_family=kind == "first")
        scored.append((eig, region, notes, unit))
    scored.sort(key=lambda t: (-t[0], -t[1].yield_, -(t[3].volume_ml or 0.0), t[3].unit_id))
    targets = [
        SamplingTarget(
            rank=rank, unit_id=unit.unit_id, phenotype=unit.phenotype,
            reason=_reason(unit, region, entropy, eig, notes, kind, enhancing, posterior),
            expected_information_gain=round(eig, 6), evidence=[unit.id],
        )
        for rank, (eig, region, notes, unit) in enumerate(scored, start=1)
    ]
    intro = [Phrase(f"sampling.{kind}_biopsy", {"entropy": fmt(entropy, BITS_DECIMALS)})]
    if has_margin:
        intro.append(Phrase("sampling.margin_for_resection"))
    return SamplingDecision(targets, _statement(intro))


def likely_grade(posterior: Mapping[str, float], region: Region) -> tuple[int, float]:
    """The histological grade a diagnostic specimen from the region most likely shows, and its probability."""
    seen: dict[int, float] = {}
    for c in CANDIDATES:
        p = posterior.get(c.label, 0.0)
        for outcome, likelihood in outcome_likelihoods(c, Region(1.0, region.undergrade), False).items():
            if len(outcome) == 2:  # a diagnostic specimen: (family, grade seen)
                seen[outcome[1]] = seen.get(outcome[1], 0.0) + p * likelihood
    grade = max(seen, key=seen.__getitem__)
    return grade, seen[grade]


def _reason(unit: SpatialEvidence, region: Region, entropy: float, eig: float, notes: list[Phrase], kind: str,
            enhancing: bool, posterior: Mapping[str, float]) -> str:
    volume = Term("word", "not_measured") if unit.volume_ml is None else f"{fmt(unit.volume_ml, VOLUME_DECIMALS)} mL"
    grade, p = likely_grade(posterior, region)
    rationale = rationale_key(unit.phenotype, enhancing)
    main = Phrase("sampling.reason", {
        "phenotype": Term("phenotype", unit.phenotype), "unit": unit.unit_id, "volume": volume,
        "rationale": Term("rationale", rationale), "grade": str(grade), "p": fmt(p, PROBABILITY_DECIMALS),
        "yield": fmt(region.yield_, 2), "eig": fmt(eig, BITS_DECIMALS), "entropy": fmt(entropy, BITS_DECIMALS),
        "kind": Term("biopsy", kind),
    })
    return " ".join(localise(x).en for x in (main, *notes))
