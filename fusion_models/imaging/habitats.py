"""Imaging habitats from a BraTS label map: volumes, centroids, margin ring, intensity ratios (pure, no I/O).

Labels: 1 necrotic / non-enhancing core, 2 oedema, 3 or 4 enhancing (BraTS 2021+
uses 3 for enhancing, older releases 4). Label 1 reads as necrosis only when the
lesion has an enhancing component; without one it is non-enhancing tumour (DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Iterable
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
    fraction_of_lesion: float | None  # parts of the lesion only; None for the margin ring
    ratio_to_lesion: float | None = None  # margin ring volume / lesion volume (outside the lesion, may exceed 1)


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
    units = (
        ("enhancing", ENHANCING_LABELS),
        (core_phenotype(mask), CORE_LABELS),
        ("oedema", OEDEMA_LABELS),
    )
    return region_stats(mask, units, affine)


def region_stats(
    label_map: np.ndarray, units: tuple[tuple[str, tuple[int, ...]], ...], affine: np.ndarray
) -> list[HabitatStat]:
    """The lesion (labels > 0) first, then each unit (phenotype, its labels) with at least one voxel."""
    label_map = np.asarray(label_map)
    counts = np.bincount(np.clip(label_map, 0, None).ravel().astype(np.int64))
    present = tuple(int(label) for label in np.flatnonzero(counts[1:]) + 1)
    lesion = label_map > 0
    lesion_voxels = int(lesion.sum())
    stats = [_stat("lesion", lesion, present, affine, lesion_voxels)]
    for phenotype, labels in units:
        found = tuple(label for label in labels if label in present)
        if found:
            stats.append(_stat(phenotype, np.isin(label_map, found), found, affine, lesion_voxels))
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


def distance_outside_mm(lesion: np.ndarray, affine: np.ndarray, max_mm: float) -> np.ndarray:
    """Euclidean distance in mm from each voxel centre outside the lesion to the nearest lesion voxel centre.

    0 inside the lesion; inf beyond `max_mm` (and everywhere when there is no lesion). The
    voxel spacing weighs each axis, so anisotropic grids are measured in mm.
    """
    if max_mm <= 0:
        raise ValueError(f"max_mm must be positive, got {max_mm}")
    lesion = np.asarray(lesion, dtype=bool)
    distance = np.full(lesion.shape, np.inf)
    if not lesion.any():
        return distance
    spacing = voxel_spacing_mm(affine)
    # The distance transform only needs the lesion's bounding box grown by max_mm.
    pad = np.ceil(max_mm / spacing).astype(int) + 1
    idx = np.argwhere(lesion)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = np.minimum(idx.max(axis=0) + pad + 1, lesion.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    inner = ndimage.distance_transform_edt(~lesion[box], sampling=spacing)
    distance[box] = np.where(inner <= max_mm, inner, np.inf)
    return distance


def margin_ring_mask(mask: np.ndarray, affine: np.ndarray, width_mm: float = 5.0) -> np.ndarray:
    """Non-lesion voxels whose centre lies within `width_mm` of a lesion voxel centre (clipped at the border)."""
    if width_mm <= 0:
        raise ValueError(f"width_mm must be positive, got {width_mm}")
    distance = distance_outside_mm(np.asarray(mask) > 0, affine, width_mm)
    return (distance > 0) & (distance <= width_mm)


def margin_ring(mask: np.ndarray, affine: np.ndarray, width_mm: float = 5.0) -> HabitatStat:
    """The margin ring (see margin_ring_mask) as a spatial unit.

    The ring lies outside the lesion, so it is no part of it: `fraction_of_lesion` is None
    and `ratio_to_lesion` (ring volume / lesion volume) states its relative size, which
    exceeds 1 around small lesions. `labels` is empty: no ring voxel carries a lesion label.
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
        fraction_of_lesion=None,
        ratio_to_lesion=voxels / lesion_voxels if lesion_voxels else None,
    )


# Location in MNI152 space by a coordinate rule, not an atlas lookup: nilearn's
# Harvard-Oxford atlas is downloaded at run time, and no lobe atlas ships offline with
# our packages (nilearn ships only the MNI152 templates and ROI lists without lobes).
# Boundaries are the usual MNI landmarks, so a lobe near a boundary is approximate:
# midline band |x| < 5 mm; deep grey matter (basal ganglia, thalamus) |x| < 25,
# -35 <= y <= 20, -10 <= z <= 20; insula 28 <= |x| <= 42, -30 <= y <= 25, -15 <= z <= 20;
# below z = -25 behind y = -40 lies the posterior fossa (no cerebral lobe); occipital
# behind the parieto-occipital sulcus, y < -70; temporal below the Sylvian fissure,
# z < 0 lateral to |x| = 25 and behind y = 25 (orbitofrontal cortex lies in front);
# frontal in front of the central sulcus, y >= -20; parietal the rest.
MIDLINE_MM = 5.0
LOCATION_BASIS = (
    "MNI152 coordinate rule on the centroid (approximate lobe boundaries; no offline lobe atlas): "
    "fusion_models/imaging/habitats.py"
)


def hemisphere(x_mm: float) -> str:
    """RAS x: negative is the patient's left; within MIDLINE_MM of 0 it is midline."""
    if abs(x_mm) < MIDLINE_MM:
        return "midline"
    return "left" if x_mm < 0 else "right"


def mni_lobe(x_mm: float, y_mm: float, z_mm: float) -> str | None:
    """Lobe of an MNI152 point by the landmark rule above; None in the posterior fossa."""
    ax = abs(x_mm)
    if ax < 25 and -35 <= y_mm <= 20 and -10 <= z_mm <= 20:
        return "deep_grey_matter"
    if 28 <= ax <= 42 and -30 <= y_mm <= 25 and -15 <= z_mm <= 20:
        return "insular"
    if z_mm < -25 and y_mm < -40:
        return None
    if y_mm < -70:
        return "occipital"
    if z_mm < 0 and ax >= 25 and y_mm <= 25:
        return "temporal"
    return "frontal" if y_mm >= -20 else "parietal"


def normal_appearing(mask: np.ndarray, sequences: Iterable[np.ndarray]) -> np.ndarray:
    """Brain voxels outside the lesion: skull-stripped sequences are 0 outside the brain (and any other value,
    negative ones of z-scored sequences included, inside it; as ImagingTimepoint.brain)."""
    signal = np.zeros(mask.shape, dtype=bool)
    for volume in sequences:
        signal |= np.asarray(volume) != 0
    return signal & (np.asarray(mask) == 0)


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
