"""Intensity habitats without a label map: stable k-means clusters named by mean T1c, then FLAIR."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_models.imaging.clustering import cluster_count, cluster_habitats, cluster_stats, rank_clusters
from tests.test_imaging_grid import grid_affine


def three_habitats(t1c=(3.0, 1.0, -1.0), flair=(0.0, 2.0, -2.0), sizes=(100, 60, 40), seed=0):
    """A 1-D lesion of three intensity groups (in this order), shuffled along the lesion, with a little noise."""
    rng = np.random.default_rng(seed)
    group = rng.permutation(np.repeat(np.arange(3), sizes))
    n = len(group)
    shape = (n + 10, 1, 1)
    lesion = np.zeros(shape, dtype=bool)
    lesion[5 : 5 + n] = True
    volumes = {}
    for name, means in (("t1c", t1c), ("flair", flair)):
        volume = np.zeros(shape, dtype=np.float32)
        volume[5 : 5 + n, 0, 0] = np.asarray(means)[group] + rng.normal(0.0, 0.1, n)
        volumes[name] = volume
    return volumes, lesion, group


def test_clusters_are_ranked_by_mean_t1c_with_hand_checked_volumes():
    volumes, lesion, group = three_habitats()
    clusters = cluster_habitats(volumes, lesion)
    assert clusters.names == ("intensity_high", "intensity_mid", "intensity_low")
    assert clusters.order_by == ("t1c", "flair")
    # Group 0 has the highest T1c (3), group 1 the next (1), group 2 the lowest (-1).
    np.testing.assert_array_equal(clusters.labels[5:-5, 0, 0], group + 1)
    assert not clusters.labels[:5].any() and not clusters.labels[-5:].any()
    t1c_column = clusters.sequences.index("t1c")
    np.testing.assert_allclose(clusters.means[:, t1c_column], [3.0, 1.0, -1.0], atol=0.05)
    # 2 mm voxels: 0.008 mL each; 100, 60 and 40 voxels.
    stats = cluster_stats(clusters, grid_affine((2.0, 2.0, 2.0)))
    assert [s.phenotype for s in stats] == ["lesion", "intensity_high", "intensity_mid", "intensity_low"]
    assert [s.volume_ml for s in stats] == pytest.approx([1.6, 0.8, 0.48, 0.32])
    assert [s.fraction_of_lesion for s in stats] == pytest.approx([1.0, 0.5, 0.3, 0.2])
    assert clusters.describe(1) == "k-means 1/3 on flair,t1c; mean z flair -0.00, t1c 3.01"


def test_equal_t1c_means_are_ordered_by_flair():
    volumes, lesion, group = three_habitats(t1c=(0.0, 0.0, 3.0), flair=(-2.0, 2.0, 0.0))
    clusters = cluster_habitats(volumes, lesion)
    # group 2 leads on T1c; groups 0 and 1 tie on T1c, so FLAIR ranks group 1 above group 0.
    rank_of_group = {2: 1, 1: 2, 0: 3}
    np.testing.assert_array_equal(clusters.labels[5:-5, 0, 0], [rank_of_group[g] for g in group])


def test_names_do_not_depend_on_the_voxel_order_or_the_seed():
    first = cluster_habitats(*three_habitats(seed=0)[:2])
    other_volumes, other_lesion, other_group = three_habitats(seed=7)
    second = cluster_habitats(other_volumes, other_lesion, seed=123)
    np.testing.assert_array_equal(second.labels[5:-5, 0, 0], other_group + 1)
    np.testing.assert_allclose(first.means, second.means, atol=0.05)


def test_rank_breaks_near_ties_on_the_leading_column_by_the_next():
    means = np.array([[0.10, -2.0], [0.0, 2.0], [3.0, 0.0], [0.05, 5.0]])
    # Row 2 leads; rows 0, 1, 3 tie on column 0 (within 0.25) and are ordered by column 1.
    np.testing.assert_array_equal(rank_clusters(means), [2, 3, 1, 0])
    np.testing.assert_array_equal(rank_clusters(means, tie_z=0.01), [2, 0, 3, 1])


def test_without_t1c_flair_orders_and_small_or_flat_lesions_give_fewer_clusters():
    volumes, lesion, group = three_habitats()
    flair_only = cluster_habitats({"flair": volumes["flair"]}, lesion)
    assert flair_only.order_by == ("flair",)
    np.testing.assert_array_equal(flair_only.labels[5:-5, 0, 0], np.array([2, 1, 3])[group])
    assert cluster_count(lesion_voxels=50, distinct_rows=50) == 2
    assert cluster_count(lesion_voxels=1000, distinct_rows=1) == 1
    flat = {"t1c": lesion.astype(np.float32)}
    assert cluster_habitats(flat, lesion) is None
    with pytest.raises(ValueError, match="n_clusters"):
        cluster_habitats(volumes, lesion, n_clusters=5)
