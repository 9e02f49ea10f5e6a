"""Eval inputs: the cohort's case folders, reference reports, ground truth and generated reports.

Ground truth comes from a file beside the cases; each supported file has a loader
registered under its file name (`ground_truth.json` from the demo, `labels.csv`
from the TCGA cohort).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from evals.text_fields import LABEL_NORMALISERS, normalise_diagnosis, normalise_grade, normalise_subtype
from schemas.errors import InputError
from schemas.reference import ReferenceReport
from schemas.report import EvidenceChainReport
from toolkit.registry import Registry

REFERENCE_FILES = ("reference_report.json", "reference_report.txt", "reference_report.md")
# Encodings tried in turn for a reference: clinicians' Chinese systems still save GBK/GB18030.
REFERENCE_ENCODINGS = ("utf-8-sig", "gb18030")
REPORT_FILE = "report.json"
INSUFFICIENT = "insufficient_evidence"


@dataclass(frozen=True)
class Reference:
    """A clinician's reference for one case, structured or free text."""

    case_id: str
    file: str  # relative to the cohort's case root, for messages
    text: str
    structured: bool
    conclusions: dict[str, str] = field(default_factory=dict)  # task -> label (structured only)
    flag_kinds: frozenset[str] | None = None  # None: free text does not state flags
    encoding: str = "utf-8"


@dataclass(frozen=True)
class GroundTruth:
    """What is known to be true of a case; any field may be unknown (None)."""

    case_id: str
    grade: str | None = None
    subtype: str | None = None
    diagnosis: str | None = None  # WHO CNS5 integrated diagnosis, in evals.text_fields.DIAGNOSES
    survival_months: float | None = None
    event: bool | None = None
    situation: str | None = None
    flag_kinds: frozenset[str] | None = None
    first_sampling_target: str | None = None
    modalities_present: frozenset[str] | None = None
    # histology / idh / codeletion_1p19q / mgmt in the vocabulary of evals.text_fields.
    text_fields: dict[str, str] = field(default_factory=dict)


def _first_error(err: ValidationError) -> tuple[str, str]:
    first = err.errors()[0]
    return ".".join(str(p) for p in first["loc"]) or "(root)", first["msg"]


# --- cohort ---------------------------------------------------------------------------
def case_root(cohort_dir: Path) -> Path:
    """`COHORT_DIR/cases` when it exists, else COHORT_DIR itself."""
    if not cohort_dir.is_dir():
        raise InputError(str(cohort_dir), "COHORT_DIR", "not a folder")
    nested = cohort_dir / "cases"
    return nested if nested.is_dir() else cohort_dir


def case_dirs(cohort_dir: Path) -> list[Path]:
    """Case folders of the cohort, sorted by name (hidden folders skipped)."""
    root = case_root(cohort_dir)
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


# --- references -----------------------------------------------------------------------
def load_reference(case_dir: Path) -> Reference | None:
    """The case's reference report (JSON first, then .txt, then .md), or None when there is none.
    Raises InputError naming file and field when the reference cannot be read."""
    for name in REFERENCE_FILES:
        path = case_dir / name
        if path.is_file():
            rel = f"{case_dir.name}/{name}"
            text, encoding = decode_reference(path.read_bytes(), rel)
            return (
                _structured_reference(text, encoding, rel, case_dir.name)
                if name.endswith(".json")
                else Reference(case_id=case_dir.name, file=rel, text=text, structured=False, encoding=encoding)
            )
    return None


def decode_reference(data: bytes, rel: str) -> tuple[str, str]:
    """(text, encoding): UTF-8 (a BOM allowed), else GB18030, the superset of GBK and GB2312."""
    for encoding in REFERENCE_ENCODINGS:
        try:
            return data.decode(encoding), encoding.removesuffix("-sig")
        except UnicodeDecodeError:
            continue
    raise InputError(rel, "(file)", f"not text in any of {', '.join(REFERENCE_ENCODINGS)}")


def _read_text(path: Path, rel: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(rel, "(file)", f"not UTF-8 text ({err.reason} at byte {err.start})") from err


def _structured_reference(text: str, encoding: str, rel: str, case_id: str) -> Reference:
    try:
        ref = ReferenceReport.model_validate_json(text)
    except ValidationError as err:
        raise InputError(rel, *_first_error(err)) from err
    if ref.case_id != case_id:
        raise InputError(rel, "case_id", f"{ref.case_id!r} does not match the case folder {case_id!r}")
    for i, c in enumerate(ref.conclusions):
        if c.task in LABEL_NORMALISERS and c.label != INSUFFICIENT and LABEL_NORMALISERS[c.task](c.label) is None:
            raise InputError(rel, f"conclusions.{i}.label", f"unrecognised {c.task} label {c.label!r}")
    return Reference(
        case_id=case_id,
        file=rel,
        text=ref.text,
        structured=True,
        conclusions={c.task: c.label for c in ref.conclusions},
        flag_kinds=frozenset(f.kind for f in ref.consistency_flags),
        encoding=encoding,
    )


# --- generated reports ----------------------------------------------------------------
def load_report(reports_dir: Path, case_id: str) -> EvidenceChainReport | None:
    """`REPORTS_DIR/<case_id>/report.json`, or None when the case has no report."""
    path = reports_dir / case_id / REPORT_FILE
    if not path.is_file():
        return None
    rel = f"{case_id}/{REPORT_FILE}"
    try:
        return EvidenceChainReport.model_validate_json(_read_text(path, rel))
    except ValidationError as err:
        raise InputError(rel, *_first_error(err)) from err


# --- ground truth ---------------------------------------------------------------------
GroundTruthLoader = Callable[[Path], dict[str, GroundTruth]]
_GROUND_TRUTH: Registry[GroundTruthLoader] = Registry("ground-truth file")


def register_ground_truth(file_name: str) -> Callable[[GroundTruthLoader], GroundTruthLoader]:
    """Register a loader for a ground-truth file of this name beside the cases."""
    return _GROUND_TRUTH.register(file_name)


def list_ground_truth_files() -> list[str]:
    """Ground-truth file names in the order `load_ground_truth` tries them."""
    return list(_GROUND_TRUTH)


def load_ground_truth(cohort_dir: Path) -> tuple[str | None, dict[str, GroundTruth]]:
    """(file name, case id -> truth) from the first registered file present in COHORT_DIR."""
    for name, loader in _GROUND_TRUTH.items():
        path = cohort_dir / name
        if path.is_file():
            return name, loader(path)
    return None, {}


class _DemoExpected(BaseModel):
    model_config = ConfigDict(extra="ignore")

    flag_kinds: list[str] | None = None
    first_sampling_target: str | None = None
    modalities_present: list[str] | None = None


class _DemoCase(BaseModel):
    model_config = ConfigDict(extra="ignore")

    diagnosis: str | None = None
    grade: str | int | None = None
    subtype: str | None = None
    situation: str | None = None
    survival_months: float | None = None
    event: bool | None = None
    expected: _DemoExpected = _DemoExpected()


class _DemoTruth(BaseModel):
    model_config = ConfigDict(extra="ignore")

    cases: dict[str, _DemoCase]


def _label(value: str | int | None, normalise: Callable[[str | None], str | None], file: str, where: str) -> str | None:
    if value is None or value == "":
        return None
    label = normalise(str(value))
    if label is None:
        raise InputError(file, where, f"unrecognised label {value!r}")
    return label


@register_ground_truth("ground_truth.json")
def _demo_ground_truth(path: Path) -> dict[str, GroundTruth]:
    try:
        truth = _DemoTruth.model_validate(json.loads(_read_text(path, path.name)))
    except (ValidationError, json.JSONDecodeError) as err:
        where, msg = _first_error(err) if isinstance(err, ValidationError) else ("(file)", str(err))
        raise InputError(path.name, where, msg) from err
    out = {}
    for case_id, c in truth.cases.items():
        e = c.expected
        out[case_id] = GroundTruth(
            case_id=case_id,
            diagnosis=_label(c.diagnosis, normalise_diagnosis, path.name, f"cases.{case_id}.diagnosis"),
            grade=_label(c.grade, normalise_grade, path.name, f"cases.{case_id}.grade"),
            subtype=_label(c.subtype, normalise_subtype, path.name, f"cases.{case_id}.subtype"),
            survival_months=c.survival_months,
            event=c.event,
            situation=c.situation,
            flag_kinds=None if e.flag_kinds is None else frozenset(e.flag_kinds),
            first_sampling_target=e.first_sampling_target,
            modalities_present=None if e.modalities_present is None else frozenset(e.modalities_present),
        )
    return out


# labels.csv columns -> text_fields vocabulary
_LABELS_CSV_TEXT_FIELDS: dict[str, tuple[str, dict[str, str]]] = {
    "histology": (
        "histology",
        {h: h for h in ("glioblastoma", "astrocytoma", "oligodendroglioma", "oligoastrocytoma")},
    ),
    "idh_status": ("idh", {"Mutant": "mutant", "WT": "wildtype"}),
    "codeletion_1p19q": ("codeletion_1p19q", {"codel": "codeleted", "non-codel": "intact"}),
    "mgmt_promoter": ("mgmt", {"Methylated": "methylated", "Unmethylated": "unmethylated"}),
}


def _float_cell(row: dict[str, str], column: str, where: str) -> float | None:
    raw = (row.get(column) or "").strip()
    if raw in ("", "NA", "NaN", "nan"):
        return None
    try:
        return float(raw)
    except ValueError as err:
        raise InputError("labels.csv", where, f"{column} is not a number: {raw!r}") from err


@register_ground_truth("labels.csv")
def _labels_csv(path: Path) -> dict[str, GroundTruth]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "case_id" not in reader.fieldnames:
            raise InputError(path.name, "case_id", "header has no case_id column")
        rows = list(reader)
    out = {}
    for line, row in enumerate(rows, start=2):
        case_id = row["case_id"].strip()
        where = f"line {line}"
        event = _float_cell(row, "event", where)
        text_fields = {}
        for column, (name, mapping) in _LABELS_CSV_TEXT_FIELDS.items():
            raw = (row.get(column) or "").strip()
            if raw:
                if raw not in mapping:
                    raise InputError(path.name, f"{where}: {column}", f"unrecognised value {raw!r}")
                text_fields[name] = mapping[raw]
        out[case_id] = GroundTruth(
            case_id=case_id,
            grade=_label(row.get("who_grade"), normalise_grade, path.name, f"{where}: who_grade"),
            subtype=_label(row.get("idh_codel_subtype"), normalise_subtype, path.name, f"{where}: idh_codel_subtype"),
            survival_months=_float_cell(row, "survival_months", where),
            event=None if event is None else bool(event),
            text_fields=text_fields,
        )
    return out
