"""Habitats without a label map: k-means on normalised multi-sequence intensities inside the lesion (pure).

When a case has only a whole-tumour mask, its sub-regions are found the way habitat-imaging
studies find them (e.g. Dextraze et al., Oncotarget 2017): voxels of the lesion clustered on
their z-scored sequence intensities. k-means has no natural cluster order, so clusters are
sorted by their mean contrast-enhanced T1 (FLAIR breaking near-ties), and named by that rank: the same
lesion always gets the same names. The names say what the clusters are, intensity ranks,
not the BraTS phenotypes a radiologist delineates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans

from fusion_models.imaging.habitats import HabitatStat, region_stats

# Ordering sequences in priority order: enhancement first, then the oedema/infiltration signal.
ORDER_BY: tuple[str, ...] = ("t1c", "flair", "t2", "t1")
# Names by rank of the leading ordering sequence, brightest first, for 3 and for 2 clusters.
CLUSTER_NAMES: dict[int, tuple[str, ...]] = {
    3: ("intensity_high", "intensity_mid", "intensity_low"),
    2: ("intensity_high", "intensity_low"),
}
N_CLUSTERS = 3
SEED = 0
# Fewer lesion voxels per cluster than this make cluster means unstable: fewer clusters are fitted.
MIN_VOXELS_PER_CLUSTER = 20
# Cluster means on the leading sequence closer than this (in standard deviations) count as a tie, broken by the next.
TIE_Z = 0.25


@dataclass(frozen=True)
class Clusters:
    """A label map (0 outside the lesion, 1..k by rank) and what each rank means."""

    labels: np.ndarray  # int16, same grid as the sequences
    names: tuple[str, ...]  # names[r - 1] is label r
    sequences: tuple[str, ...]  # the sequences clustered on, in feature order
    order_by: tuple[str, ...]  # the sequences whose means ordered the clusters
    means: np.ndarray  # (k, len(sequences)) mean z-score per cluster, in rank order

    def units(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        return tuple((name, (rank,)) for rank, name in enumerate(self.names, start=1))

    def describe(self, rank: int) -> str:
        """'k-means 1/3 on t1c,flair; mean z t1c 1.20, flair 0.35': the locator of a cluster."""
        means = ", ".join(f"{s} {m:.2f}" for s, m in zip(self.sequences, self.means[rank - 1], strict=True))
        return f"k-means {rank}/{len(self.names)} on {','.join(self.sequences)}; mean z {means}"


def cluster_count(lesion_voxels: int, distinct_rows: int, n_clusters: int = N_CLUSTERS) -> int:
    """Clusters to fit: at most n_clusters, no more than distinct intensity vectors or the voxels allow."""
    return max(0, min(n_clusters, distinct_rows, lesion_voxels // MIN_VOXELS_PER_CLUSTER))


def rank_clusters(means: np.ndarray, tie_z: float = TIE_Z) -> np.ndarray:
    """Cluster indices brightest first by the first column; within `tie_z` of each other, by the next columns."""
    means = np.asarray(means, dtype=np.float64)
    order = list(np.argsort(-means[:, 0], kind="stable"))
    for column in range(1, means.shape[1]):
        # Bubble passes: k is at most 3, and only neighbours that tie on every earlier column may swap.
        for _ in range(len(order)):
            for i in range(len(order) - 1):
                a, b = order[i], order[i + 1]
                tied = np.all(np.abs(means[a, :column] - means[b, :column]) < tie_z)
                if tied and means[b, column] > means[a, column]:
                    order[i], order[i + 1] = b, a
    return np.asarray(order, dtype=int)


def cluster_habitats(
    normalised: Mapping[str, np.ndarray], lesion: np.ndarray, n_clusters: int = N_CLUSTERS, seed: int = SEED
) -> Clusters | None:
    """k-means (fixed seed) of the lesion's voxels on z-scored intensities; None when fewer than 2 clusters fit."""
    if n_clusters not in CLUSTER_NAMES:
        raise ValueError(f"n_clusters must be one of {sorted(CLUSTER_NAMES)}, got {n_clusters}")
    lesion = np.asarray(lesion, dtype=bool)
    names = tuple(sorted(normalised))
    if not names or not lesion.any():
        return None
    features = np.stack([np.asarray(normalised[s], dtype=np.float64)[lesion] for s in names], axis=1)
    k = cluster_count(len(features), len(np.unique(features, axis=0)), n_clusters)
    if k < 2:
        return None
    fitted = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(features)
    centres = np.stack([features[fitted.labels_ == c].mean(axis=0) for c in range(k)])
    order_by = tuple(s for s in ORDER_BY if s in names) or names
    by_rank = rank_clusters(centres[:, [names.index(s) for s in order_by]])
    rank_of = np.empty(k, dtype=np.int16)
    rank_of[by_rank] = np.arange(1, k + 1)
    labels = np.zeros(lesion.shape, dtype=np.int16)
    labels[lesion] = rank_of[fitted.labels_]
    return Clusters(labels, CLUSTER_NAMES[k], names, order_by, centres[by_rank])


def cluster_stats(clusters: Clusters, affine: np.ndarray) -> list[HabitatStat]:
    """The lesion first, then each cluster in rank order, with volumes and centroids as for BraTS habitats."""
    return region_stats(clusters.labels, clusters.units(), affine)
