"""Pathology gate: patch features that carry information, at the magnitude the model was trained on.

The feature file reader already refuses non-finite values, a wrong feature size and
another encoder's features; this gate judges the values themselves.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from fusion_models.gates import InputNeeds, PatchStats, gate_ood, register_gate, with_unusable
from fusion_models.pathology.h5 import SlideFeatures
from schemas.errors import InputError

if TYPE_CHECKING:
    from fusion_models.inputs import CaseInputs

# Median patch RMS of training-standardised features: about 1 on the training data. Beyond
# OOD_RMS the bag sits far outside it (the clean demo slides stay below 2); beyond ABSURD_RMS
# the values are not features of this encoder at all (e.g. scaled by 1e30).
OOD_RMS = 4.0
ABSURD_RMS = 1e3


def standardised_rms(features: np.ndarray, stats: PatchStats) -> float:
    """Median over patches of the root-mean-square training-standardised feature value."""
    std = np.where(stats.std > 0, stats.std, 1.0)
    z = (np.asarray(features, dtype=np.float64) - stats.mean) / std
    return float(np.median(np.sqrt(np.mean(z * z, axis=1))))


def value_problem(slide: SlideFeatures) -> tuple[str, str] | None:
    """(field, why) for values that cannot be patch embeddings: non-finite, constant, off the slide."""
    features = slide.features
    if not np.isfinite(features).all():
        return "features", "NaN or infinite values"
    if np.ptp(features) == 0:
        rows, cols = features.shape
        return "features", f"every value of the {rows} x {cols} matrix is {features.flat[0]:g}"
    if len(features) > 1 and not np.ptp(features, axis=0).any():
        return "features", f"all {len(features)} patches have identical features"
    if (slide.coords < 0).any():
        return "coords", "negative level-0 coordinates"
    return None


@register_gate("pathology")
def pathology(inputs: CaseInputs, needs: InputNeeds) -> CaseInputs:
    kept: list[SlideFeatures] = []
    errors: list[InputError] = []
    ood = []
    for slide in inputs.slides:
        problem = value_problem(slide)
        rms = standardised_rms(slide.features, needs.patch_stats) if problem is None and needs.patch_stats else None
        if rms is not None and rms > ABSURD_RMS:
            problem = "features", (
                f"median patch RMS {rms:.3g} standard deviations of {needs.model}'s training patches "
                "(an absurd magnitude)"
            )
        if problem is not None:
            errors.append(InputError(slide.file, *problem))
            continue
        kept.append(slide)
        if rms is not None and rms > OOD_RMS:
            detail = (
                f"{slide.file}: features: median patch RMS, in standard deviations of {needs.model}'s training patches"
            )
            ood.append(gate_ood("pathology", "patch_magnitude", rms, OOD_RMS, detail))
    if not errors and not ood:
        return inputs
    inputs = replace(inputs, slides=kept, ood=[*inputs.ood, *ood])
    for error in errors:
        inputs = with_unusable(inputs, "pathology", error)
    return inputs
