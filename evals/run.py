"""`evchain eval`: evaluate a folder of generated reports against a cohort's references and truth."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evals import compare
from evals.compare import FieldAgreement, FieldCheck, TextSimilarity
from evals.metrics import (
    ClassificationSummary,
    Interval,
    SurvivalSummary,
    accuracy,
    bootstrap_ci,
    classification_summary,
    concordance_index,
    survival_summary,
)
from evals.references import GroundTruth, Reference, case_dirs, load_ground_truth, load_reference, load_report
from evals.report import format_table, write_eval_report
from evals.text_fields import DIAGNOSES, GRADES, SUBTYPES, FieldValue, extract_fields, unread_fields
from schemas.common import MODALITIES
from schemas.errors import InputError
from schemas.report import Conclusion, EvidenceChainReport

# Canonical class order per task, and the adverse class a decision curve treats as positive.
TASK_CLASSES: dict[str, tuple[str, ...]] = {
    "diagnosis": tuple(DIAGNOSES),
    "grade": GRADES[1:],
    "molecular_subtype": SUBTYPES,
}
DECISION_POSITIVE: dict[str, str] = {
    "diagnosis": "Glioblastoma, IDH-wildtype, CNS WHO grade 4",
    "grade": "G4",
    "molecular_subtype": "IDHwt",
}
UNASSIGNED = "unassigned"

__all__ = ["EvalResult", "ModalityGroup", "format_table", "run_eval"]


@dataclass(frozen=True)
class ModalityGroup:
    """Results for the cases that had one combination of modalities."""

    modalities: str
    n: int
    accuracy: dict[str, float | None]  # task -> accuracy against the truth
    c_index: float | None


@dataclass
class EvalResult:
    cohort_dir: str
    reports_dir: str
    ground_truth_file: str | None
    n_cases: int
    n_reports: int
    missing_reports: list[str]
    unreadable_reports: dict[str, str]  # case id -> error naming file and field
    # References skipped with the reason (case id -> error naming file and field), and those
    # read in another encoding than UTF-8 (case id -> encoding): the eval goes on either way.
    unreadable_references: dict[str, str]
    reference_encodings: dict[str, str]
    agreement: list[FieldAgreement]
    reference_extraction: list[FieldAgreement]  # reference text vs truth: how far references can be trusted
    disagreements: list[FieldCheck]
    checks: list[FieldCheck]
    text_similarity: list[TextSimilarity]
    text_similarity_mean: dict[str, Interval | None]
    classification: dict[str, ClassificationSummary] = field(default_factory=dict)
    survival: SurvivalSummary | None = None
    modality_breakdown: list[ModalityGroup] = field(default_factory=list)
    missing_modality_rate: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Case:
    """A case with a readable report, and what is known about it."""

    case_id: str
    report: EvidenceChainReport
    reference: Reference | None
    truth: GroundTruth | None

    def conclusion(self, task: str) -> Conclusion | None:
        return next((c for c in self.report.conclusions if c.task == task), None)

    def truth_label(self, task: str) -> str | None:
        return compare.truth_values(self.truth).get(task)

    def modalities(self) -> str:
        return "+".join(sorted(self.report.modalities.present)) or "(none)"


@dataclass
class _Cohort:
    cases: list[_Case] = field(default_factory=list)
    references: dict[str, Reference] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    unreadable_references: dict[str, str] = field(default_factory=dict)


def _load(cohort_dir: Path, reports_dir: Path, truths: dict[str, GroundTruth]) -> _Cohort:
    """Every case folder's reference and report; a missing or unreadable report or reference is
    listed, not fatal: the case is still scored against the truth."""
    cohort = _Cohort()
    for case_dir in case_dirs(cohort_dir):
        case_id = case_dir.name
        try:
            reference = load_reference(case_dir)
        except InputError as err:
            cohort.unreadable_references[case_id] = str(err)
            reference = None
        if reference is not None:
            cohort.references[case_id] = reference
        try:
            report = load_report(reports_dir, case_id)
        except InputError as err:
            cohort.unreadable[case_id] = str(err)
            continue
        if report is None:
            cohort.missing.append(case_id)
        else:
            cohort.cases.append(_Case(case_id, report, reference, truths.get(case_id)))
    return cohort


def run_eval(
    cohort_dir: Path,
    reports_dir: Path,
    out_dir: Path | None = None,
    *,
    embedder: str | None = "minilm",
    n_boot: int = 1000,
    seed: int = 0,
) -> EvalResult:
    """Compare every case's report with its reference and truth; write the eval report to `out_dir`
    when given. `embedder` names a `knowledge.embedders` model for cosine similarity (None: skip)."""
    cohort_dir, reports_dir = Path(cohort_dir), Path(reports_dir)
    if not reports_dir.is_dir():
        raise InputError(str(reports_dir), "REPORTS_DIR", "not a folder")
    truth_file, truths = load_ground_truth(cohort_dir)
    cohort = _load(cohort_dir, reports_dir, truths)
    fields = {case_id: extract_fields(ref.text) for case_id, ref in cohort.references.items()}
    unread = {case_id: unread_fields(cohort.references[case_id].text, f) for case_id, f in fields.items()}
    checks = _checks(cohort.cases, fields, unread)
    extraction = [
        c
        for case_id in fields
        if case_id in truths
        for c in compare.reference_extraction_checks(case_id, fields[case_id], truths[case_id], unread[case_id])
    ]
    similarity = compare.text_similarity(
        [(c.case_id, c.reference, c.report) for c in cohort.cases if c.reference is not None], _embedder(embedder)
    )
    result = EvalResult(
        cohort_dir=str(cohort_dir),
        reports_dir=str(reports_dir),
        ground_truth_file=truth_file,
        n_cases=len(cohort.missing) + len(cohort.unreadable) + len(cohort.cases),
        n_reports=len(cohort.cases),
        missing_reports=cohort.missing,
        unreadable_reports=cohort.unreadable,
        unreadable_references=cohort.unreadable_references,
        reference_encodings={k: r.encoding for k, r in cohort.references.items() if r.encoding != "utf-8"},
        agreement=compare.summarise(checks, len(cohort.cases)),
        reference_extraction=compare.summarise(extraction, sum(case_id in truths for case_id in fields)),
        disagreements=compare.disagreements(checks),
        checks=checks,
        text_similarity=similarity,
        text_similarity_mean=_similarity_means(similarity, n_boot, seed),
        classification=_classification(cohort.cases, n_boot, seed),
        survival=_survival(cohort.cases, n_boot, seed),
        modality_breakdown=_modality_breakdown(cohort.cases),
        missing_modality_rate=_missing_rate(cohort.cases),
    )
    if out_dir is not None:
        write_eval_report(result, Path(out_dir))
    return result


def _checks(
    cases: list[_Case], fields: dict[str, dict[str, FieldValue]], unread: dict[str, set[str]]
) -> list[FieldCheck]:
    checks = []
    for c in cases:
        missed = unread.get(c.case_id, set())
        checks += compare.structured_checks(
            c.case_id, c.report, c.reference, fields.get(c.case_id, {}), c.truth, missed
        )
        if c.reference is not None:
            checks += compare.text_checks(c.case_id, c.report, fields[c.case_id], missed, c.truth)
    return checks


def _embedder(name: str | None) -> compare.TextEmbedder | None:
    if name is None:
        return None
    from knowledge.embedders import create_embedder

    return create_embedder(name)


def _mean_ci(values: list[float], n_boot: int, seed: int) -> Interval | None:
    arr = np.asarray(values, dtype=float)
    return bootstrap_ci(lambda ix: float(arr[ix].mean()), len(arr), n_boot, seed) if len(arr) else None


def _similarity_means(similarity: list[TextSimilarity], n_boot: int, seed: int) -> dict[str, Interval | None]:
    return {
        metric: _mean_ci([v for s in similarity if (v := getattr(s, metric)) is not None], n_boot, seed)
        for metric in ("rouge_l", "cosine")
    }


# --- model metrics against the truth ---------------------------------------------------
def _task_classes(task: str, cases: list[_Case]) -> list[str]:
    seen = {k for c in cases if (con := c.conclusion(task)) for k in con.class_probabilities}
    canonical = [k for k in TASK_CLASSES[task] if k in seen]
    return canonical + sorted(seen - set(canonical))


def _labelled(cases: list[_Case], task: str) -> list[tuple[str, Conclusion]]:
    """(true label, reported conclusion) of every case that has both."""
    return [
        (label, con)
        for c in cases
        if (label := c.truth_label(task)) is not None and (con := c.conclusion(task)) is not None
    ]


def _classification(cases: list[_Case], n_boot: int, seed: int) -> dict[str, ClassificationSummary]:
    out = {}
    for task in TASK_CLASSES:
        rows = [(label, con) for label, con in _labelled(cases, task) if con.class_probabilities]
        if not rows:
            continue
        classes = _task_classes(task, cases)
        out[task] = classification_summary(
            task,
            [label for label, _ in rows],
            [con.label for _, con in rows],
            np.asarray([[con.class_probabilities.get(k, 0.0) for k in classes] for _, con in rows]),
            classes,
            DECISION_POSITIVE.get(task),
            n_boot,
            seed,
        )
    return out


@dataclass(frozen=True)
class _SurvivalRow:
    months: float
    event: bool
    score: float
    group: str
    modalities: str


def _survival_rows(cases: list[_Case]) -> list[_SurvivalRow]:
    rows = []
    for c in cases:
        risk = c.conclusion("risk")
        t = c.truth
        if t is None or t.survival_months is None or t.event is None or risk is None or risk.score is None:
            continue
        rows.append(_SurvivalRow(t.survival_months, t.event, risk.score, risk.risk_group or UNASSIGNED, c.modalities()))
    return rows


def _survival(cases: list[_Case], n_boot: int, seed: int) -> SurvivalSummary | None:
    rows = _survival_rows(cases)
    if not rows:
        return None
    return survival_summary(
        [r.months for r in rows],
        [r.event for r in rows],
        [r.score for r in rows],
        [r.group for r in rows],
        n_boot,
        seed,
    )


def _c_index(rows: list[_SurvivalRow]) -> float | None:
    try:
        return concordance_index([r.months for r in rows], [r.event for r in rows], [r.score for r in rows])
    except ValueError:  # no comparable pair in this group
        return None


def _modality_breakdown(cases: list[_Case]) -> list[ModalityGroup]:
    """Accuracy and C-index per combination of modalities present: the effect of what was missing."""
    survival = _survival_rows(cases)
    groups = []
    for key in sorted({c.modalities() for c in cases}):
        members = [c for c in cases if c.modalities() == key]
        acc: dict[str, float | None] = {}
        for task in TASK_CLASSES:
            pairs = _labelled(members, task)
            acc[task] = accuracy([label for label, _ in pairs], [con.label for _, con in pairs]) if pairs else None
        groups.append(ModalityGroup(key, len(members), acc, _c_index([r for r in survival if r.modalities == key])))
    return groups


def _missing_rate(cases: list[_Case]) -> dict[str, float]:
    """Share of reports in which each modality did not contribute (missing or unusable)."""
    if not cases:
        return {}
    return {m: sum(m not in c.report.modalities.present for c in cases) / len(cases) for m in MODALITIES}
