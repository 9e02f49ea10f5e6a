"""Voxel grids: isotropic resampling (SimpleITK) and per-sequence intensity normalisation (pure, no I/O).

Arrays are indexed like nibabel's (i, j, k) with a 4x4 voxel->mm affine in RAS. SimpleITK
works in LPS with a spacing, an origin and a direction matrix; `to_sitk` / `from_sitk`
convert exactly, so oblique and flipped grids survive the round trip.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from fusion_models.imaging.habitats import voxel_spacing_mm

# nibabel's RAS mm -> ITK's LPS mm: x and y change sign.
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
# Resampling never goes finer than 1 mm (the BraTS convention): a 0.4 x 0.4 x 5 mm scan at
# 0.4 mm isotropic would hold 12x the voxels and add no information along the slices.
MIN_ISOTROPIC_MM = 1.0
# Voxel edges within 1% of each other already make an isotropic grid; it is left as it is.
ISOTROPIC_TOLERANCE = 0.01
# Clipping before the z-score keeps a few bright vessels or a hot fat voxel from setting the scale.
NORMALISE_PERCENTILES: tuple[float, float] = (0.5, 99.5)


def is_isotropic(affine: np.ndarray, tolerance: float = ISOTROPIC_TOLERANCE) -> bool:
    edges = voxel_spacing_mm(affine)
    return bool(edges.max() - edges.min() <= tolerance * edges.min())


def isotropic_target_mm(affine: np.ndarray, floor_mm: float = MIN_ISOTROPIC_MM) -> float | None:
    """Spacing to resample to: the finest edge, not below `floor_mm`; None when the grid is already isotropic."""
    if is_isotropic(affine):
        return None
    return max(float(voxel_spacing_mm(affine).min()), floor_mm)


def to_sitk(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A SimpleITK image whose index (i, j, k) is array[i, j, k] at the affine's position."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0)))
    matrix = _RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)[:3, :3]
    edges = np.linalg.norm(matrix, axis=0)
    image.SetSpacing(tuple(float(e) for e in edges))
    image.SetDirection(tuple(float(v) for v in (matrix / edges).ravel()))
    image.SetOrigin(tuple(float(v) for v in _RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)[:3, 3]))
    return image


def from_sitk(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """The (i, j, k) array and the RAS voxel->mm affine of a SimpleITK image."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = _RAS_TO_LPS @ (direction * np.asarray(image.GetSpacing()))
    affine[:3, 3] = _RAS_TO_LPS @ np.asarray(image.GetOrigin())
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0), affine


def resample_to_spacing(
    array: np.ndarray, affine: np.ndarray, spacing: float, *, label: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The volume on an isotropic grid of `spacing` mm covering the same field of view, same orientation.

    Label maps use nearest neighbour (labels stay labels, volumes stay within a voxel layer);
    images use linear interpolation. The new grid starts at the same outer edge as the old
    one, so a structure keeps its position in mm.
    """
    if spacing <= 0:
        raise ValueError(f"spacing must be positive, got {spacing}")
    image = to_sitk(array, affine)
    old = np.asarray(image.GetSpacing())
    size = np.maximum(np.rint(np.asarray(image.GetSize()) * old / spacing), 1).astype(int)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    # Voxel centre 0 sits half a voxel inside the grid's edge; move it from half the old to half the new voxel.
    origin = np.asarray(image.GetOrigin()) + direction @ ((spacing - old) / 2.0)
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(n) for n in size])
    resampler.SetOutputSpacing([float(spacing)] * 3)
    resampler.SetOutputOrigin([float(v) for v in origin])
    resampler.SetOutputDirection(image.GetDirection())
    resampler.SetDefaultPixelValue(0)
    resampler.SetInterpolator(sitk.sitkNearestNeighbor if label else sitk.sitkLinear)
    resampler.SetOutputPixelType(image.GetPixelID() if label else sitk.sitkFloat32)
    return from_sitk(resampler.Execute(image))


def normalise_intensity(
    image: np.ndarray, mask: np.ndarray | None = None, percentiles: tuple[float, float] = NORMALISE_PERCENTILES
) -> np.ndarray:
    """Z-score inside the mask (default: the non-zero voxels of a skull-stripped scan) after percentile clipping.

    Voxels outside the mask are 0. A constant region has no scale: its voxels become 0 too.
    """
    image = np.asarray(image, dtype=np.float64)
    inside = image != 0 if mask is None else np.asarray(mask, dtype=bool)
    if inside.shape != image.shape:
        raise ValueError(f"mask {inside.shape} and image {image.shape} must match")
    out = np.zeros(image.shape, dtype=np.float32)
    if not inside.any():
        return out
    values = image[inside]
    low, high = np.percentile(values, percentiles)
    values = np.clip(values, low, high)
    std = values.std()
    if std > 0:
        out[inside] = (values - values.mean()) / std
    return out
