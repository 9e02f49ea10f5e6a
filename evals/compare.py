"""Compare generated reports with references and ground truth: field by field, then as text.

Field-level checks are the evidence that matters; ROUGE-L and embedding cosine are
weaker signals (wording, not meaning) and are kept apart from them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from evals.references import INSUFFICIENT, GroundTruth, Reference
from evals.text_fields import (
    DIAGNOSES,
    FIELDS,
    LABEL_NORMALISERS,
    FieldValue,
    extract_fields,
    subtype_from_fields,
)
from schemas.report import EvidenceChainReport

VERSUS = ("reference", "ground_truth", "reference_text")
# Why a check was or was not scored. Only "agree" and "disagree" count in the agreement; the
# others say who did not state the field, so an extractor miss is never charged to the report.
OUTCOMES = (
    "agree",
    "disagree",
    "report_not_stated",  # the report does not state it (e.g. no diagnosis conclusion, or it abstains)
    "reference_not_stated",  # the reference (or truth) does not state it
    "reference_unread",  # the reference talks about it but the extractor could read no value
    "reading_contradicts_truth",  # what was read from the reference contradicts the truth; the report matches it
)
# Reference-side fields that a task's label is read from.
TASK_FIELDS: dict[str, tuple[str, ...]] = {
    "diagnosis": ("diagnosis",),
    "grade": ("grade",),
    "molecular_subtype": ("idh", "codeletion_1p19q"),
}
DIAGNOSIS_LEVELS = ("family", "grade")


@dataclass(frozen=True)
class FieldCheck:
    """One field of one case: what the reference (or truth) states against what our report states."""

    case_id: str
    field: str
    versus: str  # one of VERSUS
    expected: str | None
    observed: str | None
    agree: bool | None  # None when either side does not state the field
    expected_evidence: str = ""
    observed_evidence: str = ""
    # Set-valued fields (flag kinds, modalities): counts (shared, observed, expected).
    overlap: tuple[int, int, int] | None = None
    outcome: str = ""  # one of OUTCOMES


@dataclass(frozen=True)
class FieldAgreement:
    """One row of the headline table."""

    field: str
    versus: str
    n: int  # cases evaluated
    stated: int  # ... whose reference / truth states the field
    compared: int  # ... where our report states it too
    agreed: int
    coverage: float | None  # stated / n
    report_coverage: float | None  # compared / stated
    agreement: float | None  # agreed / compared
    precision: float | None = None  # set-valued fields, pooled over cases
    recall: float | None = None
    # Stated by the reference but not scored: the report is silent, the extractor could not
    # read the reference, or the reading contradicts the truth while the report matches it.
    report_not_stated: int = 0
    reference_unread: int = 0
    reading_contradicts_truth: int = 0


@dataclass(frozen=True)
class TextSimilarity:
    case_id: str
    language: str
    rouge_l: float
    cosine: float | None


# --- what each side states ------------------------------------------------------------
def _stated(label: str, task: str) -> str | None:
    """Canonical label; a label outside the vocabulary stays as written, so it shows as a disagreement."""
    if label == INSUFFICIENT:
        return None
    return LABEL_NORMALISERS[task](label) or label


def report_labels(report: EvidenceChainReport) -> dict[str, tuple[str | None, str]]:
    """Task -> (label, evidence) for the tasks compared by label."""
    out = {}
    for c in report.conclusions:
        if c.task in LABEL_NORMALISERS:
            out[c.task] = (
                _stated(c.label, c.task),
                f"{c.task}: {c.label} (p={c.probability:.2f}, {c.confidence} confidence)",
            )
    return out


def reference_labels(reference: Reference, fields: dict[str, FieldValue]) -> dict[str, tuple[str | None, str]]:
    """Task -> (label, evidence): a structured conclusion where given, else what the text states."""
    out: dict[str, tuple[str | None, str]] = {}
    if "diagnosis" in fields:
        out["diagnosis"] = (fields["diagnosis"].stated(), fields["diagnosis"].evidence)
    if "grade" in fields:
        out["grade"] = (fields["grade"].stated(), fields["grade"].evidence)
    subtype = subtype_from_fields(fields)
    if subtype is not None:
        out["molecular_subtype"] = (
            subtype,
            " / ".join(fields[f].evidence for f in ("idh", "codeletion_1p19q") if f in fields),
        )
    for task, label in reference.conclusions.items():
        if task in LABEL_NORMALISERS:
            out[task] = (_stated(label, task), f"{reference.file}: conclusions[{task}] = {label}")
    return out


def narrative_text(report: EvidenceChainReport, language: str = "en") -> str:
    """The report's narrative in one language, sentences in order."""
    return " ".join(getattr(s.text, language) for section in report.narrative for s in section.sentences)


# --- checks ---------------------------------------------------------------------------
def _outcome(
    expected: str | None, observed: str | None, unread: bool = False, truth: str | None = None
) -> tuple[bool | None, str]:
    """(agree, outcome) of one comparison. `unread`: the reference talks about the field but no
    value was read from it; `truth`: the true value where known, to tell a misread reference
    from a report error."""
    if expected is None:
        return None, "reference_unread" if unread else "reference_not_stated"
    if observed is None:
        return None, "report_not_stated"
    if expected == observed:
        return True, "agree"
    if truth is not None and expected != truth and observed == truth:
        return None, "reading_contradicts_truth"
    return False, "disagree"


def _label_check(
    case_id: str,
    task: str,
    versus: str,
    expected: tuple[str | None, str] | None,
    observed: tuple[str | None, str] | None,
    unread: bool = False,
    truth: str | None = None,
) -> FieldCheck:
    exp, exp_ev = expected or (None, "")
    obs, obs_ev = observed or (None, "")
    agree, outcome = _outcome(exp, obs, unread, truth)
    return FieldCheck(case_id, task, versus, exp, obs, agree, exp_ev, obs_ev, outcome=outcome)


def _diagnosis_level(label: str | None, level: str) -> str | None:
    diagnosis = DIAGNOSES.get(label or "")
    return None if diagnosis is None else getattr(diagnosis, level)


def diagnosis_levels(check: FieldCheck, truth: str | None = None) -> list[FieldCheck]:
    """The integrated-diagnosis check again at family and at CNS WHO grade level: a report that
    names the right tumour type at the wrong grade agrees at one level and not the other. A NOS
    label states no grade; a label outside the vocabulary states neither."""
    out = []
    for level in DIAGNOSIS_LEVELS:
        exp, obs = _diagnosis_level(check.expected, level), _diagnosis_level(check.observed, level)
        if check.outcome in ("reference_unread", "report_not_stated", "reference_not_stated"):
            agree, outcome = None, check.outcome
        else:
            agree, outcome = _outcome(exp, obs, truth=_diagnosis_level(truth, level))
        out.append(replace(check, field=f"diagnosis_{level}", expected=exp, observed=obs, agree=agree, outcome=outcome))
    return out


def truth_values(truth: GroundTruth | None) -> dict[str, str]:
    """Field or task -> its true value, for the values the truth knows."""
    if truth is None:
        return {}
    known = {"diagnosis": truth.diagnosis, "grade": truth.grade, "molecular_subtype": truth.subtype}
    if truth.subtype is not None:  # the subtype settles IDH and 1p/19q
        known["idh"] = "wildtype" if truth.subtype == "IDHwt" else "mutant"
        known["codeletion_1p19q"] = "codeleted" if truth.subtype == "IDHmut-codel" else "intact"
    return {k: v for k, v in {**known, **truth.text_fields}.items() if v is not None}


def _show(values: frozenset[str]) -> str:
    return ", ".join(sorted(values)) or "(none)"


def _set_check(
    case_id: str, name: str, versus: str, expected: frozenset[str] | None, observed: frozenset[str], source: str
) -> FieldCheck:
    if expected is None:
        return FieldCheck(case_id, name, versus, None, _show(observed), None, outcome="reference_not_stated")
    return FieldCheck(
        case_id,
        name,
        versus,
        _show(expected),
        _show(observed),
        expected == observed,
        expected_evidence=source,
        overlap=(len(expected & observed), len(observed), len(expected)),
        outcome="agree" if expected == observed else "disagree",
    )


def _with_levels(check: FieldCheck, truth: str | None = None) -> list[FieldCheck]:
    return [check, *diagnosis_levels(check, truth)] if check.field == "diagnosis" else [check]


def structured_checks(
    case_id: str,
    report: EvidenceChainReport,
    reference: Reference | None,
    reference_fields: dict[str, FieldValue],
    truth: GroundTruth | None,
    unread: set[str] | frozenset[str] = frozenset(),
) -> list[FieldCheck]:
    """Labels, flag kinds, first sampling target and modalities against the reference and the truth.
    `reference_fields` is `extract_fields(reference.text)`, `unread` the fields its text talks about
    but no value could be read for (`unread_fields`)."""
    ours = report_labels(report)
    flags = frozenset(f.kind for f in report.consistency_flags)
    known = truth_values(truth)
    checks: list[FieldCheck] = []
    if reference is not None:
        theirs = reference_labels(reference, reference_fields)
        for t in LABEL_NORMALISERS:
            missed = t not in reference.conclusions and any(f in unread for f in TASK_FIELDS[t])
            check = _label_check(case_id, t, "reference", theirs.get(t), ours.get(t), missed, known.get(t))
            checks += _with_levels(check, known.get(t))
        checks.append(_set_check(case_id, "flag_kinds", "reference", reference.flag_kinds, flags, reference.file))
    if truth is not None:
        for t in LABEL_NORMALISERS:
            expected = (known[t], "ground truth") if t in known else None
            checks += _with_levels(_label_check(case_id, t, "ground_truth", expected, ours.get(t)))
        checks.append(_set_check(case_id, "flag_kinds", "ground_truth", truth.flag_kinds, flags, "ground truth"))
        checks.append(
            _set_check(
                case_id,
                "modalities_present",
                "ground_truth",
                truth.modalities_present,
                frozenset(report.modalities.present),
                "ground truth",
            )
        )
        checks.append(_sampling_check(case_id, report, truth))
    return checks


def _sampling_check(case_id: str, report: EvidenceChainReport, truth: GroundTruth) -> FieldCheck:
    """The rank-1 target matches when its phenotype or its unit id is the expected one."""
    expected = truth.first_sampling_target
    if not report.sampling_plan:
        agree, outcome = _outcome(expected, None)
        return FieldCheck(case_id, "first_sampling_target", "ground_truth", expected, None, agree, outcome=outcome)
    first = report.sampling_plan[0]
    observed = f"{first.phenotype} ({first.unit_id})"
    agree = None if expected is None else expected in (first.phenotype, first.unit_id)
    outcome = "reference_not_stated" if agree is None else ("agree" if agree else "disagree")
    return FieldCheck(
        case_id,
        "first_sampling_target",
        "ground_truth",
        expected,
        observed,
        agree,
        "ground truth",
        first.reason,
        outcome=outcome,
    )


def text_checks(
    case_id: str,
    report: EvidenceChainReport,
    reference_fields: dict[str, FieldValue],
    unread: set[str] | frozenset[str] = frozenset(),
    truth: GroundTruth | None = None,
) -> list[FieldCheck]:
    """Findings stated in the reference text against those stated in our English narrative."""
    theirs = reference_fields
    ours = extract_fields(narrative_text(report, "en"))
    known = truth_values(truth)
    checks = []
    for name in FIELDS:
        exp, obs = theirs.get(name), ours.get(name)
        exp_value = exp.stated() if exp else None
        obs_value = obs.stated() if obs else None
        agree, outcome = _outcome(exp_value, obs_value, name in unread, known.get(name))
        check = FieldCheck(
            case_id,
            name,
            "reference_text",
            exp_value,
            obs_value,
            agree,
            f"[{exp.certainty}] {exp.evidence}" if exp else "",
            f"[{obs.certainty}] {obs.evidence}" if obs else "",
            outcome=outcome,
        )
        checks += _with_levels(check, known.get(name))
    return checks


def reference_extraction_checks(
    case_id: str, fields: dict[str, FieldValue], truth: GroundTruth, unread: set[str] | frozenset[str] = frozenset()
) -> list[FieldCheck]:
    """How well the fields extracted from a reference text match the truth: a check on the extractor
    and on the references, which says how far the reference_text rows can be trusted. A field the
    text talks about but no value was read for counts as unread, not as silence."""
    stated = {name: (v.stated(), v.evidence) for name, v in fields.items()}
    stated["molecular_subtype"] = (subtype_from_fields(fields), "")
    checks = []
    for name, value in truth_values(truth).items():
        check = _label_check(case_id, name, "ground_truth", (value, "ground truth"), stated.get(name))
        if check.outcome == "report_not_stated":  # here the "report" side is the reference's reading
            missed = any(f in unread for f in TASK_FIELDS.get(name, (name,)))
            check = replace(check, outcome="reference_unread" if missed else "reference_not_stated")
        checks.append(check)
    return checks


# --- aggregation ----------------------------------------------------------------------
def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def summarise(checks: Iterable[FieldCheck], n: int) -> list[FieldAgreement]:
    """One row per (field, versus) over `n` evaluated cases: structured comparisons first,
    text-level ones last, fields in first-seen order."""
    groups: dict[tuple[str, str], list[FieldCheck]] = {}
    for c in sorted(checks, key=lambda c: VERSUS.index(c.versus)):
        groups.setdefault((c.field, c.versus), []).append(c)
    rows = []
    for (name, versus), group in groups.items():
        stated = [c for c in group if c.expected is not None]
        compared = [c for c in stated if c.agree is not None]
        agreed = sum(bool(c.agree) for c in compared)
        overlaps = [c.overlap for c in compared if c.overlap is not None]
        shared, observed, expected = (sum(o[i] for o in overlaps) for i in range(3))
        outcomes = [c.outcome for c in group]
        rows.append(
            FieldAgreement(
                field=name,
                versus=versus,
                n=n,
                stated=len(stated),
                compared=len(compared),
                agreed=agreed,
                coverage=_ratio(len(stated), n),
                report_coverage=_ratio(len(compared), len(stated)),
                agreement=_ratio(agreed, len(compared)),
                precision=_ratio(shared, observed) if overlaps else None,
                recall=_ratio(shared, expected) if overlaps else None,
                report_not_stated=outcomes.count("report_not_stated"),
                reference_unread=outcomes.count("reference_unread"),
                reading_contradicts_truth=outcomes.count("reading_contradicts_truth"),
            )
        )
    return rows


def disagreements(checks: Iterable[FieldCheck]) -> list[FieldCheck]:
    """Checks where both sides state the field and differ, for a person to read case by case."""
    return sorted((c for c in checks if c.agree is False), key=lambda c: (c.case_id, c.versus, c.field))


# --- text similarity (weaker signals) -------------------------------------------------
_CJK = re.compile(r"[\u4e00-\u9fff]")
_CHAR_TOKEN = re.compile(r"[\u4e00-\u9fff]|[a-z0-9]+")


def text_language(text: str) -> str:
    """'zh' when most letters are Chinese characters, else 'en'."""
    letters = sum(ch.isalpha() for ch in text)
    return "zh" if letters and len(_CJK.findall(text)) / letters > 0.3 else "en"


class _CharTokenizer:
    """Chinese ROUGE counts characters; rouge-score's default tokenizer drops non-Latin text."""

    def tokenize(self, text: str) -> list[str]:
        return _CHAR_TOKEN.findall(text.lower())


def rouge_l(reference: str, candidate: str, language: str = "en") -> float:
    """ROUGE-L F-measure (rouge-score): stemmed words for English, characters for Chinese."""
    from rouge_score import rouge_scorer

    scorer = (
        rouge_scorer.RougeScorer(["rougeL"], tokenizer=_CharTokenizer())
        if language == "zh"
        else rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    )
    return float(scorer.score(reference, candidate)["rougeL"].fmeasure)


class TextEmbedder(Protocol):
    """`knowledge.embedders` API: one L2-normalised row per text."""

    def embed(self, texts: list[str]) -> np.ndarray: ...


def embedding_cosine(references: list[str], candidates: list[str], embedder: TextEmbedder) -> list[float]:
    """Cosine of each (reference, candidate) pair; `embedder.embed` returns L2-normalised rows.
    The encoder reads only the first few hundred tokens of each text."""
    if not references:
        return []
    vectors = embedder.embed([*references, *candidates])
    a, b = vectors[: len(references)], vectors[len(references) :]
    return np.sum(a * b, axis=1).astype(float).tolist()


def text_similarity(
    pairs: list[tuple[str, Reference, EvidenceChainReport]], embedder: TextEmbedder | None = None
) -> list[TextSimilarity]:
    """ROUGE-L and (with an embedder) cosine of each reference text against our narrative in its language."""
    usable = [(cid, ref, rep) for cid, ref, rep in pairs if ref.text.strip()]
    languages = [text_language(ref.text) for _, ref, _ in usable]
    candidates = [narrative_text(rep, lang) for (_, _, rep), lang in zip(usable, languages, strict=True)]
    references = [ref.text for _, ref, _ in usable]
    cosines = embedding_cosine(references, candidates, embedder) if embedder is not None else [None] * len(usable)
    return [
        TextSimilarity(cid, lang, rouge_l(ref_text, cand, lang), cos)
        for (cid, _, _), lang, ref_text, cand, cos in zip(
            usable, languages, references, candidates, cosines, strict=True
        )
    ]
