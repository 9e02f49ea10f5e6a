"""One case through the linear model -> the same `FusionOutput` the neural fusion model gives."""

from __future__ import annotations

import numpy as np

from fusion_models.genomics.io import FILES, GENOMICS_DIR
from fusion_models.inputs import CaseInputs
from fusion_models.tcga.checkpoint import LoadedLinearModel
from fusion_models.tcga.features import EXPR, case_vector, modality_of
from fusion_models.tcga.model import PROBABILITY_INPUT, LinearGliomaModel
from schemas.common import MODALITIES, Modality
from schemas.errors import InputError
from schemas.fusion import FusionOutput, TaskPrediction

EXPRESSION_FILE = f"{GENOMICS_DIR}/{FILES['expression']}"
# Below this share of the model's genes, mean-filling would make the profile the training average.
MIN_EXPRESSION_COVERAGE = 0.5


def check_expression_coverage(model: LinearGliomaModel, x: np.ndarray) -> None:
    is_expression = np.array([n.startswith(EXPR) for n in model.feature_names])
    measured = int((~np.isnan(x[is_expression])).sum())
    needed = MIN_EXPRESSION_COVERAGE * is_expression.sum()
    if measured < needed:
        raise InputError(
            EXPRESSION_FILE, "gene",
            f"{measured} of the {int(is_expression.sum())} genes {model.config.name} reads are measured; "
            f"it needs at least {int(np.ceil(needed))}",
        )


def _shares(weights: dict[Modality, float]) -> dict[Modality, float]:
    total = sum(weights.values())
    return {m: w / total for m, w in weights.items()} if total > 0 else {}


def modality_contributions(
    model: LinearGliomaModel, z: np.ndarray, risk_inputs: np.ndarray, probabilities: dict[str, np.ndarray]
) -> dict[Modality, float]:
    """Mean over the tasks of each modality's share of |coefficient x standardised value|.

    Classification: terms of the top label's logit against the mean logit, averaged over
    members. Risk: age is clinical; a class-probability input passes on its classifier's shares.
    """
    per_task: dict[str, dict[Modality, float]] = {}
    for head in model.classifiers:
        top = int(probabilities[head.spec.task][0].argmax())
        weights: dict[Modality, float] = {}
        for member in head.members:
            for j, term in zip(member.features, member.terms(z, top), strict=True):
                modality = modality_of(model.feature_names[j])
                weights[modality] = weights.get(modality, 0.0) + abs(float(term)) / len(head.members)
        per_task[head.spec.task] = _shares(weights)
    risk_terms = np.abs((risk_inputs - model.risk.cox.centre) * model.risk.cox.beta)
    weights = {}
    for name, term in zip(model.config.risk.inputs, risk_terms, strict=True):
        task, _, _ = name.partition(PROBABILITY_INPUT)
        carried = per_task[task] if task in per_task else {modality_of(name): 1.0}
        for modality, share in carried.items():
            weights[modality] = weights.get(modality, 0.0) + float(term) * share
    per_task["risk"] = _shares(weights)
    summed: dict[Modality, float] = {}
    for shares in per_task.values():
        for modality, share in shares.items():
            summed[modality] = summed.get(modality, 0.0) + share
    return _shares({m: summed[m] for m in MODALITIES if m in summed})


def predict_case(loaded: LoadedLinearModel, inputs: CaseInputs) -> FusionOutput:
    """Calibrated grade and subtype probabilities, the Cox risk, prediction sets and the genomics OOD score."""
    model = loaded.model
    post = loaded.post_hoc
    names = model.feature_names
    x = case_vector(inputs.genomics, inputs.manifest, names)
    check_expression_coverage(model, x)
    X = x[None]
    Z = model.preprocessor.transform(X)
    probabilities = {head.spec.task: head.probabilities(Z) for head in model.classifiers}
    risk_inputs = model.risk.inputs(X, names, probabilities)
    score = float(model.risk.cox.linear_predictor(risk_inputs)[0])
    calibration = model.risk.calibration
    event_by, event_free = model.config.risk.labels
    p_event = calibration.event_probability(score)
    risk_probabilities = np.array([[p_event, 1.0 - p_event]])

    def sets(task: str, probs: np.ndarray, labels: tuple[str, ...]) -> dict:
        if post is None or task not in post.conformal:
            return {}
        return {"prediction_set": post.conformal[task].labels(probs, labels), "set_coverage": post.conformal[task].coverage}

    predictions = [
        TaskPrediction(
            task=head.spec.task,
            labels=list(head.labels),
            probabilities=dict(zip(head.labels, probabilities[head.spec.task][0].tolist(), strict=True)),
            **sets(head.spec.task, probabilities[head.spec.task], head.labels),
        )
        for head in model.classifiers
    ]
    predictions.append(
        TaskPrediction(
            task="risk",
            labels=[event_by, event_free],
            probabilities={event_by: p_event, event_free: 1.0 - p_event},
            score=score,
            risk_group=calibration.group(score),
            **sets("risk", risk_probabilities, (event_by, event_free)),
        )
    )
    measured = {modality_of(n) for n, v in zip(names, x, strict=True) if not np.isnan(v)}
    used = [m for m in MODALITIES if m in measured]
    contributions = modality_contributions(model, Z[0], risk_inputs[0], probabilities)
    return FusionOutput(
        model_name=model.config.name,
        model_version=model.config.version,
        weights_sha256=loaded.weights_sha256,
        predictions=predictions,
        modalities_used=used,
        modality_contributions=_shares({m: contributions.get(m, 0.0) for m in used}),
        ood=[post.ood_entry(Z)] if post and "genomics" in used else [],
    )
