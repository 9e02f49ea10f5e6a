"""The WHO CNS5 glioma profile: one table row per rule, the posterior over candidates, and the drafted diagnosis."""

from __future__ import annotations

import pytest

from agents.clinical.diagnosis import facts_of, integrated_diagnosis, model_prior, posterior, upgraded
from agents.clinical.profile import (
    CANDIDATES,
    FAMILY_RULES,
    GRADE_RULES,
    HISTOLOGY_TEST,
    MARKER_SPECS,
    RULES_BY_ID,
)
from schemas.case import PathologyFindings

GBM = "Glioblastoma, IDH-wildtype, CNS WHO grade 4"
CODEL_TEST = "1p/19q codeletion testing (FISH or CNV array)"
UNIFORM = None


def status(**tested: str) -> dict[str, str]:
    """Every profile marker untested except those given ('1p19q' is passed as codel=...)."""
    out = {k: "not_tested" for k in MARKER_SPECS}
    out.update({("1p19q" if k == "codel" else "7+10-" if k == "chr7_10" else k): v for k, v in tested.items()})
    return out


F2 = PathologyFindings(who_grade=2, necrosis=False, microvascular_proliferation=False)
F3 = PathologyFindings(who_grade=3, necrosis=False, microvascular_proliferation=False)
NECROSIS = PathologyFindings(who_grade=4, necrosis=True)
MVP_ONLY = PathologyFindings(microvascular_proliferation=True)

# One row per rule of the profile: (markers, histology) -> (label, rule ids fired, missing tests)
RULE_TABLE = [
    ("oligodendroglioma + grade 2", status(IDH="detected", codel="detected"), F2,
     "Oligodendroglioma, IDH-mutant and 1p/19q-codeleted, CNS WHO grade 2", ["oligodendroglioma", "oligodendroglioma_grade2"], []),
    ("oligodendroglioma grade 3 by MVP", status(IDH="detected", codel="detected"), MVP_ONLY,
     "Oligodendroglioma, IDH-mutant and 1p/19q-codeleted, CNS WHO grade 3", ["oligodendroglioma", "oligodendroglioma_grade3"], []),
    ("astrocytoma by ATRX, grade 2", status(IDH="detected", ATRX="detected", CDKN2AB="not_detected"), F2,
     "Astrocytoma, IDH-mutant, CNS WHO grade 2", ["astrocytoma", "astrocytoma_grade2"], []),
    ("astrocytoma without codeletion, grade 3", status(IDH="detected", codel="not_detected", CDKN2AB="not_detected"), F3,
     "Astrocytoma, IDH-mutant, CNS WHO grade 3", ["astrocytoma", "astrocytoma_grade3"], []),
    ("astrocytoma + CDKN2A/B deletion is grade 4 over grade-2 histology", status(IDH="detected", ATRX="detected", CDKN2AB="detected"), F2,
     "Astrocytoma, IDH-mutant, CNS WHO grade 4", ["astrocytoma", "astrocytoma_cdkn2ab"], []),
    ("astrocytoma + necrosis is grade 4", status(IDH="detected", ATRX="detected", CDKN2AB="not_detected"), NECROSIS,
     "Astrocytoma, IDH-mutant, CNS WHO grade 4", ["astrocytoma", "astrocytoma_grade4_histology"], []),
    ("IDH-wt + EGFR amplification is glioblastoma over grade-2 histology", status(IDH="not_detected", EGFR="detected"), F2,
     GBM, ["glioblastoma_molecular"], []),
    ("IDH-wt + TERT promoter mutation", status(IDH="not_detected", TERT="detected"), F2, GBM, ["glioblastoma_molecular"], []),
    ("IDH-wt + +7/-10", status(IDH="not_detected", chr7_10="detected"), F3, GBM, ["glioblastoma_molecular"], []),
    ("IDH-wt + necrosis", status(IDH="not_detected"), NECROSIS, GBM, ["glioblastoma_histological"], []),
    ("IDH-wt without a glioblastoma criterion, TERT and +7/-10 untested", status(IDH="not_detected", EGFR="not_detected"), F2,
     "Diffuse astrocytic glioma, IDH-wildtype, NOS", ["diffuse_astrocytic_idhwt"],
     ["TERT promoter sequencing", "chromosome 7/10 copy-number testing (CNV array)"]),
    ("IDH-mutant, 1p/19q untested, no ATRX: lineage open", status(IDH="detected", ATRX="not_detected"), F2,
     "Astrocytoma, IDH-mutant, NOS", [], [CODEL_TEST]),
    ("IDH unknown", status(EGFR="detected"), F2, "Diffuse glioma, NOS", [], ["IDH1/IDH2 sequencing"]),
    ("astrocytoma with no histological grade", status(IDH="detected", ATRX="detected", CDKN2AB="not_detected"), None,
     "Astrocytoma, IDH-mutant, NOS", ["astrocytoma"], [HISTOLOGY_TEST]),
]


@pytest.mark.parametrize("name, markers, findings, label, rules, missing", RULE_TABLE, ids=[r[0] for r in RULE_TABLE])
def test_rule_table(name, markers, findings, label, rules, missing):
    dx = integrated_diagnosis(markers, findings, UNIFORM, UNIFORM)
    assert dx.label == label
    assert [r.id for r in dx.rules] == rules
    assert list(dx.missing_tests) == missing
    assert dx.settled == (not missing and "NOS" not in label)
    if label in dx.posterior:
        assert dx.probability == pytest.approx(dx.posterior[label])


def test_every_rule_is_exercised_by_the_table_and_cites_who_cns5():
    fired = {rule for row in RULE_TABLE for rule in row[4]}
    assert fired == set(RULES_BY_ID)
    assert all("WHO_CNS5" in r.citations for r in (*FAMILY_RULES, *GRADE_RULES))
    assert "CIMPACT_3" in RULES_BY_ID["glioblastoma_molecular"].citations
    assert "CIMPACT_5" in RULES_BY_ID["astrocytoma_cdkn2ab"].citations


def test_a_predicted_codeletion_fills_no_criterion():
    # the model is sure of a codeleted tumour; without a 1p/19q test the label stays NOS and names the test
    codel = {"IDHwt": 0.005, "IDHmut-codel": 0.99, "IDHmut-non-codel": 0.005}
    dx = integrated_diagnosis(status(IDH="detected"), F2, {"G2": 0.98, "G3": 0.01, "G4": 0.01}, codel)
    assert dx.label == "Oligodendroglioma, NOS"
    assert dx.missing_tests == (CODEL_TEST,)
    assert not dx.settled
    # probability of a NOS label = mass of the candidates it covers
    oligo = sum(p for k, p in dx.posterior.items() if k.startswith("Oligodendroglioma"))
    assert dx.probability == pytest.approx(oligo)


def test_no_tissue_test_abstains():
    dx = integrated_diagnosis(status(), None, {"G2": 0.1, "G3": 0.1, "G4": 0.8}, None)
    assert dx.label == "insufficient_evidence"
    assert dx.missing_tests == (HISTOLOGY_TEST, "IDH1/IDH2 sequencing")


def test_model_prior_hand_checked():
    # P(GBM) = P(IDHwt) P(G4) = 0.5 * 0.6; P(oligo 3) = P(codel) (P(G3) + P(G4)) = 0.2 * 0.9
    prior = model_prior({"G2": 0.1, "G3": 0.3, "G4": 0.6}, {"IDHwt": 0.5, "IDHmut-codel": 0.2, "IDHmut-non-codel": 0.3})
    assert prior[GBM] == pytest.approx(0.30)
    assert prior["Oligodendroglioma, IDH-mutant and 1p/19q-codeleted, CNS WHO grade 3"] == pytest.approx(0.18)
    assert prior["Diffuse astrocytic glioma, IDH-wildtype, NOS"] == pytest.approx(0.20)
    assert sum(prior.values()) == pytest.approx(1.0)


def test_posterior_moves_mass_to_what_the_tests_make_it_and_renormalises():
    prior = {c.label: 1.0 / len(CANDIDATES) for c in CANDIDATES}
    post = posterior(prior, facts_of(status(IDH="detected"), F3))
    # IDH-mutant (5 of 7 candidates allowed); histological grade 3 lifts A2 to A3 and O2 to O3
    assert post["Astrocytoma, IDH-mutant, CNS WHO grade 3"] == pytest.approx(0.4)
    assert post["Astrocytoma, IDH-mutant, CNS WHO grade 4"] == pytest.approx(0.2)
    assert post["Oligodendroglioma, IDH-mutant and 1p/19q-codeleted, CNS WHO grade 3"] == pytest.approx(0.4)
    assert sum(post.values()) == pytest.approx(1.0)


def test_a_deletion_keeps_the_models_astrocytoma_belief_and_only_moves_the_grade():
    # uniform model, IDH-mutant, CDKN2A/B deleted: astrocytoma keeps its 1/2 share, all of it at grade 4
    prior = model_prior(None, None)
    post = posterior(prior, facts_of(status(IDH="detected", CDKN2AB="detected"), None))
    astro = sum(p for k, p in post.items() if k.startswith("Astrocytoma"))
    assert astro == pytest.approx(0.5) and post["Astrocytoma, IDH-mutant, CNS WHO grade 4"] == pytest.approx(0.5)


def test_a_specimen_can_under_grade_but_not_over_grade():
    astro2 = next(c for c in CANDIDATES if c.label == "Astrocytoma, IDH-mutant, CNS WHO grade 2")
    astro4 = next(c for c in CANDIDATES if c.label == "Astrocytoma, IDH-mutant, CNS WHO grade 4")
    grade3 = facts_of(status(IDH="detected"), F3)
    assert upgraded(astro2, grade3) == "Astrocytoma, IDH-mutant, CNS WHO grade 3"
    assert upgraded(astro4, grade3) == astro4.label


def test_negative_r132h_stain_does_not_make_idh_wildtype():
    findings = PathologyFindings(who_grade=2, immunohistochemistry={"IDH1_R132H": "negative"})
    dx = integrated_diagnosis(status(), findings, UNIFORM, UNIFORM)
    assert dx.label == "Diffuse glioma, NOS"
    assert "IDH1/IDH2 sequencing" in dx.missing_tests


def test_model_agreement_is_the_share_of_the_models_belief_the_tests_allow():
    # the model is sure of an IDH-mutant tumour; the calls show no IDH mutation: the tests overrule it
    mutant = {"IDHwt": 0.01, "IDHmut-codel": 0.49, "IDHmut-non-codel": 0.50}
    dx = integrated_diagnosis(status(IDH="not_detected", EGFR="detected"), F2, {"G2": 0.8, "G3": 0.1, "G4": 0.1}, mutant)
    assert dx.label == GBM
    assert dx.model_agreement == pytest.approx(0.01)
    agreeing = integrated_diagnosis(status(IDH="detected"), F2, None, mutant)
    assert agreeing.model_agreement == pytest.approx(0.99)
