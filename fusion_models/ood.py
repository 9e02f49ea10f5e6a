"""Out-of-distribution scores: Mahalanobis distance to the training data, thresholded on clean held-out cases.

A case's score for one modality is the mean Mahalanobis distance of its rows (one row for
a feature vector; one row per patch for a slide) from the training rows' mean, under a
Ledoit-Wolf shrinkage covariance (Lee et al., NeurIPS 2018 use the same distance on
embeddings; shrinkage keeps the inverse stable with a few hundred training rows).

The threshold is the k-th smallest score of n clean held-out cases, k = ceil((n + 1)(1 - a)),
so a new clean case exceeds it with probability at most 1 - k / (n + 1) <= a (the same
order-statistic argument as split-conformal). With too few held-out cases for the target
rate a, k is capped at n and the stored rate is the bound actually reached, 1 / (n + 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.covariance import LedoitWolf

METHOD = "mahalanobis_ledoit_wolf"
DEFAULT_FALSE_ALARM_RATE = 0.05
# A non-finite input has no distance; it is as far from the training data as a float can say.
FARTHEST = float(np.finfo(np.float64).max)


def mahalanobis(rows: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Per-row sqrt((x - mean)^T P (x - mean)); non-finite rows (or overflow) -> FARTHEST."""
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    finite = np.isfinite(rows).all(axis=1)
    centred = np.where(finite[:, None], rows - mean, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        squared = np.einsum("nd,de,ne->n", centred, precision, centred)
    distance = np.sqrt(np.clip(squared, 0.0, None))
    return np.where(finite & np.isfinite(distance), distance, FARTHEST)


def threshold_at(scores: np.ndarray, false_alarm_rate: float) -> tuple[float, float]:
    """(threshold, false-alarm bound reached) from clean held-out scores; see the module note."""
    if not 0 < false_alarm_rate < 1:
        raise ValueError(f"false_alarm_rate must lie in (0, 1), got {false_alarm_rate}")
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(scores)
    if n == 0:
        raise ValueError("a threshold needs at least one clean held-out score")
    k = min(math.ceil((n + 1) * (1 - false_alarm_rate)), n)
    return float(scores[k - 1]), 1.0 - k / (n + 1)


@dataclass(frozen=True)
class MahalanobisDetector:
    """One modality's detector: training mean and precision, held-out threshold."""

    mean: np.ndarray
    precision: np.ndarray
    threshold: float
    false_alarm_rate: float  # bound on the clean false-alarm rate the threshold reaches
    n_fit: int  # training rows
    n_threshold: int  # held-out cases
    columns: np.ndarray  # the row entries it reads
    method: str = METHOD

    @classmethod
    def fit(
        cls,
        train_rows: np.ndarray,
        heldout_cases: list[np.ndarray],
        false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE,
        columns: np.ndarray | None = None,
    ) -> MahalanobisDetector:
        """`train_rows` (N, D) from the training split; `heldout_cases`: each clean held-out case's rows.

        `columns`: the entries to read (default all).
        """
        train_rows = np.asarray(train_rows, dtype=np.float64)
        columns = np.arange(train_rows.shape[1]) if columns is None else np.asarray(columns, dtype=np.int64)
        estimator = LedoitWolf().fit(train_rows[:, columns])
        mean, precision = estimator.location_, estimator.precision_
        scores = [float(mahalanobis(np.atleast_2d(rows)[:, columns], mean, precision).mean()) for rows in heldout_cases]
        threshold, reached = threshold_at(np.array(scores), false_alarm_rate)
        return cls(mean, precision, threshold, reached, len(train_rows), len(heldout_cases), columns)

    def score(self, rows: np.ndarray) -> float:
        """Mean distance of one case's rows (a vector, or a slide's patches)."""
        with np.errstate(over="ignore"):
            distance = mahalanobis(np.atleast_2d(rows)[:, self.columns], self.mean, self.precision).mean()
        return float(min(distance, FARTHEST))

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "mean": self.mean.tolist(),
            "precision": self.precision.tolist(),
            "threshold": self.threshold,
            "false_alarm_rate": self.false_alarm_rate,
            "n_fit": self.n_fit,
            "n_threshold": self.n_threshold,
            "columns": self.columns.tolist(),
        }

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> MahalanobisDetector:
        if stored["method"] != METHOD:
            raise ValueError(f"unknown OOD method {stored['method']!r}")
        return cls(
            np.asarray(stored["mean"], dtype=np.float64),
            np.asarray(stored["precision"], dtype=np.float64),
            float(stored["threshold"]),
            float(stored["false_alarm_rate"]),
            int(stored["n_fit"]),
            int(stored["n_threshold"]),
            np.asarray(stored["columns"], dtype=np.int64),
        )
