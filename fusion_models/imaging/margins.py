"""Margin rings by distance bands outside the lesion: volumes and mean intensity per sequence (pure, no I/O).

The infiltration front of a glioma lies beyond the visible lesion; bands at increasing
distance (0-5 mm, 5-10 mm) let the report compare tissue near the edge with tissue farther
out. Distances come from a Euclidean distance transform in mm (habitats.distance_outside_mm),
so an anisotropic grid measures the same bands as its isotropic resampling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fusion_models.imaging.habitats import distance_outside_mm, voxel_volume_ml

MARGIN_BANDS_MM: tuple[tuple[float, float], ...] = ((0.0, 5.0), (5.0, 10.0))


@dataclass(frozen=True)
class MarginBand:
    """Voxels whose centre lies more than `inner_mm` and at most `outer_mm` from the lesion."""

    inner_mm: float
    outer_mm: float
    voxels: int
    volume_ml: float
    mean_intensity: dict[str, float]  # sequence -> mean over the band; absent when the band is empty

    @property
    def name(self) -> str:
        return f"margin_{self.inner_mm:g}-{self.outer_mm:g}mm"


def check_bands(bands: Sequence[tuple[float, float]]) -> None:
    """Bands must be non-empty intervals, ordered and not overlapping, starting at or beyond the lesion edge."""
    previous = 0.0
    for inner, outer in bands:
        if not previous <= inner < outer:
            raise ValueError(f"margin bands must be ordered, non-overlapping intervals from 0 mm; got {list(bands)}")
        previous = outer


def band_masks(
    lesion: np.ndarray, affine: np.ndarray, bands: Sequence[tuple[float, float]] = MARGIN_BANDS_MM,
    within: np.ndarray | None = None,
) -> list[np.ndarray]:
    """One boolean mask per band, restricted to `within` (e.g. the brain) when given."""
    check_bands(bands)
    if not bands:
        return []
    distance = distance_outside_mm(lesion, affine, max(outer for _, outer in bands))
    keep = np.ones(distance.shape, dtype=bool) if within is None else np.asarray(within, dtype=bool)
    return [(distance > inner) & (distance <= outer) & keep for inner, outer in bands]


def margin_bands(
    lesion: np.ndarray,
    affine: np.ndarray,
    sequences: Mapping[str, np.ndarray],
    bands: Sequence[tuple[float, float]] = MARGIN_BANDS_MM,
    within: np.ndarray | None = None,
) -> list[MarginBand]:
    """Volume and mean intensity of each sequence per band; `within` keeps the bands inside the brain."""
    voxel_ml = voxel_volume_ml(affine)
    out = []
    for (inner, outer), region in zip(bands, band_masks(lesion, affine, bands, within), strict=True):
        voxels = int(region.sum())
        means = {}
        if voxels:
            means = {name: float(np.asarray(image, np.float64)[region].mean()) for name, image in sequences.items()}
        out.append(MarginBand(inner, outer, voxels, voxels * voxel_ml, means))
    return out
