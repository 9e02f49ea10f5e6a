"""Penalised linear building blocks: robust standardising, ANOVA top-k selection, logistic members, ridge Cox.

Fitting uses scikit-learn and lifelines; prediction is plain numpy on stored arrays, so a
checkpoint is numbers in JSON, not a pickle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.feature_selection import f_classif
from sklearn.linear_model import LogisticRegression

from fusion_models.tcga.features import EXPR

# Winsorising at 5 SD bounds what one extreme value can add to a logit; without it one
# case's near-silent gene (z-score in the thousands) gave held-out logits of +-500.
CLIP_SD = 5.0
# Genes whose expression barely varies in half the training cases sit at the assay floor;
# their remaining differences are the per-study normalisation, not biology (asinh z units).
MIN_EXPRESSION_IQR = 0.1
MAX_ITER = 5000


@dataclass(frozen=True)
class Preprocessor:
    """Training mean and SD per feature, and which features may be selected."""

    mean: np.ndarray
    scale: np.ndarray
    selectable: np.ndarray  # bool

    @classmethod
    def fit(cls, X: np.ndarray, names: Sequence[str]) -> Preprocessor:
        measured = ~np.isnan(X)
        some = measured.any(axis=0)
        filled = np.where(measured, X, 0.0)
        count = np.maximum(measured.sum(axis=0), 1)
        mean = filled.sum(axis=0) / count
        sd = np.sqrt((np.where(measured, X - mean, 0.0) ** 2).sum(axis=0) / count)
        scale = np.where(sd > 0, sd, 1.0)
        is_expression = np.array([n.startswith(EXPR) for n in names])
        iqr = np.full(X.shape[1], np.inf)
        if is_expression.any():
            with np.errstate(all="ignore"):
                q1, q3 = np.nanpercentile(X[:, is_expression & some], [25, 75], axis=0)
            iqr[np.flatnonzero(is_expression & some)] = q3 - q1
        selectable = some & (sd > 0) & (~is_expression | (iqr >= MIN_EXPRESSION_IQR))
        return cls(mean, scale, selectable)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Standardised, clipped to +-CLIP_SD; an unmeasured value becomes 0 (the training mean)."""
        Z = np.clip((np.asarray(X, dtype=np.float64) - self.mean) / self.scale, -CLIP_SD, CLIP_SD)
        return np.nan_to_num(Z, nan=0.0)


def anova_top_k(Z: np.ndarray, y: np.ndarray, selectable: np.ndarray, k: int | None) -> np.ndarray:
    """Indices (sorted) of the k selectable features with the largest ANOVA F across classes (None: all of them)."""
    # A feature constant within these cases has no F (scikit-learn would warn and return NaN).
    candidates = np.flatnonzero(selectable & (Z.std(axis=0) > 0))
    F, _ = f_classif(Z[:, candidates], y)
    order = np.argsort(-np.nan_to_num(F, nan=-np.inf), kind="stable")
    return np.sort(candidates[order[:k]])


def fit_l2_logistic(X: np.ndarray, y: np.ndarray, C: float) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial L2 logistic regression: (coef (K, p), intercept (K,)), p may exceed the number of cases.

    With more features than cases the L2 solution lies in the span of the centred rows, so
    it is fitted on the n singular-vector coordinates (same penalty, same optimum) and
    mapped back: several times faster for the all-feature candidates of model selection.
    """
    if X.shape[1] <= X.shape[0]:
        fitted = LogisticRegression(C=C, max_iter=MAX_ITER).fit(X, y)
        return fitted.coef_, fitted.intercept_
    centre = X.mean(axis=0)
    U, S, Vt = np.linalg.svd(X - centre, full_matrices=False)
    fitted = LogisticRegression(C=C, max_iter=MAX_ITER).fit(U * S, y)
    coef = fitted.coef_ @ Vt
    return coef, fitted.intercept_ - coef @ centre


@dataclass(frozen=True)
class LogisticMember:
    """Multinomial L2 logistic regression on a selected subset of the standardised features."""

    features: np.ndarray  # (k,) column indices
    coef: np.ndarray  # (K, k)
    intercept: np.ndarray  # (K,)

    @classmethod
    def fit(
        cls, Z: np.ndarray, y: np.ndarray, n_classes: int, k: int | None, C: float, selectable: np.ndarray
    ) -> LogisticMember:
        # Multinomial with one coefficient row per class needs every class (and >= 3 of them).
        missing = sorted(set(range(n_classes)) - set(np.unique(y).tolist()))
        if missing or n_classes < 3:
            raise ValueError(f"need >= 3 classes, each with a training case; missing class indices {missing}")
        features = anova_top_k(Z, y, selectable, k)
        return cls(features, *fit_l2_logistic(Z[:, features], y, C))

    def logits(self, Z: np.ndarray) -> np.ndarray:
        return Z[:, self.features] @ self.coef.T + self.intercept

    def terms(self, z: np.ndarray, label: int) -> np.ndarray:
        """Per-feature contribution of one standardised case to `label`'s logit against the mean logit."""
        centred = self.coef[label] - self.coef.mean(axis=0)
        return z[self.features] * centred


def ensemble_logits(members: Sequence[LogisticMember], Z: np.ndarray) -> np.ndarray:
    """Mean of the members' logits: averaging in logit space keeps one temperature meaningful."""
    return np.mean([m.logits(Z) for m in members], axis=0)


@dataclass(frozen=True)
class CoxFit:
    beta: np.ndarray
    centre: np.ndarray  # training mean of the inputs: the linear predictor is (f - centre) @ beta

    def linear_predictor(self, F: np.ndarray) -> np.ndarray:
        return (np.asarray(F, dtype=np.float64) - self.centre) @ self.beta


def fit_cox(F: np.ndarray, time: np.ndarray, event: np.ndarray, penalizer: float) -> CoxFit:
    """Ridge-penalised Cox proportional hazards (lifelines) on a few columns."""
    from lifelines import CoxPHFitter  # lifelines is heavy to import; only fitting needs it

    columns = [f"x{j}" for j in range(F.shape[1])]
    frame = pd.DataFrame(F, columns=columns).assign(time=time, event=event.astype(int))
    fitted = CoxPHFitter(penalizer=penalizer).fit(frame, duration_col="time", event_col="event")
    return CoxFit(beta=fitted.params_[columns].to_numpy(), centre=F.mean(axis=0))
