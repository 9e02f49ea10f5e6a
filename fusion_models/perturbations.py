"""Input perturbations a deployed model meets, applied to a loaded case in memory.

Each family reproduces one way real input goes wrong (issue 6's fuzzed inputs) while staying
NaN-free and loadable, so that only the model-level OOD detector stands between it and a
confident conclusion. bench/calibration.py measures the detector's detection rate on them;
the tests check single cases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from fusion_models.encoders.registry import PatchEncoder
from fusion_models.inputs import CaseInputs
from schemas.common import Modality

# Expression levels behind a z-score: log2 counts with a typical median (~256) and spread.
LOG2_CENTRE, LOG2_SPREAD = 8.0, 2.0
NOISE_TILE = 256
WHOLE_VOLUME_LABEL = 2  # every voxel 'oedema': a mask file that is just the brain outline


@dataclass(frozen=True)
class Perturbation:
    modality: Modality
    description: str
    apply: Callable[[CaseInputs, np.random.Generator], CaseInputs]

    def applies_to(self, inputs: CaseInputs) -> bool:
        if self.modality == "pathology":
            return bool(inputs.slides)
        if self.modality == "genomics":
            return inputs.genomics is not None and inputs.genomics.expression is not None
        return any(t.mask is not None for t in inputs.imaging)


def _slides(scale: Callable[[np.ndarray, np.random.Generator], np.ndarray]):
    def apply(inputs: CaseInputs, rng: np.random.Generator) -> CaseInputs:
        slides = [replace(s, features=scale(s.features, rng).astype(np.float32)) for s in inputs.slides]
        return replace(inputs, slides=slides)

    return apply


def noise_slide(encoder: PatchEncoder) -> Callable[[CaseInputs, np.random.Generator], CaseInputs]:
    """A slide of random RGB noise, embedded by the encoder the model reads."""

    def apply(inputs: CaseInputs, rng: np.random.Generator) -> CaseInputs:
        def embed(features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            tiles = rng.integers(0, 256, (len(features), NOISE_TILE, NOISE_TILE, 3), dtype=np.uint8)
            return encoder.embed(tiles)

        return _slides(embed)(inputs, rng)

    return apply


def _expression(convert: Callable[[np.ndarray, np.random.Generator], np.ndarray]):
    """Replace the z-scores by another scale while the case still says (or defaults to) 'zscore'."""

    def apply(inputs: CaseInputs, rng: np.random.Generator) -> CaseInputs:
        g = inputs.genomics
        expression = g.expression.copy()
        expression[:] = convert(g.expression.to_numpy(dtype=np.float64), rng)
        return replace(inputs, genomics=replace(g, expression=expression, expression_scale="zscore"))

    return apply


def raw_counts(z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.round(np.exp2(LOG2_CENTRE + LOG2_SPREAD * np.clip(z, -4, 4)) * rng.lognormal(0, 0.1, len(z)))


def log2_values(z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return LOG2_CENTRE + LOG2_SPREAD * np.clip(z, -4, 4)


def _timepoints(change: Callable):
    def apply(inputs: CaseInputs, rng: np.random.Generator) -> CaseInputs:
        return replace(inputs, imaging=[change(t) if t.mask is not None else t for t in inputs.imaging])

    return apply


def _big_voxels(timepoint):
    affine = timepoint.affine.copy()
    affine[:3, :3] *= 100.0 / np.linalg.norm(affine[:3, :3], axis=0)  # 100 mm voxel sides
    return replace(timepoint, affine=affine)


def _whole_volume_mask(timepoint):
    return replace(timepoint, mask=np.full_like(timepoint.mask, WHOLE_VOLUME_LABEL))


FAMILIES: dict[str, Perturbation] = {
    "pathology_zeros": Perturbation("pathology", "patch features all 0.0", _slides(lambda f, r: np.zeros_like(f))),
    "pathology_gaussian": Perturbation(
        "pathology", "patch features replaced by N(0, 1) noise", _slides(lambda f, r: r.standard_normal(f.shape))
    ),
    "pathology_x1e30": Perturbation("pathology", "patch features multiplied by 1e30", _slides(lambda f, r: f * 1e30)),
    "expression_raw_counts": Perturbation(
        "genomics", "expression as raw counts, declared (or defaulted to) z-scores", _expression(raw_counts)
    ),
    "expression_log2_no_meta": Perturbation(
        "genomics", "expression on a log2 scale without meta.json (read as z-scores)", _expression(log2_values)
    ),
    "imaging_100mm_voxels": Perturbation("imaging", "NIfTI affine with 100 mm voxels", _timepoints(_big_voxels)),
    "imaging_whole_volume_mask": Perturbation(
        "imaging", "lesion mask covering the whole volume", _timepoints(_whole_volume_mask)
    ),
}


def families(encoder: PatchEncoder | None = None) -> dict[str, Perturbation]:
    """Every family; the noise slide needs the encoder that embeds it."""
    if encoder is None:
        return dict(FAMILIES)
    noise = Perturbation("pathology", "a slide of random RGB noise, embedded", noise_slide(encoder))
    return {**FAMILIES, "pathology_noise_slide": noise}
