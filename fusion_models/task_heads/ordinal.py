"""Ordinal head (WHO grade): a cumulative-link (proportional-odds) model, McCullagh 1980.

One linear score s per case and K-1 increasing cut points c_k: logit P(y > k) = s - c_k, so
the class probabilities are differences of ordered sigmoids and can never rank G4 above G3
while putting G3 below G2 (rank consistency, as in CORAL, Cao et al. 2020). The raw output of
a case is its K-1 cumulative logits. Calibration scales them by a temperature fitted on
held-out cases, the same never-sharpen rule as classification.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import expit
from torch import Tensor, nn

from fusion_models.calibration import Temperature, expected_calibration_error, fit_inverse_scale
from fusion_models.card import classification_metrics
from fusion_models.task_heads.base import TaskHead, TaskSpec, register_task_head
from fusion_models.task_heads.classification import (
    CONFIDENT,
    MIN_CALIBRATION_CASES,
    TEMPERATURE_BOUNDS,
    confident,
    known_labels,
    label_index,
)

TINY = 1e-12
UNBOUNDED = (0.05, 20.0)  # the card shows where the fit would go without the never-sharpen bound


class CumulativeLink(nn.Module):
    """(B, D) -> (B, K-1) cumulative logits s(x) - c_k with c_1 < c_2 < ... (softplus gaps)."""

    def __init__(self, in_dim: int, n_labels: int):
        super().__init__()
        self.score = nn.Linear(in_dim, 1, bias=False)
        self.first_cut = nn.Parameter(torch.zeros(1))
        self.gaps = nn.Parameter(torch.zeros(n_labels - 2))

    def cut_points(self) -> Tensor:
        return torch.cat([self.first_cut, self.first_cut + torch.cumsum(F.softplus(self.gaps), 0)])

    def forward(self, x: Tensor) -> Tensor:
        return self.score(x) - self.cut_points()


def ordinal_probabilities(cumulative_logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(N, K-1) cumulative logits -> (N, K) class probabilities: P(y = k) = P(y > k-1) - P(y > k)."""
    above = expit(np.asarray(cumulative_logits, dtype=np.float64) / temperature)
    n = len(above)
    upper = np.column_stack([np.ones(n), above])
    lower = np.column_stack([above, np.zeros(n)])
    probs = np.clip(upper - lower, 0.0, None)  # exact zeros only from rounding of ordered cut points
    return probs / probs.sum(axis=1, keepdims=True)


def ordinal_nll(cumulative_logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    probs = ordinal_probabilities(cumulative_logits, temperature)
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], TINY, None)).mean())


@register_task_head("ordinal")
class OrdinalHead(TaskHead):
    calibration_type = Temperature

    def check_spec(self, spec: TaskSpec) -> None:
        super().check_spec(spec)
        if len(spec.labels) < 3:
            raise ValueError("an ordinal task needs at least three ordered labels (two is classification)")

    def layer(self, in_dim: int, spec: TaskSpec) -> nn.Module:
        return CumulativeLink(in_dim, len(spec.labels))

    def encode_target(self, spec: TaskSpec, labels: Any, where: str) -> tuple[float, ...]:
        return label_index(spec, labels, where)

    def loss(self, outputs: Tensor, targets: Tensor, spec: TaskSpec) -> Tensor:
        target = targets[:, 0].long()
        known = target >= 0
        if not bool(known.any()):
            return outputs.sum() * 0
        above = torch.sigmoid(outputs[known])
        ones, zeros = torch.ones(len(above), 1), torch.zeros(len(above), 1)
        probs = torch.cat([ones, above], dim=1) - torch.cat([above, zeros], dim=1)
        picked = probs.gather(1, target[known][:, None]).squeeze(1)
        return -picked.clamp_min(TINY).log().mean()

    def fit_calibration(self, spec, fitted, heldout):
        logits, labels = known_labels(*heldout)
        if len(labels) < MIN_CALIBRATION_CASES:
            return Temperature(1.0), {"temperature": 1.0}

        def objective(inv_t: float) -> float:
            return ordinal_nll(logits * inv_t, labels)

        record = {"temperature": fit_inverse_scale(objective, TEMPERATURE_BOUNDS)}
        record["temperature_unbounded"] = fit_inverse_scale(objective, UNBOUNDED)
        return Temperature(record["temperature"]), record

    def default_calibration(self, spec: TaskSpec) -> Temperature:
        return Temperature(1.0)

    def probabilities(self, spec, outputs, calibration) -> np.ndarray:
        return ordinal_probabilities(outputs, calibration.value)

    def labelled(self, spec, outputs, targets):
        return known_labels(outputs, targets)

    def metrics(self, spec, outputs, targets, calibration) -> dict[str, Any]:
        logits, labels = known_labels(outputs, targets)
        if not len(labels):
            return {}
        probs = ordinal_probabilities(logits, calibration.value)
        # Class metrics on the calibrated probabilities (log p are logits whose softmax is p).
        figures = classification_metrics(np.log(np.clip(probs, TINY, None)), labels, 1.0)
        figures["ece_uncalibrated"] = expected_calibration_error(ordinal_probabilities(logits), labels)
        figures["temperature"] = calibration.value
        figures["mean_absolute_error"] = float(np.abs(probs.argmax(axis=1) - labels).mean())
        figures[f"over_{CONFIDENT}"] = confident(probs, labels)
        return figures

    def attribution_target(self, spec: TaskSpec, output: Tensor) -> Tensor:
        """The expected grade step, sum_k P(y > k): what moves the case up or down the scale."""
        return torch.sigmoid(output).sum()

    def ensemble(self, spec: TaskSpec, members) -> Tensor:
        """Logits of the members' mean P(y > k): a mean of ordered sigmoids stays ordered."""
        return torch.logit(torch.stack([torch.sigmoid(m) for m in members]).mean(0), eps=TINY)
