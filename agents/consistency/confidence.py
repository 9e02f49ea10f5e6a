"""Confidence after the cross-modal checks, and the report's uncertainty statement.

The one rule (`confidence_basis`), applied to every conclusion in this order:

1. Abstain. A model conclusion (grade, molecular subtype) becomes `insufficient_evidence` when the
   evidence cannot decide: its conformal prediction set holds every candidate label, or its cited
   evidence is split (some supporting, at least as many contradicting) while its probability is
   below the moderate band. The integrated diagnosis abstains by the profile's own rule (no tissue
   test at all). An abstention is low confidence.
2. Start from the band of the calibrated probability: high >= 0.80, moderate >= 0.60, else low.
3. Caps, each named in `confidence_basis`:
   * low when the cited evidence only argues against the label (contradicting, none supporting);
   * moderate when contradicting evidence outnumbers supporting evidence;
   * moderate when the conformal prediction set holds more than one label;
   * moderate when a modality the conclusion rests on is unusable or out of distribution;
   * moderate when a modality the task needs is missing (pathology for grade and diagnosis,
     genomics for molecular subtype);
   * moderate when a test the label needs was not done (1p/19q for a codeleted subtype, IDH for
     any IDH-defined subtype, any missing test of the integrated diagnosis);
   * for the integrated diagnosis, moderate when the tests leave less than half of the model's own
     belief possible, low when less than a tenth (the tests overrule the model: its renormalised
     probability is not a confidence).
4. Lower one level per warning and two per critical flag that affects the task.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from agents.consistency.grounding import PROBABILITY_DECIMALS, fmt, fmt_probability
from agents.consistency.rules import RaisedFlag
from prompts import Listing, Phrase, Term, localise
from schemas.common import CONFIDENCE_ORDER, Confidence
from schemas.report import Conclusion, ConsistencyFlag, LocalisedText, Marker, Modalities, Uncertainty

HIGH_PROBABILITY = 0.80
MODERATE_PROBABILITY = 0.60
LEVELS_LOWERED = {"info": 0, "warning": 1, "critical": 2}
# Histology is required for a WHO grade and diagnosis, molecular testing for a molecular subtype:
# without them the model's answer is at best moderately certain, however peaked its probability.
CAPPED_WITHOUT: dict[str, tuple[str, ...]] = {"pathology": ("grade", "diagnosis"), "genomics": ("molecular_subtype",)}
CAP_LEVEL: Confidence = "moderate"
INSUFFICIENT_EVIDENCE = "insufficient_evidence"
ABSTAINING_TASKS = ("grade", "molecular_subtype")
AGREEMENT_MODERATE = 0.5
AGREEMENT_LOW = 0.1
# Marker (as named in the report) a molecular-subtype label needs tested before it can be high.
SUBTYPE_REQUIRED_MARKERS: dict[str, tuple[str, ...]] = {
    "IDHwt": ("IDH1/2 mutation",),
    "IDHmut-non-codel": ("IDH1/2 mutation",),
    "IDHmut-codel": ("IDH1/2 mutation", "1p/19q codeletion"),
}
TESTED = ("detected", "not_detected")
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


def abstention_reason(conclusion: Conclusion) -> Phrase | None:
    """Why a model conclusion cannot decide, or None when it can (step 1 of the rule)."""
    if conclusion.task not in ABSTAINING_TASKS or conclusion.label == INSUFFICIENT_EVIDENCE:
        return None
    labels = set(conclusion.class_probabilities)
    if len(labels) > 1 and labels <= set(conclusion.prediction_set):
        return Phrase("basis.reason.set_holds_all", {"pct": fmt(100 * (conclusion.prediction_set_coverage or 0), 0)})
    n_for, n_against = len(conclusion.supporting_evidence), len(conclusion.contradicting_evidence)
    if n_for and n_against >= n_for and conclusion.probability < MODERATE_PROBABILITY:
        return Phrase("basis.reason.split", {
            "n_for": str(n_for), "n_against": str(n_against),
            "p": fmt(conclusion.probability, PROBABILITY_DECIMALS), "moderate": fmt(MODERATE_PROBABILITY, 2),
        })
    return None


def missing_tests(conclusion: Conclusion, markers: Sequence[Marker]) -> list[str]:
    """Tests the label needs that the case does not have."""
    if conclusion.diagnosis_layers is not None:
        return list(conclusion.diagnosis_layers.missing_tests)
    if conclusion.task != "molecular_subtype" or not markers:
        return []
    status = {m.marker: m.status for m in markers}
    return [name for name in SUBTYPE_REQUIRED_MARKERS.get(conclusion.label, ()) if status.get(name) not in TESTED]


def confidence_basis(
    conclusion: Conclusion,
    flags: Sequence[RaisedFlag],
    missing: Collection[str],
    compromised: Collection[str] = (),
    markers: Sequence[Marker] = (),
) -> tuple[str, Confidence, LocalisedText]:
    """Label (`insufficient_evidence` when it abstains), confidence and why, in every language, by the rule
    in the module docstring. `missing`: modalities absent from the case; `compromised`: modalities unusable
    or out of distribution; `markers`: the case's marker statuses."""
    label = conclusion.label
    reason = abstention_reason(conclusion)
    if reason is not None:
        top = max(conclusion.class_probabilities, key=conclusion.class_probabilities.__getitem__)
        label, level = INSUFFICIENT_EVIDENCE, "low"
        basis = [Phrase("basis.abstains", {
            "reason": reason, "top": Term("label", top), "p": fmt_probability(conclusion.probability),
        })]
    elif label == INSUFFICIENT_EVIDENCE:
        level = "low"
        basis = [Phrase("basis.insufficient")]
    else:
        level = base_confidence(conclusion.probability)
        basis = [Phrase("basis.band", {
            "p": fmt_probability(conclusion.probability), "level": Term("confidence", level),
            "high": fmt(HIGH_PROBABILITY, 2), "moderate": fmt(MODERATE_PROBABILITY, 2),
        })]

    def cap(to: Confidence, why: Phrase) -> None:
        nonlocal level
        if CONFIDENCE_ORDER[level] > CONFIDENCE_ORDER[to]:
            basis.append(Phrase("basis.cap", {"cap": Term("confidence", to), "why": why}))
        level = capped(level, to)

    n_for, n_against = len(conclusion.supporting_evidence), len(conclusion.contradicting_evidence)
    if n_against and not n_for:
        cap("low", Phrase("basis.why.only_against"))
    elif n_against > n_for:
        cap(CAP_LEVEL, Phrase("basis.why.more_against", {"n_for": str(n_for), "n_against": str(n_against)}))
    if len(conclusion.prediction_set) > 1:
        cap(CAP_LEVEL, Phrase("basis.why.set_size", {"n": str(len(conclusion.prediction_set))}))
    for modality in (m for m in conclusion.modalities_used if m in compromised):
        cap(CAP_LEVEL, Phrase("basis.why.compromised", {"modality": Term("modality", modality)}))
    for modality in (m for m in CAPPED_WITHOUT if m in missing and conclusion.task in CAPPED_WITHOUT[m]):
        cap(CAP_LEVEL, Phrase("basis.why.missing_modality", {"modality": Term("modality", modality)}))
    tests = missing_tests(conclusion, markers)
    if tests:
        # the integrated diagnosis names the tests to order, a molecular subtype the markers it lacks
        namespace = "test" if conclusion.diagnosis_layers is not None else "marker"
        cap(CAP_LEVEL, Phrase("basis.why.not_tested", {"tests": Listing(tuple(Term(namespace, t) for t in tests))}))
    agreement = conclusion.diagnosis_layers.model_agreement if conclusion.diagnosis_layers else None
    if agreement is not None and agreement < AGREEMENT_MODERATE:
        to: Confidence = "low" if agreement < AGREEMENT_LOW else CAP_LEVEL
        cap(to, Phrase("basis.why.agreement", {"a": fmt(agreement, PROBABILITY_DECIMALS)}))
    relevant = [r for r in flags if conclusion.task in r.affects and LEVELS_LOWERED[r.flag.severity]]
    if relevant:
        cited = Listing(tuple(
            Phrase("basis.flag_item", {"id": r.flag.id, "severity": Term("severity", r.flag.severity)}) for r in relevant
        ), "list")
        basis.append(Phrase("basis.lowered", {"flags": cited}))
        level = lowered(level, sum(LEVELS_LOWERED[r.flag.severity] for r in relevant))
    basis.append(Phrase("basis.level", {"level": Term("confidence", level)}))
    return label, level, localise(Listing(tuple(basis), "semicolon"), sentence=False)


def adjust_confidence(
    conclusion: Conclusion,
    flags: Sequence[RaisedFlag],
    missing: Collection[str],
    compromised: Collection[str] = (),
    markers: Sequence[Marker] = (),
) -> tuple[Conclusion, LocalisedText]:
    """The conclusion after the rule, with its (English) `confidence_basis`, and that basis in every language."""
    label, level, basis = confidence_basis(conclusion, flags, missing, compromised, markers)
    return conclusion.model_copy(update={"label": label, "confidence": level, "confidence_basis": basis.en}), basis


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
