"""Every registered fusion head, without a test per head: shapes on each modality subset, masking,
determinism, training, save/load, and an interpretation that only covers what a case has."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from fusion_models.features import HABITATS
from fusion_models.fusion_heads import (
    HeadConfig,
    collate,
    create_fusion_head,
    fusion_head_names,
    fusion_head_needs,
)
from fusion_models.fusion_heads.evidential import combine_opinions, opinion
from fusion_models.fusion_heads.trainer import Ensemble, TrainSettings, fit, predict, task_losses, train_head
from fusion_models.task_heads import TaskSpec
from fusion_models.task_heads.classification import TEMPERATURE_BOUNDS
from schemas.common import MODALITIES

HEADS = fusion_head_names()
GRADES = ("G2", "G3", "G4")
TASKS = (
    TaskSpec(name="grade", kind="classification", labels=GRADES, target="grade"),
    TaskSpec(name="risk", kind="survival", labels=("event_by_24m", "event_free_at_24m"), target="survival_months",
             event_target="event", horizon_months=24.0),
)
ORDINAL_TASKS = (TaskSpec(name="grade", kind="ordinal", labels=GRADES, target="grade"), TASKS[1])
SUBSETS = [(m,) for m in MODALITIES] + [MODALITIES]


@pytest.fixture(scope="module")
def data(kb):
    from demo.head_data import demo_head_data

    return demo_head_data(32, seed=3, kb=kb, tasks=TASKS, bank_tiles_per_pattern=8)


@pytest.fixture(scope="module")
def batch(data):
    """The demo cases plus one with two scans (the earlier one smaller), so the longitudinal path runs."""
    scanned = next(c for c in data.cases if c.region_mask.any() and len(c.patches))
    earlier = scanned.regions[-1:] * np.float32(0.8)
    two_scans = replace(
        scanned, case_id="TWO-SCANS", regions=np.concatenate([earlier, scanned.regions[-1:]]),
        region_mask=np.concatenate([scanned.region_mask[-1:]] * 2),
    )
    return collate([*data.cases, two_scans])


def _head(name: str, modalities=MODALITIES, seed: int = 0, tasks=TASKS):
    torch.manual_seed(seed)
    return create_fusion_head(HeadConfig(head=name, modalities=modalities, tasks=tasks)).eval()


def _only(batch, subset):
    keep = torch.tensor([m in subset for m in MODALITIES])
    return batch.with_present(batch.present & keep)


def test_registry_holds_the_literature_heads():
    expected = {"early", "late", "evidential", "pathomic", "mcat", "survpath", "dyam", "orthogonal", "graph",
                "longitudinal"}
    assert expected <= set(HEADS)
    with pytest.raises(ValueError, match="unknown fusion head"):
        create_fusion_head(HeadConfig(head="nope", tasks=TASKS))


@pytest.mark.parametrize("name", HEADS)
def test_forward_shapes_on_every_modality_subset(name, batch):
    head = _head(name)
    for subset in SUBSETS:
        out = head(_only(batch, subset))
        assert out.outputs["grade"].shape == (len(batch), 3), subset
        assert out.outputs["risk"].shape == (len(batch),), subset
        assert all(torch.isfinite(v).all() for v in out.outputs.values()), subset
    # Any registered head type: an ordinal grade gives its K-1 cumulative logits.
    assert _head(name, tasks=ORDINAL_TASKS)(batch).outputs["grade"].shape == (len(batch), 2)
    tcga = ("genomics", "clinical")  # the labelled-cohort configuration
    if not fusion_head_needs(name) <= set(tcga):
        with pytest.raises(ValueError, match=f"fusion head '{name}' needs"):
            HeadConfig(head=name, modalities=tcga, tasks=TASKS)
        return
    out = _head(name, modalities=tcga)(batch)
    assert out.outputs["grade"].shape == (len(batch), 3) and torch.isfinite(out.outputs["risk"]).all()
    assert out.interpretation.patch_attention is None and out.interpretation.region_attention is None


def _scramble(batch, modality: str, generator: torch.Generator):
    noise = {
        "imaging": {"regions": batch.regions},
        "pathology": {"patches": batch.patches, "coords": batch.coords},
        "genomics": {"pathways": batch.pathways, "drivers": batch.drivers},
        "clinical": {"age": batch.age},
    }[modality]
    return replace(batch, **{k: torch.randn(v.shape, generator=generator) * 50 for k, v in noise.items()})


@pytest.mark.parametrize("name", HEADS)
def test_a_masked_modality_does_not_change_the_output(name, batch):
    head, generator = _head(name), torch.Generator().manual_seed(0)
    for modality in MODALITIES:
        masked = batch.without(modality)
        with torch.no_grad():
            reference, scrambled = head(masked), head(_scramble(masked, modality, generator))
        for task, value in reference.outputs.items():
            torch.testing.assert_close(scrambled.outputs[task], value, msg=f"{modality} leaks into {task}")
        # ...while the same change to a present modality does change something (the test can fail).
        with torch.no_grad():
            changed = head(_scramble(batch, modality, generator))
        assert not torch.allclose(changed.outputs["grade"], head(batch).outputs["grade"]), modality


@pytest.mark.parametrize("name", HEADS)
def test_interpretation_covers_only_what_the_case_has(name, batch):
    x = batch.without("clinical")
    interpretation = _head(name)(x).interpretation
    if interpretation.modality_weights is not None:
        weights = interpretation.modality_weights
        assert torch.all(weights[:, MODALITIES.index("clinical")] == 0)
        has_any = x.present.any(1)
        torch.testing.assert_close(weights.sum(1)[has_any], torch.ones(int(has_any.sum())))
    patch = interpretation.patch_attention
    with_patches = x.patch_mask.any(1) & x.present[:, MODALITIES.index("pathology")]
    torch.testing.assert_close(patch.sum(1)[with_patches], torch.ones(int(with_patches.sum())))
    assert torch.all(patch[~x.patch_mask] == 0)
    regions = interpretation.region_attention
    scanned = x.region_mask[:, -1].any(1)
    torch.testing.assert_close(regions.sum(1)[scanned], torch.ones(int(scanned.sum())))
    assert torch.all(regions[~x.region_mask[:, -1]] == 0)
    assert regions.shape == (len(x), len(HABITATS))


def test_longitudinal_head_reads_the_earlier_scan(batch):
    head = _head("longitudinal")
    two = batch.select([len(batch) - 1])
    grown = replace(two, regions=two.regions.clone())
    grown.regions[:, 0, :, 0] -= 1.0  # the earlier scan was much smaller: the lesion grew
    with torch.no_grad():
        out, out_grown = head(two), head(grown)
    assert not torch.allclose(out.outputs["risk"], out_grown.outputs["risk"])
    torch.testing.assert_close(out.interpretation.timepoint_attention.sum(1), torch.ones(1))


@pytest.mark.parametrize("name", HEADS)
def test_same_seed_same_head_and_outputs(name, batch):
    a, b = _head(name, seed=5), _head(name, seed=5)
    for (key, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), key
    torch.testing.assert_close(a(batch).outputs["grade"], b(batch).outputs["grade"])
    assert not torch.equal(_head(name, seed=6)(batch).outputs["grade"], a(batch).outputs["grade"])


@pytest.mark.parametrize("name", HEADS)
def test_training_steps_reduce_the_loss(name, batch, data):
    y = data.targets
    x = batch.select(range(len(y)))
    config = HeadConfig(head=name, tasks=TASKS)
    settings = TrainSettings(epochs=6, patience=6, lr=1e-2)
    head, _ = train_head(config, (x, y), (x, y), TrainSettings(epochs=0), 0)  # standardised, untrained
    before = float(sum(task_losses(predict(head, x), y, TASKS).values()))
    fit(head, (x, y), (x, y), settings, seed=0)
    after = float(sum(task_losses(predict(head, x), y, TASKS).values()))
    assert after < before


def test_dempster_rule_vacuous_opinion_is_the_identity_and_agreement_sharpens():
    b, u = opinion(torch.tensor([[4.0, 1.0, 0.0]]))
    torch.testing.assert_close(b, torch.tensor([[0.5, 0.125, 0.0]]))  # S = 5 + 3 = 8
    torch.testing.assert_close(u, torch.tensor([[0.375]]))
    vacuous_b, vacuous_u = torch.zeros(1, 3), torch.ones(1, 1)
    same_b, same_u = combine_opinions(b, u, vacuous_b, vacuous_u)
    torch.testing.assert_close(same_b, b)
    torch.testing.assert_close(same_u, u)
    both_b, both_u = combine_opinions(b, u, b, u)
    assert both_u.item() < u.item() and both_b[0, 0] > b[0, 0]


def test_ensemble_probabilities_are_calibrated_distributions(data, batch):
    y = data.targets
    x = batch.select(range(len(y)))
    half = np.arange(len(y) // 2)
    rest = np.arange(len(y) // 2, len(y))
    parts = {"training": half, "stopping": rest, "calibration": rest, "evaluation": rest}
    config = HeadConfig(head="early", tasks=TASKS)
    ensemble, report = Ensemble.train(
        config, {k: (x.select(v), y.select(v)) for k, v in parts.items()}, members=2,
        settings=TrainSettings(epochs=3), seed=0,
    )
    probabilities = ensemble.probabilities(x)
    np.testing.assert_allclose(probabilities["grade"].sum(1), 1.0, atol=1e-5)
    assert TEMPERATURE_BOUNDS[0] <= ensemble.calibration["grade"].value <= TEMPERATURE_BOUNDS[1]
    assert ensemble.outputs(x)["risk"].shape == (len(y),)
    assert set(report["metrics"]) == {"grade", "risk"}
    # The members differ (two seeds), and the ensemble's class probabilities are their mean before calibration.
    members = [predict(m, x)["grade"].softmax(-1) for m in ensemble.members]
    assert not torch.allclose(members[0], members[1])
    torch.testing.assert_close(ensemble.outputs(x)["grade"].exp(), torch.stack(members).mean(0))
