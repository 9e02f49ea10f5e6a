"""Pull diagnosis, grade and molecular findings out of free-text pathology reports.

Works on noisy OCR English (TCGA scans) and on Chinese. Every mention carries a
certainty, decided NegEx-style: trigger phrases before or after the mention, in
the same clause and within a few words. Chinese is segmented into words (jieba) so
that a trigger counts only as whole words ("无" in "无法" is not a negation) and a
negation reaches over a listed series ("未见明显微血管增生及坏死"). Vocabulary terms
are matched OCR-tolerantly (0/O, 1/l/I, rn/m). Pure functions; no I/O.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Literal

Certainty = Literal["affirmed", "negated", "uncertain"]

GRADES = ("G1", "G2", "G3", "G4")
SUBTYPES = ("IDHwt", "IDHmut-codel", "IDHmut-non-codel")

WINDOW_BEFORE = 6  # words between a pre-trigger and the mention (NegEx uses 5-6); list joiners not counted
WINDOW_AFTER = 5
WINDOW_NON_FINDING = 12
_FLAGS = re.IGNORECASE


@dataclass(frozen=True)
class Pattern:
    """One way a field is written. `value` is a label or a function of the match."""

    regex: re.Pattern[str]
    value: str | Callable[[re.Match[str]], str | None]
    # 0 = the text states the field; higher = inferred from another term (glioblastoma -> G4).
    priority: int = 0
    # Bare test names ("IDH1 R132H") say nothing until a result word stands next to them.
    needs_polarity: bool = False


@dataclass(frozen=True)
class FieldSpec:
    name: str
    patterns: tuple[Pattern, ...]
    # Binary fields: "not X" states the other value.
    opposite: dict[str, str] = field(default_factory=dict)
    # Values from mildest to worst: the worst stated anywhere wins, as a tumour is graded by
    # its most malignant part and a finding seen in any part of the specimen is present.
    order: tuple[str, ...] = ()
    # A sentence saying the field cannot be settled ("grade cannot be assigned", "分级困难")
    # makes every mention of the field in that sentence a hedge.
    unsettled: re.Pattern[str] | None = None
    # Rewrites a mention given its sentence (see _narrow_idh).
    narrow: Callable[[Mention], list[Mention]] | None = None


@dataclass(frozen=True)
class Mention:
    field: str
    value: str
    certainty: Certainty
    start: int
    priority: int
    sentence: str


@dataclass(frozen=True)
class FieldValue:
    """The field as the text states it, with the sentence a person can check it against."""

    field: str
    value: str
    certainty: Certainty
    evidence: str
    opposite: str | None = None  # binary fields: the value a negation states

    def stated(self) -> str | None:
        """The value to compare: the negation of a binary finding names its opposite; hedges state nothing."""
        if self.certainty == "affirmed":
            return self.value
        if self.certainty == "negated" and self.opposite is not None:
            return self.opposite
        return None


def _p(
    regex: str, value: str | Callable[[re.Match[str]], str | None], priority: int = 0, needs_polarity: bool = False
) -> Pattern:
    return Pattern(re.compile(regex, _FLAGS), value, priority, needs_polarity)


# --- numerals -------------------------------------------------------------------------
_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4}
_CJK_DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4}
# OCR reads the roman I as l, 1, | or !; only inside a roman token are they taken as I.
_OCR_I = str.maketrans({"l": "I", "L": "I", "1": "I", "|": "I", "!": "I", "i": "I", "t": "I", "v": "V", " ": None})


def numeral_value(token: str) -> int | None:
    """1-4 from an arabic, roman (OCR-noisy) or Chinese numeral; None if it is none of those."""
    token = token.strip()
    if token.replace(" ", "").isdigit():
        token = token.replace(" ", "")
    if token in _CJK_DIGITS:
        return _CJK_DIGITS[token]
    if token.isdigit():
        value = int(token)
        if 1 <= value <= 4:
            return value
    return _ROMAN.get(token.translate(_OCR_I).upper())


def _grade_from_match(m: re.Match[str]) -> str | None:
    value = numeral_value(m.group("num"))
    return None if value is None else f"G{value}"


# --- vocabularies ---------------------------------------------------------------------
def _any(*alternatives: str) -> str:
    return "(?:" + "|".join(alternatives) + ")"


# Characters OCR confuses: a letter and the glyphs scanned text shows for it.
_OCR_CLASSES = {"o": "[o0]", "0": "[o0]", "i": "[il1|]", "l": "[il1|]", "1": "[il1|]"}


def ocr(word: str) -> str:
    """Regex for a lower-case word as OCR writes it: 0 for o, 1/l/I/| for one another, rn for m
    (and m for rn); a '-' in `word` marks an optional hyphen or space (a broken line)."""
    out, i = [], 0
    while i < len(word):
        if word.startswith("rn", i) or word[i] == "m":
            out.append("(?:m|rn)")
            i += 2 if word[i] == "r" else 1
            continue
        ch = word[i]
        out.append(r"-?\s?" if ch == "-" else _OCR_CLASSES.get(ch, re.escape(ch)))
        i += 1
    return "".join(out)


_NUM = r"(?P<num>(?:[IVl1|!](?:\s?[IVl1|!]){0,3}|(?-i:It))(?=WHO|[^A-Za-z]|$)|[1-4](?![0-9]|\.[0-9])|[一二三四])"
_GBM = ocr("glio-blastom") + r"\w*|" + ocr("gliosarcoma") + r"|\bGBM\b|胶质母细胞瘤|胶质肉瘤"
_OLIGOASTRO = ocr("oligo-astro") + r"\w*|mixed\s+(?:oligoastrocytic\s+)?glioma|少突-?星形细胞瘤|混合性胶质瘤"
_OLIGO = ocr("oligodendro-glioma") + r"s?\b|少突胶质细胞瘤"
_ASTRO = r"(?<![a-z])" + ocr("astroc") + r"\w{1,5}(?:m|rn)as?\b|星形细胞瘤"
_ANAPLASTIC = r"anaplastic\s+(?:" + "|".join((_OLIGOASTRO, _OLIGO, _ASTRO)) + r")|间变性[\u4e00-\u9fff]{1,8}?瘤"
_LOW_GRADE = (
    r"low[\s-]+(?:histological\s+)?grade\s+(?:glioma|glial|"
    + "|".join((_OLIGOASTRO, _OLIGO, _ASTRO))
    + r")|diffuse\s+astrocytoma|低级别胶质瘤"
)
# Case-sensitive gene number: OCR writes IDH1 as IDHI or IDHl, but "IDH is" is not IDH1.
_IDH = r"IDH[-\s]?(?-i:[12Il])?(?:\s*/\s*(?:IDH?)?[12])?"
_R132H = r"(?:[\s-]*\(?\s*R132H?\s*\)?)?"
_IDH_GAP = r"[\s:-]*(?:(?:gene|status|point)\s*)?[\s:-]*(?:(?:is|was)\s+)?"
_ARM = r"(?:chromosom(?:es?|al)\s+(?:arms?\s+)?)?"
_P19 = _ARM + r"[1lI]\s?p\s*(?:/|and|or|&|-)?\s*" + _ARM + r"19\s?q"
# "IDH1 mutation testing" names a test, not a result.
_NOT_TEST_NAME = r"(?!\s*(?:testing|tests?|analysis|assay|detection|studies|study|status|检测))"
# "an oligodendroglioma component" describes part of the tumour, not the diagnosis.
_NOT_DIAGNOSIS = r"(?!\s*(?:component|differentiation|phenotype|features|-like|like))"
_DELETED = r"co-?\s?deleti\w*|co-?\s?deleted|codel\w*|deleti\w*|deleted|loss|LOH|co-?loss"
_INTACT = r"intact|retained|non-?\s?co-?deleted"
_ARM_DELETION = r"(?:deletion|loss|LOH)\s+of\s+(?:chromosome\s+)?{arm}"
_MGMT = r"MGMT\s*(?:gene\s*)?(?:promoter\s*)?[:-]?\s*(?:(?:is|was)\s+)?"
_METH = r"(?<![a-z])(?:hyper)?methylated"
_UNMETH = r"(?:un|non-?)methylated"

# --- WHO CNS5 integrated diagnosis ----------------------------------------------------
@dataclass(frozen=True)
class Diagnosis:
    """One integrated diagnosis of the project's vocabulary, with the levels the eval scores.

    `family` is the WHO CNS5 tumour type with its NOS form counted in the type it names
    ("Diffuse astrocytic glioma, IDH-wildtype, NOS" is an IDH-wildtype astrocytic glioma whose
    defining tests are missing); `grade` is None where the label leaves the grade open."""

    label: str
    family: str | None
    grade: str | None


_IDHWT_ASTROCYTIC = "IDH-wildtype astrocytic glioma"
_IDHMUT_ASTROCYTOMA = "Astrocytoma, IDH-mutant"
_OLIGODENDROGLIOMA = "Oligodendroglioma"
DIAGNOSES: dict[str, Diagnosis] = {
    d.label: d
    for d in (
        Diagnosis("Glioblastoma, IDH-wildtype, CNS WHO grade 4", _IDHWT_ASTROCYTIC, "G4"),
        *(Diagnosis(f"Astrocytoma, IDH-mutant, CNS WHO grade {g}", _IDHMUT_ASTROCYTOMA, f"G{g}") for g in "234"),
        *(
            Diagnosis(f"Oligodendroglioma, IDH-mutant and 1p/19q-codeleted, CNS WHO grade {g}", _OLIGODENDROGLIOMA, f"G{g}")
            for g in "23"
        ),
        Diagnosis("Diffuse astrocytic glioma, IDH-wildtype, NOS", _IDHWT_ASTROCYTIC, None),
        Diagnosis("Astrocytoma, IDH-mutant, NOS", _IDHMUT_ASTROCYTOMA, None),
        Diagnosis("Oligodendroglioma, NOS", _OLIGODENDROGLIOMA, None),
        Diagnosis("Diffuse glioma, NOS", None, None),
    )
}
_DX_GRADE = re.compile(r"grade\s*(?P<num>[1-4]|IV|I{1,3})\b|(?P<zh>[1-4一二三四])\s*级", _FLAGS)
_DX_NOS = re.compile(r"\bNOS\b|\bNEC\b|非特指|未特指|未分类", _FLAGS)
_DX_WILDTYPE = re.compile(r"wild[\s-]?type|野生型", _FLAGS)


def normalise_diagnosis(label: str | None) -> str | None:
    """An integrated diagnosis written in WHO CNS5 English or Chinese wording -> the vocabulary label
    ('胶质母细胞瘤，IDH野生型，CNS WHO 4级' -> 'Glioblastoma, IDH-wildtype, CNS WHO grade 4'); else None."""
    if label is None:
        return None
    text = unicodedata.normalize("NFKC", label)
    m = _DX_GRADE.search(text)
    grade = numeral_value(m.group("num") or m.group("zh")) if m else None
    nos = _DX_NOS.search(text) is not None
    wildtype = _DX_WILDTYPE.search(text) is not None
    lower = text.lower()
    # Under CNS5 there is no IDH-mutant glioblastoma and no IDH-wildtype astrocytoma: such
    # labels are left unrecognised, so they show as disagreements rather than being re-classified.
    if "glioblastoma" in lower or "胶质母细胞瘤" in text:
        ok = grade in (None, 4) and not nos and ("mutant" not in lower and "突变" not in text)
        return "Glioblastoma, IDH-wildtype, CNS WHO grade 4" if ok else None
    if "oligodendroglioma" in lower or "少突胶质细胞瘤" in text:
        return "Oligodendroglioma, NOS" if nos else _GRADED["oligo"].get(grade)
    if re.search(r"diffuse\s+astrocytic\s+glioma|弥漫性星形细胞胶质瘤", text, _FLAGS):
        return "Diffuse astrocytic glioma, IDH-wildtype, NOS" if wildtype else None
    if "astrocytoma" in lower or "星形细胞瘤" in text:
        if wildtype or ("mutant" not in lower and "突变" not in text):
            return None
        return "Astrocytoma, IDH-mutant, NOS" if nos else _GRADED["astro"].get(grade)
    if re.search(r"diffuse\s+glioma|弥漫性胶质瘤", text, _FLAGS) and nos:
        return "Diffuse glioma, NOS"
    return None


_GRADED: dict[str, dict[int | None, str]] = {
    "oligo": {g: f"Oligodendroglioma, IDH-mutant and 1p/19q-codeleted, CNS WHO grade {g}" for g in (2, 3)},
    "astro": {g: f"Astrocytoma, IDH-mutant, CNS WHO grade {g}" for g in (2, 3, 4)},
}
# The integrated diagnosis as a reference's text writes it: type, IDH status, (1p/19q,) grade or NOS.
_DX_TEXT = (
    r"(?:glioblastoma|astrocytoma|oligodendroglioma|diffuse\s+(?:astrocytic\s+)?glioma)\s*,\s*"
    r"(?:IDH[\s-]*(?:wild[\s-]?type|mutant)(?:\s+and\s+1p/19q[\s-]*co-?deleted)?\s*,\s*)?"
    r"(?:CNS\s+WHO\s+grade\s+(?:[1-4]|IV|I{1,3})\b|NOS\b)"
    r"|(?:胶质母细胞瘤|星形细胞瘤|少突胶质细胞瘤|弥漫性(?:星形细胞)?胶质瘤)\s*,\s*"
    r"(?:IDH\s*(?:野生型|突变型?)(?:\s*(?:和|及|、)\s*1p/19q\s*共缺失型?)?\s*,\s*)?"
    r"(?:CNS\s*WHO\s*[1-4一二三四]\s*级|NOS|非特指型?)"
)


# A negative IDH1 R132H test (the usual immunostain) does not exclude the other IDH1/IDH2
# mutations (WHO CNS5): it reads "IDH1 R132H not detected" and leaves IDH status open,
# unless the sentence reports sequencing.
_R132H_ONLY = re.compile(r"R\s?132\s?H|immuno\w*|\bIHC\b|\bstain\w*|免疫组化|免疫组织化学|染色", _FLAGS)
_SEQUENCED = re.compile(
    r"\b(?:by|on|using|via|with)\s+(?:\w+\s+){0,2}?(?:sequencing|NGS|PCR)\b"
    r"|\b(?:sequencing|NGS)\s+(?:shows?|showed|revealed?|detected|demonstrated?|confirmed)\b"
    r"|(?<![需议待])(?:经|行|基因)测序|测序(?:显示|结果|证实|提示)",
    _FLAGS,
)


def _narrow_idh(mention: Mention) -> list[Mention]:
    """An IDH reading resting on an R132H-specific test: negative -> only "IDH1 R132H not detected";
    positive -> IDH-mutant and "IDH1 R132H detected". Hedged readings stay as they are."""
    r132h_only = _R132H_ONLY.search(mention.sentence) and not _SEQUENCED.search(mention.sentence)
    if not r132h_only or mention.certainty == "uncertain":
        return [mention]
    mutant = (mention.value == "mutant") == (mention.certainty == "affirmed")
    r132h = replace(mention, field="idh1_r132h", value="detected" if mutant else "not_detected", certainty="affirmed")
    return [replace(mention, value="mutant", certainty="affirmed"), r132h] if mutant else [r132h]


FIELD_SPECS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec("diagnosis", (_p(_DX_TEXT, lambda m: normalise_diagnosis(m.group())),)),
        FieldSpec(
            "histology",
            (
                _p(f"(?:{_GBM}){_NOT_DIAGNOSIS}", "glioblastoma"),
                _p(f"(?:{_OLIGOASTRO}){_NOT_DIAGNOSIS}", "oligoastrocytoma"),
                _p(f"(?:{_OLIGO}){_NOT_DIAGNOSIS}", "oligodendroglioma"),
                _p(f"(?:{_ASTRO}){_NOT_DIAGNOSIS}", "astrocytoma"),
            ),
        ),
        FieldSpec(
            "grade",
            (
                _p(r"(?:(?:(?<![a-z])|(?<=WHO))grade|\bWHO(?:\s*分级)?|分级)\s*[:(]?\s*G?" + _NUM, _grade_from_match),
                _p(r"(?:WHO\s*)?" + _NUM + r"\s*级", _grade_from_match),
                _p(_GBM, "G4", priority=1),
                _p(_ANAPLASTIC, "G3", priority=1),
                _p(_LOW_GRADE, "G2", priority=2),
            ),
            order=GRADES,
            unsettled=re.compile(
                r"\bgrade\s+(?:can\s?not|could\s+not)\s+be\s+(?:\w+\s+)?(?:assigned|determined|established|given)"
                r"|\b(?:can\s?not|could\s+not|unable\s+to)\s+(?:be\s+)?(?:reliably\s+)?grade[ds]?\b"
                r"|\bdifficult\s+to\s+grade|\bgrade\s+(?:is\s+)?(?:indeterminate|uncertain|deferred)"
                r"|分级困难|难以分级|无法分级|不能分级|分级不确定|分级待定",
                _FLAGS,
            ),
        ),
        FieldSpec(
            "idh",
            (
                _p(_IDH + _R132H + _IDH_GAP + r"(?:wild[\s-]?type|wt\b|野生型|未突变|无突变)", "wildtype"),
                _p(r"wild[\s-]?type\s+(?:for\s+)?" + _IDH, "wildtype"),
                _p(_IDH + _R132H + _IDH_GAP + r"(?:mutant|mutations?|mutated|mut\b|突变)" + _NOT_TEST_NAME, "mutant"),
                _p(r"(?:R132H\s+)?mutant\s+IDH|mutations?\s+(?:in|of)\s+(?:the\s+)?" + _IDH, "mutant"),
                _p(_IDH + _R132H, "mutant", needs_polarity=True),
            ),
            opposite={"mutant": "wildtype", "wildtype": "mutant"},
            narrow=_narrow_idh,
            unsettled=re.compile(
                r"IDH[12]?\s*(?:status\s+)?(?:(?:can\s?not|could\s+not)\s+be\s+|(?:is|was|remains)\s+(?:not\s+)?)"
                r"(?:determined|assessed|established|indeterminate|undetermined|unknown)|IDH[12]?\s*状态(?:不明|未明|待定)",
                _FLAGS,
            ),
        ),
        # Filled from IDH mentions that only an R132H-specific test stands behind (see _narrow_idh).
        FieldSpec("idh1_r132h", (), opposite={"detected": "not_detected", "not_detected": "detected"}),
        FieldSpec(
            "codeletion_1p19q",
            (
                _p(_P19 + r"[\s-]*" + _any(_DELETED, "联合缺失", "共缺失", "缺失"), "codeleted"),
                _p(_any(_DELETED) + r"\s+(?:of|for|at|on)\s+(?:both\s+)?" + _P19, "codeleted"),
                _p(r"(?<![a-z-])codel(?:eted|etion)?\b|共缺失|联合缺失", "codeleted"),
                _p(
                    _ARM_DELETION.format(arm=r"[1lI]\s?p\b") + r".{0,40}?" + _ARM_DELETION.format(arm=r"19\s?q"),
                    "codeleted",
                ),
                _p(_P19 + r"[\s-]*(?:(?:is|are)\s+)?" + _any(_INTACT, "未缺失", "无缺失", "完整"), "intact"),
                _p(r"non-?\s?co-?del\w*", "intact"),
            ),
            opposite={"codeleted": "intact", "intact": "codeleted"},
        ),
        FieldSpec(
            "mgmt",
            (
                _p(
                    _any(_UNMETH + r"\s+MGMT", _MGMT + _UNMETH, r"MGMT\s*(?:启动子)?\s*(?:未|非|无)甲基化"),
                    "unmethylated",
                ),
                _p(
                    _any(_METH + r"\s+MGMT", _MGMT + _METH, r"MGMT\s*(?:启动子)?\s*甲基化(?!检测|状态|分析)"),
                    "methylated",
                ),
                _p(
                    _any(
                        r"MGMT\s*(?:gene\s*)?(?:promoter\s*)?(?:hyper)?methylation(?:\s+status)?",
                        r"(?:hyper)?methylation\s+of\s+(?:the\s+)?MGMT(?:\s+(?:gene|promoter))*",
                        r"MGMT\s*(?:启动子)?\s*甲基化(?:检测|状态|分析)",
                    ),
                    "methylated",
                    needs_polarity=True,
                ),
            ),
            opposite={"methylated": "unmethylated", "unmethylated": "methylated"},
        ),
        FieldSpec(
            "necrosis",
            (_p(_any(ocr("necros") + r"(?:[il1|]|e)s", ocr("necrotic"), r"pseudo-?\s?palisad\w*", "坏死"), "present"),),
            opposite={"present": "absent"},
            order=("absent", "present"),
        ),
        FieldSpec(
            "microvascular_proliferation",
            (
                _p(
                    f"(?:{ocr('micro-')})?{ocr('vascular')}[\\s_]+(?:cellular\\s+|endothelial\\s+)?"
                    f"(?:{ocr('proliferation')}|hyperplasia)"
                    r"|endothelial\s+(?:cell\s+)?(?:proliferation|hyperplasia)|glomeruloid\s+(?:vessels?|vascular\w*|tufts?)"
                    r"|(?:微)?血管(?:内皮)?(?:细胞)?(?:增生|增殖)",
                    "present",
                ),
            ),
            opposite={"present": "absent"},
            order=("absent", "present"),
        ),
    )
}
FIELDS: tuple[str, ...] = tuple(FIELD_SPECS)
# Loose signs that a text talks about a field at all, independent of the extractor: a field
# the text talks about but the extractor reads no value for is an extractor miss, not silence.
FIELD_KEYWORDS: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern, _FLAGS)
    for name, pattern in {
        "diagnosis": r"CNS\s*WHO|(?:glioma|astrocytoma|oligodendroglioma)\s*,\s*NOS\b|非特指",
        "histology": r"astroc\w*om|oligo\w*om|gl[il1]o-?\s?b[l1]ast|\bGBM\b|胶质母细胞瘤|星形细胞瘤|少突胶质细胞瘤",
        # A grade with something like a numeral after it: "high-grade glioma" states no WHO grade.
        "grade": r"\bgrade\s*[:(]?\s*(?:[IVl1|!]|[0-9])|\bWHO\s*[IV1-4]|[1-4一二三四IV]\s*级",
        "idh": r"\bIDH",
        "idh1_r132h": r"R\s?132\s?H",
        "codeletion_1p19q": r"\b[1l]\s?p\b|19\s?q|codel|共缺失|联合缺失",
        "mgmt": r"MGMT",
        "necrosis": r"necr|坏死",
        "microvascular_proliferation": r"vascular\s+(?:cellular\s+|endothelial\s+)?(?:prolif|hyperpl)|endotheli|血管.{0,4}增",
    }.items()
}

# --- context triggers -----------------------------------------------------------------
_PRE_NEGATION = re.compile(
    _any(
        r"\b(?:no|not|without|neither|nor|negative\s+for|free\s+of|lack(?:s|ing)?(?:\s+of)?|absence\s+of|devoid\s+of)\b",
        r"\bruled\s+out\b|\bfail(?:s|ed)?\s+to\s+(?:detect|show|demonstrate|reveal)\b",
        "未见|未发现|未检出|未检测到|无|没有|不伴",
    ),
    _FLAGS,
)
_POST_NEGATION = re.compile(
    _any(
        r"\b(?:(?:is|are|was|were)\s+)?(?:negative(?!\s+for)|absent)\b",
        r"\b(?:(?:is|are|was|were)\s+)?not\s+(?:seen|identified|present|detected|found|observed|evident|appreciated)\b",
        r"\(\s*-\s*\)|阴性|未检出|未见|缺如",
    ),
    _FLAGS,
)
_ZH_HEDGES = "不除外|不能除外|难以除外|不能完全除外|不排除|不能排除|无法排除|不能完全排除|待除外|可能|待排|可疑"
_PRE_UNCERTAIN = re.compile(
    _any(
        r"\b(?:can\s?not|could\s+not)\s+(?:be\s+)?(?:exclude[ds]?|rule[ds]?\s+out)\b",
        r"\bsuspicious\s+(?:for|of)\b|\bsuspect(?:ed)?\b|\bpossibl[ey]\b|\bprobabl[ey]\b|\b(?:may|might|could)\b|\blikely\b",
        r"\bfavou?r(?:ed|s)?\b|\bconsider(?:ed)?\b|\be\.g\.|\brule\s+out\b|\br/o\b|\bsuggestive\s+of\b|\bquestionable\b",
        r"\bversus\b|\bconcerning\s+for\b|\b(?:transition|transformation|progression|evolving)\s+(?:to|into|towards?)\b",
        _ZH_HEDGES + "|疑似|疑为|考虑|倾向",
    ),
    _FLAGS,
)
_POST_UNCERTAIN = re.compile(
    _any(
        r"\b(?:can\s?not|could\s+not)\s+be\s+(?:\w+\s+)?(?:excluded|ruled\s+out)\b|\bnot\s+excluded\b|\bcannot\s+be\s+made\b",
        r"\b(?:is|are)\s+(?:possible|suspected|favou?red|likely|questionable)\b",
        _ZH_HEDGES,
    ),
    _FLAGS,
)
# These reach over the whole clause that follows them.
_CLAUSE_NEGATION = re.compile(
    r"\b(?:inadequate|insufficient)\s+to\b|\benough\s+to\s+(?:classify|call|diagnose)\b|\bfalls?\s+short\s+of\b"
    r"|\bdoes\s+not\s+meet\b|不足以",
    _FLAGS,
)
_CLAUSE_UNCERTAIN = re.compile(r"\bdifferential\s+diagnos[ie]s\b|\bif\b|\bwould\b|鉴别诊断|如果", _FLAGS)
_POSITIVE = re.compile(
    r"\bpositiv\w*|\(\s*\+\s*\)|\bdetected\b|\bimmunoreactiv\w*|\bexpress(?:ed|es|ion)\b|阳性",
    _FLAGS,
)
# A mention near one of these is not a finding about this patient: assay descriptions,
# literature, pending tests. TCGA reports carry this boilerplate, often in run-on OCR lines.
_NON_FINDING = re.compile(
    _any(
        r"test\s+description|(?:patients|tumou?rs|gliomas|oligodendrogliomas)\s+(?:with|lacking|containing|harbou?ring)",
        r"(?:has|have)\s+(?:been\s+)?(?:shown|reported|observed)|\b(?:retrospective|previous|published)\s+studies\b",
        r"further\s+(?:genetic\s+|molecular\s+)?testing|(?:has|have|was|were)\s+(?:been\s+)?ordered|\bwill\s+be\b",
        r"\bpending\b|reported\s+separately|may\s+preclude|is\s+an\s+attractive|models\s+of|analytic\s+sensitivity",
        r"assessment\s+of|\b(?:commonly|frequently|typical(?:ly)?|often|usually|rarely)\b",
        "待回报|另行报告",
    ),
    _FLAGS,
)
_HISTORICAL = re.compile(r"\bhistory\s+of\b|\bprevious(?:ly)?\b|\bprior\b|既往", _FLAGS)
# Negation and hedging do not reach across these. A comma next to Chinese text ends a Chinese
# clause ("未见坏死，可见微血管增生"); Chinese lists are joined by 、 or 及/和/或 instead.
_SCOPE_END = re.compile(
    r"\b(?:but|however|although|though|except|whereas|while|which|(?:positive|negative)\s+for)\b"
    r"|(?<=[\u4e00-\u9fff]),|,(?=\s*[\u4e00-\u9fff])|但是?|然而|可见|另见",
    _FLAGS,
)
_RUN = re.compile(r"[A-Za-z0-9]+|[\u4e00-\u9fff]+")
_LIST_COMMA = re.compile("[,、]")
_CJK_CHAR = re.compile(r"[\u4e00-\u9fff]")
# Words that join a list ("no A or B", "未见A及B"): a negation reaches over them uncounted.
_LIST_JOINERS = frozenset({"and", "or", "nor", "及", "和", "与", "或", "以及", "或者", "及其"})
# Terms jieba's general dictionary splits or joins wrongly ("无共缺失" -> 无共/缺失).
_ZH_TERMS = (
    "共缺失",
    "联合缺失",
    "微血管增生",
    "微血管增殖",
    "血管内皮增生",
    "免疫组化",
    "不能除外",
    "难以除外",
    "不除外",
    "不能排除",
    "无法排除",
    "野生型",
    "胶质母细胞瘤",
    "少突胶质细胞瘤",
    "星形细胞瘤",
    "分级困难",
)
# OCR drops the space after a full stop ("IDH1 .P53 is negative").
_SENTENCE_END = re.compile(r"(?<=[。；！？;!?])|(?<=\.)\s+|(?<=\.)(?=[A-Z])")
_ABBREVIATION = re.compile(r"(?:\b(?:e\.g|i\.e|vs|dr|no|approx|fig|ca|cf)\.|\b[A-Z]\.)$", _FLAGS)


def normalise_text(text: str) -> str:
    """NFKC (full-width punctuation and Ⅳ-style numerals to ASCII), one line."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


def sentences(text: str) -> list[tuple[int, str]]:
    """(offset, sentence) pairs of normalised text; abbreviations such as 'e.g.' do not end one."""
    out: list[tuple[int, str]] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        piece = text[start : m.start()]
        if not piece.strip() or (piece.rstrip().endswith(".") and _ABBREVIATION.search(piece.rstrip())):
            continue
        out.append((start, piece))
        start = m.end()
    if text[start:].strip():
        out.append((start, text[start:]))
    return out


@lru_cache(maxsize=1)
def _segmenter():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it logs its dictionary loading at INFO
    tokenizer = jieba.Tokenizer()
    for term in _ZH_TERMS:
        tokenizer.add_word(term)
    return tokenizer


@lru_cache(maxsize=65536)
def zh_words(run: str) -> tuple[str, ...]:
    """Words of a run of Chinese characters (jieba, with the pathology terms above)."""
    return tuple(_segmenter().cut(run))


def words(text: str) -> list[str]:
    """Latin/digit tokens and Chinese words of `text`, in order."""
    out: list[str] = []
    for run in _RUN.findall(text):
        out += zh_words(run) if _CJK_CHAR.match(run) else [run]
    return out


def _tokens(text: str) -> int:
    return sum(w.lower() not in _LIST_JOINERS for w in words(text))


@lru_cache(maxsize=4096)
def _word_bounds(sentence: str) -> frozenset[int]:
    """Offsets in `sentence` where a Chinese word starts or ends."""
    bounds: set[int] = set()
    for m in _RUN.finditer(sentence):
        if _CJK_CHAR.match(m.group()):
            pos = m.start()
            bounds.add(pos)
            for word in zh_words(m.group()):
                pos += len(word)
                bounds.add(pos)
    return frozenset(bounds)


def _whole_words(sentence: str, start: int, end: int) -> bool:
    """A Chinese trigger counts only as whole words: "无" inside "无法" or "有无" negates nothing."""
    bounds = _word_bounds(sentence)
    return (start in bounds or not _CJK_CHAR.match(sentence[start])) and (
        end in bounds or not _CJK_CHAR.match(sentence[end - 1])
    )


def _scope(sentence: str, start: int, end: int) -> tuple[int, int]:
    """Offsets of the clause around sentence[start:end], cut at scope terminators."""
    cuts = list(_SCOPE_END.finditer(sentence[:start]))
    cut = _SCOPE_END.search(sentence[end:])
    return (cuts[-1].start() if cuts else 0), (end + cut.start() if cut else len(sentence))


def _near_before(trigger: re.Pattern[str], sentence: str, begin: int, start: int, window: int = WINDOW_BEFORE) -> bool:
    before = sentence[begin:start]
    return any(
        _tokens(before[m.end() :]) <= window and _whole_words(sentence, begin + m.start(), begin + m.end())
        for m in trigger.finditer(before)
    )


def _near_after(trigger: re.Pattern[str], sentence: str, end: int, finish: int, window: int = WINDOW_AFTER) -> bool:
    after = sentence[end:finish]
    return any(
        _tokens(after[: m.start()]) <= window and _whole_words(sentence, end + m.start(), end + m.end())
        for m in trigger.finditer(after)
    )


def _certainty(sentence: str, start: int, end: int, needs_polarity: bool) -> Certainty | None:
    """Certainty of the mention at sentence[start:end]; None when it is not a finding."""
    if _near_before(_NON_FINDING, sentence, 0, start, WINDOW_NON_FINDING) or _near_after(
        _NON_FINDING, sentence, end, len(sentence), WINDOW_NON_FINDING
    ):
        return None
    begin, finish = _scope(sentence, start, end)
    # A comma closes what follows a mention ("MGMT methylated, IDH1 negative", "IDH1(+)、ATRX(-)"),
    # not what precedes it: "no necrosis, mitoses or microvascular proliferation" lists under one "no".
    comma = _LIST_COMMA.search(sentence, end, finish)
    finish_near = comma.start() if comma else finish
    if _near_before(_HISTORICAL, sentence, begin, start):
        return None
    # "cannot exclude" contains a negation word; the hedge is what it means.
    if (
        _CLAUSE_UNCERTAIN.search(sentence[begin:start])
        or _near_before(_PRE_UNCERTAIN, sentence, begin, start)
        or _near_after(_POST_UNCERTAIN, sentence, end, finish)
    ):
        return "uncertain"
    if (
        _CLAUSE_NEGATION.search(sentence[begin:start])
        or _near_before(_PRE_NEGATION, sentence, begin, start)
        or _near_after(_POST_NEGATION, sentence, end, finish_near)
    ):
        return "negated"
    if needs_polarity and not (
        _near_before(_POSITIVE, sentence, begin, start) or _near_after(_POSITIVE, sentence, end, finish)
    ):
        return None
    return "affirmed"


def _field_mentions(spec: FieldSpec, offset: int, sentence: str) -> list[Mention]:
    found: list[tuple[int, int, Pattern, str]] = []
    for pattern in spec.patterns:
        for m in pattern.regex.finditer(sentence):
            value = pattern.value(m) if callable(pattern.value) else pattern.value
            if value is not None:
                found.append((m.start(), m.end(), pattern, value))
    # Longest match first; a shorter one inside it ("astrocytoma" in "oligoastrocytoma") is the same words.
    found.sort(key=lambda f: (f[0] - f[1], f[2].priority))
    unsettled = spec.unsettled is not None and spec.unsettled.search(sentence) is not None
    taken: list[tuple[int, int]] = []
    mentions = []
    for start, end, pattern, value in found:
        if any(start < e and s < end for s, e in taken):
            continue
        taken.append((start, end))
        certainty = _certainty(sentence, start, end, pattern.needs_polarity)
        if certainty is None:
            continue
        mention = Mention(
            spec.name,
            value,
            "uncertain" if unsettled else certainty,
            offset + start,
            pattern.priority,
            sentence.strip(),
        )
        mentions += spec.narrow(mention) if spec.narrow else [mention]
    return mentions


def extract_mentions(text: str) -> list[Mention]:
    """Every finding the text mentions, in text order, with its certainty."""
    mentions: list[Mention] = []
    for offset, sentence in sentences(normalise_text(text)):
        for spec in FIELD_SPECS.values():
            mentions += _field_mentions(spec, offset, sentence)
    return sorted(mentions, key=lambda m: m.start)


def resolve(spec: FieldSpec, mentions: list[Mention]) -> FieldValue | None:
    """One value per field: a stated finding beats a hedge; the stated form beats an inferred one;
    then the worst value in `spec.order`, then the earliest (reports give the diagnosis first)."""
    own = [m for m in mentions if m.field == spec.name]
    if not own:
        return None

    def stated(m: Mention) -> str | None:
        if m.certainty == "affirmed":
            return m.value
        return spec.opposite.get(m.value) if m.certainty == "negated" else None

    def rank(m: Mention) -> tuple[int, int, int, int]:
        certainty_rank = 0 if stated(m) is not None else (1 if m.certainty == "negated" else 2)
        value = stated(m)
        severity = -spec.order.index(value) if value in spec.order else 0
        return certainty_rank, m.priority, severity, m.start

    best = min(own, key=rank)
    return FieldValue(
        spec.name,
        best.value,
        best.certainty,
        best.sentence,
        opposite=spec.opposite.get(best.value),
    )


def extract_fields(text: str) -> dict[str, FieldValue]:
    """Field name -> the value the text states (fields it never mentions are absent)."""
    mentions = extract_mentions(text)
    out = {}
    for name, spec in FIELD_SPECS.items():
        value = resolve(spec, mentions)
        if value is not None:
            out[name] = value
    return out


# An IDH sentence read as an R132H result was read: it leaves IDH open, it was not missed.
READ_AS: dict[str, str] = {"idh": "idh1_r132h"}


def unread_fields(text: str, fields: dict[str, FieldValue]) -> set[str]:
    """Fields the text talks about (FIELD_KEYWORDS, outside boilerplate and pending-test sentences)
    for which `fields` (its extraction) holds nothing."""
    spoken = [s for _, s in sentences(normalise_text(text)) if not _NON_FINDING.search(s)]
    return {
        name
        for name, keyword in FIELD_KEYWORDS.items()
        if name not in fields and READ_AS.get(name) not in fields and any(keyword.search(s) for s in spoken)
    }


def subtype_from_fields(fields: dict[str, FieldValue]) -> str | None:
    """WHO 2016 molecular group from stated IDH and 1p/19q; None when IDH is mutant but 1p/19q unstated."""
    idh = fields["idh"].stated() if "idh" in fields else None
    codel = fields["codeletion_1p19q"].stated() if "codeletion_1p19q" in fields else None
    if idh == "wildtype":
        return "IDHwt"
    if idh == "mutant" and codel is not None:
        return "IDHmut-codel" if codel == "codeleted" else "IDHmut-non-codel"
    return None


_GRADE_LABEL = re.compile(
    r"^\s*(?:WHO\s*)?(?:(?:CNS\s+)?(?:WHO\s+)?grade\s*)?G?\s*(?P<num>[IV]{1,4}|[1-4])\s*级?\s*$", _FLAGS
)
_SUBTYPE_LABELS = {re.sub(r"[^a-z]", "", s.lower()): s for s in SUBTYPES}


def normalise_grade(label: str | int | None) -> str | None:
    """'G4', 4, 'IV', 'grade IV', 'WHO 4级' -> 'G4'; anything else -> None."""
    if label is None:
        return None
    m = _GRADE_LABEL.match(unicodedata.normalize("NFKC", str(label)))
    if not m:
        return None
    value = numeral_value(m.group("num"))
    return None if value is None else f"G{value}"


def normalise_subtype(label: str | None) -> str | None:
    """'IDHwt', 'idh-wt', 'IDHmut_codel', 'IDHmut-non-codel' -> the canonical label; else None."""
    if label is None:
        return None
    key = re.sub(r"[^a-z]", "", label.lower()).replace("wildtype", "wt").replace("mutant", "mut")
    return _SUBTYPE_LABELS.get(key)


# Tasks compared by label, with the function that puts a label into canonical form.
LABEL_NORMALISERS: dict[str, Callable[[str | None], str | None]] = {
    "diagnosis": normalise_diagnosis,
    "grade": normalise_grade,
    "molecular_subtype": normalise_subtype,
}
