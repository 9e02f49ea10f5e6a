"""The one definition of the linear model's input vector: genomics and clinical values by name.

Names carry their block as a prefix (`expr:`, `cnv:`, `mut:`, `clin:`) so that a
coefficient can be traced back to the input file it reads and credited to its modality.
A value that was not measured is NaN; the model fills it with its training mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fusion_models.genomics.io import FILES, GENOMICS_DIR, GenomicsInput
from schemas.case import CaseManifest
from schemas.common import Modality
from schemas.errors import InputError

EXPRESSION_SCALE = "zscore"
EXPR, CNV, MUT, CLIN = "expr:", "cnv:", "mut:", "clin:"
CLINICAL_FEATURES: tuple[str, ...] = (f"{CLIN}age_years", f"{CLIN}sex_male")
PREFIX_MODALITY: dict[str, Modality] = {EXPR: "genomics", CNV: "genomics", MUT: "genomics", CLIN: "clinical"}
SEX_MALE = {"M": 1.0, "F": 0.0}


def modality_of(name: str) -> Modality:
    return PREFIX_MODALITY[name[: name.index(":") + 1]]


def transform_expression(z: np.ndarray) -> np.ndarray:
    """asinh of the z-score: linear within about +-1, logarithmic beyond.

    cBioPortal z-scores against diploid samples reach several thousand for genes that are
    almost silent in the reference; untransformed, one such case dominates a linear fit.
    """
    return np.arcsinh(np.asarray(z, dtype=np.float64))


def feature_names(genes: Sequence[str], cnv_genes: Sequence[str], mutation_genes: Sequence[str]) -> list[str]:
    return [
        *(EXPR + g for g in genes),
        *(CNV + g for g in cnv_genes),
        *(MUT + g for g in mutation_genes),
        *CLINICAL_FEATURES,
    ]


def case_values(genomics: GenomicsInput | None, manifest: CaseManifest) -> dict[str, float]:
    """Every value a case measures, by feature name (mutations: only the genes it lists, as 1)."""
    values: dict[str, float] = {}
    age = manifest.age_years()
    if age is not None:
        values[f"{CLIN}age_years"] = age
    if manifest.sex in SEX_MALE:
        values[f"{CLIN}sex_male"] = SEX_MALE[manifest.sex]
    if genomics is None:
        return values
    if genomics.expression is not None:
        if genomics.expression_scale != EXPRESSION_SCALE:
            raise InputError(
                f"{GENOMICS_DIR}/{FILES['meta']}", "expression_scale",
                f"the model reads {EXPRESSION_SCALE!r} expression, this case has {genomics.expression_scale!r}",
            )
        transformed = transform_expression(genomics.expression.to_numpy())
        values.update(zip((EXPR + g for g in genomics.expression.index), transformed.tolist(), strict=True))
    if genomics.cnv is not None:
        values.update(zip((CNV + g for g in genomics.cnv.index), genomics.cnv.astype(float).tolist(), strict=True))
    if genomics.mutations is not None:
        values.update({MUT + g: 1.0 for g in genomics.mutations["gene"].astype(str)})
    return values


def case_vector(genomics: GenomicsInput | None, manifest: CaseManifest, names: Sequence[str]) -> np.ndarray:
    """The case's values in the order of `names`; NaN where not measured.

    A panel gene missing from a present mutations.tsv is wild type (0): the file lists
    non-silent calls only. Without a mutations.tsv the mutation status is unknown (NaN).
    """
    values = case_values(genomics, manifest)
    mutations_known = genomics is not None and genomics.mutations is not None
    vector = np.full(len(names), np.nan)
    for i, name in enumerate(names):
        if name in values:
            vector[i] = values[name]
        elif name.startswith(MUT) and mutations_known:
            vector[i] = 0.0
    return vector
