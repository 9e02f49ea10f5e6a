"""The linear model on disk: a JSON checkpoint of plain numbers (no pickle), its model card, and training.

`train_linear_model(config, data_dir, out)` is what the linear families (fusion_models/tcga/family.py)
train with: cohort folder in, checkpoint and card out, both written atomically.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from fusion_models.calibration import RiskCalibration
from fusion_models.card import CARD_FORMAT, write_card
from fusion_models.tcga.calibration import PostHocCalibration, fit_post_hoc
from fusion_models.tcga.cohort import Cohort, load_cohort, stratified_folds
from fusion_models.tcga.linear import CoxFit, LogisticMember, Preprocessor
from fusion_models.tcga.model import (
    ClassifierHead,
    LinearGliomaModel,
    LinearModelConfig,
    RiskHead,
    fit_linear_model,
)
from schemas.errors import InputError
from toolkit.atomic import atomic_write_bytes

CHECKPOINT_FORMAT = "evidencechain.linear_checkpoint/1"
# 1 of 5 folds (about 88 of 440 cases) calibrates: enough for a 90% conformal quantile and a 5% OOD threshold.
CALIBRATION_FOLDS = 5
LIMITATIONS = (
    "Research use only; not a medical device and not for diagnosis or treatment decisions.",
    "Expression must be RNA-seq z-scores against diploid samples (cBioPortal, as in TCGA); other scales are "
    "refused, and another laboratory's normalisation shifts the probabilities.",
    "TCGA computed the z-scores within each study (LGG, GBM) separately and GBM is grade 4 by definition, so "
    "part of what the expression features carry for grade 4 is that normalisation batch: expect lower grade "
    "discrimination on data normalised otherwise.",
    "Held-out metrics are out-of-fold predictions of the inner patient-level cross-validation; the "
    "hyper-parameters were chosen on the same cohort, so external validation is required before any use.",
    "Prediction sets (split-conformal, LAC, 90%) and the genomics OOD threshold are fitted on a calibration "
    "split held out from training (patient-level, stratified); bench/calibration.py measures them, and the "
    "probabilities' ECE, on a further split used for nothing else.",
    "Modality contributions are shares of |coefficient x standardised value| per modality: they describe "
    "the linear model, not causality.",
)


def _member_json(m: LogisticMember) -> dict[str, Any]:
    return {"features": m.features.tolist(), "coef": m.coef.tolist(), "intercept": m.intercept.tolist()}


def to_payload(
    model: LinearGliomaModel, training: dict[str, Any], post_hoc: PostHocCalibration | None = None
) -> dict[str, Any]:
    risk = model.risk
    return {
        "format": CHECKPOINT_FORMAT,
        "family": model.config.name,
        "config": model.config.model_dump(mode="json"),
        "feature_names": list(model.feature_names),
        "preprocessor": {
            "mean": model.preprocessor.mean.tolist(),
            "scale": model.preprocessor.scale.tolist(),
            "selectable": model.preprocessor.selectable.tolist(),
        },
        "classifiers": {
            h.spec.task: {"temperature": h.temperature, "members": [_member_json(m) for m in h.members]}
            for h in model.classifiers
        },
        "risk": {
            "beta": risk.cox.beta.tolist(),
            "centre": risk.cox.centre.tolist(),
            "fill": risk.fill.tolist(),
            "baseline_cumulative_hazard": risk.calibration.baseline_cumulative_hazard,
            "cut_points": list(risk.calibration.cut_points),
        },
        "heldout_metrics": model.heldout_metrics,
        "training": training,
        **({"post_hoc": post_hoc.to_dict()} if post_hoc else {}),
    }


def from_payload(payload: dict[str, Any]) -> LinearGliomaModel:
    """Inverse of `to_payload`; KeyError/ValueError/ValidationError on a malformed payload."""
    config = LinearModelConfig.model_validate(payload["config"])
    pre = payload["preprocessor"]
    heads = []
    for spec in config.classifiers:
        stored = payload["classifiers"][spec.task]
        members = tuple(
            LogisticMember(np.array(m["features"], dtype=np.int64), np.array(m["coef"]), np.array(m["intercept"]))
            for m in stored["members"]
        )
        heads.append(ClassifierHead(spec, members, float(stored["temperature"])))
    risk = payload["risk"]
    calibration = RiskCalibration(
        horizon_months=config.risk.horizon_months,
        baseline_cumulative_hazard=float(risk["baseline_cumulative_hazard"]),
        cut_points=tuple(float(c) for c in risk["cut_points"]),
    )
    return LinearGliomaModel(
        config=config,
        feature_names=tuple(payload["feature_names"]),
        preprocessor=Preprocessor(
            np.array(pre["mean"]), np.array(pre["scale"]), np.array(pre["selectable"], dtype=bool)
        ),
        classifiers=tuple(heads),
        risk=RiskHead(
            config.risk, CoxFit(np.array(risk["beta"]), np.array(risk["centre"])), np.array(risk["fill"]), calibration
        ),
        heldout_metrics=payload["heldout_metrics"],
    )


@dataclass(frozen=True)
class LoadedLinearModel:
    model: LinearGliomaModel
    weights_sha256: str
    path: Path
    post_hoc: PostHocCalibration | None = None  # None: a checkpoint from before it (no sets, no OOD)


def save_linear_model(
    model: LinearGliomaModel, path: Path, training: dict[str, Any], post_hoc: PostHocCalibration | None = None
) -> str:
    """Write the checkpoint atomically; returns its SHA-256."""
    data = (json.dumps(to_payload(model, training, post_hoc), indent=1) + "\n").encode()
    atomic_write_bytes(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def read_linear_payload(path: Path) -> tuple[dict[str, Any], bytes]:
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "checkpoint", "file not found; train one with `evchain train`")
    raw = path.read_bytes()
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(str(path), "checkpoint", f"not JSON: {error}") from None
    return payload, raw


def linear_model_from_payload(payload: dict[str, Any], raw: bytes, path: Path) -> LoadedLinearModel:
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise InputError(str(path), "format", f"expected {CHECKPOINT_FORMAT}")
    try:
        model = from_payload(payload)
        post_hoc = PostHocCalibration.from_dict(payload["post_hoc"]) if "post_hoc" in payload else None
    except (KeyError, TypeError, ValueError, ValidationError) as error:
        raise InputError(str(path), "checkpoint", f"malformed: {error!r}") from None
    return LoadedLinearModel(model, hashlib.sha256(raw).hexdigest(), Path(path), post_hoc)


def load_linear_model(path: Path) -> LoadedLinearModel:
    return linear_model_from_payload(*read_linear_payload(path), Path(path))


def model_card(
    model: LinearGliomaModel,
    *,
    weights_sha256: str,
    training: dict[str, Any],
    post_hoc: PostHocCalibration | None = None,
) -> dict[str, Any]:
    config = model.config
    return {
        "format": CARD_FORMAT,
        "name": config.name,
        "version": config.version,
        "description": config.description,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "intended_use": config.intended_use,
        "licence": config.licence,
        "inputs": {"features": len(model.feature_names), "config": config.model_dump(mode="json")},
        "outputs": {
            **{h.spec.task: {"kind": "classification", "labels": list(h.labels)} for h in model.classifiers},
            "risk": {
                "kind": "survival", "labels": list(config.risk.labels), "horizon_months": config.risk.horizon_months
            },
        },
        "training_data": training,
        "metrics": {"heldout": model.heldout_metrics, "calibration": _calibration_card(post_hoc)},
        "limitations": list(LIMITATIONS),
        "weights_sha256": weights_sha256,
    }


def _calibration_card(post_hoc: PostHocCalibration | None) -> dict[str, Any]:
    if post_hoc is None:
        return {"note": "no calibration split: no prediction sets and no OOD detector"}
    ood = post_hoc.ood
    return {
        "conformal": {task: c.to_dict() for task, c in post_hoc.conformal.items()},
        "ood": {
            "genomics": {
                "method": ood.method, "threshold": ood.threshold, "false_alarm_bound": ood.false_alarm_rate,
                "n_threshold_cases": ood.n_threshold, "features": len(ood.columns),
            }
        },
        "evaluated_in": "bench/calibration.py (a further split used for nothing else)",
    }


@dataclass(frozen=True)
class LinearTrainResult:
    checkpoint: Path
    card: Path
    metrics: dict[str, Any]
    n_cases: int
    seconds: float

    def summary(self) -> str:
        parts = [f"{task}: accuracy {m['accuracy']:.3f}, ECE {m['ece']:.3f}" for task, m in self.metrics.items()]
        held_out = "; ".join(parts)
        return f"trained on {self.n_cases} cases in {self.seconds:.0f} s -> {self.checkpoint} (held-out {held_out})"


def calibration_split(cohort: Cohort, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, calibration) indices: one patient-level stratified fold of CALIBRATION_FOLDS is held out."""
    return stratified_folds(cohort, CALIBRATION_FOLDS, seed)[0]


def train_linear_model(config: LinearModelConfig, data_dir: Path, out: Path) -> LinearTrainResult:
    """Fit a linear model of `config` on every case of `data_dir` (labels.csv + cases/)."""
    started = time.perf_counter()
    cohort = load_cohort(data_dir)
    fit_index, calibration_index = calibration_split(cohort, config.seed)
    fitted_on = cohort.subset(fit_index)
    model = fit_linear_model(config, fitted_on)
    post_hoc = fit_post_hoc(model, fitted_on, cohort.subset(calibration_index))
    training = {
        "description": f"{len(cohort)} cases of {Path(data_dir).name} (labels.csv)",
        "n_cases": len(cohort),
        "n_fit": len(fit_index),
        "n_calibration": len(calibration_index),
        "n_grade_labelled": int((cohort.labels("grade") >= 0).sum()),
        "n_subtype_labelled": int((cohort.labels("molecular_subtype") >= 0).sum()),
        "events": int(cohort.event.sum()),
    }
    sha256 = save_linear_model(model, out, training, post_hoc)
    card = write_card(Path(out), model_card(model, weights_sha256=sha256, training=training, post_hoc=post_hoc))
    return LinearTrainResult(Path(out), card, model.heldout_metrics, len(cohort), time.perf_counter() - started)

