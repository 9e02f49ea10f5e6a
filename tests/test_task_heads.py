"""Every registered head type: layer shape, loss that learns, calibration round trip, TaskPrediction mapping."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fusion_models.task_heads import TaskSpec, list_task_heads, task_head
from fusion_models.task_heads.ordinal import CumulativeLink, ordinal_probabilities
from schemas.errors import InputError

SPECS = {
    "classification": TaskSpec(name="molecular_subtype", kind="classification", labels=("a", "b", "c"), target="y"),
    "ordinal": TaskSpec(name="grade", kind="ordinal", labels=("G2", "G3", "G4"), target="y"),
    "survival": TaskSpec(
        name="risk", kind="survival", labels=("event_by_24m", "event_free_at_24m"), target="time",
        event_target="event", horizon_months=24.0,
    ),
}


def test_every_registered_head_type_has_a_spec_here():
    assert sorted(SPECS) == list_task_heads()


def _toy(kind: str, n: int = 64, seed: int = 0):
    """A 1-D feature that orders the cases, and labels/survival that follow it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    if kind == "survival":
        time = np.exp(1.5 - x + 0.3 * rng.normal(size=n)) * 10
        labels = [SimpleNamespace(time=float(t), event=True) for t in time]
    else:
        bins = np.digitize(x, [-0.5, 0.5])
        labels = [SimpleNamespace(y=SPECS[kind].labels[b]) for b in bins]
    return torch.tensor(x, dtype=torch.float32)[:, None], labels


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_head_learns_calibrates_and_predicts(kind):
    spec, head = SPECS[kind], task_head(kind)
    x, labels = _toy(kind)
    targets = torch.tensor([head.encode_target(spec, lab, "toy") for lab in labels], dtype=torch.float32)
    torch.manual_seed(0)
    layer = head.layer(1, spec)
    first = head.loss(layer(x), targets, spec).item()
    optimiser = torch.optim.Adam(layer.parameters(), lr=0.1)
    for _ in range(100):
        optimiser.zero_grad()
        loss = head.loss(layer(x), targets, spec)
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.8 * first
    outputs = layer(x).detach().numpy()
    data = (outputs, targets.numpy().astype(float))
    calibration, record = head.fit_calibration(spec, data, data)
    assert head.calibration_from_dict(calibration.to_dict()) == calibration
    assert isinstance(record, dict)
    probs = head.probabilities(spec, outputs, calibration)
    assert probs.shape == (len(x), len(spec.labels)) and np.allclose(probs.sum(axis=1), 1.0)
    prediction = head.to_prediction(spec, outputs[0], calibration)
    assert prediction.task == spec.name and math.isclose(sum(prediction.probabilities.values()), 1.0)
    assert head.metrics(spec, *data, calibration)
    kept, indices = head.labelled(spec, *data)
    assert len(kept) == len(indices) > 0
    assert head.attribution_target(spec, layer(x[:1])[0]).ndim == 0


@pytest.mark.parametrize("kind", ["classification", "ordinal"])
def test_unknown_labels_are_ignored_and_foreign_labels_refused(kind):
    spec, head = SPECS[kind], task_head(kind)
    assert head.encode_target(spec, SimpleNamespace(y=None), "c") == (-1.0,)
    targets = torch.tensor([[-1.0], [-1.0]])
    outputs = head.layer(2, spec)(torch.ones(2, 2))
    loss = head.loss(outputs, targets, spec)
    assert float(loss) == 0.0 and loss.requires_grad
    with pytest.raises(InputError, match="labels.y"):
        head.encode_target(spec, SimpleNamespace(y="G9"), "case_dir")


def test_ordinal_probabilities_by_hand():
    # logit P(y > G2) = 0, logit P(y > G3) = -1: P = [1 - 0.5, 0.5 - sigmoid(-1), sigmoid(-1)]
    s = 1 / (1 + math.exp(1))
    assert np.allclose(ordinal_probabilities(np.array([[0.0, -1.0]])), [[0.5, 0.5 - s, s]])
    # temperature 2 halves the logits
    s2 = 1 / (1 + math.exp(0.5))
    assert np.allclose(ordinal_probabilities(np.array([[0.0, -1.0]]), 2.0), [[0.5, 0.5 - s2, s2]])


def test_cumulative_link_cut_points_stay_ordered():
    layer = CumulativeLink(3, 4)
    with torch.no_grad():
        layer.gaps.copy_(torch.tensor([-5.0, 3.0]))
    cuts = layer.cut_points()
    assert bool((cuts[1:] > cuts[:-1]).all())
    probs = ordinal_probabilities(layer(torch.randn(10, 3)).detach().numpy())
    assert (probs >= 0).all() and np.allclose(probs.sum(axis=1), 1)


def test_specs_are_checked_by_their_head_type():
    with pytest.raises(ValueError, match="survival task needs"):
        TaskSpec(name="risk", kind="survival", labels=("a", "b"), target="t")
    with pytest.raises(ValueError, match="belong to survival"):
        TaskSpec(name="grade", kind="classification", labels=("a", "b"), target="g", horizon_months=12)
    with pytest.raises(ValueError, match="at least three"):
        TaskSpec(name="grade", kind="ordinal", labels=("a", "b"), target="g")
    with pytest.raises(ValueError, match="unknown task head type 'cox'"):
        TaskSpec(name="risk", kind="cox", labels=("a", "b"), target="t")
