"""Genomics gate: the expression scale, told from the values and checked against meta.json, and gene coverage.

Both models read per-gene z-scores. Raw counts and log2 TPM/CPM are converted by
standardising within the sample (counts first to log2 CPM); without a per-gene
reference that only approximates a per-gene z-score, so a converted profile is also
recorded as out of distribution and the conclusions resting on genomics lose confidence.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from fusion_models.gates import InputNeeds, gate_ood, register_gate, with_unusable
from fusion_models.genomics.io import FILES, GENOMICS_DIR, GenomicsInput
from schemas.errors import InputError

if TYPE_CHECKING:
    from fusion_models.inputs import CaseInputs

Scale = Literal["raw_counts", "log2", "zscore"]
# meta.json's expression_scale vocabulary -> the family of values it promises.
DECLARED_SCALES: dict[str, Scale] = {
    "raw_counts": "raw_counts",
    "log2_tpm": "log2",
    "log2_cpm": "log2",
    "zscore": "zscore",
}
META = f"{GENOMICS_DIR}/{FILES['meta']}"
EXPRESSION = f"{GENOMICS_DIR}/{FILES['expression']}"
# Fewer values than this cannot show a distribution's shape.
MIN_VALUES_TO_DETECT = 20
# Raw counts: non-negative whole numbers reaching at least a few hundred reads.
COUNT_INTEGER_SHARE, COUNT_MIN_MAX = 0.95, 100.0
# z-scores centre on 0 (TCGA cBioPortal profiles: median -0.48..0.08, 48-80 % negative).
Z_MAX_ABS_MEDIAN, Z_NEGATIVE_SHARE = 1.0, (0.15, 0.85)
# log2 TPM/CPM: median at least 1 and below 2**32 on the linear scale.
LOG2_MIN_MEDIAN, LOG2_MAX = 1.0, 32.0
CPM = 1e6


@dataclass(frozen=True)
class ScaleGuess:
    scale: Scale | None  # None: the values fit none of the three
    summary: str  # the statistics it rests on, for messages


def detect_scale(values: np.ndarray) -> ScaleGuess:
    """Raw counts, log2 TPM/CPM or z-scores, from the shape of one sample's values."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < MIN_VALUES_TO_DETECT:
        return ScaleGuess(None, f"only {len(v)} values")
    median, negative, top = float(np.median(v)), float(np.mean(v < 0)), float(v.max())
    whole = float(np.mean(v == np.round(v)))
    summary = (
        f"median {median:.3g}, {negative:.0%} negative, maximum {top:.4g}, {whole:.0%} whole numbers"
    )
    if negative == 0 and whole >= COUNT_INTEGER_SHARE and top >= COUNT_MIN_MAX:
        return ScaleGuess("raw_counts", summary)
    lo, hi = Z_NEGATIVE_SHARE
    if abs(median) <= Z_MAX_ABS_MEDIAN and lo <= negative <= hi:
        return ScaleGuess("zscore", summary)
    if median >= LOG2_MIN_MEDIAN and top <= LOG2_MAX:
        return ScaleGuess("log2", summary)
    return ScaleGuess(None, summary)


def log2_cpm(counts: pd.Series) -> pd.Series:
    return np.log2(counts / max(float(counts.sum()), 1.0) * CPM + 1.0)


def within_sample_z(values: pd.Series) -> pd.Series:
    """(x - mean) / sd across the sample's genes: the ranks and signs a per-gene z-score would roughly have."""
    sd = float(values.std(ddof=0))
    return (values - float(values.mean())) / (sd if sd > 0 else 1.0)


def to_zscore(expression: pd.Series, scale: Scale) -> pd.Series:
    log2 = log2_cpm(expression) if scale == "raw_counts" else expression
    return within_sample_z(log2) if scale != "zscore" else expression


def _without_expression(genomics: GenomicsInput) -> GenomicsInput | None:
    if genomics.mutations is None and genomics.cnv is None:
        return None
    files = {k: v for k, v in genomics.files.items() if k not in ("expression", "meta")}
    return replace(genomics, expression=None, files=files)


def _unusable(inputs: CaseInputs, error: InputError) -> CaseInputs:
    return with_unusable(inputs, "genomics", error, genomics=_without_expression(inputs.genomics))


def _scale_error(declared: str | None, guess: ScaleGuess) -> InputError | None:
    """Why the declared scale cannot be used with these values, or None."""
    if declared is not None and declared not in DECLARED_SCALES:
        known = ", ".join(DECLARED_SCALES)
        return InputError(META, "expression_scale", f"unknown scale {declared!r}; known: {known}")
    if declared is not None and guess.scale is not None and DECLARED_SCALES[declared] != guess.scale:
        return InputError(
            META, "expression_scale",
            f"says {declared!r} but {EXPRESSION} looks like {guess.scale.replace('_', ' ')} ({guess.summary})",
        )
    if declared is None and guess.scale is None:
        return InputError(
            EXPRESSION, "value",
            f"scale not stated ({META} absent) and not recognisable as raw counts, log2 or z-scores ({guess.summary})",
        )
    return None


@register_gate("expression_scale")
def expression_scale(inputs: CaseInputs, needs: InputNeeds) -> CaseInputs:
    genomics = inputs.genomics
    if genomics is None or genomics.expression is None:
        return inputs
    values = genomics.expression.to_numpy()
    # Too few values to tell a scale: the loader's documented default (z-scores) stands.
    stated = "meta" in genomics.files or len(values) < MIN_VALUES_TO_DETECT
    declared = genomics.expression_scale if stated else None
    guess = detect_scale(values)
    error = _scale_error(declared, guess)
    if error is not None:
        return _unusable(inputs, error)
    scale: Scale = DECLARED_SCALES[declared] if declared is not None else guess.scale
    if scale == needs.expression_scale:
        return inputs
    if needs.expression_scale != "zscore":
        message = f"no conversion from {scale} to {needs.expression_scale}"
        return _unusable(inputs, InputError(EXPRESSION, "value", message))
    source = f"stated in {META}" if declared is not None else f"told from the values, {META} absent"
    conversion = f"{EXPRESSION}: {scale} ({source}) -> zscore within the sample"
    detail = (
        f"{EXPRESSION}: value: {scale} values standardised within the sample stand in for the per-gene "
        f"z-scores {needs.model} was trained on; with no per-gene reference they are approximate"
    )
    # Score: the share of the expression values that are approximations (all of them).
    record = gate_ood("genomics", "expression_scale", 1.0, 0.0, detail)
    converted = replace(genomics, expression=to_zscore(genomics.expression, scale), expression_scale="zscore")
    return replace(
        inputs, genomics=converted, conversions=[*inputs.conversions, conversion], ood=[*inputs.ood, record]
    )


@register_gate("gene_coverage")
def gene_coverage(inputs: CaseInputs, needs: InputNeeds) -> CaseInputs:
    """The genes a model reads one by one: below its minimum share, mean-filling would fake a profile."""
    genomics = inputs.genomics
    if genomics is None or genomics.expression is None or not needs.expression_genes:
        return inputs
    measured = len(needs.expression_genes.intersection(genomics.expression.index))
    total = len(needs.expression_genes)
    if measured >= needs.min_expression_coverage * total:
        return inputs
    needed = int(np.ceil(needs.min_expression_coverage * total))
    message = f"{measured} of the {total} genes {needs.model} reads are measured; it needs at least {needed}"
    return _unusable(inputs, InputError(EXPRESSION, "gene", message))
