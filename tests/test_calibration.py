"""Conformal sets, the OOD detector, and both models' honesty layers (issue 6 items 2 and 3)."""

from __future__ import annotations

import io
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion_models.calibration import horizon_labels
from fusion_models.conformal import ConformalSets, conformal_quantile, coverage_and_size, lac_scores, set_members
from fusion_models.ood import FARTHEST, MahalanobisDetector, mahalanobis, threshold_at
from fusion_models.perturbations import FAMILIES
from schemas.fusion import FusionOutput

# ---- conformal ------------------------------------------------------------------------------------


def test_conformal_quantile_hand_checked():
    scores = np.arange(1, 11) / 10  # 0.1 .. 1.0
    assert conformal_quantile(scores, 0.8) == pytest.approx(0.9)  # ceil(11 * 0.8) = 9th smallest
    assert conformal_quantile(scores, 0.9) == pytest.approx(1.0)  # ceil(9.9) = 10th
    assert conformal_quantile(scores[:5], 0.9) == math.inf  # ceil(5.4) = 6 > 5 cases


def test_lac_sets_hand_checked_and_never_empty():
    probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]])
    assert lac_scores(probs, np.array([1, 0])) == pytest.approx([0.8, 0.6])
    assert set_members(probs, 0.8).tolist() == [[True, True, False], [True, True, True]]
    assert set_members(probs, 0.05).tolist() == [[True, False, False], [True, False, False]]  # top label kept


def test_too_few_calibration_cases_give_every_label():
    sets = ConformalSets.fit(np.array([[0.9, 0.1]] * 3), np.array([0, 0, 0]), 0.9)
    assert sets.threshold == 1.0 and sets.labels(np.array([[0.99, 0.01]]), ("a", "b")) == ["a", "b"]
    assert ConformalSets.from_dict(json.loads(json.dumps(sets.to_dict()))) == sets


def test_split_conformal_reaches_its_coverage_on_fresh_cases():
    rng = np.random.default_rng(0)

    def draw(n):
        logits = rng.normal(0, 2, (n, 3))
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        labels = np.array([rng.choice(3, p=p) for p in probs])
        return probs, labels

    sets = ConformalSets.fit(*draw(400), coverage=0.9)
    probs, labels = draw(4000)
    figures = coverage_and_size(sets.members(probs), labels)
    assert 0.88 <= figures["coverage"] <= 0.95
    assert 1.0 < figures["mean_set_size"] < 3.0


def test_horizon_labels_hand_checked():
    times = np.array([10.0, 30.0, 30.0, 10.0, 24.0])
    events = np.array([True, True, False, False, True])
    assert horizon_labels(times, events, 24.0).tolist() == [0, 1, 1, -1, 0]


# ---- OOD ------------------------------------------------------------------------------------------


def test_mahalanobis_hand_checked():
    mean, precision = np.zeros(2), np.diag([1.0, 0.25])  # variances 1 and 4
    rows = np.array([[3.0, 0.0], [0.0, 4.0], [np.nan, 0.0], [1e200, 1e200]])
    assert mahalanobis(rows, mean, precision).tolist() == [3.0, 2.0, FARTHEST, FARTHEST]


def test_threshold_is_an_order_statistic_with_its_false_alarm_bound():
    scores = np.arange(1.0, 20.0)  # 19 clean held-out cases
    assert threshold_at(scores, 0.05) == (19.0, pytest.approx(0.05))  # k = ceil(20 * 0.95) = 19
    assert threshold_at(scores, 0.25) == (15.0, pytest.approx(0.25))  # k = 15, 1 - 15/20
    assert threshold_at(scores[:9], 0.05) == (9.0, pytest.approx(0.1))  # too few: the max, bound 1/(n+1)


def test_detector_flags_shifted_cases_and_keeps_its_false_alarm_rate():
    rng = np.random.default_rng(1)
    cov = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.0], [0.0, 0.0, 0.1]])
    draw = lambda n: rng.multivariate_normal(np.zeros(3), cov, n)  # noqa: E731
    detector = MahalanobisDetector.fit(draw(500), [row[None] for row in draw(200)], 0.05)
    fresh = np.array([detector.score(row[None]) for row in draw(2000)])
    assert np.mean(fresh > detector.threshold) < 0.09
    # Along the correlation the point is ordinary; against it (and on the tight axis) it is not.
    assert detector.score(np.array([[2.0, 2.0, 0.0]])) < detector.threshold
    assert detector.score(np.array([[2.0, -2.0, 0.0]])) > detector.threshold
    assert detector.score(np.array([[0.0, 0.0, 1.5]])) > detector.threshold
    again = MahalanobisDetector.from_dict(json.loads(json.dumps(detector.to_dict())))
    assert again.score(np.ones((1, 3))) == pytest.approx(detector.score(np.ones((1, 3))))


# ---- the demo model ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_case(demo_cohort):
    """The first demo case with imaging, slides and expression."""
    from fusion_models.encoders import create_encoder
    from fusion_models.inputs import load_case_inputs

    encoder = create_encoder("hed_texture")
    for case_dir in sorted((demo_cohort / "cases").iterdir()):
        inputs = load_case_inputs(case_dir, encoder=encoder)
        if all(p.applies_to(inputs) for p in FAMILIES.values()):
            return inputs
    pytest.fail("no demo case has every modality")


@pytest.mark.slow
def test_card_states_splits_calibration_coverage_and_ood(demo_checkpoint):
    from fusion_models.card import card_path

    card = json.loads(card_path(demo_checkpoint).read_text())
    for task in ("grade", "molecular_subtype", "risk"):
        figures = card["metrics"]["evaluation"][task]
        assert figures["set_coverage_target"] == 0.9 and 0 <= figures["set_coverage"] <= 1
    for task in ("grade", "molecular_subtype"):
        assert {"ece", "ece_uncalibrated", "temperature"} <= set(card["metrics"]["evaluation"][task])
        assert card["metrics"]["calibration"]["temperatures"][task] >= 1.0
    for modality in ("imaging", "genomics", "pathology"):
        ood = card["metrics"]["ood"][modality]
        assert ood["threshold"] > 0 and ood["false_alarm_bound"] <= 0.1
        assert ood["evaluation_false_alarm_rate"] is not None
    assert "calibration" in card["training_data"]["split_roles"]
    assert card["metrics"]["evaluation"]["grade"]["over_0.99"]["n"] >= 0


@pytest.mark.slow
def test_rarely_measured_features_are_left_out_of_the_ood_score(loaded):
    names = loaded.config.inputs.vector_names()["imaging"]
    read = [names[j] for j in loaded.calibration.ood["imaging"].columns]
    assert "lesion_growth_log_ratio" not in read  # needs two scans: about 5% of the training cases
    assert "lesion_log1p_volume_ml" in read


@pytest.mark.slow
@pytest.mark.parametrize("family", ["pathology_zeros", "pathology_gaussian", "pathology_x1e30"])
def test_implausible_patches_are_flagged_and_masked(loaded, kb, full_case, family):
    from fusion_models.inference import predict

    output = predict(loaded, FAMILIES[family].apply(full_case, np.random.default_rng(0)), kb, top_patches=3)
    FusionOutput.model_validate_json(output.model_dump_json())  # finite, serialisable scores
    entry = next(o for o in output.ood if o.modality == "pathology")
    assert entry.out_of_distribution and entry.action == "masked" and entry.score > entry.threshold
    assert output.patch_attention == [] and output.pattern_fractions == {}
    # Masked means predicted as if the slide were absent.
    without_slides = predict(loaded, replace(full_case, slides=[]), kb, top_patches=3)
    assert output.predictions == without_slides.predictions


@pytest.mark.slow
@pytest.mark.parametrize("family", ["imaging_100mm_voxels", "imaging_whole_volume_mask"])
def test_implausible_imaging_is_flagged_and_masked(loaded, kb, full_case, family):
    from fusion_models.inference import predict

    output = predict(loaded, FAMILIES[family].apply(full_case, np.random.default_rng(0)), kb)
    entry = next(o for o in output.ood if o.modality == "imaging")
    assert entry.out_of_distribution and entry.action == "masked"
    assert "imaging" not in output.modalities_used and output.habitat_attribution == {}


@pytest.mark.slow
def test_every_prediction_carries_a_90_percent_set(loaded, kb, full_case):
    from fusion_models.inference import predict

    output = predict(loaded, full_case, kb)
    for p in output.predictions:
        assert p.set_coverage == 0.9 and p.top()[0] in p.prediction_set and set(p.prediction_set) <= set(p.labels)
    assert {o.modality for o in output.ood} == {"imaging", "genomics", "pathology"}


@pytest.mark.slow
def test_when_every_modality_is_ood_nothing_is_masked(loaded, kb, full_case):
    from fusion_models.inference import predict

    rng = np.random.default_rng(0)
    bad = FAMILIES["pathology_x1e30"].apply(replace(full_case, genomics=None, findings=None), rng)
    bad = FAMILIES["imaging_100mm_voxels"].apply(bad, rng)
    bad.manifest = bad.manifest.model_copy(update={"age_band": None, "sex": None})
    output = predict(loaded, bad, kb)
    assert {o.modality for o in output.ood if o.out_of_distribution} == {"imaging", "pathology"}
    assert all(o.action == "none" for o in output.ood)  # the report answers; the flags lower confidence


@pytest.mark.slow
def test_checkpoint_without_sets_or_detectors_still_loads(demo_checkpoint, kb, full_case, tmp_path):
    from fusion_models.inference import load_fusion_model, predict

    payload = torch.load(io.BytesIO(demo_checkpoint.read_bytes()), weights_only=True)
    del payload["conformal"], payload["ood"]
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    output = predict(load_fusion_model(old), full_case, kb)
    assert output.ood == [] and all(p.prediction_set == [] and p.set_coverage is None for p in output.predictions)


# ---- the TCGA model -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tcga_checkpoint(shared_data, tmp_path_factory) -> Path:
    from fusion_models.tcga.checkpoint import train_linear_model
    from fusion_models.tcga.family import linear_model_config

    out = tmp_path_factory.mktemp("tcga") / "tcga_glioma.json"
    train_linear_model(linear_model_config("tcga_glioma"), shared_data / "tcga_glioma", out)
    return out


@pytest.fixture(scope="module")
def tcga_case(shared_data):
    from fusion_models.genomics.io import load_genomics
    from fusion_models.inputs import CaseInputs, load_manifest

    case_dir = sorted((shared_data / "tcga_glioma" / "cases").iterdir())[0]
    genomics, _ = load_genomics(case_dir)
    return CaseInputs(case_dir, load_manifest(case_dir), [], [], None, genomics)


@pytest.mark.slow
def test_tcga_checkpoint_carries_a_calibration_split_layer(tcga_checkpoint, tcga_case):
    from fusion_models.card import card_path
    from fusion_models.tcga.checkpoint import load_linear_model
    from fusion_models.tcga.inference import predict_case

    card = json.loads(card_path(tcga_checkpoint).read_text())
    training = card["training_data"]
    assert training["n_fit"] + training["n_calibration"] == training["n_cases"] and training["n_calibration"] >= 80
    assert set(card["metrics"]["calibration"]["conformal"]) == {"grade", "molecular_subtype", "risk"}
    loaded = load_linear_model(tcga_checkpoint)
    output = predict_case(loaded, tcga_case)
    assert all(p.set_coverage == 0.9 and p.top()[0] in p.prediction_set for p in output.predictions)
    (entry,) = output.ood
    assert entry.modality == "genomics" and entry.action == "none" and not entry.out_of_distribution

    counts = FAMILIES["expression_raw_counts"].apply(tcga_case, np.random.default_rng(0))
    (entry,) = predict_case(loaded, counts).ood
    assert entry.out_of_distribution and entry.action == "none"  # genomics-only: nothing left to mask


@pytest.mark.slow
def test_tcga_checkpoint_without_the_layer_still_loads(tcga_checkpoint, tcga_case, tmp_path):
    from fusion_models.tcga.checkpoint import load_linear_model
    from fusion_models.tcga.inference import predict_case

    payload = json.loads(tcga_checkpoint.read_text())
    del payload["post_hoc"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(payload))
    output = predict_case(load_linear_model(old), tcga_case)
    assert output.ood == [] and all(p.prediction_set == [] for p in output.predictions)
