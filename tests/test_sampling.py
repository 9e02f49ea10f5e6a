"""Sampling plan: expected information gain (hand-checked), yields, prior mixing and ranking."""

from __future__ import annotations

import math

import pytest

from agents.sampling import (
    DIAGNOSTIC_YIELD,
    entropy_bits,
    expected_information_gain,
    sampling_plan,
    sampling_prior,
)
from schemas.case import PathologyFindings
from test_consistency import G4, necrotic_enhancing_imaging, unit


def mutual_information_by_bayes(prior: dict[str, float], yield_: float) -> float:
    """I(G; Y) from the joint table of grade and biopsy result, without the closed form."""
    joint = {(g, y): 0.0 for g in prior for y in [*prior, "non-diagnostic"]}
    for g, p in prior.items():
        joint[(g, g)] += p * yield_
        joint[(g, "non-diagnostic")] += p * (1.0 - yield_)
    p_y = {y: sum(v for (_, yy), v in joint.items() if yy == y) for y in [*prior, "non-diagnostic"]}
    return sum(v * math.log2(v / (prior[g] * p_y[y])) for (g, y), v in joint.items() if v > 0)


def test_eig_hand_checked():
    # H(0.25, 0.25, 0.5) = 0.5 + 0.5 + 0.5 = 1.5 bits; a 90 % yield reveals 1.35 bits
    assert expected_information_gain({"G2": 0.25, "G3": 0.25, "G4": 0.5}, 0.9) == pytest.approx(1.35)
    assert expected_information_gain({"G2": 0.5, "G4": 0.5}, 0.3) == pytest.approx(0.3)
    assert expected_information_gain({"G2": 0.0, "G4": 1.0}, 0.9) == 0.0


@pytest.mark.parametrize("prior, yield_", [({"G2": 0.1, "G3": 0.3, "G4": 0.6}, 0.7), ({"G2": 0.04, "G3": 0.05, "G4": 0.91}, 0.35)])
def test_eig_equals_mutual_information_of_the_observation_model(prior, yield_):
    assert expected_information_gain(prior, yield_) == pytest.approx(mutual_information_by_bayes(prior, yield_))


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="yield"):
        expected_information_gain({"G2": 0.5, "G4": 0.5}, 1.2)
    with pytest.raises(ValueError, match="probability distribution"):
        entropy_bits({"G2": 0.5, "G4": 0.6})


def test_discordant_prior_is_mixed_with_uniform():
    mixed = sampling_prior(G4, discordant=True)
    assert mixed == pytest.approx({"G2": 0.02 + 1 / 6, "G3": 0.025 + 1 / 6, "G4": 0.455 + 1 / 6})
    assert entropy_bits(mixed) == pytest.approx(1.33514, abs=1e-5)
    # the bound in the module docstring: H(mixed) >= (H(fused) + log2 K) / 2
    assert entropy_bits(mixed) >= (entropy_bits(G4) + math.log2(3)) / 2
    assert sampling_prior(G4, discordant=False) == G4


def test_yield_constants_order_the_phenotypes():
    y = DIAGNOSTIC_YIELD
    assert y["enhancing"] > y["non_enhancing_core"] > max(y["margin_ring"], y["oedema"]) >= y["necrotic_core"]


def test_biopsy_from_oedema_plans_the_enhancing_rim_first():
    findings = PathologyFindings(who_grade=2, necrosis=False, microvascular_proliferation=False, sampled_region="oedema")
    plan = sampling_plan(necrotic_enhancing_imaging(), G4, findings)
    assert [(t.rank, t.unit_id) for t in plan] == [
        (1, "T0:enhancing"), (2, "T0:margin_ring"), (3, "T0:necrotic_core"), (4, "T0:oedema"),
    ]
    # histology disagrees with imaging, so the prior is the uniform mixture: H = 1.33514 bits
    assert plan[0].expected_information_gain == pytest.approx(0.9 * 1.33514, abs=1e-4)
    assert plan[3].expected_information_gain == pytest.approx(0.3 * 0.5 * 1.33514, abs=1e-4)
    assert plan[0].evidence == ["S2"]
    assert plan[0].reason.startswith("Enhancing component (T0:enhancing, 12.3 mL): diagnostic yield 0.90")
    assert "mixed with uniform" in plan[0].reason
    assert "Already sampled by the specimen" in plan[3].reason


def test_concordant_case_uses_the_fused_prior():
    findings = PathologyFindings(who_grade=4, necrosis=True, sampled_region="enhancing")
    plan = sampling_plan(necrotic_enhancing_imaging(), G4, findings)
    # H(0.04, 0.05, 0.91) = 0.52567 bits; the specimen came from the enhancing rim, so its yield halves
    # to 0.45, still above the margin ring's 0.35
    by_unit = {t.unit_id: t.expected_information_gain for t in plan}
    assert by_unit["T0:enhancing"] == pytest.approx(0.45 * 0.525667, abs=1e-5)
    assert by_unit["T0:margin_ring"] == pytest.approx(0.35 * 0.525667, abs=1e-5)
    assert plan[0].unit_id == "T0:enhancing"


def test_tiny_unit_is_scaled_down():
    spatial = [unit("S1", "enhancing", 0.3), unit("S2", "non_enhancing_core", 5.0)]
    plan = sampling_plan(spatial, {"G2": 0.5, "G4": 0.5}, None)
    assert [(t.unit_id, t.expected_information_gain) for t in plan] == [
        ("T0:non_enhancing_core", pytest.approx(0.7)), ("T0:enhancing", pytest.approx(0.45)),
    ]
    assert "Small unit (under 0.5 mL)" in plan[1].reason


def test_only_the_latest_time_point_is_planned():
    spatial = [
        unit("S1", "enhancing", 8.0, tp="T0"), unit("S2", "oedema", 20.0, tp="T0"),
        unit("S3", "enhancing", 11.0, tp="T1"), unit("S4", "oedema", 25.0, tp="T1"),
        unit("S5", "lesion", 36.0, tp="T1", level="longitudinal"),
    ]
    plan = sampling_plan(spatial, G4, None)
    assert [t.unit_id for t in plan] == ["T1:enhancing", "T1:oedema"]
    assert [t.rank for t in plan] == [1, 2]


def test_no_imaging_no_plan():
    assert sampling_plan([], G4, None) == []
    assert sampling_plan(necrotic_enhancing_imaging(), {}, None) == []
