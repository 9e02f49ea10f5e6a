"""Isotropic resampling and intensity normalisation on hand-checked volumes."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_models.imaging.grid import (
    from_sitk,
    is_isotropic,
    isotropic_target_mm,
    normalise_intensity,
    resample_to_spacing,
    to_sitk,
)
from fusion_models.imaging.habitats import centroid_mm, voxel_volume_ml


def grid_affine(spacing, origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    a = np.diag([*spacing, 1.0])
    a[:3, 3] = origin
    return a


def sphere(shape, affine, centre_mm, radius_mm) -> np.ndarray:
    """Label 1 where the voxel centre lies within radius_mm of centre_mm."""
    idx = np.indices(shape).reshape(3, -1)
    mm = affine[:3, :3] @ idx + affine[:3, 3:4]
    inside = np.linalg.norm(mm - np.asarray(centre_mm)[:, None], axis=0) <= radius_mm
    return inside.reshape(shape).astype(np.int16)


def test_targets_the_finest_edge_with_a_1_mm_floor_and_leaves_isotropic_grids():
    assert isotropic_target_mm(grid_affine((1.0, 1.0, 3.0))) == 1.0
    assert isotropic_target_mm(grid_affine((1.5, 1.5, 4.0))) == 1.5
    assert isotropic_target_mm(grid_affine((0.5, 0.5, 5.0))) == 1.0
    assert isotropic_target_mm(grid_affine((2.0, 2.0, 2.0))) is None
    assert is_isotropic(grid_affine((1.0, 1.0, 1.005)))


def test_sitk_round_trip_keeps_an_oblique_flipped_affine_and_the_voxel_order():
    c, s = np.cos(0.4), np.sin(0.4)
    affine = grid_affine((-0.9, 1.1, 2.5), origin=(12.0, -30.0, 7.5))
    affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ affine[:3, :3]
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    image = to_sitk(array, affine)
    assert image.GetSize() == (2, 3, 4)
    # Index (1, 2, 3) is array[1, 2, 3]; its LPS point is the RAS point with x and y negated.
    assert image[1, 2, 3] == array[1, 2, 3]
    ras = affine @ np.array([1, 2, 3, 1.0])
    assert image.TransformIndexToPhysicalPoint((1, 2, 3)) == pytest.approx((-ras[0], -ras[1], ras[2]))
    back, back_affine = from_sitk(image)
    np.testing.assert_array_equal(back, array)
    np.testing.assert_allclose(back_affine, affine, atol=1e-9)


def test_anisotropic_sphere_keeps_its_volume_and_centre_on_the_isotropic_grid():
    affine = grid_affine((1.0, 1.0, 3.0), origin=(-40.0, -40.0, -45.0))
    shape = (80, 80, 30)
    mask = sphere(shape, affine, centre_mm=(3.0, -2.0, 1.0), radius_mm=15.0)
    native_ml = mask.sum() * voxel_volume_ml(affine)
    resampled, new_affine = resample_to_spacing(mask, affine, 1.0, label=True)
    assert resampled.shape == (80, 80, 90)
    assert resampled.dtype == mask.dtype
    np.testing.assert_allclose(np.diag(new_affine)[:3], 1.0)
    resampled_ml = resampled.sum() * voxel_volume_ml(new_affine)
    truth_ml = 4.0 / 3.0 * np.pi * 15.0**3 / 1000.0  # 14.14 mL
    # Nearest neighbour copies each 3 mm slab into three 1 mm slices: the volume is kept to within 1%,
    # and both grids are within 5% of the true sphere (the 3 mm slices cut its caps coarsely).
    assert resampled_ml == pytest.approx(native_ml, rel=0.01)
    assert resampled_ml == pytest.approx(truth_ml, rel=0.05)
    assert centroid_mm(resampled > 0, new_affine) == pytest.approx(centroid_mm(mask > 0, affine), abs=0.5)


def test_downsampling_fine_in_plane_voxels_keeps_the_sphere_volume_within_3_percent():
    affine = grid_affine((0.5, 0.5, 2.5))
    mask = sphere((80, 80, 16), affine, centre_mm=(20.0, 20.0, 20.0), radius_mm=12.0)
    resampled, new_affine = resample_to_spacing(mask, affine, 1.0, label=True)
    assert resampled.shape == (40, 40, 40)
    native_ml = mask.sum() * voxel_volume_ml(affine)
    assert resampled.sum() * voxel_volume_ml(new_affine) == pytest.approx(native_ml, rel=0.03)


def test_linear_interpolation_reproduces_a_linear_ramp_inside_the_volume():
    affine = grid_affine((1.0, 1.0, 3.0))
    ramp = np.broadcast_to(3.0 * np.arange(10, dtype=np.float32), (6, 6, 10)).copy()  # value = z in mm
    resampled, new_affine = resample_to_spacing(ramp, affine, 1.0, label=False)
    z_mm = new_affine[2, 2] * np.arange(resampled.shape[2]) + new_affine[2, 3]
    inner = (z_mm >= 0) & (z_mm <= 27)
    np.testing.assert_allclose(resampled[2, 2, inner], z_mm[inner], atol=1e-4)
    assert resampled.dtype == np.float32


def test_zscore_inside_the_non_zero_voxels():
    image = np.array([0.0, 1.0, 2.0, 3.0, 0.0])
    out = normalise_intensity(image, percentiles=(0, 100))
    # mean 2, population std sqrt(2/3)
    np.testing.assert_allclose(out, [0, -1.2247449, 0, 1.2247449, 0], atol=1e-6)


def test_percentile_clipping_then_zscore_inside_a_given_mask():
    image = np.array([1.0, 2.0, 3.0, 4.0, 100.0, 7.0])
    mask = np.array([1, 1, 1, 1, 1, 0], dtype=bool)
    out = normalise_intensity(image, mask, percentiles=(0, 75))
    # 75th percentile of 1,2,3,4,100 is 4: values 1,2,3,4,4, mean 2.8, std sqrt(1.36) = 1.16619
    np.testing.assert_allclose(out, [-1.543487, -0.685994, 0.171499, 1.028992, 1.028992, 0.0], atol=1e-5)


def test_constant_region_normalises_to_zero():
    assert not normalise_intensity(np.full((3, 3), 5.0)).any()
    with pytest.raises(ValueError, match="must match"):
        normalise_intensity(np.ones(4), np.ones(3, dtype=bool))


def test_real_brain_on_thick_slices_keeps_its_volume_on_the_isotropic_grid():
    """nilearn's MNI152 brain mask (real anatomy, 2 mm) kept on every other slice, as a 2 x 2 x 4 mm scan."""
    from nilearn import datasets

    image = datasets.load_mni152_brain_mask(resolution=2)
    brain = (np.asarray(image.get_fdata()) > 0).astype(np.int16)
    thick_affine = np.asarray(image.affine, dtype=np.float64).copy()
    thick_affine[:3, 2] *= 2.0
    thick = brain[:, :, ::2]
    assert isotropic_target_mm(thick_affine) == 2.0
    resampled, new_affine = resample_to_spacing(thick, thick_affine, 2.0, label=True)
    np.testing.assert_allclose(new_affine[:3, :3], image.affine[:3, :3])
    thick_ml = thick.sum() * voxel_volume_ml(thick_affine)
    assert thick_ml == pytest.approx(brain.sum() * 0.008, rel=0.02)  # dropping every other slice keeps ~the volume
    assert resampled.sum() * voxel_volume_ml(new_affine) == pytest.approx(thick_ml, rel=0.01)
    # the brain's centre of mass stays within a voxel of the full-resolution template's
    full = centroid_mm(brain > 0, image.affine)
    assert centroid_mm(resampled > 0, new_affine) == pytest.approx(full, abs=2.0)
