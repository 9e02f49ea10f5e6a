"""Imaging habitats from a BraTS label map: volumes, centroids, margin ring, intensity ratios (pure, no I/O).

Labels: 1 necrotic / non-enhancing core, 2 oedema, 3 or 4 enhancing (BraTS 2021+
uses 3 for enhancing, older releases 4). Label 1 reads as necrosis only when the
lesion has an enhancing component; without one it is non-enhancing tumour (DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

ENHANCING_LABELS: tuple[int, ...] = (3, 4)
CORE_LABELS: tuple[int, ...] = (1,)
OEDEMA_LABELS: tuple[int, ...] = (2,)
LESION_LABELS: tuple[int, ...] = (1, 2, 3, 4)
PHENOTYPE_LABELS: dict[str, tuple[int, ...]] = {
    "enhancing": ENHANCING_LABELS,
    "necrotic_core": CORE_LABELS,  # when the lesion enhances
    "non_enhancing_core": CORE_LABELS,  # when it does not
    "oedema": OEDEMA_LABELS,
}


@dataclass(frozen=True)
class HabitatStat:
    """One spatial unit of a mask: its labels, size and where it is."""

    phenotype: str
    labels: tuple[int, ...]
    voxels: int
    volume_ml: float
    centroid_mm: tuple[float, float, float] | None
    fraction_of_lesion: float


def voxel_volume_ml(affine: np.ndarray) -> float:
    """Volume of one voxel in mL: |det| of the voxel-to-mm matrix, mm^3 / 1000."""
    return abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0


def voxel_spacing_mm(affine: np.ndarray) -> np.ndarray:
    """Edge length of a voxel along each array axis (column norms, so rotations are allowed)."""
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)


def centroid_mm(region: np.ndarray, affine: np.ndarray) -> tuple[float, float, float] | None:
    """Mean position of the region's voxel centres in scanner mm; None for an empty region."""
    idx = np.argwhere(region)
    if len(idx) == 0:
        return None
    # The affine map is linear, so the centroid of the mm positions is the mapped mean index.
    point = np.asarray(affine, dtype=np.float64) @ np.append(idx.mean(axis=0), 1.0)
    return (float(point[0]), float(point[1]), float(point[2]))


def core_phenotype(mask: np.ndarray) -> str:
    """What label 1 means in this lesion: necrosis inside an enhancing rim, else non-enhancing tumour."""
    return "necrotic_core" if np.isin(mask, ENHANCING_LABELS).any() else "non_enhancing_core"


def _stat(
    phenotype: str, region: np.ndarray, labels: tuple[int, ...], affine: np.ndarray, lesion_voxels: int
) -> HabitatStat:
    voxels = int(region.sum())
    return HabitatStat(
        phenotype=phenotype,
        labels=labels,
        voxels=voxels,
        volume_ml=voxels * voxel_volume_ml(affine),
        centroid_mm=centroid_mm(region, affine),
        fraction_of_lesion=voxels / lesion_voxels if lesion_voxels else 0.0,
    )


def habitat_stats(mask: np.ndarray, affine: np.ndarray) -> list[HabitatStat]:
    """The whole lesion first (all labels > 0), then each habitat present: enhancing, core, oedema."""
    mask = np.asarray(mask)
    counts = np.bincount(np.clip(mask, 0, None).ravel().astype(np.int64), minlength=max(LESION_LABELS) + 1)
    present = tuple(int(label) for label in np.flatnonzero(counts[1:]) + 1)
    lesion = mask > 0
    lesion_voxels = int(lesion.sum())
    stats = [_stat("lesion", lesion, present, affine, lesion_voxels)]
    habitats = (
        ("enhancing", ENHANCING_LABELS),
        (core_phenotype(mask), CORE_LABELS),
        ("oedema", OEDEMA_LABELS),
    )
    for phenotype, labels in habitats:
        found = tuple(label for label in labels if label in present)
        if found:
            stats.append(_stat(phenotype, np.isin(mask, found), found, affine, lesion_voxels))
    return stats


def habitat_masks(mask: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean region per phenotype: lesion, enhancing, necrotic_core, non_enhancing_core, oedema.

    Every key is always there; the core phenotype that does not apply to this lesion is empty.
    """
    mask = np.asarray(mask)
    core = np.isin(mask, CORE_LABELS)
    empty = np.zeros(mask.shape, dtype=bool)
    necrotic = core_phenotype(mask) == "necrotic_core"
    return {
        "lesion": mask > 0,
        "enhancing": np.isin(mask, ENHANCING_LABELS),
        "necrotic_core": core if necrotic else empty,
        "non_enhancing_core": empty if necrotic else core,
        "oedema": np.isin(mask, OEDEMA_LABELS),
    }


def margin_ring_mask(mask: np.ndarray, affine: np.ndarray, width_mm: float = 5.0) -> np.ndarray:
    """Non-lesion voxels whose centre lies within `width_mm` of a lesion voxel centre.

    Distances use the voxel spacing, so anisotropic voxels are measured in mm; the
    shell is clipped at the image border.
    """
    if width_mm <= 0:
        raise ValueError(f"width_mm must be positive, got {width_mm}")
    lesion = np.asarray(mask) > 0
    ring = np.zeros_like(lesion)
    if not lesion.any():
        return ring
    spacing = voxel_spacing_mm(affine)
    # The distance transform only needs the lesion's bounding box grown by the ring width.
    pad = np.ceil(width_mm / spacing).astype(int) + 1
    idx = np.argwhere(lesion)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = np.minimum(idx.max(axis=0) + pad + 1, lesion.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    distance = ndimage.distance_transform_edt(~lesion[box], sampling=spacing)
    ring[box] = (distance > 0) & (distance <= width_mm)
    return ring


def margin_ring(mask: np.ndarray, affine: np.ndarray, width_mm: float = 5.0) -> HabitatStat:
    """The margin ring (see margin_ring_mask) as a spatial unit.

    fraction_of_lesion is ring volume / lesion volume, capped at 1: the ring lies outside
    the lesion, so the ratio is a relative size, and the report's field is a fraction in
    [0, 1] (a ring larger than its lesion reads 1). `labels` is empty: no ring voxel
    carries a lesion label.
    """
    ring = margin_ring_mask(mask, affine, width_mm)
    lesion_voxels = int((np.asarray(mask) > 0).sum())
    voxels = int(ring.sum())
    return HabitatStat(
        phenotype="margin_ring",
        labels=(),
        voxels=voxels,
        volume_ml=voxels * voxel_volume_ml(affine),
        centroid_mm=centroid_mm(ring, affine),
        fraction_of_lesion=min(voxels / lesion_voxels, 1.0) if lesion_voxels else 0.0,
    )


def intensity_ratio(image: np.ndarray, region_mask: np.ndarray, reference_mask: np.ndarray) -> float | None:
    """Mean intensity in the region / mean in the reference (normal-appearing tissue).

    None when either mask is empty or the reference mean is zero: no ratio can be stated.
    """
    image = np.asarray(image, dtype=np.float64)
    region, reference = np.asarray(region_mask, dtype=bool), np.asarray(reference_mask, dtype=bool)
    if not (image.shape == region.shape == reference.shape):
        raise ValueError(f"image {image.shape}, region {region.shape} and reference {reference.shape} must match")
    if not region.any() or not reference.any():
        return None
    reference_mean = float(image[reference].mean())
    if reference_mean == 0.0:
        return None
    return float(image[region].mean()) / reference_mean
