"""The TCGA glioma cohort (case bundles + `labels.csv`) as arrays, loaded once per folder.

Each case is read with the same loaders as a report (`load_manifest`, `load_genomics`)
and turned into a row by `features.case_vector`, so that training sees exactly the
values inference will see.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from fusion_models.genomics.io import load_genomics
from fusion_models.inputs import load_manifest
from fusion_models.tcga.features import CNV, EXPR, MUT, case_values, case_vector, feature_names
from schemas.errors import InputError

LABELS_FILE = "labels.csv"
CASES_DIR = "cases"
GRADES: tuple[str, ...] = ("G2", "G3", "G4")
SUBTYPES: tuple[str, ...] = ("IDHwt", "IDHmut-codel", "IDHmut-non-codel")
LABEL_COLUMNS = ("case_id", "who_grade", "idh_codel_subtype", "survival_months", "event")
# Classification task (the report's `task`) -> its candidate labels, in the order of every probability array.
TASK_LABELS: dict[str, tuple[str, ...]] = {"grade": GRADES, "molecular_subtype": SUBTYPES}


@dataclass(frozen=True)
class Cohort:
    """Features and labels of n cases; arrays are read-only because cohorts are cached and shared."""

    root: Path
    case_ids: tuple[str, ...]
    feature_names: tuple[str, ...]
    X: np.ndarray  # (n, F) raw values (expression asinh-transformed), NaN = not measured
    grade: np.ndarray  # (n,) object: "G2"/"G3"/"G4" or None
    subtype: np.ndarray  # (n,) object: one of SUBTYPES or None
    survival_months: np.ndarray  # (n,) float
    event: np.ndarray  # (n,) bool

    def __len__(self) -> int:
        return len(self.case_ids)

    def case_dir(self, i: int) -> Path:
        return self.root / CASES_DIR / self.case_ids[i]

    def column(self, name: str) -> np.ndarray:
        return self.X[:, self.feature_names.index(name)]

    def labels(self, task: str) -> np.ndarray:
        """Per case the index of its label in TASK_LABELS[task], -1 when unknown."""
        values = {"grade": self.grade, "molecular_subtype": self.subtype}[task]
        order = TASK_LABELS[task]
        return np.array([order.index(v) if v is not None else -1 for v in values], dtype=np.int64)

    def subset(self, index: np.ndarray) -> Cohort:
        index = np.asarray(index)
        return replace(
            self,
            case_ids=tuple(self.case_ids[i] for i in index),
            X=_frozen(self.X[index]),
            grade=_frozen(self.grade[index]),
            subtype=_frozen(self.subtype[index]),
            survival_months=_frozen(self.survival_months[index]),
            event=_frozen(self.event[index]),
        )


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    array.setflags(write=False)
    return array


def _label_error(field: str, line: int, message: str) -> InputError:
    return InputError(LABELS_FILE, field, f"line {line}: {message}")


def _optional_label(value: object, allowed: tuple[str, ...], field: str, line: int) -> str | None:
    if pd.isna(value):
        return None
    if value not in allowed:
        raise _label_error(field, line, f"{value!r} is not one of {list(allowed)}")
    return str(value)


def read_labels(path: Path) -> pd.DataFrame:
    """`labels.csv` checked: known grade/subtype values (or empty), survival >= 0, event 0/1."""
    try:
        table = pd.read_csv(path, dtype={"case_id": str})
    except FileNotFoundError:
        raise InputError(LABELS_FILE, "file", f"not found at {path}") from None
    missing = [c for c in LABEL_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(LABELS_FILE, missing[0], "missing column")
    rows = []
    for line, row in enumerate(table[list(LABEL_COLUMNS)].itertuples(index=False), start=2):
        months, event = row.survival_months, row.event
        if pd.isna(months) or not months >= 0:
            raise _label_error("survival_months", line, f"expected a number >= 0, got {months!r}")
        if event not in (0, 1):
            raise _label_error("event", line, f"expected 0 or 1, got {event!r}")
        rows.append(
            {
                "case_id": row.case_id,
                "grade": _optional_label(row.who_grade, GRADES, "who_grade", line),
                "subtype": _optional_label(row.idh_codel_subtype, SUBTYPES, "idh_codel_subtype", line),
                "survival_months": float(months),
                "event": bool(event),
            }
        )
    labels = pd.DataFrame(rows)
    duplicated = labels["case_id"][labels["case_id"].duplicated()]
    if len(duplicated):
        raise InputError(LABELS_FILE, "case_id", f"duplicate case id {duplicated.iloc[0]}")
    return labels.set_index("case_id")


def _cohort_names(values: list[dict[str, float]]) -> list[str]:
    """Features measured in at least one case, blocks in a fixed order, genes sorted."""
    seen = set().union(*values)

    def genes(prefix: str) -> list[str]:
        return sorted(n[len(prefix):] for n in seen if n.startswith(prefix))

    return feature_names(genes(EXPR), genes(CNV), genes(MUT))


@lru_cache(maxsize=2)
def _load(root: Path) -> Cohort:
    labels = read_labels(root / LABELS_FILE)
    loaded = []
    for case_id in labels.index:
        case_dir = root / CASES_DIR / case_id
        if not case_dir.is_dir():
            raise InputError(LABELS_FILE, "case_id", f"{case_id} has no case folder under {CASES_DIR}/")
        manifest = load_manifest(case_dir)
        genomics, unusable = load_genomics(case_dir)
        if unusable:  # training data must be whole: a broken file is an error here, not a missing modality
            first = unusable[0]
            field, _, message = first.reason.removeprefix(f"{first.file}: ").partition(": ")
            raise InputError(f"{CASES_DIR}/{case_id}/{first.file}", field, message)
        loaded.append((genomics, manifest))
    names = _cohort_names([case_values(g, m) for g, m in loaded])
    X = np.stack([case_vector(g, m, names) for g, m in loaded])
    return Cohort(
        root=root,
        case_ids=tuple(labels.index),
        feature_names=tuple(names),
        X=_frozen(X),
        grade=_frozen(labels["grade"].to_numpy(dtype=object)),
        subtype=_frozen(labels["subtype"].to_numpy(dtype=object)),
        survival_months=_frozen(labels["survival_months"].to_numpy(dtype=float)),
        event=_frozen(labels["event"].to_numpy(dtype=bool)),
    )


def load_cohort(root: Path) -> Cohort:
    """`root/labels.csv` and `root/cases/<case_id>/`; cached per resolved folder."""
    return _load(Path(root).resolve())


def patient_id(case_id: str) -> str:
    """TCGA participant barcode (project-TSS-participant): samples of one patient share it."""
    return "-".join(case_id.split("-")[:3])


def strata(cohort: Cohort, min_size: int) -> np.ndarray:
    """Subtype x grade per case ('NA' when unknown).

    Strata smaller than `min_size` are pooled, and a pool still too small joins the
    largest stratum, so that every stratum can reach every fold.
    """
    keys = np.array([f"{s or 'NA'}|{g or 'NA'}" for s, g in zip(cohort.subtype, cohort.grade, strict=True)])
    counts = Counter(keys.tolist())
    small = np.array([counts[k] < min_size for k in keys])
    pooled = counts.most_common(1)[0][0] if small.sum() < min_size else "pooled"
    return np.where(small, pooled, keys)


def stratified_folds(cohort: Cohort, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Patient-level folds stratified on subtype x grade: (train indices, held-out indices) per fold."""
    groups = [patient_id(c) for c in cohort.case_ids]
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(cohort)), strata(cohort, n_folds), groups))
