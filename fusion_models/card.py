"""The model card written beside a checkpoint (MONAI-bundle-like metadata) and the metrics on it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from lifelines.utils import concordance_index
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from fusion_models.calibration import expected_calibration_error, nll, reliability_bins, softmax
from toolkit.atomic import atomic_write_text

if TYPE_CHECKING:  # the head types (imported by the model) read this module's metrics
    from fusion_models.task_heads import TaskSpec


class ModelConfig(Protocol):
    """What a card reads of any family's config."""

    name: str
    version: str
    description: str
    intended_use: str
    licence: str

    @property
    def tasks(self) -> tuple[TaskSpec, ...]: ...

CARD_FORMAT = "evidencechain.model_card/1"
LIMITATIONS = (
    "Research use only; not a medical device and not for diagnosis or treatment decisions.",
    "Metrics come from an evaluation split used for nothing else (not training, early stopping or "
    "calibration), but it is drawn from the same simulated distribution; external validation is "
    "required before any use.",
    "Probabilities (temperature per task) and 90% prediction sets (split-conformal, LAC score) are "
    "calibrated on a separate calibration split; their guarantee is marginal and holds only for cases "
    "exchangeable with it. A different scanner, stain, assay or population shifts them.",
    "The OOD detector (Mahalanobis distance per modality, threshold at a stated clean false-alarm rate) "
    "catches inputs far from the training data; a shift inside the training range passes unflagged.",
    "Modality contributions are attention weights: they show what the fusion relied on, not causality.",
)


def macro_auc(probs: np.ndarray, labels: np.ndarray) -> float | None:
    """Mean one-vs-rest AUC over classes that have both positives and negatives (None if none do)."""
    aucs = [
        roc_auc_score(labels == k, probs[:, k])
        for k in range(probs.shape[1])
        if 0 < (labels == k).sum() < len(labels)
    ]
    return float(np.mean(aucs)) if aucs else None


def classification_metrics(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, Any]:
    """Held-out accuracy, macro-F1, macro AUC, NLL and ECE (before and after temperature scaling)."""
    probs = softmax(logits, temperature)
    predicted = probs.argmax(axis=1)
    classes = list(range(logits.shape[1]))
    return {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, labels=classes, average="macro", zero_division=0)),
        "macro_auc": macro_auc(probs, labels),
        "nll": nll(logits, labels, temperature),
        "ece": expected_calibration_error(probs, labels),
        "ece_uncalibrated": expected_calibration_error(softmax(logits), labels),
        "temperature": float(temperature),
    }


def reliability_record(probs: np.ndarray, labels: np.ndarray) -> list[dict[str, Any]]:
    """Top-label reliability curve (10 equal-width bins): where a report places its conclusion's probability."""
    probs = np.asarray(probs, dtype=np.float64)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    return [vars(b) for b in reliability_bins(probs.max(axis=1), correct)]


def survival_metrics(risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> dict[str, Any]:
    """Harrell's C-index of the linear predictor (higher risk should die sooner)."""
    try:
        c_index = concordance_index(time, -risk, event) if event.any() else None
    except ZeroDivisionError:  # no comparable pair (e.g. one event, the others censored before it)
        c_index = None
    return {"n": int(len(risk)), "events": int(event.sum()), "c_index": None if c_index is None else float(c_index)}


def model_card(
    config: ModelConfig,
    *,
    inputs: dict[str, Any],
    weights_sha256: str,
    metrics: dict[str, Any],
    training: dict[str, Any],
    knowledge: dict[str, Any],
    limitations: Sequence[str] = LIMITATIONS,
) -> dict[str, Any]:
    """The card as a JSON-ready dict; `inputs` what the model reads; `training` describes the data and the splits.

    `metrics`: 'evaluation' (per task, evaluation split), 'calibration' (temperatures, conformal
    thresholds) and 'ood' (per modality: threshold, false-alarm rates).
    """
    return {
        "format": CARD_FORMAT,
        "name": config.name,
        "version": config.version,
        "description": config.description,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "intended_use": config.intended_use,
        "licence": config.licence,
        "inputs": inputs,
        "outputs": {
            t.name: {"kind": t.kind, "labels": list(t.labels), "horizon_months": t.horizon_months}
            for t in config.tasks
        },
        "knowledge": knowledge,
        "training_data": training,
        "metrics": metrics,
        "limitations": list(limitations),
        "weights_sha256": weights_sha256,
    }


def card_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".card.json")


def write_card(checkpoint: Path, card: dict[str, Any]) -> Path:
    path = card_path(checkpoint)
    atomic_write_text(path, json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    return path
