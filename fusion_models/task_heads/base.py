"""Head types: what a task's output layer is, how it learns, how it is calibrated and reported.

A fusion model (any family, any fusion head) ends in one output layer per task; the task's
`kind` names a registered `TaskHead` that builds that layer and owns everything kind-specific
about it: the training target read from a case's labels, the loss, the post-hoc calibration
fitted on held-out cases, and the mapping of one case's raw output to a `TaskPrediction`.
Training, inference and the model card dispatch on it instead of branching on the kind, so a
new head type is one module that registers itself here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from fusion_models.conformal import ConformalSets
from schemas.fusion import Task, TaskPrediction
from toolkit.registry import Registry


class TaskSpec(BaseModel):
    """One output of a model: its name, head type (`kind`), labels and where its training target lives.

    Survival heads are Cox heads; their two `labels` name the horizon events they report.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Task
    kind: str = Field(description="Registered head type (fusion_models.task_heads): classification, ordinal, survival.")
    labels: tuple[str, ...] = Field(min_length=2)
    target: str = Field(description="Attribute of the training labels it learns from ('grade'; survival: the time).")
    event_target: str | None = Field(default=None, description="Survival: attribute holding the event flag.")
    horizon_months: float | None = Field(default=None, gt=0, description="Survival: horizon of the event labels.")

    @model_validator(mode="after")
    def _head_accepts(self) -> TaskSpec:
        task_head(self.kind).check_spec(self)
        return self


class TaskCalibration(Protocol):
    """A head type's fitted post-hoc calibration; stored in checkpoints as plain JSON types."""

    def to_dict(self) -> dict[str, Any]: ...


class TaskHead(ABC):
    """One head type. Arrays are numpy on the (N, ...) raw outputs of N cases; targets are (N, width) floats."""

    kind: ClassVar[str]
    calibration_type: ClassVar[type]  # has from_dict(dict) -> instance

    def check_spec(self, spec: TaskSpec) -> None:
        """Raise ValueError when `spec` is not a task this head type can learn."""
        if (spec.horizon_months, spec.event_target) != (None, None):
            raise ValueError(f"horizon_months and event_target belong to survival tasks, not {self.kind}")

    @abstractmethod
    def layer(self, in_dim: int, spec: TaskSpec) -> nn.Module:
        """The output layer on a fused (B, in_dim) representation."""

    @abstractmethod
    def encode_target(self, spec: TaskSpec, labels: Any, where: str) -> tuple[float, ...]:
        """The training target of one case from its labels object (NaN / -1 = unknown)."""

    @abstractmethod
    def loss(self, outputs: Tensor, targets: Tensor, spec: TaskSpec) -> Tensor:
        """Scalar training loss over the cases whose target is known (0 with a graph when none is)."""

    @abstractmethod
    def fit_calibration(
        self, spec: TaskSpec, fitted: tuple[np.ndarray, np.ndarray], heldout: tuple[np.ndarray, np.ndarray]
    ) -> tuple[TaskCalibration, dict[str, Any]]:
        """Calibration from (outputs, targets) of the fitted cases and of held-out ones; -> (calibration, card record)."""

    @abstractmethod
    def probabilities(self, spec: TaskSpec, outputs: np.ndarray, calibration: TaskCalibration) -> np.ndarray:
        """(N, len(labels)) calibrated probabilities."""

    @abstractmethod
    def labelled(self, spec: TaskSpec, outputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Outputs and label indices of the cases whose label (survival: status at the horizon) is known."""

    @abstractmethod
    def metrics(
        self, spec: TaskSpec, outputs: np.ndarray, targets: np.ndarray, calibration: TaskCalibration
    ) -> dict[str, Any]:
        """Held-out figures for the model card ({} when no case is labelled)."""

    @abstractmethod
    def attribution_target(self, spec: TaskSpec, output: Tensor) -> Tensor:
        """The scalar an attribution of one case's output explains."""

    @abstractmethod
    def ensemble(self, spec: TaskSpec, members: Sequence[Tensor]) -> Tensor:
        """One raw output of the same shape from the (B, ...) outputs of a deep ensemble's members.

        Averaged in probability space where the head has one (Lakshminarayanan et al. 2017), so
        the combined output goes through this head type's calibration and prediction unchanged.
        """

    def default_calibration(self, spec: TaskSpec) -> TaskCalibration | None:
        """What an uncalibrated task uses, or None when the head cannot predict without calibration."""
        return None

    def prediction_fields(self, spec: TaskSpec, output: np.ndarray, calibration: TaskCalibration) -> dict[str, Any]:
        """Extra TaskPrediction fields of one case (survival: score, risk group)."""
        return {}

    def to_prediction(
        self, spec: TaskSpec, output: np.ndarray, calibration: TaskCalibration, conformal: ConformalSets | None = None
    ) -> TaskPrediction:
        """One case's raw output -> its TaskPrediction (calibrated probabilities, prediction set where fitted)."""
        probs = self.probabilities(spec, np.asarray(output)[None], calibration)
        sets = (
            {"prediction_set": conformal.labels(probs, spec.labels), "set_coverage": conformal.coverage}
            if conformal else {}
        )
        return TaskPrediction(
            task=spec.name,
            labels=list(spec.labels),
            probabilities=dict(zip(spec.labels, probs[0].tolist(), strict=True)),
            **self.prediction_fields(spec, np.asarray(output), calibration),
            **sets,
        )

    def calibration_from_dict(self, stored: dict[str, Any]) -> TaskCalibration:
        return self.calibration_type.from_dict(stored)


_HEADS: Registry[TaskHead] = Registry("task head type", missing=ValueError)


def register_task_head(kind: str) -> Callable[[type[TaskHead]], type[TaskHead]]:
    """Class decorator: register one instance of the head type under `kind`."""

    def decorator(cls: type[TaskHead]) -> type[TaskHead]:
        cls.kind = kind
        _HEADS.add(kind, cls())
        return cls

    return decorator


def task_head(kind: str) -> TaskHead:
    return _HEADS.get(kind)


def list_task_heads() -> list[str]:
    return _HEADS.names()
