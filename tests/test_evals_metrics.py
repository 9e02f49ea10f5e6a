"""Model metrics: hand-checked numbers, cross-checked with scikit-learn, lifelines and dcurves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evals import metrics as M


def test_roc_auc_hand_checked() -> None:
    # Positives 0.35 and 0.8 against negatives 0.1 and 0.4: 3 of 4 pairs ranked right.
    assert M.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert M.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        M.roc_auc([1, 1], [0.2, 0.3])


def test_roc_auc_matches_sklearn() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80)
    s = np.round(rng.random(80), 1)  # rounded: many ties
    assert M.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))


def test_one_vs_rest_auc_matches_sklearn() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    classes = ["G2", "G3", "G4"]
    p = rng.dirichlet([1, 1, 1], 60)
    truth = np.asarray(classes)[rng.integers(0, 3, 60)]
    ours = M.roc_auc_ovr(truth, p, classes)
    assert ours["macro"] == pytest.approx(roc_auc_score(truth, p, multi_class="ovr", average="macro", labels=classes))
    for k, c in enumerate(classes):
        assert ours[c] == pytest.approx(roc_auc_score(truth == c, p[:, k]))


def test_one_vs_rest_auc_skips_absent_class() -> None:
    p = np.array([[0.8, 0.2, 0.0], [0.3, 0.7, 0.0], [0.6, 0.4, 0.0]])
    out = M.roc_auc_ovr(["G2", "G3", "G2"], p, ["G2", "G3", "G4"])
    assert out["G4"] is None
    assert out["macro"] == pytest.approx(np.mean([out["G2"], out["G3"]]))


def test_concordance_hand_checked() -> None:
    # Comparable pairs: (1,2), (1,3), (2,3); the higher risk always dies first.
    assert M.concordance_index([1, 2, 3], [1, 1, 0], [3, 2, 1]) == pytest.approx(1.0)
    assert M.concordance_index([1, 2, 3], [1, 1, 0], [1, 2, 3]) == pytest.approx(0.0)
    # Pairs (1,2) tied risk -> 0.5 and (1,3) concordant; (2,3) not comparable (2 censored).
    assert M.concordance_index([1, 2, 3], [1, 0, 1], [1, 1, 0]) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        M.concordance_index([1, 2], [0, 0], [1, 2])


def test_concordance_matches_lifelines_with_sign_flipped() -> None:
    from lifelines.utils import concordance_index as lifelines_c

    rng = np.random.default_rng(3)
    time = np.round(rng.exponential(20, 120))  # rounded: tied times
    event = rng.random(120) < 0.6
    risk = np.round(rng.normal(size=120), 1)  # rounded: tied risks
    # lifelines expects predicted survival (higher = longer); our score is higher = worse.
    assert M.concordance_index(time, event, risk) == pytest.approx(lifelines_c(time, -risk, event))
    assert M.concordance_index(time, event, risk) == pytest.approx(1 - lifelines_c(time, risk, event))


def test_reliability_bins_and_ece_hand_checked() -> None:
    conf = [0.15, 0.25, 0.95, 0.95]
    correct = [False, True, True, False]
    bins = M.reliability_bins(conf, correct, 10)
    assert [b.count for b in bins] == [0, 1, 1, 0, 0, 0, 0, 0, 0, 2]
    assert bins[9].accuracy == pytest.approx(0.5)
    assert bins[9].mean_confidence == pytest.approx(0.95)
    # 1/4 * 0.15 + 1/4 * 0.75 + 2/4 * 0.45
    assert M.calibration_error(conf, correct, 10) == pytest.approx(0.45)


def test_bins_are_right_closed() -> None:
    bins = M.reliability_bins([0.0, 0.3, 1.0], [True, True, True], 10)
    assert bins[0].count == 1 and bins[2].count == 1 and bins[9].count == 1


def test_brier_hand_checked() -> None:
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    # (0.09 + 0.04 + 0.01 + 0.01 + 0.81 + 0.64) / 2
    assert M.brier_multiclass(p, [0, 1]) == pytest.approx(0.8)


def test_classification_counts_match_sklearn() -> None:
    from sklearn.metrics import confusion_matrix, f1_score

    truth = ["a", "a", "b", "c"]
    pred = ["a", "b", "b", "a"]
    classes = ["a", "b", "c"]
    assert M.accuracy(truth, pred) == pytest.approx(0.5)
    assert M.confusion_matrix(truth, pred, classes).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert M.macro_f1(truth, pred, classes) == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    assert M.macro_f1(truth, pred, classes) == pytest.approx(f1_score(truth, pred, labels=classes, average="macro"))
    assert M.confusion_matrix(truth, pred, classes).tolist() == confusion_matrix(truth, pred, labels=classes).tolist()


def test_net_benefit_hand_checked() -> None:
    y = [1, 1, 0, 0]
    p = [0.9, 0.4, 0.6, 0.1]
    # pt 0.5: treat cases 0 and 2 -> 1/4 - 1/4 * 1; pt 0.2: treat 0, 1, 2 -> 2/4 - 1/4 * 0.25
    assert M.net_benefit(y, p, [0.5, 0.2]).tolist() == pytest.approx([0.0, 0.4375])
    curve = M.decision_curve(y, p, "G4", [0.2])
    assert curve.treat_all == pytest.approx([0.5 - 0.5 * 0.25])
    assert curve.treat_none == [0.0]
    assert curve.prevalence == pytest.approx(0.5)


def test_net_benefit_matches_dcurves() -> None:
    dcurves = pytest.importorskip("dcurves", reason="dcurves is a test extra: pip install dcurves")
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 100)
    p = np.clip(0.3 * y + 0.7 * rng.random(100), 0, 1)
    thresholds = np.round(np.arange(0.01, 1.0, 0.01), 2)
    table = dcurves.dca(data=pd.DataFrame({"y": y, "m": p}), outcome="y", modelnames=["m"], thresholds=thresholds)
    curve = M.decision_curve(y, p, "positive", thresholds)
    assert curve.model == pytest.approx(table[table.model == "m"].net_benefit.to_numpy())
    assert curve.treat_all == pytest.approx(table[table.model == "all"].net_benefit.to_numpy())
    assert curve.treat_none == pytest.approx(table[table.model == "none"].net_benefit.to_numpy())


def test_kaplan_meier_hand_checked() -> None:
    curves = M.kaplan_meier([1, 2, 3, 4, 5, 6], [1, 1, 0, 1, 0, 0], ["high"] * 4 + ["low"] * 2)
    high, low = curves
    assert (high.group, high.n, high.events) == ("high", 4, 3)
    survival = dict(zip(high.times, high.survival, strict=True))
    # 3/4 after t=1, x 2/3 after t=2, censored at 3, 0 after t=4
    assert survival[1.0] == pytest.approx(0.75)
    assert survival[2.0] == pytest.approx(0.5)
    assert survival[3.0] == pytest.approx(0.5)
    assert survival[4.0] == pytest.approx(0.0)
    assert high.median_months == pytest.approx(2.0)
    assert low.median_months is None  # never falls to one half


def test_logrank_separates_clear_groups() -> None:
    time = [1, 2, 2, 3, 4, 20, 22, 25, 30, 31]
    event = [1] * 10
    groups = ["high"] * 5 + ["low"] * 5
    assert M.logrank_p(time, event, groups) < 0.01
    assert M.logrank_p(time, event, ["one"] * 10) is None


def test_bootstrap_is_seeded_and_skips_undefined_resamples() -> None:
    values = np.arange(10, dtype=float)

    def mean(ix: np.ndarray) -> float:
        return float(values[ix].mean())

    a = M.bootstrap_ci(mean, 10, n_boot=200, seed=7)
    b = M.bootstrap_ci(mean, 10, n_boot=200, seed=7)
    assert a == b
    assert a.value == pytest.approx(4.5)
    assert a.low < 4.5 < a.high

    def undefined_with_case_0(ix: np.ndarray) -> float:
        # Defined on the full sample, undefined on resamples that repeat cases and hold case 0.
        if 0 in ix and len(np.unique(ix)) < len(ix):
            raise ValueError("undefined")
        return 1.0

    interval = M.bootstrap_ci(undefined_with_case_0, 10, n_boot=200, seed=0)
    assert 0 < interval.n_boot < 200
    assert (interval.low, interval.high) == (1.0, 1.0)


def test_classification_summary_keeps_insufficient_evidence_in_confusion() -> None:
    truth = ["G2", "G3", "G4", "G4"]
    reported = ["G2", "insufficient_evidence", "G4", "G3"]
    p = np.array([[0.8, 0.1, 0.1], [0.4, 0.35, 0.25], [0.1, 0.2, 0.7], [0.1, 0.6, 0.3]])
    s = M.classification_summary("grade", truth, reported, p, ["G2", "G3", "G4"], "G4", n_boot=50, seed=0)
    assert s.confusion_labels == ["G2", "G3", "G4", "insufficient_evidence"]
    assert s.confusion[1] == [0, 0, 0, 1]
    assert s.accuracy.value == pytest.approx(0.5)
    # Top-class correctness: G2 yes, G2-for-G3 no, G4 yes, G3-for-G4 no.
    assert s.ece == pytest.approx(M.calibration_error([0.8, 0.4, 0.7, 0.6], [1, 0, 1, 0]))
    assert s.decision_curve.positive_class == "G4"
    assert s.brier == pytest.approx(M.brier_multiclass(p, [0, 1, 2, 2]))


def test_survival_summary_uses_risk_score_direction() -> None:
    time = [5, 10, 20, 40, 60, 80]
    event = [1, 1, 1, 0, 1, 0]
    risk = [3.0, 2.5, 2.0, 1.0, 0.5, 0.1]
    s = M.survival_summary(time, event, risk, ["high"] * 3 + ["low"] * 3, n_boot=50)
    assert s.c_index.value == pytest.approx(1.0)
    assert [c.group for c in s.km_by_risk_group] == ["high", "low"]
    assert s.events == 4
