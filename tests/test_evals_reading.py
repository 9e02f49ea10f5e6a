"""Reading a reference as a clinician would (issue 7, item 9): every phrase in English and Chinese."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.references import decode_reference, load_reference
from evals.text_fields import extract_fields, subtype_from_fields, unread_fields, words
from schemas.errors import InputError

# (text, field, stated value): None = the text leaves the field open (a hedge).
READINGS = [
    # A negative R132H stain does not exclude other IDH mutations: IDH stays open.
    ("IDH1 R132H immunostain negative; sequencing pending", "idh1_r132h", "not_detected"),
    ("IDH1 R132H免疫组化阴性，待测序", "idh1_r132h", "not_detected"),
    ("IDH1 R132H immunostain positive.", "idh1_r132h", "detected"),
    ("IDH1 R132H免疫组化阳性。", "idh1_r132h", "detected"),
    ("IDH1 R132H immunostain positive.", "idh", "mutant"),
    ("IDH1 R132H免疫组化阳性。", "idh", "mutant"),
    ("IDH1/IDH2 wild-type by next-generation sequencing.", "idh", "wildtype"),
    ("经测序IDH1野生型。", "idh", "wildtype"),
    ("经基因测序，IDH1/2野生型。", "idh", "wildtype"),
    # A recommended sequencing is not a sequencing result.
    ("IDH1 R132H(-)，建议基因测序。", "idh1_r132h", "not_detected"),
    ("IDH1 R132H(-)，需行测序明确IDH状态。", "idh1_r132h", "not_detected"),
    # Hedges.
    ("坏死不能除外。", "necrosis", None),
    ("Necrosis cannot be ruled out.", "necrosis", None),
    ("星形细胞瘤，WHO 3级，分级困难。", "grade", None),
    ("Astrocytoma, WHO grade 3, although grade cannot be assigned with certainty on this biopsy.", "grade", None),
    ("Diffuse glioma, WHO grade 2, difficult to grade on this small sample.", "grade", None),
    ("星形细胞瘤，WHO 3级，难以分级。", "grade", None),
    ("IDH1 wild-type on this limited sample, but IDH status cannot be determined.", "idh", None),
    ("IDH野生型（样本有限），IDH状态不明。", "idh", None),
    # 1p/19q not codeleted.
    ("1p/19q无共缺失。", "codeletion_1p19q", "intact"),
    ("FISH：未见共缺失。", "codeletion_1p19q", "intact"),
    ("1p/19q: no codeletion.", "codeletion_1p19q", "intact"),
    ("1p/19q not codeleted by FISH.", "codeletion_1p19q", "intact"),
    ("1p/19q共缺失。", "codeletion_1p19q", "codeleted"),
    ("NEGATIVE: Allelic loss on chromosome arm lp and chromosome arm 19q is NOT detected.", "codeletion_1p19q", "intact"),
    # Per-list negation: one negation covers every item of the list.
    ("未见明显微血管增生及坏死。", "microvascular_proliferation", "absent"),
    ("未见明显微血管增生及坏死。", "necrosis", "absent"),
    ("未见明显核分裂象、微血管增生及坏死。", "necrosis", "absent"),
    ("No microvascular proliferation or necrosis is seen.", "necrosis", "absent"),
    ("No microvascular proliferation or necrosis is seen.", "microvascular_proliferation", "absent"),
    ("Without significant mitotic activity, microvascular proliferation or necrosis.", "necrosis", "absent"),
    # ... but not across a clause: "可见" / "but" start an affirmed one.
    ("未见坏死，可见微血管增生。", "microvascular_proliferation", "present"),
    ("No necrosis, but microvascular proliferation is present.", "microvascular_proliferation", "present"),
    # Each marker of a Chinese immunostain list keeps its own result.
    ("免疫组化：IDH1(+)、ATRX(-)、P53(+)。", "idh1_r132h", "detected"),
    ("免疫组化：ATRX(-)、IDH1(+)。", "idh", "mutant"),
    # OCR: 0 for O, 1/l for I, rn for m.
    ("GLI0BLAST0MA, WHO GRADE IV.", "histology", "glioblastoma"),
    ("GLI0BLAST0MA.", "grade", "G4"),
    ("NECR0SIS IS PRESENT.", "necrosis", "present"),
    ("NO NECR0SIS IS IDENTIFIED.", "necrosis", "absent"),
    ("G1IOBLASTOrnA (WHO GRADE IV).", "histology", "glioblastoma"),
    ("0LIG0DENDR0GLI0MA, WHO GRADE II.", "histology", "oligodendroglioma"),
    ("Focal pseudopalisading necr0sis.", "necrosis", "present"),
]


@pytest.mark.parametrize(("text", "name", "stated"), READINGS)
def test_reading(text: str, name: str, stated: str | None) -> None:
    fields = extract_fields(text)
    assert name in fields, f"{name} not read from {text!r}: {fields}"
    assert fields[name].stated() == stated, (text, fields[name])


@pytest.mark.parametrize(
    "text",
    [
        "IDH1 R132H immunostain negative; sequencing pending",
        "IDH1 R132H免疫组化阴性，待测序",
        "免疫组化：IDH1(-)。",
        "IDH1 R132H(-)，需行测序明确IDH状态。",
    ],
)
def test_negative_r132h_is_not_idh_wildtype(text: str) -> None:
    fields = extract_fields(text)
    assert "idh" not in fields
    assert subtype_from_fields({**fields, **extract_fields("1p/19q intact.")}) is None


@pytest.mark.parametrize(("text", "name"), [("坏死不能除外。", "necrosis"), ("分级困难，WHO 2级。", "grade")])
def test_hedged_fields_are_read_not_missed(text: str, name: str) -> None:
    fields = extract_fields(text)
    assert fields[name].certainty == "uncertain"
    assert name not in unread_fields(text, fields)


def test_negation_word_inside_another_word_negates_nothing() -> None:
    # "无法" (cannot) holds 无 (no), "有无" (whether) too; only whole words count.
    assert extract_fields("坏死无法排除。")["necrosis"].stated() is None
    assert extract_fields("镜下有无坏死需结合影像，可见坏死。")["necrosis"].stated() == "present"


def test_chinese_is_segmented_into_words() -> None:
    assert words("未见明显微血管增生及坏死") == ["未见", "明显", "微血管增生", "及", "坏死"]
    assert words("1p/19q无共缺失") == ["1p", "19q", "无", "共缺失"]


def test_unread_field_is_one_the_text_talks_about() -> None:
    text = "IDH status: see addendum. MGMT: sent out. No necrosis. Brain neoplasm NOS."
    assert unread_fields(text, extract_fields(text)) == {"idh", "mgmt"}
    # Pending tests state no result; an R132H stain was read (it leaves IDH open, it was not missed).
    text = "MGMT methylation testing is pending. Negative for IDH1 (R132H) immunostain."
    assert unread_fields(text, extract_fields(text)) == set()
    # Words near a field are not the field: no WHO grade or tumour type is stated here.
    text = "High-grade glioma with reactive astrocytes. 高级别胶质瘤。"
    assert unread_fields(text, extract_fields(text)) == set()


# --- encodings ------------------------------------------------------------------------------
ZH_REFERENCE = "病理诊断：胶质母细胞瘤，IDH野生型，CNS WHO 4级。未见明显微血管增生及坏死。"


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (ZH_REFERENCE.encode("utf-8"), "utf-8"),
        (b"\xef\xbb\xbf" + ZH_REFERENCE.encode("utf-8"), "utf-8"),
        (ZH_REFERENCE.encode("gbk"), "gb18030"),
        (ZH_REFERENCE.encode("gb18030"), "gb18030"),
    ],
)
def test_reference_decoded_in_its_encoding(data: bytes, encoding: str) -> None:
    assert decode_reference(data, "X/reference_report.txt") == (ZH_REFERENCE, encoding)


def test_gbk_reference_is_read(tmp_path: Path) -> None:
    (tmp_path / "CASE-1").mkdir()
    (tmp_path / "CASE-1" / "reference_report.txt").write_bytes(ZH_REFERENCE.encode("gbk"))
    ref = load_reference(tmp_path / "CASE-1")
    assert ref is not None and ref.encoding == "gb18030"
    assert extract_fields(ref.text)["diagnosis"].stated() == "Glioblastoma, IDH-wildtype, CNS WHO grade 4"


def test_undecodable_reference_names_the_file() -> None:
    with pytest.raises(InputError, match="CASE-1/reference_report.txt"):
        decode_reference(b"\x80\xff\xfe not text", "CASE-1/reference_report.txt")
