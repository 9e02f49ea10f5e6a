"""Classification head: logits over the labels, cross-entropy, temperature scaling (Guo et al. 2017)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusion_models.calibration import Temperature, fit_temperature, softmax
from fusion_models.card import classification_metrics
from fusion_models.task_heads.base import TaskHead, TaskSpec, register_task_head
from schemas.errors import InputError

# Fewer labelled held-out cases than this cannot pin a temperature down; keep T = 1.
MIN_CALIBRATION_CASES = 10
# Temperature may soften the model but never sharpen it: with a few dozen held-out cases an
# apparent under-confidence cannot be told from luck, and over-confidence is the costlier
# error at a tumour board.
TEMPERATURE_BOUNDS = (1.0, 20.0)
CONFIDENT = 0.99


def label_index(spec: TaskSpec, labels: Any, where: str) -> tuple[float]:
    """(index of the case's label,), -1 when unknown; a label outside the task's is bad input."""
    value = getattr(labels, spec.target)
    if value is None:
        return (-1.0,)
    if value not in spec.labels:
        raise InputError(where, f"labels.{spec.target}", f"{value!r} is not one of {list(spec.labels)}")
    return (float(spec.labels.index(value)),)


def known_labels(outputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(targets)[:, 0].astype(np.int64)
    return np.asarray(outputs)[labels >= 0], labels[labels >= 0]


def confident(probs: np.ndarray, labels: np.ndarray, level: float = CONFIDENT) -> dict[str, Any]:
    """How many cases get a top probability above `level`, and how often that label is right."""
    sure = probs.max(axis=1) > level
    correct = probs.argmax(axis=1)[sure] == labels[sure]
    return {"n": int(sure.sum()), "accuracy": float(correct.mean()) if sure.any() else None}


@register_task_head("classification")
class ClassificationHead(TaskHead):
    calibration_type = Temperature

    def layer(self, in_dim: int, spec: TaskSpec) -> nn.Module:
        return nn.Linear(in_dim, len(spec.labels))

    def encode_target(self, spec: TaskSpec, labels: Any, where: str) -> tuple[float, ...]:
        return label_index(spec, labels, where)

    def loss(self, outputs: Tensor, targets: Tensor, spec: TaskSpec) -> Tensor:
        target = targets[:, 0].long()
        if not bool((target >= 0).any()):
            return outputs.sum() * 0
        return F.cross_entropy(outputs, target, ignore_index=-1)

    def fit_calibration(self, spec, fitted, heldout):
        logits, labels = known_labels(*heldout)
        if len(labels) < MIN_CALIBRATION_CASES:
            return Temperature(1.0), {"temperature": 1.0}
        # On the card: how far the never-sharpen bound moved the fit.
        record = {"temperature": fit_temperature(logits, labels, TEMPERATURE_BOUNDS)}
        record["temperature_unbounded"] = fit_temperature(logits, labels)
        return Temperature(record["temperature"]), record

    def default_calibration(self, spec: TaskSpec) -> Temperature:
        return Temperature(1.0)

    def probabilities(self, spec, outputs, calibration) -> np.ndarray:
        return softmax(outputs, calibration.value)

    def labelled(self, spec, outputs, targets):
        return known_labels(outputs, targets)

    def metrics(self, spec, outputs, targets, calibration) -> dict[str, Any]:
        logits, labels = known_labels(outputs, targets)
        if not len(labels):
            return {}
        figures = classification_metrics(logits, labels, calibration.value)
        figures[f"over_{CONFIDENT}"] = confident(softmax(logits, calibration.value), labels)
        return figures

    def attribution_target(self, spec: TaskSpec, output: Tensor) -> Tensor:
        """The top label's log-probability."""
        return torch.log_softmax(output, dim=-1).max()

    def ensemble(self, spec: TaskSpec, members) -> Tensor:
        """Log of the members' mean probabilities: logits whose softmax is that mean."""
        return torch.stack([m.softmax(-1) for m in members]).mean(0).clamp_min(1e-12).log()
