"""Compare generated reports with references and ground truth: field by field, then as text.

Field-level checks are the evidence that matters; ROUGE-L and embedding cosine are
weaker signals (wording, not meaning) and are kept apart from them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from evals.references import INSUFFICIENT, GroundTruth, Reference
from evals.text_fields import FIELDS, LABEL_NORMALISERS, FieldValue, extract_fields, subtype_from_fields
from schemas.report import EvidenceChainReport

VERSUS = ("reference", "ground_truth", "reference_text")


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
def _label_check(
    case_id: str,
    task: str,
    versus: str,
    expected: tuple[str | None, str] | None,
    observed: tuple[str | None, str] | None,
) -> FieldCheck:
    exp, exp_ev = expected or (None, "")
    obs, obs_ev = observed or (None, "")
    agree = None if exp is None or obs is None else exp == obs
    return FieldCheck(case_id, task, versus, exp, obs, agree, exp_ev, obs_ev)


def _show(values: frozenset[str]) -> str:
    return ", ".join(sorted(values)) or "(none)"


def _set_check(
    case_id: str, name: str, versus: str, expected: frozenset[str] | None, observed: frozenset[str], source: str
) -> FieldCheck:
    if expected is None:
        return FieldCheck(case_id, name, versus, None, _show(observed), None)
    return FieldCheck(
        case_id,
        name,
        versus,
        _show(expected),
        _show(observed),
        expected == observed,
        expected_evidence=source,
        overlap=(len(expected & observed), len(observed), len(expected)),
    )


def structured_checks(
    case_id: str,
    report: EvidenceChainReport,
    reference: Reference | None,
    reference_fields: dict[str, FieldValue],
    truth: GroundTruth | None,
) -> list[FieldCheck]:
    """Labels, flag kinds, first sampling target and modalities against the reference and the truth.
    `reference_fields` is `extract_fields(reference.text)`."""
    ours = report_labels(report)
    flags = frozenset(f.kind for f in report.consistency_flags)
    checks = []
    if reference is not None:
        theirs = reference_labels(reference, reference_fields)
        checks += [_label_check(case_id, t, "reference", theirs.get(t), ours.get(t)) for t in LABEL_NORMALISERS]
        checks.append(_set_check(case_id, "flag_kinds", "reference", reference.flag_kinds, flags, reference.file))
    if truth is not None:
        truths = {"grade": truth.grade, "molecular_subtype": truth.subtype}
        checks += [
            _label_check(case_id, t, "ground_truth", (truths[t], "ground truth") if truths[t] else None, ours.get(t))
            for t in LABEL_NORMALISERS
        ]
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
        return FieldCheck(case_id, "first_sampling_target", "ground_truth", expected, None, None)
    first = report.sampling_plan[0]
    observed = f"{first.phenotype} ({first.unit_id})"
    agree = None if expected is None else expected in (first.phenotype, first.unit_id)
    return FieldCheck(
        case_id, "first_sampling_target", "ground_truth", expected, observed, agree, "ground truth", first.reason
    )


def text_checks(case_id: str, report: EvidenceChainReport, reference_fields: dict[str, FieldValue]) -> list[FieldCheck]:
    """Findings stated in the reference text against those stated in our English narrative."""
    theirs = reference_fields
    ours = extract_fields(narrative_text(report, "en"))
    checks = []
    for name in FIELDS:
        exp, obs = theirs.get(name), ours.get(name)
        exp_value = exp.stated() if exp else None
        obs_value = obs.stated() if obs else None
        agree = None if exp_value is None or obs_value is None else exp_value == obs_value
        checks.append(
            FieldCheck(
                case_id,
                name,
                "reference_text",
                exp_value,
                obs_value,
                agree,
                f"[{exp.certainty}] {exp.evidence}" if exp else "",
                f"[{obs.certainty}] {obs.evidence}" if obs else "",
            )
        )
    return checks


def reference_extraction_checks(case_id: str, fields: dict[str, FieldValue], truth: GroundTruth) -> list[FieldCheck]:
    """How well the fields extracted from a reference text match the truth: a check on the extractor
    and on the references, which says how far the reference_text rows can be trusted."""
    known = {"grade": truth.grade, "molecular_subtype": truth.subtype, **truth.text_fields}
    stated = {name: (v.stated(), v.evidence) for name, v in fields.items()}
    stated["molecular_subtype"] = (subtype_from_fields(fields), "")
    return [
        _label_check(case_id, name, "ground_truth", (value, "ground truth"), stated.get(name))
        for name, value in known.items()
        if value is not None
    ]


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
