"""What cross-validation compares: methods chosen by name that fit on a cohort and predict held-out cases."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fusion_models.tcga.cohort import Cohort
from toolkit.registry import Registry


@dataclass(frozen=True)
class Predictions:
    """Held-out outputs of one method; a task it does not answer is absent (risk: None)."""

    probabilities: dict[str, np.ndarray]  # task -> (n, K), columns in TASK_LABELS[task] order
    risk: np.ndarray | None = None  # (n,), higher = worse prognosis


class Fitted(Protocol):
    def predict(self, cohort: Cohort) -> Predictions: ...


Method = Callable[[Cohort], Fitted]
METHODS: Registry[Method] = Registry("cross-validation method", missing=ValueError)


def register_method(name: str) -> Callable[[Method], Method]:
    """Register `fit(cohort) -> Fitted` under `name`."""
    return METHODS.register(name)
