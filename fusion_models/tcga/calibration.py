"""The honesty layer around a fitted linear model: conformal sets and a genomics OOD detector.

Fitted on a calibration split that the model's training (its own inner CV included) never saw,
so the conformal guarantee holds for the refit model.

Probabilities keep the model's own temperature, fitted on the out-of-fold logits of its inner
CV (every training case, ~350). A second temperature fitted on the ~70 labelled cases of the
calibration split was measured and rejected: over the five test folds of bench/calibration.py's
split it raised the grade ECE from 0.089 to 0.106-0.114 (too few cases to pin a temperature down),
and it would have split the reported probabilities from the ones the risk head is stacked on.

OOD: Mahalanobis distance of the genomic features the classifier heads read, standardised and
clipped exactly as the heads see them, fitted on the training cases. The model reads only
genomics (and age/sex), so an OOD case cannot be re-predicted without it: the entry carries
action 'none' and the consistency and confidence rules lower the conclusions downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fusion_models.calibration import expected_calibration_error, horizon_labels, softmax
from fusion_models.conformal import DEFAULT_COVERAGE, ConformalSets, coverage_and_size
from fusion_models.ood import DEFAULT_FALSE_ALARM_RATE, MahalanobisDetector
from fusion_models.tcga.cohort import Cohort
from fusion_models.tcga.features import modality_of
from fusion_models.tcga.model import LinearGliomaModel
from schemas.fusion import ModalityOOD

RISK = "risk"
OOD_DETAIL = (
    "mean Mahalanobis distance of the standardised genomic features the model reads from its training cases "
    "(Ledoit-Wolf covariance); threshold from clean held-out cases; a genomics-only model cannot mask it"
)


def genomic_columns(model: LinearGliomaModel) -> np.ndarray:
    """Sorted indices of the genomic features any classifier member reads."""
    used = {int(j) for head in model.classifiers for member in head.members for j in member.features}
    return np.array(sorted(j for j in used if modality_of(model.feature_names[j]) == "genomics"), dtype=np.int64)


@dataclass(frozen=True)
class PostHocCalibration:
    conformal: dict[str, ConformalSets]  # classification tasks and risk (event status at the horizon)
    ood: MahalanobisDetector  # reads the genomic features the heads use (its `columns`)

    def ood_entry(self, Z: np.ndarray) -> ModalityOOD:
        score = self.ood.score(Z)
        return ModalityOOD(
            modality="genomics",
            method=self.ood.method,
            score=score,
            threshold=self.ood.threshold,
            false_alarm_rate=self.ood.false_alarm_rate,
            out_of_distribution=score > self.ood.threshold,
            action="none",
            detail=OOD_DETAIL,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "conformal": {task: c.to_dict() for task, c in self.conformal.items()},
            "ood": self.ood.to_dict(),
        }

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> PostHocCalibration:
        return cls(
            {task: ConformalSets.from_dict(c) for task, c in stored["conformal"].items()},
            MahalanobisDetector.from_dict(stored["ood"]),
        )


def _aligned_z(model: LinearGliomaModel, cohort: Cohort) -> np.ndarray:
    return model.preprocessor.transform(model.align(cohort.X, cohort.feature_names))


def risk_probabilities(model: LinearGliomaModel, cohort: Cohort) -> tuple[np.ndarray, np.ndarray]:
    """[P(event by horizon), P(event-free at it)] and horizon labels (-1 = censored before it)."""
    scores = model.predict(cohort).risk
    p_event = np.array([model.risk.calibration.event_probability(float(s)) for s in scores])
    labels = horizon_labels(cohort.survival_months, cohort.event.astype(bool), model.config.risk.horizon_months)
    return np.column_stack([p_event, 1.0 - p_event]), labels


def fit_post_hoc(
    model: LinearGliomaModel,
    training: Cohort,
    calibration: Cohort,
    *,
    coverage: float = DEFAULT_COVERAGE,
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE,
) -> PostHocCalibration:
    """Conformal thresholds on `calibration`; OOD mean/covariance on `training`, threshold on `calibration`."""
    Z = _aligned_z(model, calibration)
    conformal = {}
    for head in model.classifiers:
        y = calibration.labels(head.spec.task)
        known = y >= 0
        conformal[head.spec.task] = ConformalSets.fit(head.probabilities(Z[known]), y[known], coverage)
    probs, labels = risk_probabilities(model, calibration)
    conformal[RISK] = ConformalSets.fit(probs[labels >= 0], labels[labels >= 0], coverage)
    detector = MahalanobisDetector.fit(
        _aligned_z(model, training), [row[None] for row in Z], false_alarm_rate, genomic_columns(model)
    )
    return PostHocCalibration(conformal, detector)


def evaluate_post_hoc(model: LinearGliomaModel, post: PostHocCalibration, cohort: Cohort) -> dict[str, Any]:
    """On cases used for neither fit: ECE before and after the temperature, set coverage, OOD false alarms."""
    Z = _aligned_z(model, cohort)
    figures: dict[str, Any] = {}
    for head in model.classifiers:
        task = head.spec.task
        y = cohort.labels(task)
        known = y >= 0
        calibrated = head.probabilities(Z[known])
        sets = post.conformal[task].members(calibrated)
        figures[task] = {
            "n": int(known.sum()),
            "accuracy": float(np.mean(calibrated.argmax(axis=1) == y[known])),
            "ece_uncalibrated": expected_calibration_error(softmax(head.logits(Z[known])), y[known]),
            "ece": expected_calibration_error(calibrated, y[known]),
            "temperature": head.temperature,
            **{f"set_{k}": v for k, v in coverage_and_size(sets, y[known]).items()},
        }
    probs, labels = risk_probabilities(model, cohort)
    known = labels >= 0
    figures[RISK] = {
        "n": int(known.sum()),
        **{f"set_{k}": v for k, v in coverage_and_size(post.conformal[RISK].members(probs[known]), labels[known]).items()},
    }
    scores = np.array([post.ood.score(row[None]) for row in Z])
    figures["ood"] = {
        "threshold": post.ood.threshold,
        "false_alarm_bound": post.ood.false_alarm_rate,
        "false_alarm_rate": float(np.mean(scores > post.ood.threshold)),
        "n": len(scores),
    }
    return figures
