"""The TCGA glioma cohort (case bundles + `labels.csv`) as arrays, loaded once per folder.

Each case is read with the same loaders as a report (`load_manifest`, `load_genomics`)
and turned into a row by `features.case_vector`, so that training sees exactly the
values inference will see.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from fusion_models.genomics.io import load_genomics
from fusion_models.inputs import load_manifest
from fusion_models.tcga.features import CNV, EXPR, MUT, case_values, case_vector, feature_names
from schemas.errors import InputError

LABELS_FILE = "labels.csv"
CASES_DIR = "cases"
GRADES: tuple[str, ...] = ("G2", "G3", "G4")
SUBTYPES: tuple[str, ...] = ("IDHwt", "IDHmut-codel", "IDHmut-non-codel")
LABEL_COLUMNS = ("case_id", "who_grade", "idh_codel_subtype", "survival_months", "event")


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
        if unusable:
            raise InputError(f"{CASES_DIR}/{case_id}/{unusable[0].file}", "genomics", unusable[0].reason)
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
