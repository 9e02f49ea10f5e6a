"""Survival head: a Cox linear predictor, partial-likelihood loss, Breslow baseline hazard at the horizon."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fusion_models.calibration import RiskCalibration, breslow_cumulative_hazard, horizon_labels
from fusion_models.card import survival_metrics
from fusion_models.heads import cox_partial_likelihood_loss
from fusion_models.task_heads.base import TaskHead, TaskSpec, register_task_head

TERTILES = (1 / 3, 2 / 3)


class RiskScore(nn.Linear):
    """One linear predictor per case, (B, D) -> (B,); no bias, the Cox likelihood cannot see one."""

    def __init__(self, in_dim: int):
        super().__init__(in_dim, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x).squeeze(-1)


def known_survival(outputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Risk scores, times and events of the cases whose survival is known."""
    times, events = np.asarray(targets, dtype=float).T
    known = ~np.isnan(times)
    return np.asarray(outputs)[known], times[known], events[known].astype(bool)


@register_task_head("survival")
class SurvivalHead(TaskHead):
    calibration_type = RiskCalibration

    def check_spec(self, spec: TaskSpec) -> None:
        if None in (spec.horizon_months, spec.event_target) or len(spec.labels) != 2:
            raise ValueError("a survival task needs horizon_months, event_target and two labels (event by, free at)")

    def layer(self, in_dim: int, spec: TaskSpec) -> nn.Module:
        return RiskScore(in_dim)

    def encode_target(self, spec: TaskSpec, labels: Any, where: str) -> tuple[float, ...]:
        time, event = getattr(labels, spec.target), getattr(labels, spec.event_target)
        return (float(time), float(event)) if time is not None and event is not None else (math.nan, 0.0)

    def loss(self, outputs: Tensor, targets: Tensor, spec: TaskSpec) -> Tensor:
        times, events = targets[:, 0], targets[:, 1]
        known = ~torch.isnan(times)
        return cox_partial_likelihood_loss(outputs[known], times[known], events[known])

    def fit_calibration(self, spec, fitted, heldout):
        """Breslow baseline hazard at the horizon and tertile cut points, both from the fitted cases.

        They describe the distribution of the network's scores, not its errors, so they come from
        the training cohort; the held-out cases only check them (conformal sets, metrics).
        """
        outputs, _ = fitted
        scores, times, events = known_survival(*fitted)
        calibration = RiskCalibration(
            horizon_months=spec.horizon_months,
            baseline_cumulative_hazard=breslow_cumulative_hazard(times, events, scores, spec.horizon_months),
            cut_points=tuple(float(q) for q in np.quantile(np.asarray(outputs), TERTILES)),
        )
        return calibration, calibration.to_dict()

    def probabilities(self, spec, outputs, calibration) -> np.ndarray:
        """[P(event by the horizon), P(event-free at it)] per case."""
        p_event = np.array([calibration.event_probability(float(s)) for s in np.ravel(outputs)])
        return np.column_stack([p_event, 1.0 - p_event])

    def labelled(self, spec, outputs, targets):
        scores, times, events = known_survival(outputs, targets)
        labels = horizon_labels(times, events, spec.horizon_months)
        return scores[labels >= 0], labels[labels >= 0]

    def metrics(self, spec, outputs, targets, calibration) -> dict[str, Any]:
        return survival_metrics(*known_survival(outputs, targets))

    def prediction_fields(self, spec, output, calibration) -> dict[str, Any]:
        score = float(np.ravel(output)[0])
        return {"score": score, "risk_group": calibration.group(score)}

    def attribution_target(self, spec: TaskSpec, output: Tensor) -> Tensor:
        return output.sum()

    def ensemble(self, spec: TaskSpec, members) -> Tensor:
        """The mean linear predictor: a Cox risk has no probability scale before the baseline hazard."""
        return torch.stack(list(members)).mean(0)
