"""Margin rings by distance band: hand-checked volumes and intensities on an anisotropic grid."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_models.imaging.grid import resample_to_spacing
from fusion_models.imaging.margins import band_masks, margin_bands
from tests.test_imaging_grid import grid_affine, sphere


def slab_case():
    """A lesion filling slices z = 0, 1 of a 4 x 4 x 12 grid with 1 x 1 x 2.5 mm voxels; intensity 10 * z."""
    lesion = np.zeros((4, 4, 12), dtype=bool)
    lesion[:, :, :2] = True
    image = np.broadcast_to(10.0 * np.arange(12), (4, 4, 12)).copy()
    return lesion, grid_affine((1.0, 1.0, 2.5)), image


def test_bands_on_anisotropic_slices_hand_values():
    lesion, affine, image = slab_case()
    # Slices z = 2, 3, 4, 5 lie 2.5, 5, 7.5, 10 mm from the lesion: two slices (32 voxels) per band.
    near, far = margin_bands(lesion, affine, {"flair": image})
    assert (near.voxels, far.voxels) == (32, 32)
    assert near.volume_ml == pytest.approx(32 * 2.5 / 1000)
    assert near.mean_intensity == {"flair": pytest.approx(25.0)}  # slices 2 and 3
    assert far.mean_intensity == {"flair": pytest.approx(45.0)}  # slices 4 and 5
    assert (near.name, far.name) == ("margin_0-5mm", "margin_5-10mm")


def test_bands_stay_inside_the_brain_and_an_empty_band_has_no_means():
    lesion, affine, image = slab_case()
    brain = np.zeros(lesion.shape, dtype=bool)
    brain[:2] = True  # half of every slice
    near, far = margin_bands(lesion, affine, {"t1": image}, within=brain)
    assert (near.voxels, far.voxels) == (16, 16)
    (beyond,) = margin_bands(lesion, affine, {"t1": image}, bands=((30.0, 40.0),))
    assert beyond.voxels == 0 and beyond.mean_intensity == {}


def test_band_volumes_on_the_resampled_grid_match_the_true_shells():
    affine = grid_affine((1.0, 1.0, 3.0), origin=(-30.0, -30.0, -30.0))
    lesion = sphere((60, 60, 20), affine, centre_mm=(0.0, 0.0, 0.0), radius_mm=10.0)
    resampled, iso = resample_to_spacing(lesion, affine, 1.0, label=True)
    native = [m.sum() * 3.0 / 1000 for m in band_masks(lesion > 0, affine)]
    fine = [m.sum() / 1000 for m in band_masks(resampled > 0, iso)]
    # Shells of 5 mm around a 10 mm sphere: 4/3 pi (15^3 - 10^3) = 9.95 mL and 4/3 pi (20^3 - 15^3) = 19.37 mL.
    assert fine == pytest.approx([9.95, 19.37], rel=0.05)
    # On 3 mm slices distances along z come in 3 mm steps, so the 0-5 mm band is cut coarsely (about 10% low).
    assert native == pytest.approx([9.95, 19.37], rel=0.12)
    assert abs(fine[0] - 9.95) < abs(native[0] - 9.95)


def test_bands_must_be_ordered_intervals():
    lesion, affine, _ = slab_case()
    for bad in (((5.0, 0.0),), ((0.0, 5.0), (4.0, 8.0)), ((-1.0, 5.0),)):
        with pytest.raises(ValueError, match="ordered"):
            band_masks(lesion, affine, bad)
