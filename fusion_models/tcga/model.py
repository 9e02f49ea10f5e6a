"""The penalised linear glioma model, by name: config, fitting with inner-CV selection and calibration, prediction.

Why linear: on 440 cases the multi-head neural fusion model (fusion_models/model.py), trained
on the same inputs and folds, stayed well below the earlier hand-tuned version of this model
(5-fold CV, not nested: subtype accuracy 0.90 vs 0.97, 3-class grade 0.61 vs 0.77, C-index
0.82 vs 0.89; bench/tcga_cv.py --neural), so the linear model answers behind the same
FusionOutput interface.

Per classification task a multinomial L2 logistic regression on the top-k ANOVA features.
Every setting that is tuned (k and the penalty C, per task) is chosen inside the training
cases: an inner patient-level cross-validation gives each candidate out-of-fold logits,
and the candidate with the lowest out-of-fold log-loss after its own temperature wins.
The winner's out-of-fold logits then fit the task's temperature and feed the risk head:
a ridge Cox model on age and the held-out calibrated class probabilities (stacking), so
its inputs at training are as honest as at inference. Cross-validating `fit_linear_model`
itself (bench/tcga_cv.py) is therefore nested CV.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fusion_models.calibration import (
    RiskCalibration,
    breslow_cumulative_hazard,
    expected_calibration_error,
    fit_temperature,
    nll,
    softmax,
)
from fusion_models.tcga.cohort import TASK_LABELS, Cohort, stratified_folds
from fusion_models.tcga.features import CLIN, CLINICAL_FEATURES, CNV, EXPR, MUT
from fusion_models.tcga.linear import CoxFit, LogisticMember, Preprocessor, ensemble_logits, fit_cox
from fusion_models.tcga.methods import Predictions

INTENDED_USE = "research use only, not for diagnosis"
# Every training case gets a held-out logit from the inner folds (hundreds of cases), enough
# to let the temperature sharpen as well as soften; the bounds only stop a degenerate fit.
TEMPERATURE_BOUNDS = (0.5, 5.0)
TERTILES = (1 / 3, 2 / 3)
PROBABILITY_INPUT = "="  # risk input "task=label": the held-out calibrated probability of that label
FEATURE_BLOCKS: tuple[str, ...] = (EXPR, CNV, MUT, CLIN)
# Fixed before any nested-CV figure was seen, wide on purpose: from a few strong markers to every
# feature, from heavy shrinkage to scikit-learn's default. The inner CV picks per task and fold.
K_GRID: tuple[int | None, ...] = (20, 50, 200, None)
C_GRID: tuple[float, ...] = (0.01, 0.1, 1.0)
RISK_INPUTS: tuple[str, ...] = (
    "clin:age_years", "molecular_subtype=IDHwt", "molecular_subtype=IDHmut-codel", "grade=G3", "grade=G4"
)


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassifierSpec(_Config):
    task: str = Field(description="Classification task; its labels are TASK_LABELS[task].")
    k_grid: tuple[int | None, ...] = Field(
        min_length=1, description="Candidate numbers of top ANOVA features; None = every selectable feature."
    )
    C_grid: tuple[float, ...] = Field(min_length=1, description="Candidate inverse L2 penalties (scikit-learn's C).")

    @model_validator(mode="after")
    def _known_task(self) -> ClassifierSpec:
        if self.task not in TASK_LABELS:
            raise ValueError(f"unknown task {self.task!r}; known: {list(TASK_LABELS)}")
        if any(k is not None and k < 1 for k in self.k_grid):
            raise ValueError("k_grid entries must be positive or None")
        if min(self.C_grid) <= 0:
            raise ValueError("C_grid entries must be > 0")
        return self

    def candidates(self) -> list[tuple[int | None, float]]:
        return [(k, C) for k in self.k_grid for C in self.C_grid]


class RiskSpec(_Config):
    labels: tuple[str, str] = ("event_by_24m", "event_free_at_24m")
    horizon_months: float = Field(default=24.0, gt=0)
    inputs: tuple[str, ...] = Field(min_length=1, description="Clinical feature names or 'task=label' probabilities.")
    penalizer: float = Field(default=0.01, ge=0, description="lifelines' ridge penalty.")


class LinearModelConfig(_Config):
    """Everything that defines a linear model except its fitted numbers; travels in the checkpoint."""

    name: str
    version: str
    description: str
    classifiers: tuple[ClassifierSpec, ...] = Field(min_length=1)
    risk: RiskSpec
    feature_blocks: tuple[str, ...] = Field(
        default=FEATURE_BLOCKS, min_length=1, description="Feature-name prefixes the classifiers may select."
    )
    inner_folds: int = Field(default=5, ge=2, description="Inner CV folds for model selection and held-out logits.")
    seed: int = 0
    licence: str = "Apache-2.0"
    intended_use: str = INTENDED_USE

    @model_validator(mode="after")
    def _consistent(self) -> LinearModelConfig:
        unknown = sorted(set(self.feature_blocks) - set(FEATURE_BLOCKS))
        if unknown:
            raise ValueError(f"unknown feature blocks {unknown}; known: {list(FEATURE_BLOCKS)}")
        tasks = [c.task for c in self.classifiers]
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"duplicate classifier tasks {tasks}")
        for name in self.risk.inputs:
            task, _, label = name.partition(PROBABILITY_INPUT)
            if name not in CLINICAL_FEATURES and (task not in tasks or label not in TASK_LABELS[task]):
                raise ValueError(f"risk input {name!r} is neither a clinical feature nor 'task=label' of a classifier")
        return self


@dataclass(frozen=True)
class ClassifierHead:
    spec: ClassifierSpec
    members: tuple[LogisticMember, ...]
    temperature: float

    @property
    def labels(self) -> tuple[str, ...]:
        return TASK_LABELS[self.spec.task]

    def logits(self, Z: np.ndarray) -> np.ndarray:
        return ensemble_logits(self.members, Z)

    def probabilities(self, Z: np.ndarray) -> np.ndarray:
        return softmax(self.logits(Z), self.temperature)


@dataclass(frozen=True)
class RiskHead:
    spec: RiskSpec
    cox: CoxFit
    fill: np.ndarray  # training mean per input, used where a case lacks it (unknown age)
    calibration: RiskCalibration

    def inputs(self, X: np.ndarray, names: tuple[str, ...], probabilities: dict[str, np.ndarray]) -> np.ndarray:
        return risk_inputs(self.spec, X, names, probabilities, self.fill)

    def scores(self, X: np.ndarray, names: tuple[str, ...], probabilities: dict[str, np.ndarray]) -> np.ndarray:
        return self.cox.linear_predictor(self.inputs(X, names, probabilities))


def risk_inputs(
    spec: RiskSpec, X: np.ndarray, names: tuple[str, ...], probabilities: dict[str, np.ndarray], fill: np.ndarray | None
) -> np.ndarray:
    """(n, len(spec.inputs)): clinical columns of X and class probabilities; NaN replaced by `fill`."""
    columns = []
    for name in spec.inputs:
        task, _, label = name.partition(PROBABILITY_INPUT)
        if name in CLINICAL_FEATURES:
            columns.append(X[:, names.index(name)])
        else:
            columns.append(probabilities[task][:, TASK_LABELS[task].index(label)])
    F = np.column_stack(columns).astype(np.float64)
    if fill is not None:
        F = np.where(np.isnan(F), fill, F)
    return F


@dataclass(frozen=True)
class LinearGliomaModel:
    config: LinearModelConfig
    feature_names: tuple[str, ...]
    preprocessor: Preprocessor
    classifiers: tuple[ClassifierHead, ...]
    risk: RiskHead
    heldout_metrics: dict[str, dict[str, float]]  # task -> inner-CV out-of-fold figures

    def align(self, X: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
        """X's columns reordered to the model's features; a feature X lacks is unmeasured (NaN)."""
        if tuple(names) == self.feature_names:
            return X
        where = {n: i for i, n in enumerate(names)}
        out = np.full((len(X), len(self.feature_names)), np.nan)
        for j, name in enumerate(self.feature_names):
            if name in where:
                out[:, j] = X[:, where[name]]
        return out

    def predict_matrix(self, X: np.ndarray) -> Predictions:
        """X in the model's feature order (raw values, NaN = unmeasured)."""
        Z = self.preprocessor.transform(X)
        probabilities = {head.spec.task: head.probabilities(Z) for head in self.classifiers}
        return Predictions(probabilities, self.risk.scores(X, self.feature_names, probabilities))

    def predict(self, cohort: Cohort) -> Predictions:
        return self.predict_matrix(self.align(cohort.X, cohort.feature_names))


def selectable_features(config: LinearModelConfig, pre: Preprocessor, names: tuple[str, ...]) -> np.ndarray:
    return pre.selectable & np.array([n.startswith(config.feature_blocks) for n in names])


def _fit_member(
    spec: ClassifierSpec, candidate: tuple[int | None, float], Z: np.ndarray, y: np.ndarray, selectable: np.ndarray
) -> LogisticMember:
    known = y >= 0
    k, C = candidate
    return LogisticMember.fit(Z[known], y[known], len(TASK_LABELS[spec.task]), k, C, selectable)


def held_out_logits(config: LinearModelConfig, cohort: Cohort) -> dict[str, list[np.ndarray]]:
    """Per task and candidate (`spec.candidates()` order): (n, K) logits, each from the fold holding the case out."""
    out = {
        c.task: [np.full((len(cohort), len(TASK_LABELS[c.task])), np.nan) for _ in c.candidates()]
        for c in config.classifiers
    }
    for train, held in stratified_folds(cohort, config.inner_folds, config.seed):
        pre = Preprocessor.fit(cohort.X[train], cohort.feature_names)
        Z_train, Z_held = pre.transform(cohort.X[train]), pre.transform(cohort.X[held])
        selectable = selectable_features(config, pre, cohort.feature_names)
        for spec in config.classifiers:
            y = cohort.labels(spec.task)[train]
            for logits, candidate in zip(out[spec.task], spec.candidates(), strict=True):
                logits[held] = _fit_member(spec, candidate, Z_train, y, selectable).logits(Z_held)
    return out


def select_candidate(logits: list[np.ndarray], y: np.ndarray) -> tuple[int, list[float]]:
    """Index of the candidate whose out-of-fold logits have the lowest log-loss after their own temperature.

    Scoring after temperature judges what the candidate ranks and separates, not how sharp its raw
    logits happen to be: the shipped probabilities are temperature-scaled anyway. Ties go to
    the earlier (fewer features, stronger penalty) candidate.
    """
    losses = [nll(z, y, fit_temperature(z, y, TEMPERATURE_BOUNDS)) for z in logits]
    return int(np.argmin(losses)), losses


def fit_risk(spec: RiskSpec, cohort: Cohort, probabilities: dict[str, np.ndarray]) -> RiskHead:
    """Ridge Cox on the risk inputs; Breslow baseline at the horizon and tertile cut points from the same cases."""
    F = risk_inputs(spec, cohort.X, cohort.feature_names, probabilities, None)
    fill = np.nanmean(F, axis=0)
    F = np.where(np.isnan(F), fill, F)
    cox = fit_cox(F, cohort.survival_months, cohort.event, spec.penalizer)
    scores = cox.linear_predictor(F)
    calibration = RiskCalibration(
        horizon_months=spec.horizon_months,
        baseline_cumulative_hazard=breslow_cumulative_hazard(
            cohort.survival_months, cohort.event, scores, spec.horizon_months
        ),
        cut_points=tuple(float(q) for q in np.quantile(scores, TERTILES)),
    )
    return RiskHead(spec, cox, fill, calibration)


def heldout_figures(logits: np.ndarray, y: np.ndarray, temperature: float) -> dict[str, float]:
    """Accuracy and top-label ECE of out-of-fold logits, before and after the temperature."""
    probabilities = softmax(logits, temperature)
    return {
        "n": int(len(y)),
        "accuracy": float(np.mean(probabilities.argmax(axis=1) == y)),
        "ece": expected_calibration_error(probabilities, y),
        "ece_uncalibrated": expected_calibration_error(softmax(logits), y),
        "temperature": float(temperature),
    }


def fit_linear_model(config: LinearModelConfig, cohort: Cohort) -> LinearGliomaModel:
    """Inner CV -> per task the chosen (k, C), its temperature and stacked risk inputs; then refit on every case.

    `heldout_metrics[task]` records the choice (`k_features` as fitted, `C`) and the winner's
    out-of-fold log-loss beside its accuracy and ECE.
    """
    logits = held_out_logits(config, cohort)
    pre = Preprocessor.fit(cohort.X, cohort.feature_names)
    Z = pre.transform(cohort.X)
    selectable = selectable_features(config, pre, cohort.feature_names)
    heads, held_out_probabilities, figures = [], {}, {}
    for spec in config.classifiers:
        y = cohort.labels(spec.task)
        known = y >= 0
        best, losses = select_candidate([z[known] for z in logits[spec.task]], y[known])
        chosen = logits[spec.task][best]
        temperature = fit_temperature(chosen[known], y[known], TEMPERATURE_BOUNDS)
        member = _fit_member(spec, spec.candidates()[best], Z, y, selectable)
        heads.append(ClassifierHead(spec, (member,), temperature))
        held_out_probabilities[spec.task] = softmax(chosen, temperature)
        figures[spec.task] = {
            **heldout_figures(chosen[known], y[known], temperature),
            "log_loss": losses[best],
            "k_features": int(len(member.features)),
            "C": spec.candidates()[best][1],
        }
    risk = fit_risk(config.risk, cohort, held_out_probabilities)
    return LinearGliomaModel(config, cohort.feature_names, pre, tuple(heads), risk, figures)
