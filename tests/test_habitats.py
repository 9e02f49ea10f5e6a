"""Habitat statistics on hand-checked masks: volumes, centroids, phenotypes, margin ring, ratios."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_models.imaging.habitats import (
    PHENOTYPE_LABELS,
    habitat_masks,
    habitat_stats,
    hemisphere,
    intensity_ratio,
    margin_ring,
    margin_ring_mask,
    mni_lobe,
    voxel_volume_ml,
)


def affine(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    a = np.diag([*spacing, 1.0])
    a[:3, 3] = origin
    return a


def cube_mask(shape=(20, 20, 20), lo=5, hi=15, label=3) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.int16)
    mask[lo:hi, lo:hi, lo:hi] = label
    return mask


def by_phenotype(mask, aff):
    return {s.phenotype: s for s in habitat_stats(mask, aff)}


def test_voxel_volume_isotropic_anisotropic_and_rotated():
    assert voxel_volume_ml(affine((2, 2, 2))) == pytest.approx(0.008)
    assert voxel_volume_ml(affine((0.5, 1.0, 3.0))) == pytest.approx(0.0015)
    c, s = np.cos(0.3), np.sin(0.3)
    rotated = affine((2, 2, 2))
    rotated[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ rotated[:3, :3]
    assert voxel_volume_ml(rotated) == pytest.approx(0.008)
    flipped = affine((-1.0, 1.0, 1.0))  # LAS storage: negative determinant, same volume
    assert voxel_volume_ml(flipped) == pytest.approx(0.001)


def test_cube_on_2mm_voxels_is_8_ml_with_centroid_through_translated_affine():
    aff = affine((2, 2, 2), origin=(-10.0, 20.0, 5.0))
    stats = habitat_stats(cube_mask(), aff)
    lesion = stats[0]
    assert lesion.phenotype == "lesion"
    assert lesion.voxels == 1000
    assert lesion.volume_ml == pytest.approx(8.0)
    # indices 5..14 -> mean 9.5 -> 2 * 9.5 + origin
    assert lesion.centroid_mm == pytest.approx((9.0, 39.0, 24.0))
    assert lesion.fraction_of_lesion == 1.0
    assert [s.phenotype for s in stats] == ["lesion", "enhancing"]


def test_anisotropic_spacing_volume_and_centroid():
    aff = affine((0.5, 1.0, 3.0))
    lesion = habitat_stats(cube_mask(), aff)[0]
    assert lesion.volume_ml == pytest.approx(1000 * 0.5 * 1.0 * 3.0 / 1000)
    assert lesion.centroid_mm == pytest.approx((4.75, 9.5, 28.5))


def test_empty_mask_has_only_an_empty_lesion():
    stats = habitat_stats(np.zeros((5, 5, 5), dtype=np.int16), affine())
    assert len(stats) == 1
    assert stats[0].voxels == 0
    assert stats[0].volume_ml == 0.0
    assert stats[0].centroid_mm is None
    assert stats[0].fraction_of_lesion == 0.0


def layered_mask(enhancing_label: int | None) -> np.ndarray:
    """10x10x10 lesion: 200 voxels label 1, 500 label 2, 300 enhancing (or label 2 if none)."""
    mask = np.zeros((12, 12, 12), dtype=np.int16)
    mask[1:11, 1:11, 1:3] = 1
    mask[1:11, 1:11, 3:8] = 2
    mask[1:11, 1:11, 8:11] = enhancing_label if enhancing_label is not None else 2
    return mask


def test_label_1_is_necrotic_core_inside_an_enhancing_lesion():
    stats = by_phenotype(layered_mask(4), affine())
    assert list(stats) == ["lesion", "enhancing", "necrotic_core", "oedema"]
    assert stats["lesion"].labels == (1, 2, 4)
    assert stats["enhancing"].labels == (4,)
    assert stats["necrotic_core"].voxels == 200
    assert stats["necrotic_core"].fraction_of_lesion == pytest.approx(0.2)
    assert stats["oedema"].fraction_of_lesion == pytest.approx(0.5)
    assert stats["enhancing"].fraction_of_lesion == pytest.approx(0.3)
    # z slices 1..2 -> mean z index 1.5
    assert stats["necrotic_core"].centroid_mm == pytest.approx((5.5, 5.5, 1.5))


def test_label_1_is_non_enhancing_core_without_enhancement():
    stats = by_phenotype(layered_mask(None), affine())
    assert list(stats) == ["lesion", "non_enhancing_core", "oedema"]
    assert stats["non_enhancing_core"].fraction_of_lesion == pytest.approx(0.2)
    assert stats["oedema"].fraction_of_lesion == pytest.approx(0.8)


def test_both_enhancing_labels_count_as_enhancing():
    mask = layered_mask(3)
    mask[1:11, 1:11, 10] = 4
    enhancing = by_phenotype(mask, affine())["enhancing"]
    assert enhancing.labels == (3, 4)
    assert enhancing.voxels == 300
    assert PHENOTYPE_LABELS["enhancing"] == (3, 4)


def test_habitat_masks_always_has_every_phenotype():
    masks = habitat_masks(layered_mask(None))
    assert set(masks) == {"lesion", "enhancing", "necrotic_core", "non_enhancing_core", "oedema"}
    assert masks["non_enhancing_core"].sum() == 200
    assert masks["necrotic_core"].sum() == 0
    assert masks["enhancing"].sum() == 0
    assert habitat_masks(layered_mask(3))["necrotic_core"].sum() == 200


@pytest.mark.parametrize(
    ("width", "voxels"),
    # distances from one voxel: 1 (6 faces), sqrt2 (12 edges), sqrt3 (8 corners), 2 (6)
    [(1.0, 6), (1.5, 18), (1.8, 26), (2.0, 32)],
)
def test_margin_ring_around_one_voxel(width, voxels):
    mask = np.zeros((9, 9, 9), dtype=np.int16)
    mask[4, 4, 4] = 1
    ring = margin_ring(mask, affine(), width_mm=width)
    assert ring.voxels == voxels
    assert ring.phenotype == "margin_ring"
    assert ring.centroid_mm == pytest.approx((4.0, 4.0, 4.0))
    # the ring lies outside its one-voxel lesion: no share of it, a size ratio that exceeds 1
    assert ring.fraction_of_lesion is None and ring.ratio_to_lesion == voxels


def test_margin_ring_uses_mm_on_anisotropic_voxels():
    mask = np.zeros((9, 9, 9), dtype=np.int16)
    mask[4, 4, 4] = 1
    # z neighbours are 3 mm away: only the in-plane disc of radius 2 mm remains (4 + 4 + 4 voxels)
    ring = margin_ring_mask(mask, affine((1.0, 1.0, 3.0)), width_mm=2.0)
    assert ring.sum() == 12
    assert not ring[:, :, 3].any() and not ring[:, :, 5].any()


def test_margin_ring_of_a_cube_and_at_the_border():
    ring = margin_ring(cube_mask(lo=5, hi=15), affine((2, 2, 2)), width_mm=2.0)
    # only face neighbours lie within 2 mm on 2-mm voxels: 6 faces x 100
    assert ring.voxels == 600
    assert ring.volume_ml == pytest.approx(600 * 0.008)
    assert ring.ratio_to_lesion == pytest.approx(0.6)
    corner = np.zeros((6, 6, 6), dtype=np.int16)
    corner[0, 0, 0] = 2
    assert margin_ring_mask(corner, affine(), width_mm=1.0).sum() == 3


def test_margin_ring_of_empty_mask_and_bad_width():
    empty = margin_ring(np.zeros((4, 4, 4), dtype=np.int16), affine())
    assert empty.voxels == 0 and empty.centroid_mm is None and empty.ratio_to_lesion is None
    with pytest.raises(ValueError):
        margin_ring(cube_mask(), affine(), width_mm=0.0)


def test_intensity_ratio_hand_values():
    image = np.zeros((4, 4, 4))
    region = np.zeros_like(image, dtype=bool)
    reference = np.zeros_like(region)
    image[0, 0, :2] = [30.0, 50.0]
    region[0, 0, :2] = True
    image[3, 3, :] = [10.0, 20.0, 20.0, 30.0]
    reference[3, 3, :] = True
    assert intensity_ratio(image, region, reference) == pytest.approx(40.0 / 20.0)


def test_intensity_ratio_undefined_cases():
    image = np.ones((3, 3, 3))
    some = np.zeros_like(image, dtype=bool)
    some[0, 0, 0] = True
    none = np.zeros_like(some)
    assert intensity_ratio(image, none, some) is None
    assert intensity_ratio(image, some, none) is None
    assert intensity_ratio(np.zeros((3, 3, 3)), some, some) is None
    with pytest.raises(ValueError):
        intensity_ratio(image, some[:2], some)


@pytest.mark.parametrize(
    ("point", "side", "lobe"),
    [
        ((-30.0, 40.0, 20.0), "left", "frontal"),  # middle frontal gyrus
        ((25.0, 35.0, -15.0), "right", "frontal"),  # orbitofrontal cortex, in front of the temporal pole
        ((50.0, -20.0, -15.0), "right", "temporal"),  # middle temporal gyrus
        ((-35.0, -50.0, 45.0), "left", "parietal"),  # intraparietal sulcus
        ((20.0, -90.0, 10.0), "right", "occipital"),  # occipital pole
        ((38.0, 0.0, 5.0), "right", "insular"),
        ((-10.0, -18.0, 8.0), "left", "deep_grey_matter"),  # thalamus
        ((2.0, 40.0, 30.0), "midline", "frontal"),  # medial superior frontal, on the falx
        ((20.0, -60.0, -30.0), "right", None),  # cerebellar hemisphere: no cerebral lobe
    ],
)
def test_mni_location_rule(point, side, lobe):
    assert hemisphere(point[0]) == side
    assert mni_lobe(*point) == lobe
