"""Simple baselines the model must beat: IDH1 mutation alone, plain logistic regression on expression or on every
genomic feature, Cox on age + IDH1.

Each is registered as a cross-validation method; hyper-parameters are fixed (library
defaults), never tuned on this cohort.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusion_models.calibration import softmax
from fusion_models.tcga.cohort import TASK_LABELS, Cohort
from fusion_models.tcga.features import CLIN, CNV, EXPR, MUT
from fusion_models.tcga.linear import CoxFit, LogisticMember, Preprocessor, fit_cox
from fusion_models.tcga.methods import Predictions, register_method

IDH1 = f"{MUT}IDH1"
AGE = f"{CLIN}age_years"


def conditional_frequencies(flag: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """(2, K): class frequencies among cases with flag 0 and with flag 1, add-one smoothed.

    The smoothing keeps a class never seen with one flag value at a small probability,
    so a log-loss or calibration score stays finite on held-out cases.
    """
    table = np.ones((2, n_classes))
    np.add.at(table, (flag.astype(int), y), 1.0)
    return table / table.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Idh1Rule:
    """Class probabilities = training frequencies given the IDH1 call; an unknown call counts as wild type."""

    tables: dict[str, np.ndarray]

    def predict(self, cohort: Cohort) -> Predictions:
        flag = np.nan_to_num(cohort.column(IDH1), nan=0.0).astype(int)
        return Predictions({task: table[flag] for task, table in self.tables.items()})


@register_method("idh1_rule")
def fit_idh1_rule(cohort: Cohort) -> Idh1Rule:
    flag = np.nan_to_num(cohort.column(IDH1), nan=0.0)
    tables = {}
    for task, labels in TASK_LABELS.items():
        y = cohort.labels(task)
        known = y >= 0
        tables[task] = conditional_frequencies(flag[known], y[known], len(labels))
    return Idh1Rule(tables)


# scikit-learn's default penalty; with all selectable columns the member is a plain L2 logistic regression.
PLAIN_C = 1.0


@dataclass(frozen=True)
class PlainLogistic:
    """Uncalibrated L2 logistic regression per task on every column of some feature blocks."""

    columns: np.ndarray
    preprocessor: Preprocessor
    members: dict[str, LogisticMember]

    def predict(self, cohort: Cohort) -> Predictions:
        Z = self.preprocessor.transform(cohort.X[:, self.columns])
        return Predictions({task: softmax(m.logits(Z)) for task, m in self.members.items()})


def fit_plain_logistic(cohort: Cohort, blocks: tuple[str, ...]) -> PlainLogistic:
    columns = np.array([i for i, n in enumerate(cohort.feature_names) if n.startswith(blocks)])
    names = [cohort.feature_names[i] for i in columns]
    X = cohort.X[:, columns]
    pre = Preprocessor.fit(X, names)
    Z = pre.transform(X)
    everything = np.ones(len(columns), dtype=bool)
    members = {}
    for task, labels in TASK_LABELS.items():
        y = cohort.labels(task)
        known = y >= 0
        members[task] = LogisticMember.fit(Z[known], y[known], len(labels), None, PLAIN_C, everything)
    return PlainLogistic(columns, pre, members)


@register_method("expression_logistic")
def fit_expression_logistic(cohort: Cohort) -> PlainLogistic:
    return fit_plain_logistic(cohort, (EXPR,))


@register_method("genomic_logistic")
def fit_genomic_logistic(cohort: Cohort) -> PlainLogistic:
    """The plain baseline of issue 6: expression, copy number and mutation calls, library defaults."""
    return fit_plain_logistic(cohort, (EXPR, CNV, MUT))


# A token ridge penalty: it only keeps the fit finite should a fold separate perfectly.
COX_PENALIZER = 0.01


@dataclass(frozen=True)
class CoxAgeIdh1:
    cox: CoxFit
    fill: np.ndarray

    def predict(self, cohort: Cohort) -> Predictions:
        F = _age_idh1(cohort)
        return Predictions({}, self.cox.linear_predictor(np.where(np.isnan(F), self.fill, F)))


def _age_idh1(cohort: Cohort) -> np.ndarray:
    return np.column_stack([cohort.column(AGE), cohort.column(IDH1)])


@register_method("cox_age_idh1")
def fit_cox_age_idh1(cohort: Cohort) -> CoxAgeIdh1:
    F = _age_idh1(cohort)
    fill = np.nanmean(F, axis=0)
    F = np.where(np.isnan(F), fill, F)
    return CoxAgeIdh1(fit_cox(F, cohort.survival_months, cohort.event, COX_PENALIZER), fill)
