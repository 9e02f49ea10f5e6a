"""Confidence after the cross-modal checks, and the report's uncertainty statement.

A conclusion starts from the band of its calibrated probability, is capped when a
modality that a WHO CNS5 integrated diagnosis needs is missing, and then loses one
level per warning and two per critical flag that affects its task.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from agents.consistency.grounding import fmt, fmt_probability
from agents.consistency.rules import RaisedFlag
from prompts import Listing, Phrase, Term, localise
from schemas.common import CONFIDENCE_ORDER, Confidence
from schemas.report import Conclusion, ConsistencyFlag, LocalisedText, Modalities, Uncertainty

HIGH_PROBABILITY = 0.80
MODERATE_PROBABILITY = 0.60
LEVELS_LOWERED = {"info": 0, "warning": 1, "critical": 2}
# Histology is required for a WHO grade and diagnosis, molecular testing for a molecular subtype:
# without them the model's answer is at best moderately certain, however peaked its probability.
CAPPED_WITHOUT: dict[str, tuple[str, ...]] = {"pathology": ("grade", "diagnosis"), "genomics": ("molecular_subtype",)}
CAP_LEVEL: Confidence = "moderate"
INSUFFICIENT_EVIDENCE = "insufficient_evidence"
_LEVELS: tuple[Confidence, ...] = ("low", "moderate", "high")


def base_confidence(probability: float) -> Confidence:
    """Band of a calibrated probability."""
    if probability >= HIGH_PROBABILITY:
        return "high"
    return "moderate" if probability >= MODERATE_PROBABILITY else "low"


def lowered(level: Confidence, steps: int) -> Confidence:
    return _LEVELS[max(0, CONFIDENCE_ORDER[level] - steps)]


def capped(level: Confidence, cap: Confidence) -> Confidence:
    return _LEVELS[min(CONFIDENCE_ORDER[level], CONFIDENCE_ORDER[cap])]


def confidence_basis(
    conclusion: Conclusion, flags: Sequence[RaisedFlag], missing: Collection[str]
) -> tuple[Confidence, LocalisedText]:
    """The confidence after caps and flags, and why, in every language."""
    p = fmt_probability(conclusion.probability)
    basis: list[Phrase] = []
    if conclusion.label == INSUFFICIENT_EVIDENCE:
        level: Confidence = "low"
        basis.append(Phrase("basis.insufficient"))
    else:
        level = base_confidence(conclusion.probability)
        basis.append(Phrase("basis.band", {
            "p": p, "level": Term("confidence", level),
            "high": fmt(HIGH_PROBABILITY, 2), "moderate": fmt(MODERATE_PROBABILITY, 2),
        }))
    for modality in (m for m in CAPPED_WITHOUT if m in missing and conclusion.task in CAPPED_WITHOUT[m]):
        if CONFIDENCE_ORDER[level] > CONFIDENCE_ORDER[CAP_LEVEL]:
            basis.append(Phrase("basis.capped", {"cap": Term("confidence", CAP_LEVEL), "modality": Term("modality", modality)}))
        level = capped(level, CAP_LEVEL)
    relevant = [r for r in flags if conclusion.task in r.affects and LEVELS_LOWERED[r.flag.severity]]
    if relevant:
        cited = Listing(tuple(
            Phrase("basis.flag_item", {"id": r.flag.id, "severity": Term("severity", r.flag.severity)}) for r in relevant
        ), "list")
        basis.append(Phrase("basis.lowered", {"flags": cited}))
        level = lowered(level, sum(LEVELS_LOWERED[r.flag.severity] for r in relevant))
    basis.append(Phrase("basis.level", {"level": Term("confidence", level)}))
    return level, localise(Listing(tuple(basis), "semicolon"), sentence=False)


def adjust_confidence(conclusion: Conclusion, flags: Sequence[RaisedFlag], missing: Collection[str]) -> Conclusion:
    """The conclusion with its confidence and (English) `confidence_basis` after caps and flags."""
    level, basis = confidence_basis(conclusion, flags, missing)
    return conclusion.model_copy(update={"confidence": level, "confidence_basis": basis.en})


def modality_phrase(modalities: Modalities) -> Phrase:
    """'Imaging and pathology were not available; the conclusions rest on genomics.' and its variants."""
    present: Listing | Term = Term("modality", "none")
    if modalities.present:
        present = Listing(tuple(Term("modality", m) for m in modalities.present))
    if not modalities.missing:
        return Phrase("uncertainty.all_present", {"present": present})
    key = "uncertainty.missing_one" if len(modalities.missing) == 1 else "uncertainty.missing_many"
    return Phrase(key, {"missing": Listing(tuple(Term("modality", m) for m in modalities.missing)), "present": present})


def uncertainty_phrases(
    modalities: Modalities, flags: Sequence[ConsistencyFlag], conclusions: Sequence[Conclusion]
) -> list[tuple[Phrase, tuple[str, ...]]]:
    """The uncertainty statement as phrases, each with the flag ids it rests on."""
    parts = [(modality_phrase(modalities), tuple(f.id for f in flags if f.kind == "missing_modality"))]
    for u in modalities.unusable:
        ids = tuple(f.id for f in flags if f.kind == "unusable_input" and u.modality in f.modalities)
        fields = {"modality": Term("modality", u.modality), "reason": u.reason}
        parts.append((Phrase("uncertainty.unusable", fields), ids))
    lowering = [f for f in flags if LEVELS_LOWERED[f.severity]]
    if lowering:
        items = tuple(
            Phrase("uncertainty.flag_item", {
                "id": f.id, "kind": Term("flag_kind", f.kind), "severity": Term("severity", f.severity),
            })
            for f in lowering
        )
        parts.append((Phrase("uncertainty.flags", {"flags": Listing(items)}), tuple(f.id for f in lowering)))
    else:
        parts.append((Phrase("uncertainty.no_flags"), ()))
    if conclusions:
        level = overall_level(conclusions)
        tasks = Listing(tuple(Term("task", c.task) for c in conclusions if c.confidence == level))
        parts.append((Phrase("uncertainty.level", {"level": Term("confidence", level), "tasks": tasks}), ()))
    else:
        parts.append((Phrase("uncertainty.no_conclusion"), ()))
    return parts


def overall_level(conclusions: Sequence[Conclusion]) -> Confidence:
    """The report is as certain as its least certain conclusion (low when there is none)."""
    return min((c.confidence for c in conclusions), key=CONFIDENCE_ORDER.__getitem__, default="low")


def overall_uncertainty(
    modalities: Modalities, flags: Sequence[ConsistencyFlag], conclusions: Sequence[Conclusion]
) -> Uncertainty:
    """The English uncertainty statement (the narrative renders the same phrases in every language)."""
    statement = " ".join(localise(p).en for p, _ in uncertainty_phrases(modalities, flags, conclusions))
    return Uncertainty(
        level=overall_level(conclusions), statement=statement, missing_modalities=list(modalities.missing)
    )
