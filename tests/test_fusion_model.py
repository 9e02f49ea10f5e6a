"""The fusion model: building blocks, registry, calibration, survival maths, training and inference."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion_models.calibration import (
    RiskCalibration,
    breslow_cumulative_hazard,
    expected_calibration_error,
    fit_temperature,
    nll,
    softmax,
)
from fusion_models.card import card_path
from fusion_models.features import Batch, ClinicalSpec, GenomicsSpec, InputSpec
from fusion_models.heads import GatedAttentionMIL, cox_partial_likelihood_loss, masked_softmax
from fusion_models.inference import habitat_attribution, load_fusion_model, predict
from fusion_models.inputs import CaseInputs
from fusion_models.model import FusionForward, FusionModel, FusionModelConfig, TaskSpec
from fusion_models.neural_family import create_fusion_model, fusion_model_config, list_fusion_models
from fusion_models.train import train_fusion_model
from fusion_models.training_common import drop_modalities, split_indices
from schemas.case import CaseManifest
from schemas.errors import InputError
from schemas.fusion import FusionOutput

# ---- building blocks ------------------------------------------------------------------------------


def random_batch(model: FusionModel, b: int = 4, n: int = 6, seed: int = 0) -> Batch:
    """Random inputs shaped for `model`'s config, every modality present, bag sizes n, n-1, ..."""
    g = torch.Generator().manual_seed(seed)
    names = model.config.inputs.vector_names()
    pathology = model.config.inputs.pathology
    mask = torch.arange(n)[None, :] < (n - torch.arange(b))[:, None]
    return Batch(
        values={k: torch.randn(b, len(v), generator=g) for k, v in names.items()},
        known={k: torch.ones(b, len(v)) for k, v in names.items()},
        present={m: torch.ones(b, dtype=torch.bool) for m in model.modalities},
        patches=torch.randn(b, n, pathology.embed_dim if pathology else 0, generator=g),
        patch_mask=mask,
    )


def test_masked_softmax_zeroes_masked_entries_and_empty_rows():
    logits = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    mask = torch.tensor([[True, False, True], [False, False, False]])
    weights = masked_softmax(logits, mask)
    e1, e3 = math.exp(1.0), math.exp(3.0)
    assert weights[0].tolist() == pytest.approx([e1 / (e1 + e3), 0.0, e3 / (e1 + e3)])
    assert weights[1].tolist() == [0.0, 0.0, 0.0]
    assert masked_softmax(torch.zeros(2, 0), torch.zeros(2, 0, dtype=torch.bool)).shape == (2, 0)


def test_gated_attention_ignores_padding():
    torch.manual_seed(0)
    mil = GatedAttentionMIL(dim=8, attention_dim=4)
    patches = torch.randn(1, 5, 8)
    mask = torch.tensor([[True, True, True, False, False]])
    bag, attention = mil(patches, mask)
    padded_other = patches.clone()
    padded_other[0, 3:] = 100.0
    bag_other, _ = mil(padded_other, mask)
    assert torch.allclose(bag, bag_other)
    assert attention[0, 3:].tolist() == [0.0, 0.0] and attention.sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("name", list_fusion_models())
def test_forward_shapes(name):
    torch.manual_seed(0)
    model = create_fusion_model(name)
    batch = random_batch(model)
    forward = model(batch)
    for task in model.config.tasks:
        expected = (4, len(task.labels)) if task.kind == "classification" else (4,)
        assert forward.outputs[task.name].shape == expected
    assert forward.modality_weights.shape == (4, len(model.modalities))
    if model.config.inputs.pathology:
        assert forward.pattern_logits.shape == (4, 6, len(model.config.patterns))
        assert forward.patch_attention.sum(dim=1).tolist() == pytest.approx([1.0] * 4)


@pytest.mark.parametrize("name", list_fusion_models())
def test_masked_modality_contributes_exactly_zero(name):
    torch.manual_seed(0)
    model = create_fusion_model(name).eval()
    batch = random_batch(model)
    hidden = model.modalities[0]
    batch.present[hidden] = torch.tensor([False, True, False, True])
    forward = model(batch)
    weights = forward.modality_weights
    assert weights[:, 0].tolist()[0] == 0.0 and weights[:, 0].tolist()[2] == 0.0
    assert weights.sum(dim=1).tolist() == pytest.approx([1.0] * 4)
    # A masked modality's values cannot change the answer.
    block = next(b for b in batch.values if {"findings": "pathology"}.get(b, b) == hidden)
    batch.values[block][0] += 50.0
    changed = model(batch)
    for task in model.config.tasks:
        assert torch.allclose(forward.outputs[task.name][0], changed.outputs[task.name][0])


def test_registry_lists_and_rejects_unknown_names():
    assert "glioma_demo" in list_fusion_models()
    with pytest.raises(ValueError, match="unknown model family .no_such_model."):
        create_fusion_model("no_such_model")


def test_overrides_are_validated():
    assert fusion_model_config("glioma_demo", hidden_dim=8).hidden_dim == 8
    with pytest.raises(ValueError):
        fusion_model_config("glioma_demo", modality_dropout=1.5)


def test_config_round_trips_through_json():
    config = fusion_model_config("glioma_demo")
    assert FusionModelConfig.model_validate_json(config.model_dump_json()) == config
    assert config.intended_use == "research use only, not for diagnosis"


def test_genomics_only_model_needs_no_new_code():
    """A TCGA-style model (expression genes + mutations + cnv + age) is a config, not a new class."""
    inputs = InputSpec(genomics=GenomicsSpec(expression_genes=("EGFR", "MKI67")), clinical=ClinicalSpec())
    config = FusionModelConfig.model_validate(
        {**fusion_model_config("glioma_demo").model_dump(), "name": "tcga_genomics", "inputs": inputs}
    )
    model = FusionModel(config)
    assert model.modalities == ("genomics", "clinical")
    forward = model(random_batch(model))
    assert forward.outputs["grade"].shape == (4, 3)


def test_survival_task_needs_a_horizon():
    with pytest.raises(ValueError, match="horizon_months"):
        TaskSpec(name="risk", kind="survival", labels=("a", "b"), target="survival_months")


# ---- calibration and survival maths -------------------------------------------------------------


def test_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 3)) * 2.0
    labels = np.array([rng.choice(3, p=p) for p in softmax(true_logits)])
    # An over-confident model: the logits it reports are 2.5x the true ones.
    assert fit_temperature(true_logits * 2.5, labels) == pytest.approx(2.5, rel=0.08)
    assert nll(true_logits * 2.5, labels, 2.5) < nll(true_logits * 2.5, labels)
    # An under-confident model may not be sharpened past the lower bound.
    assert fit_temperature(true_logits / 2.0, labels, bounds=(1.0, 20.0)) == 1.0


def test_ece_hand_checked():
    probs = np.array([[0.7, 0.3], [0.3, 0.7], [0.9, 0.1], [0.55, 0.45]])
    labels = np.array([0, 0, 0, 1])
    # bins: 0.7 -> (0.6, 0.7]: conf 0.7, acc 1/2 -> 0.5 * 0.2; 0.9: 0.25 * 0.1; 0.55: 0.25 * 0.55
    assert expected_calibration_error(probs, labels) == pytest.approx(0.1 + 0.025 + 0.1375)
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0


def test_cox_loss_hand_checked():
    zero = torch.zeros(3)
    loss = cox_partial_likelihood_loss(zero, torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 1.0, 1.0]))
    assert loss.item() == pytest.approx((math.log(3) + math.log(2) + math.log(1)) / 3, rel=1e-6)
    # Tied event times share the whole risk set (Breslow): both see 3 cases at risk.
    tied = cox_partial_likelihood_loss(zero, torch.tensor([1.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0]))
    assert tied.item() == pytest.approx(math.log(3), rel=1e-6)
    # Ranking the early death as riskiest lowers the loss.
    better = cox_partial_likelihood_loss(torch.tensor([1.0, 0.0, -1.0]), torch.tensor([1.0, 2.0, 3.0]), torch.ones(3))
    assert better < loss


def test_breslow_and_risk_calibration_hand_checked():
    # Events at 1 (3 at risk) and 2 (2 at risk); 3 is censored; horizon 2.5.
    assert breslow_cumulative_hazard(np.array([1, 2, 3]), np.array([1, 1, 0]), np.zeros(3), 2.5) == pytest.approx(
        1 / 3 + 1 / 2
    )
    calibration = RiskCalibration(horizon_months=24, baseline_cumulative_hazard=0.5, cut_points=(-1.0, 1.0))
    assert calibration.event_probability(0.0) == pytest.approx(1 - math.exp(-0.5))
    assert calibration.event_probability(math.log(2)) == pytest.approx(1 - math.exp(-1.0))
    assert [calibration.group(r) for r in (-2.0, 0.0, 1.0, 3.0)] == ["low", "intermediate", "high", "high"]


def test_modality_dropout_never_hides_everything():
    present = {"imaging": torch.tensor([True, True, False]), "clinical": torch.tensor([True, False, True])}
    dropped = drop_modalities(present, p=0.99, generator=torch.Generator().manual_seed(0))
    stacked = torch.stack(list(dropped.values()), dim=1)
    assert stacked.any(dim=1).all()
    assert not (stacked & ~torch.stack(list(present.values()), dim=1)).any()  # never adds a modality


def test_split_is_seeded_disjoint_and_complete():
    fractions = {"stopping": 0.1, "calibration": 0.2, "evaluation": 0.15}
    splits = split_indices(60, fractions, seed=3)
    assert {k: len(v) for k, v in splits.items()} == {"training": 33, "stopping": 6, "calibration": 12, "evaluation": 9}
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(60))
    again = split_indices(60, fractions, seed=3)
    assert all((again[k] == v).all() for k, v in splits.items())
    with pytest.raises(ValueError):
        split_indices(3, fractions, seed=0)  # three held-out cases leave none to train on


def test_habitat_attribution_hand_checked():
    """risk = w . x, so gradient x input per feature is w_i * x_i; lesion-wide shares follow volume."""
    names = ["lesion_log1p_volume_ml", "enhancing_fraction", "oedema_fraction", "necrotic_core_fraction"]
    x = torch.tensor([[1.0, 2.0, -1.0, 3.0]], requires_grad=True)
    w = torch.tensor([0.5, 1.0, 2.0, 0.0])
    risk_task = TaskSpec(
        name="risk", kind="survival", labels=("event_by_24m", "event_free_at_24m"), target="t", event_target="e",
        horizon_months=24,
    )
    forward = FusionForward(
        outputs={"risk": (x * w).sum(dim=1)}, modality_weights=torch.ones(1, 1), patch_attention=torch.zeros(1, 0),
        pattern_logits=torch.zeros(1, 0, 5), standardised={"imaging": x},
    )
    raw = torch.tensor([0.3, 0.25, 0.75, 0.0])  # necrotic core absent: gets no share
    shares = habitat_attribution(forward, risk_task, names, raw)
    # |w x| = 0.5 (lesion), 2 (enhancing), 2 (oedema), 0; lesion 0.5 split 1:3 -> 2.125 and 2.375.
    assert shares == pytest.approx({"enhancing": 2.125 / 4.5, "oedema": 2.375 / 4.5})


# ---- training and inference on the demo cohort (the conftest fixtures train once per session) ---


@pytest.fixture(scope="module")
def small_training_set():
    """A dozen in-memory demo cases, materialised so that two trainings see identical inputs."""
    from demo.training import iter_training_cases
    from fusion_models.encoders import create_encoder

    return list(iter_training_cases(12, seed=5, encoder=create_encoder("hed_texture")))


@pytest.mark.slow
def test_training_is_deterministic(small_training_set, kb, tmp_path):
    first, second = (
        train_fusion_model(
            fusion_model_config("glioma_demo"), small_training_set, tmp_path / name, kb=kb, epochs=2, seed=7,
            progress=False,
        )
        for name in ("a.pt", "b.pt")
    )
    a, b = load_fusion_model(first.checkpoint), load_fusion_model(second.checkpoint)
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    assert first.metrics == second.metrics
    assert first.split_sizes == {"training": 6, "stopping": 2, "calibration": 2, "evaluation": 2}
    assert str(first.checkpoint) in first.summary()


@pytest.mark.slow
def test_training_refuses_unknown_labels(small_training_set, kb, tmp_path):
    inputs, labels = small_training_set[0]
    bad = [(inputs, dataclasses.replace(labels, grade="G5")), *small_training_set[1:]]
    with pytest.raises(InputError) as error:
        train_fusion_model(fusion_model_config("glioma_demo"), bad, tmp_path / "x.pt", kb=kb, epochs=1, progress=False)
    assert error.value.field == "labels.grade"
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.slow
def test_demo_model_beats_chance_and_has_a_card(demo_checkpoint):
    card = json.loads(card_path(demo_checkpoint).read_text())
    evaluation = card["metrics"]["evaluation"]
    grade = evaluation["grade"]
    majority = 1 / 3 + 0.2  # no grade holds more than ~45 % of the demo cohort
    assert grade["accuracy"] > majority and grade["macro_auc"] > 0.75
    assert evaluation["risk"]["c_index"] > 0.6
    assert card["weights_sha256"] == hashlib.sha256(demo_checkpoint.read_bytes()).hexdigest()
    assert card["intended_use"] == "research use only, not for diagnosis"
    assert card["inputs"]["pathology"]["encoder"] == "hed_texture"
    splits = card["training_data"]["splits"]
    assert set(splits) == {"training", "stopping", "calibration", "evaluation"}
    assert sum(splits.values()) == card["training_data"]["n_cases"]


@pytest.mark.slow
def test_predict_on_demo_cases(loaded, demo_cohort, kb):
    from fusion_models.encoders import create_encoder
    from fusion_models.inputs import load_case_inputs

    encoder = create_encoder("hed_texture")
    for case_dir in sorted((demo_cohort / "cases").iterdir())[:6]:
        inputs = load_case_inputs(case_dir, encoder=encoder)
        started = time.perf_counter()
        output = predict(loaded, inputs, kb, top_patches=3)
        assert time.perf_counter() - started < 1.0
        FusionOutput.model_validate(output.model_dump())
        masked = {o.modality for o in output.ood if o.action == "masked"}
        assert {o.modality for o in output.ood if o.out_of_distribution} >= masked
        if "pathology" in masked and inputs.findings is not None:
            masked.remove("pathology")  # only the patches go; the pathologist's findings stay
        assert set(output.modalities_used) == set(inputs.present_modalities()) - masked
        assert sum(output.modality_contributions.values()) == pytest.approx(1.0)
        assert {p.task for p in output.predictions} == {"grade", "molecular_subtype", "risk"}
        assert output.prediction("risk").risk_group in {"low", "intermediate", "high"}
        assert all(p.set_coverage == 0.9 and p.top()[0] in p.prediction_set for p in output.predictions)
        slides = {s.slide_id: len(s.features) for s in inputs.slides}
        if any(o.modality == "pathology" and o.action == "masked" for o in output.ood):
            slides = {}
        assert len(output.patch_attention) == sum(min(3, n) for n in slides.values())
        assert all(p.patch_index < slides[p.slide_id] for p in output.patch_attention)
        if slides:
            assert sum(output.pattern_fractions.values()) == pytest.approx(1.0)
        if "imaging" in output.modalities_used:
            assert sum(output.habitat_attribution.values()) == pytest.approx(1.0)


@pytest.mark.slow
def test_save_load_round_trip_gives_identical_predictions(demo_checkpoint, loaded, demo_cohort, kb):
    from fusion_models.encoders import create_encoder
    from fusion_models.inputs import load_case_inputs

    inputs = load_case_inputs(sorted((demo_cohort / "cases").iterdir())[0], encoder=create_encoder("hed_texture"))
    again = load_fusion_model(demo_checkpoint)
    assert predict(again, inputs, kb) == predict(loaded, inputs, kb)
    assert again.weights_sha256 == loaded.weights_sha256


def manifest_only(age_band: str | None) -> CaseInputs:
    manifest = CaseManifest(case_id="c1", cancer_type="glioma", age_band=age_band)
    return CaseInputs(case_dir=Path("c1"), manifest=manifest, imaging=[], slides=[], findings=None, genomics=None)


@pytest.mark.slow
def test_clinical_only_case_still_answers(loaded, kb):
    output = predict(loaded, manifest_only("40-49"), kb)
    assert output.modalities_used == ["clinical"] and output.modality_contributions == {"clinical": 1.0}
    assert output.patch_attention == [] and output.habitat_attribution == {} and output.pattern_fractions == {}
    # Age alone cannot settle a grade: no label may look certain.
    assert output.prediction("grade").top()[1] < 0.95


@pytest.mark.slow
def test_case_with_nothing_usable_is_refused(loaded, kb):
    with pytest.raises(InputError) as error:
        predict(loaded, manifest_only(None), kb)
    assert (error.value.file, error.value.field) == ("case.json", "modalities")


@pytest.mark.slow
def test_knowledge_base_must_match_training(loaded):
    from knowledge.sources import KnowledgeBase, Pathway

    other = KnowledgeBase(
        name="other", version="1", gene_universe=frozenset("AB"), attribution="test",
        pathways=[Pathway(id="X:1", name="x", source="GO", description="", genes=("A", "B"), programme="hypoxia")],
    )
    with pytest.raises(InputError, match="hypoxia"):
        predict(loaded, manifest_only("40-49"), other)


def test_missing_or_corrupt_checkpoint_is_an_input_error(tmp_path):
    with pytest.raises(InputError) as error:
        load_fusion_model(tmp_path / "none.pt")
    assert error.value.field == "checkpoint"
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError):
        load_fusion_model(tmp_path / "bad.pt")
