"""The WHO CNS5 integrated diagnosis in the eval: its vocabulary, the demo's truth, the levels it is scored at."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from demo.biology import sample_biology
from demo.reference import diagnosis, reference_report
from evals.compare import FieldCheck, diagnosis_levels
from evals.text_fields import DIAGNOSES, normalise_diagnosis

GBM = "Glioblastoma, IDH-wildtype, CNS WHO grade 4"
IDHWT_NOS = "Diffuse astrocytic glioma, IDH-wildtype, NOS"


@pytest.mark.parametrize("label", list(DIAGNOSES))
def test_every_vocabulary_label_is_its_own_canonical_form(label: str) -> None:
    assert normalise_diagnosis(label) == label


@pytest.mark.parametrize(
    ("written", "label"),
    [
        ("胶质母细胞瘤，IDH野生型，CNS WHO 4级", GBM),
        ("少突胶质细胞瘤，IDH突变和1p/19q共缺失型，CNS WHO 3级", "Oligodendroglioma, IDH-mutant and 1p/19q-codeleted, CNS WHO grade 3"),
        ("星形细胞瘤，IDH突变型，CNS WHO 2级", "Astrocytoma, IDH-mutant, CNS WHO grade 2"),
        ("弥漫性星形细胞胶质瘤，IDH野生型，NOS", IDHWT_NOS),
        ("Astrocytoma, IDH-mutant, CNS WHO grade IV", "Astrocytoma, IDH-mutant, CNS WHO grade 4"),
        ("astrocytoma, idh-mutant, nos", "Astrocytoma, IDH-mutant, NOS"),
        # Not CNS5 entities: left as written so that they show as disagreements.
        ("Glioblastoma, IDH-mutant, WHO grade 4", None),
        ("Astrocytoma, IDH-wildtype, grade 3", None),
        ("Astrocytoma, NOS", None),  # says nothing of IDH
        ("Oligodendroglioma, IDH-mutant and 1p/19q-codeleted, CNS WHO grade 4", None),
        ("high-grade glioma", None),
    ],
)
def test_normalise_diagnosis(written: str, label: str | None) -> None:
    assert normalise_diagnosis(written) == label


def _bio(grade: str, subtype: str, **changes):
    return replace(sample_biology(np.random.default_rng(0), grade=grade, subtype=subtype), **changes)


# One row per WHO CNS5 rule the demo's hidden biology can trigger.
DEMO_RULES = [
    # IDH-wildtype diffuse astrocytic glioma with EGFR amplification is glioblastoma whatever the histology.
    (_bio("G3", "IDHwt", egfr_amplified=True, cdkn2a_deleted=False), GBM),
    (_bio("G2", "IDHwt", egfr_amplified=True, cdkn2a_deleted=False), GBM),
    # ... with necrosis / microvascular proliferation (histological grade 4) too.
    (_bio("G4", "IDHwt", egfr_amplified=False, cdkn2a_deleted=False), GBM),
    # Without EGFR amplification, TERT and +7/-10 untested: NOS, not glioblastoma.
    (_bio("G3", "IDHwt", egfr_amplified=False, cdkn2a_deleted=True), IDHWT_NOS),
    # IDH-mutant astrocytoma: histological grade, raised to 4 by CDKN2A/B homozygous deletion.
    (_bio("G2", "IDHmut-non-codel", cdkn2a_deleted=False), "Astrocytoma, IDH-mutant, CNS WHO grade 2"),
    (_bio("G3", "IDHmut-non-codel", cdkn2a_deleted=True), "Astrocytoma, IDH-mutant, CNS WHO grade 4"),
    (_bio("G4", "IDHmut-non-codel", cdkn2a_deleted=False), "Astrocytoma, IDH-mutant, CNS WHO grade 4"),
    # Oligodendroglioma needs IDH mutation and 1p/19q codeletion.
    (_bio("G2", "IDHmut-codel"), "Oligodendroglioma, IDH-mutant and 1p/19q-codeleted, CNS WHO grade 2"),
    (_bio("G3", "IDHmut-codel"), "Oligodendroglioma, IDH-mutant and 1p/19q-codeleted, CNS WHO grade 3"),
]


@pytest.mark.parametrize(("bio", "label"), DEMO_RULES)
def test_demo_truth_follows_who_cns5(bio, label: str) -> None:
    assert diagnosis(bio) == label
    assert label in DIAGNOSES


def test_demo_specimen_under_grading_does_not_change_the_truth() -> None:
    # DEMO-004-like: the biopsy came from oedema and shows grade 2; the tumour is a glioblastoma.
    bio = _bio("G4", "IDHwt", egfr_amplified=True, sampled_region="oedema", histology_grade="G2")
    assert diagnosis(bio) == GBM


def test_demo_reference_states_the_diagnosis() -> None:
    bio = _bio("G2", "IDHmut-codel")
    ref = reference_report("DEMO-X", bio, ("imaging", "pathology", "genomics"), 1)
    assert {c.task: c.label for c in ref.conclusions}["diagnosis"] == diagnosis(bio)
    assert ref.text.startswith(f"{diagnosis(bio)}.")


def test_demo_cohort_ground_truth_carries_the_diagnosis(demo_cohort) -> None:
    import json

    from evals.references import load_ground_truth

    cases = json.loads((demo_cohort / "ground_truth.json").read_text(encoding="utf-8"))["cases"]
    assert all(case["diagnosis"] in DIAGNOSES for case in cases.values())
    _, truths = load_ground_truth(demo_cohort)
    assert {t.diagnosis for t in truths.values()} >= {GBM, "Oligodendroglioma, IDH-mutant and 1p/19q-codeleted, CNS WHO grade 2"}


def _check(expected: str | None, observed: str | None, outcome: str) -> FieldCheck:
    return FieldCheck("c", "diagnosis", "ground_truth", expected, observed, None, outcome=outcome)


@pytest.mark.parametrize(
    ("expected", "observed", "family", "grade"),
    [
        (GBM, IDHWT_NOS, "agree", "report_not_stated"),  # right type, tests missing for the grade
        ("Astrocytoma, IDH-mutant, CNS WHO grade 3", "Astrocytoma, IDH-mutant, CNS WHO grade 4", "agree", "disagree"),
        (
            "Astrocytoma, IDH-mutant, CNS WHO grade 2",
            "Oligodendroglioma, IDH-mutant and 1p/19q-codeleted, CNS WHO grade 2",
            "disagree",
            "agree",
        ),
        (GBM, "Diffuse glioma, NOS", "report_not_stated", "report_not_stated"),
        (GBM, "glioma (free text)", "report_not_stated", "report_not_stated"),
    ],
)
def test_diagnosis_levels(expected: str, observed: str, family: str, grade: str) -> None:
    levels = diagnosis_levels(_check(expected, observed, "disagree"))
    assert [(c.field, c.outcome) for c in levels] == [("diagnosis_family", family), ("diagnosis_grade", grade)]


def test_levels_of_an_unstated_diagnosis_stay_unstated() -> None:
    levels = diagnosis_levels(_check(GBM, None, "report_not_stated"))
    assert {c.outcome for c in levels} == {"report_not_stated"}
