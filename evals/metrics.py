"""Model-level metrics: discrimination, calibration, net benefit, survival. Pure functions of arrays.

Conventions: class labels are strings; `probabilities` is (n_cases, n_classes) in the
order of `classes`; a risk score is higher = worse prognosis (as in the report).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from fusion_models.calibration import ReliabilityBin, calibration_error, reliability_bins


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap interval."""

    value: float
    low: float | None
    high: float | None
    n_boot: int  # resamples on which the statistic was defined


@dataclass(frozen=True)
class DecisionCurve:
    positive_class: str
    prevalence: float
    thresholds: list[float]
    model: list[float]
    treat_all: list[float]
    treat_none: list[float]


@dataclass(frozen=True)
class SurvivalCurve:
    group: str
    n: int
    events: int
    times: list[float]
    survival: list[float]
    median_months: float | None


# --- discrimination -------------------------------------------------------------------
def roc_auc(y_true: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray) -> float:
    """Binary ROC AUC as the Mann-Whitney statistic; tied scores count one half."""
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(score, dtype=float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both classes")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc_ovr(truth: Sequence[str], probabilities: np.ndarray, classes: Sequence[str]) -> dict[str, float | None]:
    """One-vs-rest AUC per class (None where the class is absent or universal) and their macro mean."""
    truth_arr = np.asarray(truth)
    out: dict[str, float | None] = {}
    for k, cls in enumerate(classes):
        y = truth_arr == cls
        out[cls] = roc_auc(y, probabilities[:, k]) if 0 < y.sum() < len(y) else None
    defined = [v for v in out.values() if v is not None]
    out["macro"] = float(np.mean(defined)) if defined else None
    return out


def concordance_index(time: Sequence[float], event: Sequence[bool], risk: Sequence[float]) -> float:
    """Harrell's C for a risk score (higher = shorter survival).

    A pair is comparable when the shorter time ended in an event (or the times tie and
    only one is an event, which then counts as shorter); tied risks count one half.
    Same pairs as lifelines' `concordance_index`, which takes predicted survival instead.
    """
    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=bool)
    r = np.asarray(risk, dtype=float)
    shorter = (t[:, None] < t[None, :]) | ((t[:, None] == t[None, :]) & ~e[None, :])
    comparable = shorter & e[:, None]
    n_pairs = int(comparable.sum())
    if n_pairs == 0:
        raise ValueError("no comparable pairs: C-index needs at least one event before another exit")
    concordant = (r[:, None] > r[None, :]) & comparable
    tied = (r[:, None] == r[None, :]) & comparable
    return float((concordant.sum() + 0.5 * tied.sum()) / n_pairs)


# --- classification -------------------------------------------------------------------
def accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    if len(truth) == 0:
        raise ValueError("accuracy of no cases")
    return float(np.mean(np.asarray(truth) == np.asarray(predicted)))


def confusion_matrix(truth: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class, in the order of `classes`."""
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    for t, p in zip(truth, predicted, strict=True):
        matrix[index[t], index[p]] += 1
    return matrix


def macro_f1(truth: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> float:
    """Unweighted mean of per-class F1 over classes that occur in truth or prediction."""
    m = confusion_matrix(truth, predicted, classes)
    tp = np.diag(m).astype(float)
    support = m.sum(axis=1) + m.sum(axis=0)
    used = support > 0
    return float(np.mean(2 * tp[used] / support[used]))


# --- calibration ----------------------------------------------------------------------
def brier_multiclass(probabilities: np.ndarray, truth_index: Sequence[int]) -> float:
    """Mean over cases of the squared distance to the one-hot truth (0 best, 2 worst)."""
    p = np.asarray(probabilities, dtype=float)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(p)), np.asarray(truth_index)] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


# --- clinical utility -----------------------------------------------------------------
def net_benefit(y_true: Sequence[int], probability: Sequence[float], thresholds: Sequence[float]) -> np.ndarray:
    """Net benefit of treating cases with probability >= pt: TP/n - FP/n * pt / (1 - pt)."""
    y = np.asarray(y_true, dtype=bool)
    p = np.asarray(probability, dtype=float)
    pts = np.asarray(thresholds, dtype=float)
    treat = p[None, :] >= pts[:, None]
    tp = (treat & y[None, :]).sum(axis=1)
    fp = (treat & ~y[None, :]).sum(axis=1)
    return tp / len(y) - fp / len(y) * pts / (1 - pts)


def decision_curve(
    y_true: Sequence[int], probability: Sequence[float], positive_class: str, thresholds: Sequence[float] | None = None
) -> DecisionCurve:
    """Net benefit of the model, of treating everyone and of treating no one, across thresholds."""
    pts = np.round(np.arange(0.01, 1.0, 0.01), 2) if thresholds is None else np.asarray(thresholds, dtype=float)
    y = np.asarray(y_true, dtype=bool)
    return DecisionCurve(
        positive_class=positive_class,
        prevalence=float(y.mean()),
        thresholds=pts.tolist(),
        model=net_benefit(y, probability, pts).tolist(),
        treat_all=net_benefit(y, np.ones(len(y)), pts).tolist(),
        treat_none=[0.0] * len(pts),
    )


# --- survival -------------------------------------------------------------------------
def kaplan_meier(time: Sequence[float], event: Sequence[bool], groups: Sequence[str]) -> list[SurvivalCurve]:
    """Kaplan-Meier estimate per group (lifelines), groups in sorted order."""
    from lifelines import KaplanMeierFitter

    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=bool)
    g = np.asarray(groups)
    curves = []
    for group in sorted(set(g.tolist())):
        mask = g == group
        fitter = KaplanMeierFitter().fit(t[mask], e[mask])
        table = fitter.survival_function_
        median = float(fitter.median_survival_time_)
        curves.append(
            SurvivalCurve(
                group=str(group),
                n=int(mask.sum()),
                events=int(e[mask].sum()),
                times=table.index.astype(float).tolist(),
                survival=table.iloc[:, 0].astype(float).tolist(),
                median_months=median if np.isfinite(median) else None,
            )
        )
    return curves


def logrank_p(time: Sequence[float], event: Sequence[bool], groups: Sequence[str]) -> float | None:
    """Log-rank test across groups (lifelines); None with fewer than two groups."""
    from lifelines.statistics import multivariate_logrank_test

    if len(set(groups)) < 2:
        return None
    return float(
        multivariate_logrank_test(np.asarray(time, float), np.asarray(groups), np.asarray(event, bool)).p_value
    )


# --- uncertainty ----------------------------------------------------------------------
def bootstrap_ci(
    statistic: Callable[[np.ndarray], float], n: int, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> Interval:
    """Percentile bootstrap over cases. `statistic(indices)` gives the metric on a resample;
    resamples where it is undefined (it raises ValueError, e.g. one class only) are skipped."""
    value = statistic(np.arange(n))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        try:
            draws.append(statistic(rng.integers(0, n, n)))
        except ValueError:
            continue
    if not draws:
        return Interval(value, None, None, 0)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Interval(value, float(low), float(high), len(draws))


# --- per-task summaries ---------------------------------------------------------------
@dataclass(frozen=True)
class ClassificationSummary:
    task: str
    classes: list[str]
    n: int
    accuracy: Interval
    macro_f1: float
    confusion_labels: list[str]  # classes, then any other label seen (e.g. insufficient_evidence)
    confusion: list[list[int]]  # rows = truth, columns = reported label
    auc: dict[str, float | None]  # one-vs-rest per class, and "macro"
    auc_macro: Interval | None
    ece: float
    brier: float | None  # over cases whose true class is a model class
    reliability: list[ReliabilityBin]
    decision_curve: DecisionCurve | None


@dataclass(frozen=True)
class SurvivalSummary:
    n: int
    events: int
    c_index: Interval | None
    km_by_risk_group: list[SurvivalCurve]
    logrank_p: float | None


def classification_summary(
    task: str,
    truth: Sequence[str],
    reported: Sequence[str],
    probabilities: np.ndarray,
    classes: Sequence[str],
    positive_class: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> ClassificationSummary:
    """Every classification metric for one task. `reported` is the label the report shows;
    calibration uses the top probability and whether its class is the true one."""
    truth_arr, reported_arr = np.asarray(truth), np.asarray(reported)
    p = np.asarray(probabilities, dtype=float)
    labels = list(classes) + sorted((set(truth_arr.tolist()) | set(reported_arr.tolist())) - set(classes))
    top = np.asarray(classes)[p.argmax(axis=1)]
    known = np.isin(truth_arr, classes)
    auc = roc_auc_ovr(truth_arr, p, classes)

    def auc_macro(ix: np.ndarray) -> float:
        value = roc_auc_ovr(truth_arr[ix], p[ix], classes)["macro"]
        if value is None:
            raise ValueError("no class has both positives and negatives")
        return value

    curve = None
    if positive_class is not None and positive_class in classes:
        y = truth_arr == positive_class
        curve = decision_curve(y, p[:, list(classes).index(positive_class)], positive_class)
    return ClassificationSummary(
        task=task,
        classes=list(classes),
        n=len(truth_arr),
        accuracy=bootstrap_ci(lambda ix: accuracy(truth_arr[ix], reported_arr[ix]), len(truth_arr), n_boot, seed),
        macro_f1=macro_f1(truth_arr, reported_arr, labels),
        confusion_labels=labels,
        confusion=confusion_matrix(truth_arr, reported_arr, labels).tolist(),
        auc=auc,
        auc_macro=bootstrap_ci(auc_macro, len(truth_arr), n_boot, seed) if auc["macro"] is not None else None,
        ece=calibration_error(p.max(axis=1), top == truth_arr),
        brier=brier_multiclass(p[known], [list(classes).index(t) for t in truth_arr[known]]) if known.any() else None,
        reliability=reliability_bins(p.max(axis=1), top == truth_arr),
        decision_curve=curve,
    )


def survival_summary(
    time: Sequence[float],
    event: Sequence[bool],
    risk: Sequence[float],
    risk_group: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
) -> SurvivalSummary:
    """C-index of the risk score and Kaplan-Meier curves by the report's risk group."""
    t, e, r = np.asarray(time, float), np.asarray(event, bool), np.asarray(risk, float)
    try:
        c_index = bootstrap_ci(lambda ix: concordance_index(t[ix], e[ix], r[ix]), len(t), n_boot, seed)
    except ValueError:
        c_index = None
    return SurvivalSummary(
        n=len(t),
        events=int(e.sum()),
        c_index=c_index,
        km_by_risk_group=kaplan_meier(t, e, risk_group),
        logrank_p=logrank_p(t, e, risk_group),
    )
