"""Post-hoc calibration of every task of a trained model, by its head type, and the held-out figures for its card.

Any model family ends in task_heads layers, so one function fits them all from raw outputs and
targets per split: the head type's calibration (from the training and calibration splits),
split-conformal sets on the calibration split, and metrics only on the evaluation split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fusion_models.card import reliability_record
from fusion_models.conformal import ConformalSets, coverage_and_size
from fusion_models.task_heads.base import TaskCalibration, TaskSpec, task_head
from fusion_models.task_heads.classification import TEMPERATURE_BOUNDS

SET_COVERAGE = 0.9
Split = dict[str, tuple[np.ndarray, np.ndarray]]  # task -> (raw outputs, targets) of one split


def calibrate_tasks(
    tasks: Sequence[TaskSpec], data: dict[str, Split]
) -> tuple[dict[str, TaskCalibration], dict[str, ConformalSets], dict[str, dict[str, Any]], dict[str, Any]]:
    """`data`: 'training', 'calibration' and optionally 'evaluation' -> Split.

    -> (calibrations, conformal sets, records, metrics on the evaluation split ({} without one)).
    """
    calibrations: dict[str, TaskCalibration] = {}
    conformal: dict[str, ConformalSets] = {}
    records: dict[str, dict[str, Any]] = {}
    metrics: dict[str, Any] = {}
    for task in tasks:
        head = task_head(task.kind)
        calibration, records[task.name] = head.fit_calibration(
            task, data["training"][task.name], data["calibration"][task.name]
        )
        calibrations[task.name] = calibration
        outputs, labels = head.labelled(task, *data["calibration"][task.name])
        if len(labels):
            probs = head.probabilities(task, outputs, calibration)
            conformal[task.name] = ConformalSets.fit(probs, labels, SET_COVERAGE)
        if "evaluation" not in data:
            continue
        task_metrics = head.metrics(task, *data["evaluation"][task.name], calibration)
        outputs, labels = head.labelled(task, *data["evaluation"][task.name])
        if len(labels):  # on the card: the curve a report's figure places each conclusion on
            probs = head.probabilities(task, outputs, calibration)
            task_metrics["reliability"] = reliability_record(probs, labels)
            if task.name in conformal:
                sets = conformal[task.name]
                task_metrics["set_coverage_target"] = sets.coverage
                task_metrics.update({f"set_{k}": v for k, v in coverage_and_size(sets.members(probs), labels).items()})
        if task_metrics:
            metrics[task.name] = task_metrics
    return calibrations, conformal, records, metrics


def calibration_record(conformal: dict[str, ConformalSets], records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The fitted calibration for the model card: each task's record, temperatures gathered for a glance."""
    return {
        "tasks": records,
        "temperatures": {task: r["temperature"] for task, r in records.items() if "temperature" in r},
        "temperature_bounds": list(TEMPERATURE_BOUNDS),
        "temperatures_unbounded": {
            task: r["temperature_unbounded"] for task, r in records.items() if "temperature_unbounded" in r
        },
        "conformal": {task: c.to_dict() for task, c in conformal.items()},
    }
