"""Sampling plan: expected information gain on the integrated diagnosis (hand-checked), when a biopsy is
planned at all, and where."""

from __future__ import annotations

import math

import pytest

from agents.clinical.profile import CANDIDATES
from agents.sampling import (
    REGIONS_ENHANCING,
    Region,
    entropy_bits,
    expected_information_gain,
    outcome_likelihoods,
    sampling_plan,
)
from prompts import Phrase, Term, localise
from schemas.case import PathologyFindings
from schemas.report import Conclusion, DiagnosisLayers
from test_consistency import necrotic_enhancing_imaging, non_enhancing_imaging, unit

GBM = "Glioblastoma, IDH-wildtype, CNS WHO grade 4"
A2, A3, A4 = (f"Astrocytoma, IDH-mutant, CNS WHO grade {g}" for g in (2, 3, 4))


def post(**mass: float) -> dict[str, float]:
    """A posterior over every candidate, zero except where given."""
    out = {c.label: 0.0 for c in CANDIDATES}
    out.update(mass)
    return out


def diagnosis(label: str, posterior: dict[str, float], *, grade: int | None, rules=(), missing=(), settled=False) -> Conclusion:
    return Conclusion(
        task="diagnosis", label=label, probability=posterior.get(label, 1.0), class_probabilities=posterior,
        confidence="moderate", confidence_basis="test", modalities_used=["imaging", "pathology", "genomics"],
        diagnosis_layers=DiagnosisLayers(histology="h", cns_who_grade=grade, molecular="m", integrated=label,
                                         rules_applied=[f"{r}: s [c]" for r in rules], missing_tests=list(missing),
                                         settled=settled),
    )


def mutual_information(posterior: dict[str, float], region: Region, reveals_family: bool) -> float:
    """I(D; O) from the joint table, without conditional entropies."""
    joint: dict[tuple, float] = {}
    for c in CANDIDATES:
        for o, lik in outcome_likelihoods(c, region, reveals_family).items():
            joint[(c.label, o)] = joint.get((c.label, o), 0.0) + posterior[c.label] * lik
    p_o: dict[tuple, float] = {}
    for (_, o), v in joint.items():
        p_o[o] = p_o.get(o, 0.0) + v
    return sum(v * math.log2(v / (posterior[d] * p_o[o])) for (d, o), v in joint.items() if v > 0)


def test_entropy_hand_checked():
    assert entropy_bits({"a": 0.25, "b": 0.25, "c": 0.5}) == pytest.approx(1.5)
    assert entropy_bits({"a": 1.0, "b": 0.0}) == 0.0
    with pytest.raises(ValueError):
        entropy_bits({"a": 0.5, "b": 0.6})


def test_eig_hand_checked():
    # grade 4 vs grade 2: a diagnostic specimen tells them apart, so the gain is the yield times 1 bit
    assert expected_information_gain(post(**{GBM: 0.5, A2: 0.5}), Region(0.9, 0.0), False) == pytest.approx(0.9)
    # same grade, different family: only a first biopsy (tissue for molecular testing) separates them
    same_grade = post(**{GBM: 0.5, A4: 0.5})
    assert expected_information_gain(same_grade, Region(0.9, 0.0), False) == pytest.approx(0.0)
    assert expected_information_gain(same_grade, Region(0.9, 0.0), True) == pytest.approx(0.9)
    # under-grading: A3 shows grade 3 or 2 half the time each; H = 1 - 0.75 * H(2/3, 1/3) = 0.3113 bits
    h = -(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3)
    assert expected_information_gain(post(**{A2: 0.5, A3: 0.5}), Region(1.0, 0.5), False) == pytest.approx(1 - 0.75 * h)


@pytest.mark.parametrize("reveals", [False, True])
@pytest.mark.parametrize("region", [Region(0.9, 0.05), Region(0.4, 0.5)])
def test_eig_equals_mutual_information_of_the_observation_model(region, reveals):
    p = post(**{GBM: 0.4, A2: 0.1, A3: 0.2, A4: 0.2, "Oligodendroglioma, IDH-mutant and 1p/19q-codeleted, CNS WHO grade 2": 0.1})
    assert expected_information_gain(p, region, reveals) == pytest.approx(mutual_information(p, region, reveals))


def test_first_biopsy_never_scores_below_a_repeat_of_the_same_region():
    p = post(**{GBM: 0.3, A3: 0.3, A4: 0.2, "Diffuse astrocytic glioma, IDH-wildtype, NOS": 0.2})
    for region in REGIONS_ENHANCING.values():
        assert expected_information_gain(p, region, True) >= expected_information_gain(p, region, False) - 1e-12


def test_invalid_region_raises():
    with pytest.raises(ValueError):
        outcome_likelihoods(CANDIDATES[0], Region(1.2, 0.0), False)


def test_first_biopsy_targets_the_enhancing_rim_and_never_the_margin_ring():
    p = post(**{GBM: 0.6, A4: 0.2, A3: 0.2})
    plan = sampling_plan(necrotic_enhancing_imaging(), diagnosis("insufficient_evidence", p, grade=None), None, False)
    assert [t.phenotype for t in plan.targets] == ["enhancing", "necrotic_core", "oedema"]
    assert all(t.phenotype != "margin_ring" for t in plan.targets)
    assert plan.statement.en.startswith("First biopsy")
    assert "margin ring is for resection planning" in plan.statement.en and "手术切除规划" in plan.statement.zh
    assert plan.targets[0].expected_information_gain > plan.targets[-1].expected_information_gain
    assert "likeliest site of the highest grade" in plan.targets[0].reason


def test_non_enhancing_tumour_targets_the_solid_core_and_calls_flair_signal_tumour():
    p = post(**{A2: 0.5, A3: 0.3, "Oligodendroglioma, IDH-mutant and 1p/19q-codeleted, CNS WHO grade 2": 0.2})
    plan = sampling_plan(non_enhancing_imaging(), diagnosis("insufficient_evidence", p, grade=None), None, False)
    assert [t.phenotype for t in plan.targets] == ["non_enhancing_core", "oedema"]
    assert "tumour, not oedema" in plan.targets[1].reason
    assert "肿瘤组织而非水肿" in localise(Term("rationale", "oedema_non_enhancing")).zh


def test_settled_diagnosis_needs_no_further_sampling():
    p = post(**{A2: 1.0})
    findings = PathologyFindings(who_grade=2, sampled_region="non_enhancing_core")
    plan = sampling_plan(non_enhancing_imaging(), diagnosis(A2, p, grade=2, settled=True), findings, True)
    assert plan.targets == []
    assert plan.statement.en.startswith(f"No further sampling is needed for diagnosis: {A2} is settled")


def test_molecularly_fixed_grade_needs_no_rebiopsy_despite_an_oedema_specimen():
    """DEMO-004: IDH-wildtype with EGFR amplification is glioblastoma grade 4 whatever the oedema biopsy shows."""
    findings = PathologyFindings(who_grade=2, sampled_region="oedema")
    dx = diagnosis(GBM, post(**{GBM: 1.0}), grade=4, rules=("glioblastoma_molecular",), settled=True)
    plan = sampling_plan(necrotic_enhancing_imaging(), dx, findings, True)
    assert plan.targets == []
    assert "no re-biopsy can change the grade" in plan.statement.en


def test_missing_molecular_test_runs_on_the_existing_specimen():
    """DEMO-009: an oligodendroglioma without 1p/19q data needs a test, not a biopsy."""
    test = "1p/19q codeletion testing (FISH or CNV array)"
    dx = diagnosis("Oligodendroglioma, NOS", post(**{"Oligodendroglioma, IDH-mutant and 1p/19q-codeleted, CNS WHO grade 2": 1.0}),
                   grade=None, missing=(test,))
    plan = sampling_plan(non_enhancing_imaging(), dx, PathologyFindings(who_grade=2), True)
    assert plan.targets == []
    assert plan.statement.en.startswith(f"No new biopsy is needed for diagnosis: {test} can be done on the existing specimen")


def test_off_target_specimen_of_an_enhancing_tumour_gets_a_repeat_biopsy_of_the_rim():
    findings = PathologyFindings(who_grade=2, sampled_region="oedema")
    dx = diagnosis(A2, post(**{A2: 0.3, A3: 0.3, A4: 0.4}), grade=2, rules=("astrocytoma", "astrocytoma_grade2"), settled=True)
    plan = sampling_plan(necrotic_enhancing_imaging(), dx, findings, True)
    assert plan.statement.en.startswith("Repeat biopsy")
    assert plan.targets[0].phenotype == "enhancing"
    oedema = next(t for t in plan.targets if t.phenotype == "oedema")
    assert "Already sampled by the specimen" in oedema.reason
    assert [t.rank for t in plan.targets] == list(range(1, len(plan.targets) + 1))


def test_tiny_unit_is_scaled_down():
    spatial = [*necrotic_enhancing_imaging()[:1], unit("S2", "enhancing", 0.3), unit("S3", "necrotic_core", 4.1)]
    p = post(**{GBM: 0.5, A3: 0.5})
    plan = sampling_plan(spatial, diagnosis("insufficient_evidence", p, grade=None), None, False)
    enhancing = next(t for t in plan.targets if t.phenotype == "enhancing")
    assert "Small unit (under 0.5 mL)" in enhancing.reason


def test_only_the_latest_time_point_is_planned_and_no_imaging_no_plan():
    spatial = [unit("S1", "enhancing", 5.0, tp="T0"), unit("S2", "non_enhancing_core", 8.0, tp="T1")]
    p = post(**{A2: 0.5, A3: 0.5})
    plan = sampling_plan(spatial, diagnosis("insufficient_evidence", p, grade=None), None, False)
    assert [t.unit_id for t in plan.targets] == ["T1:non_enhancing_core"]
    empty = sampling_plan([], diagnosis("insufficient_evidence", p, grade=None), None, False)
    assert empty.targets == [] and empty.statement.en == localise(Phrase("sampling.no_imaging")).en
