"""Sampling plan: which imaging sub-regions to biopsy, ranked by expected information gain on grade.

Observation model. Let G be the grade with prior p. A biopsy of a unit returns the true
grade with probability y (the unit's diagnostic yield) and is non-diagnostic otherwise,
whatever the grade. Then

    I(G; Y) = H(G) - H(G | Y)
            = H(G) - [ y * H(G | Y = g) + (1 - y) * H(G | Y = non-diagnostic) ]
            = H(G) - [ y * 0 + (1 - y) * H(G) ]        (a non-diagnostic result leaves p unchanged)
            = y * H(G)   bits.

So with one prior for the whole lesion, units rank by their yield; the prior sets the scale.

Prior. The fused grade probabilities, except when histology and imaging disagree on grade
(see `agents.consistency.signals.grade_discordance`): then the fusion output may be
confidently wrong in either direction, and the prior is the mixture

    prior = (1 - w) * fused + w * uniform,   w = DISCORDANT_UNIFORM_WEIGHT = 0.5,

which keeps the fused ranking of grades but guarantees H(prior) >= (H(fused) + log2 K) / 2
for K grades (entropy is concave), so a discordant case is never planned as if settled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from agents.consistency.grounding import BITS_DECIMALS, VOLUME_DECIMALS, fmt
from agents.consistency.signals import grade_discordance
from prompts import Phrase, Term, localise
from schemas.case import PathologyFindings
from schemas.report import SamplingTarget, SpatialEvidence

# Probability that a biopsy of the sub-region returns the tumour's true grade.
DIAGNOSTIC_YIELD: dict[str, float] = {
    "enhancing": 0.90,  # viable, most anaplastic tumour: the standard stereotactic target
    "non_enhancing_core": 0.70,  # solid tumour without contrast uptake: diagnostic, but may miss the highest grade
    "margin_ring": 0.35,  # infiltration front: sparse tumour cells among brain parenchyma
    "oedema": 0.30,  # FLAIR signal of infiltrated or merely reactive brain: often non-diagnostic, under-grades
    "necrotic_core": 0.20,  # necrosis alone is non-diagnostic; only viable fragments at its edge inform the grade
}
# Units this small are hard to hit: stereotactic targeting error is a few mm, comparable with the unit.
TINY_UNIT_ML = 0.5
TINY_UNIT_FACTOR = 0.5
# A second biopsy of the habitat the specimen already came from mostly repeats the first answer.
ALREADY_SAMPLED_FACTOR = 0.5
DISCORDANT_UNIFORM_WEIGHT = 0.5
SAMPLED_LEVELS = ("habitat", "margin_ring")
_PROBABILITY_SUM_TOLERANCE = 1e-3


def entropy_bits(distribution: Mapping[str, float]) -> float:
    """Shannon entropy in bits of a probability distribution over labels."""
    values = list(distribution.values())
    if not values or any(p < 0 for p in values) or not math.isclose(sum(values), 1.0, abs_tol=_PROBABILITY_SUM_TOLERANCE):
        raise ValueError(f"not a probability distribution: {dict(distribution)}")
    return max(0.0, -sum(p * math.log2(p) for p in values if p > 0))  # no "-0.0" for a certain prior


def expected_information_gain(prior: Mapping[str, float], yield_: float) -> float:
    """Bits a biopsy with diagnostic yield `yield_` is expected to reveal about the grade: yield * H(prior)."""
    if not 0.0 <= yield_ <= 1.0:
        raise ValueError(f"diagnostic yield must lie in [0, 1], got {yield_}")
    return yield_ * entropy_bits(prior)


def sampling_prior(grade_probabilities: Mapping[str, float], discordant: bool) -> dict[str, float]:
    """The fused probabilities, mixed with the uniform distribution when histology and imaging disagree."""
    if not discordant:
        return dict(grade_probabilities)
    k = len(grade_probabilities)
    w = DISCORDANT_UNIFORM_WEIGHT
    return {label: (1.0 - w) * p + w / k for label, p in grade_probabilities.items()}


def unit_yield(unit: SpatialEvidence, findings: PathologyFindings | None) -> tuple[float, list[Phrase]]:
    """Diagnostic yield of a unit after the size and already-sampled corrections, with notes saying which applied."""
    value, notes = DIAGNOSTIC_YIELD[unit.phenotype], []
    if unit.volume_ml is not None and unit.volume_ml < TINY_UNIT_ML:
        value *= TINY_UNIT_FACTOR
        notes.append(Phrase("sampling.note_small", {"threshold": f"{fmt(TINY_UNIT_ML, VOLUME_DECIMALS)} mL",
                                                    "factor": fmt(TINY_UNIT_FACTOR, 1)}))
    if findings is not None and findings.sampled_region == unit.phenotype:
        value *= ALREADY_SAMPLED_FACTOR
        notes.append(Phrase("sampling.note_sampled", {"factor": fmt(ALREADY_SAMPLED_FACTOR, 1)}))
    return value, notes


def candidate_units(spatial_evidence: Sequence[SpatialEvidence]) -> list[SpatialEvidence]:
    """Sub-regions of the latest time point (the anatomy a biopsy would target) that have a yield."""
    latest = spatial_evidence[-1].timepoint if spatial_evidence else None
    return [
        s for s in spatial_evidence
        if s.timepoint == latest and s.unit_level in SAMPLED_LEVELS and s.phenotype in DIAGNOSTIC_YIELD
    ]


def sampling_plan(
    spatial_evidence: Sequence[SpatialEvidence],
    grade_probabilities: Mapping[str, float],
    findings: PathologyFindings | None,
) -> list[SamplingTarget]:
    """Candidate sub-regions ranked by expected information gain on grade (ties: higher yield, then larger unit)."""
    units = candidate_units(spatial_evidence)
    if not units or not grade_probabilities:
        return []
    discordant = grade_discordance(spatial_evidence, findings)
    prior = sampling_prior(grade_probabilities, discordant)
    entropy = entropy_bits(prior)
    scored = []
    for unit in units:
        value, notes = unit_yield(unit, findings)
        if discordant:
            notes.append(Phrase("sampling.note_discordant", {"weight": fmt(DISCORDANT_UNIFORM_WEIGHT, 1)}))
        scored.append((expected_information_gain(prior, value), value, notes, unit))
    # With a certain prior every gain is 0; the region most likely to be diagnostic still goes first.
    scored.sort(key=lambda t: (-t[0], -t[1], -(t[3].volume_ml or 0.0), t[3].unit_id))
    return [
        SamplingTarget(
            rank=rank,
            unit_id=unit.unit_id,
            phenotype=unit.phenotype,
            reason=_reason(unit, value, entropy, eig, notes),
            expected_information_gain=round(eig, 6),
            evidence=[unit.id],
        )
        for rank, (eig, value, notes, unit) in enumerate(scored, start=1)
    ]


def _reason(unit: SpatialEvidence, value: float, entropy: float, eig: float, notes: list[Phrase]) -> str:
    volume = Term("word", "not_measured") if unit.volume_ml is None else f"{fmt(unit.volume_ml, VOLUME_DECIMALS)} mL"
    main = Phrase("sampling.reason", {
        "phenotype": Term("phenotype", unit.phenotype), "unit": unit.unit_id, "volume": volume,
        "yield": fmt(value, 2), "entropy": fmt(entropy, BITS_DECIMALS), "eig": fmt(eig, BITS_DECIMALS),
        "rationale": Term("rationale", unit.phenotype),
    })
    return " ".join(localise(p).en for p in (main, *notes))
