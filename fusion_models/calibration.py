"""Calibration, pure numpy: temperature scaling (Guo et al. 2017), ECE, Cox risk -> horizon probability."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of `logits / temperature`."""
    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of integer `labels` under `softmax(logits / temperature)`."""
    logp = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1)
    return float(-logp[np.arange(len(labels)), np.asarray(labels)].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """Temperature in `bounds` minimising held-out NLL."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise ValueError(f"need (N, K) logits and N labels with N > 0, got {logits.shape} and {labels.shape}")
    return fit_inverse_scale(lambda inv_t: nll(logits * inv_t, labels), bounds)


def fit_inverse_scale(objective: Callable[[float], float], bounds: tuple[float, float]) -> float:
    """Temperature T in `bounds` minimising `objective(1 / T)`.

    A held-out NLL of logits scaled by 1/T is convex in 1/T (the logits scale linearly with it),
    so a bounded 1-D search finds the global minimum without LBFGS's step tuning.
    """
    lo, hi = 1.0 / bounds[1], 1.0 / bounds[0]
    result = minimize_scalar(objective, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    # Brent stops within xatol of a bound; when the optimum is the bound itself, return it exactly.
    return float(1.0 / min((result.x, lo, hi), key=objective))


@dataclass(frozen=True)
class Temperature:
    """Temperature scaling of one task's logits (1.0: left as trained)."""

    value: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.value}

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> Temperature:
        return cls(float(stored["temperature"]))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    """Top-label ECE (Guo et al.) of (N, C) probabilities against integer labels."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("ECE of an empty set is undefined")
    return calibration_error(probs.max(axis=1), probs.argmax(axis=1) == labels, n_bins)


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    mean_confidence: float | None
    accuracy: float | None


def _bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    # Bins are (lower, upper]; rounding keeps 0.3 in (0.2, 0.3] despite 0.3 * 10 > 3 in floats.
    scaled = np.round(confidence * n_bins, 9)
    return np.clip(np.ceil(scaled).astype(int) - 1, 0, n_bins - 1)


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = 10) -> list[ReliabilityBin]:
    """Equal-width bins over [0, 1] (first bin closed at 0): mean confidence and accuracy per bin."""
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=float)
    idx = _bin_index(conf, n_bins)
    out = []
    for b in range(n_bins):
        mask = idx == b
        count = int(mask.sum())
        out.append(
            ReliabilityBin(
                lower=b / n_bins,
                upper=(b + 1) / n_bins,
                count=count,
                mean_confidence=float(conf[mask].mean()) if count else None,
                accuracy=float(hit[mask].mean()) if count else None,
            )
        )
    return out


def calibration_error(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = 10) -> float:
    """Sum over bins of (bin share of cases) x |accuracy - mean confidence|."""
    bins = reliability_bins(confidence, correct, n_bins)
    n = sum(b.count for b in bins)
    if n == 0:
        raise ValueError("calibration error of no cases")
    return float(sum(b.count / n * abs(b.accuracy - b.mean_confidence) for b in bins if b.count))


def breslow_cumulative_hazard(time: np.ndarray, event: np.ndarray, risk: np.ndarray, horizon: float) -> float:
    """Breslow estimate of the baseline cumulative hazard H0(horizon) given Cox linear predictors."""
    time, event, hazard_ratio = np.asarray(time, float), np.asarray(event, bool), np.exp(np.asarray(risk, float))
    event_times = np.unique(time[event & (time <= horizon)])
    return float(sum(((time == t) & event).sum() / hazard_ratio[time >= t].sum() for t in event_times))


def horizon_labels(times: np.ndarray, events: np.ndarray, horizon: float) -> np.ndarray:
    """0 = event by the horizon, 1 = event-free at it, -1 = censored before it (status unknown).

    An event after the horizon means event-free at it; a case censored before it could be either.
    """
    times, events = np.asarray(times, float), np.asarray(events, bool)
    by = events & (times <= horizon)
    free = times > horizon
    return np.where(by, 0, np.where(free, 1, -1))


@dataclass(frozen=True)
class RiskCalibration:
    """Turns a Cox linear predictor into an event probability at the horizon and a risk group."""

    horizon_months: float
    baseline_cumulative_hazard: float
    cut_points: tuple[float, float]  # training-cohort tertiles of the linear predictor
    groups: tuple[str, str, str] = ("low", "intermediate", "high")

    def event_probability(self, risk: float) -> float:
        """P(event by the horizon) = 1 - exp(-H0(horizon) * exp(risk))."""
        return float(-np.expm1(-self.baseline_cumulative_hazard * np.exp(risk)))

    def group(self, risk: float) -> str:
        return self.groups[int(np.searchsorted(self.cut_points, risk, side="right"))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "horizon_months": self.horizon_months,
            "baseline_cumulative_hazard": self.baseline_cumulative_hazard,
            "cut_points": list(self.cut_points),
        }

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> RiskCalibration:
        return cls(
            horizon_months=float(stored["horizon_months"]),
            baseline_cumulative_hazard=float(stored["baseline_cumulative_hazard"]),
            cut_points=tuple(float(c) for c in stored["cut_points"]),
        )
