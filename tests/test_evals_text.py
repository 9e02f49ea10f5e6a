"""Free-text field extraction on OCR-style English and on Chinese pathology text."""

from __future__ import annotations

import csv
import re

import pytest

from evals.text_fields import (
    FIELDS,
    extract_fields,
    extract_mentions,
    normalise_grade,
    normalise_subtype,
    numeral_value,
    sentences,
    subtype_from_fields,
)

# (text, field, value, certainty); lines copied in the style of TCGA OCR reports.
SNIPPETS = [
    ("--GLIOBLASTOMA MUL TIFORME (WHO GRADE IV).", "grade", "G4", "affirmed"),
    ("--GLIOBLASTOMA MUL TIFORME (WHO GRADE IV).", "histology", "glioblastoma", "affirmed"),
    (
        "1. Left temporal parietal tumor: Anaplastic astrocyttfma, grade Ill of IV (WHO scale), SEE NOTE",
        "grade",
        "G3",
        "affirmed",
    ),
    (
        "1. Left temporal parietal tumor: Anaplastic astrocyttfma, grade Ill of IV (WHO scale), SEE NOTE",
        "histology",
        "astrocytoma",
        "affirmed",
    ),
    ("B. Brain, right temporal, biopsy: Glioblastoma.", "grade", "G4", "affirmed"),
    ("Oligoastrocyoma, grade II", "histology", "oligoastrocytoma", "affirmed"),
    ("TUMOR TYPE: \nOligoastrocytoma \nWHO GRADE: \nII \n", "grade", "G2", "affirmed"),
    ("Oligodendroglioma WHO grade It", "grade", "G2", "affirmed"),
    ("Biopsies:WHOgrade II (of III) oligoastrocytoma, astrocytic-dominant.", "grade", "G2", "affirmed"),
    ("Anaplastic oligodendrogliom a, WHO grade I II.", "grade", "G3", "affirmed"),
    ("There is no endothelial proliferation or \nnecrosis. The findings are", "necrosis", "present", "negated"),
    (
        "There is no endothelial proliferation or \nnecrosis. The findings are",
        "microvascular_proliferation",
        "present",
        "negated",
    ),
    (
        "Mitotic figures are easily identified .Vascular proliferation and necrosis are not seen.",
        "necrosis",
        "present",
        "negated",
    ),
    ("Neither necrosis nor microvascular proliferation are seen.", "microvascular_proliferation", "present", "negated"),
    (
        "with nuclear anaplasia, mitotic figures, microvascular cellular proliferation, and \nnecrosis, some with pseudopalisading",
        "necrosis",
        "present",
        "affirmed",
    ),
    (
        "with nuclear anaplasia, mitotic figures, microvascular cellular proliferation, and \nnecrosis",
        "microvascular_proliferation",
        "present",
        "affirmed",
    ),
    (" NEGATIVE -No evidence of methylated MGMT promoter is detected. ", "mgmt", "methylated", "negated"),
    ("POSITIVE: Methylated MGMT promoter is detected.", "mgmt", "methylated", "affirmed"),
    ("MGMT promoter: unmethylated.", "mgmt", "unmethylated", "affirmed"),
    # A negative R132H test leaves IDH open (other IDH1/IDH2 mutations): only R132H is "not detected".
    ("The IDH1 R132H mutation is negative.", "idh1_r132h", "not_detected", "affirmed"),
    ("The neoplastic cells are negative for IDHI (R132H ) immunostain.", "idh1_r132h", "not_detected", "affirmed"),
    ("IDH1 mutation is negative by sequencing.", "idh", "mutant", "negated"),
    (
        "strongly positive for p53 protein and IDH1 (R132H) mutant protein, the latter of which",
        "idh",
        "mutant",
        "affirmed",
    ),
    (
        "The tumor cells are strongly positive for IDH1 (R132H mutant form) and negative for P53.",
        "idh",
        "mutant",
        "affirmed",
    ),
    ("IDH1 R132H positive", "idh", "mutant", "affirmed"),
    ("Glioblastoma, IDH-wildtype, CNS WHO grade 4.", "idh", "wildtype", "affirmed"),
    ("Glioblastoma, IDH-wildtype, CNS WHO grade 4.", "diagnosis", "Glioblastoma, IDH-wildtype, CNS WHO grade 4", "affirmed"),
    ("考虑星形细胞瘤，IDH突变型，CNS WHO 3级。", "diagnosis", "Astrocytoma, IDH-mutant, CNS WHO grade 3", "uncertain"),
    (
        "Molecular studies showed LOH for 1p/19q (see procedure addenda below).",
        "codeletion_1p19q",
        "codeleted",
        "affirmed",
    ),
    ("There was no evidence of deletion of lp or 19q.", "codeletion_1p19q", "codeleted", "negated"),
    (
        "Oligodendroglioma, IDH-mutant and 1p/19q-codeleted, CNS WHO grade 2.",
        "codeletion_1p19q",
        "codeleted",
        "affirmed",
    ),
    ("1p/19q intact by FISH.", "codeletion_1p19q", "intact", "affirmed"),
    # hedges
    (
        "a higher -grade lesion ,e.g. glioblastoma ,WHO grade\nIV, cannot\nbe completely ruled out due to sampling",
        "grade",
        "G4",
        "uncertain",
    ),
    ("Glioma, high grade, suspicious for glioblastoma.", "histology", "glioblastoma", "uncertain"),
    ("Necrosis cannot be excluded in this limited sample.", "necrosis", "present", "uncertain"),
    ("possibly microvascular proliferation", "microvascular_proliferation", "present", "uncertain"),
    (
        "FROZEN SECTION DIAGNOSIS: CONSISTENT WITH DIFFUSE GLIOMA ,FAVOR OLIGODENDROGLIOMA.",
        "histology",
        "oligodendroglioma",
        "uncertain",
    ),
    (
        "If this tumor were an astrocytoma, the presence of mitoses would require a diagnosis of an anaplastic astrocytoma, grade Ill (WHO scale).",
        "grade",
        "G3",
        "uncertain",
    ),
    # Chinese
    ("（左额叶）胶质母细胞瘤，WHO 4级。", "grade", "G4", "affirmed"),
    ("（左额叶）胶质母细胞瘤，WHO 4级。", "histology", "glioblastoma", "affirmed"),
    ("病理诊断：弥漫性星形细胞瘤，WHO Ⅱ级。", "grade", "G2", "affirmed"),
    ("间变性少突胶质细胞瘤，IV级", "grade", "G4", "affirmed"),
    ("间变性少突胶质细胞瘤", "grade", "G3", "affirmed"),
    ("分子检测：IDH野生型。", "idh", "wildtype", "affirmed"),
    ("IDH1 R132H（+）", "idh", "mutant", "affirmed"),
    ("免疫组化：IDH1(-)，ATRX(+)。", "idh1_r132h", "not_detected", "affirmed"),
    ("1p/19q联合缺失", "codeletion_1p19q", "codeleted", "affirmed"),
    ("MGMT启动子甲基化阳性。", "mgmt", "methylated", "affirmed"),
    ("MGMT启动子未甲基化。", "mgmt", "unmethylated", "affirmed"),
    ("未见坏死，可见微血管增生。", "necrosis", "present", "negated"),
    ("未见坏死，可见微血管增生。", "microvascular_proliferation", "present", "affirmed"),
    ("无坏死。", "necrosis", "present", "negated"),
    ("考虑为胶质母细胞瘤。", "histology", "glioblastoma", "uncertain"),
    ("少突胶质细胞瘤不除外。", "histology", "oligodendroglioma", "uncertain"),
    ("可能为坏死。", "necrosis", "present", "uncertain"),
]


@pytest.mark.parametrize(("text", "name", "value", "certainty"), SNIPPETS)
def test_snippet(text: str, name: str, value: str, certainty: str) -> None:
    fields = extract_fields(text)
    assert name in fields, f"{name} not found in {text!r}"
    assert (fields[name].value, fields[name].certainty) == (value, certainty)


# Boilerplate that mentions a finding without stating one about this patient.
NOT_FINDINGS = [
    ("Patients with glioma containing a methylated MGMT promoter have been shown to benefit from therapy.", "mgmt"),
    ("MGMT promoter methylation analysis has been ordered and results will be issued in a separate report", "mgmt"),
    ("Molecular testing for IDH mutations has been ordered and results will be reported separately", "idh"),
    (
        "Factors such as extensive tissue necrosis, may preclude the detection of methylated MGMT promoter sequences.",
        "necrosis",
    ),
    ("EGFR is an attractive molecular target in glioblastoma because it is amplified.", "histology"),
    (
        "LOH at all informative loci represents the typical finding in oligodendrogliomas with lp and 19q deletion.",
        "codeletion_1p19q",
    ),
    ("IDH1 MUTATION TESTING WITH REFLEX TO IDH2", "idh"),
    ("Clinical history: history of glioblastoma.", "histology"),
    ("MIB-1 proliferation index 14%.", "microvascular_proliferation"),
]


@pytest.mark.parametrize(("text", "name"), NOT_FINDINGS)
def test_boilerplate_states_nothing(text: str, name: str) -> None:
    assert name not in extract_fields(text)


def test_stated_value_of_binary_and_multivalued_fields() -> None:
    fields = extract_fields("No necrosis. IDH1 is wild-type by sequencing. Glioblastoma cannot be excluded.")
    assert fields["necrosis"].stated() == "absent"
    assert fields["idh"].stated() == "wildtype"
    assert fields["histology"].stated() is None  # a hedge names no value


def test_worst_grade_and_any_necrosis_win_across_parts() -> None:
    text = "A. Oligodendroglioma, WHO grade II; no necrosis. B. Anaplastic oligodendroglioma, WHO grade III, with necrosis."
    fields = extract_fields(text)
    assert fields["grade"].stated() == "G3"
    assert fields["necrosis"].stated() == "present"
    assert fields["histology"].value == "oligodendroglioma"


def test_explicit_grade_beats_implied_one() -> None:
    # "Astrocytoma, IDH-mutant, CNS WHO grade 4": no glioblastoma term, the number decides.
    assert extract_fields("Glioblastoma multiforme. Astrocytoma, IDH-mutant, CNS WHO grade 3.")["grade"].value == "G3"


def test_stated_finding_beats_hedge() -> None:
    fields = extract_fields(
        "Suspicious for glioblastoma on frozen section. Final: anaplastic astrocytoma, WHO grade III."
    )
    assert (fields["histology"].value, fields["histology"].certainty) == ("astrocytoma", "affirmed")
    assert fields["grade"].stated() == "G3"


def test_evidence_is_the_sentence() -> None:
    fields = extract_fields("Received fresh. Brain, biopsy: Glioblastoma. See comment.")
    assert fields["histology"].evidence == "Brain, biopsy: Glioblastoma."


def test_sentences_keep_abbreviations_and_split_ocr_stops() -> None:
    text = "A. Brain, e.g. tumour: glioma. IDH1 positive .P53 is negative."
    assert [s for _, s in sentences(text)] == ["A. Brain, e.g. tumour: glioma.", "IDH1 positive .", "P53 is negative."]


def test_mentions_are_in_text_order() -> None:
    mentions = extract_mentions("Necrosis is present. Glioblastoma, WHO grade IV.")
    assert [m.start for m in mentions] == sorted(m.start for m in mentions)
    assert {m.field for m in mentions} == {"necrosis", "histology", "grade"}


def test_generated_narrative_phrasing() -> None:
    fields = extract_fields("Predicted grade: G4 (probability 0.81). Molecular subtype IDHmut-non-codel.")
    assert fields["grade"].stated() == "G4"
    assert subtype_from_fields(fields) == "IDHmut-non-codel"


def test_subtype_needs_idh_and_codeletion() -> None:
    assert subtype_from_fields(extract_fields("IDH wild-type.")) == "IDHwt"
    assert subtype_from_fields(extract_fields("IDH1 R132H positive.")) is None
    assert subtype_from_fields(extract_fields("IDH-mutant, 1p/19q codeleted.")) == "IDHmut-codel"


@pytest.mark.parametrize(
    ("token", "value"),
    [
        ("IV", 4),
        ("Ill", 3),
        ("lV", 4),
        ("II", 2),
        ("4", 4),
        ("11", 2),
        ("三", 3),
        ("It", 2),
        ("I I I", 3),
        ("V", None),
        ("7", None),
    ],
)
def test_numerals(token: str, value: int | None) -> None:
    assert numeral_value(token) == value


@pytest.mark.parametrize(
    ("label", "grade"),
    [
        ("G4", "G4"),
        (4, "G4"),
        ("IV", "G4"),
        ("grade III", "G3"),
        ("WHO 2级", "G2"),
        ("WHO Ⅳ级", "G4"),
        ("high", None),
        (None, None),
    ],
)
def test_normalise_grade(label, grade) -> None:
    assert normalise_grade(label) == grade


@pytest.mark.parametrize(
    ("label", "subtype"),
    [
        ("IDHwt", "IDHwt"),
        ("idh-wildtype", "IDHwt"),
        ("IDHmut_codel", "IDHmut-codel"),
        ("IDH-mutant-non-codel", "IDHmut-non-codel"),
        ("other", None),
    ],
)
def test_normalise_subtype(label, subtype) -> None:
    assert normalise_subtype(label) == subtype


# --- real TCGA references ---------------------------------------------------------------
# A reference "states" a grade when a loose pattern, independent of the extractor, sees one.
LOOSE_GRADE = re.compile(r"grade\s*[:(]?\s*(?:[IVl1]{1,3}|[2-4])(?![a-z])|glioblastoma|级", re.IGNORECASE)


@pytest.fixture(scope="module")
def tcga_extracted(shared_data) -> list[tuple[str, dict, dict[str, str]]]:
    """(reference text, extracted fields, labels.csv row) per TCGA case with a reference; extracted once."""
    root = shared_data / "tcga_glioma"
    with (root / "labels.csv").open(encoding="utf-8") as f:
        labels = {row["case_id"]: row for row in csv.DictReader(f)}
    out = []
    for path in sorted((root / "cases").glob("*/reference_report.txt")):
        row = labels.get(path.parent.name)
        if row is not None:
            text = path.read_text(encoding="utf-8")
            out.append((text, extract_fields(text), row))
    return out


def test_real_references_recover_grade(tcga_extracted) -> None:
    stated = recovered = 0
    for text, fields, row in tcga_extracted:
        if row["who_grade"] and LOOSE_GRADE.search(text):
            stated += 1
            recovered += "grade" in fields and fields["grade"].stated() == row["who_grade"]
    assert stated > 200
    assert recovered / stated >= 0.8, f"grade recovered for {recovered}/{stated}"


def test_real_references_fields_agree_with_labels_when_stated(tcga_extracted) -> None:
    columns = {
        "histology": (
            "histology",
            {h: h for h in ("glioblastoma", "astrocytoma", "oligodendroglioma", "oligoastrocytoma")},
        ),
        "idh": ("idh_status", {"Mutant": "mutant", "WT": "wildtype"}),
        "mgmt": ("mgmt_promoter", {"Methylated": "methylated", "Unmethylated": "unmethylated"}),
    }
    counts = {name: [0, 0] for name in columns}
    for _, fields, row in tcga_extracted:
        for name, (column, mapping) in columns.items():
            truth = mapping.get(row[column])
            value = fields[name].stated() if name in fields else None
            if truth and value:
                counts[name][0] += 1
                counts[name][1] += value == truth
    for name, (n, ok) in counts.items():
        assert n >= 30, f"{name}: only {n} references state it"
        # Reports and the published labels disagree now and then (IHC vs sequencing, arrays vs PCR).
        assert ok / n >= 0.75, f"{name}: {ok}/{n} agree with labels.csv"


def test_every_field_has_a_snippet() -> None:
    assert {name for _, name, _, _ in SNIPPETS} == set(FIELDS)
