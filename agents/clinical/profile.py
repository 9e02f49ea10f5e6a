"""The adult-type diffuse glioma profile: WHO CNS5 (2021) with cIMPACT-NOW updates 3 and 5, held as data.

Everything clinical that a neuropathologist could want to check line by line lives here:
the integrated-diagnosis vocabulary, the markers a report must account for, the test that
settles each one, and the rules that turn tested markers and histology into an integrated
diagnosis, each with its citation. `agents.clinical.diagnosis` only interprets these records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CITATIONS: dict[str, str] = {
    "WHO_CNS5": "WHO Classification of Tumours, Central Nervous System Tumours, 5th ed. (IARC 2021); "
                "Louis et al., Neuro-Oncology 2021;23:1231-51",
    "CIMPACT_3": "cIMPACT-NOW update 3 (Brat et al., Acta Neuropathol 2018;136:805-10)",
    "CIMPACT_5": "cIMPACT-NOW update 5 (Brat et al., Acta Neuropathol 2020;139:603-8)",
}
WHO_CNS5: tuple[str, ...] = ("WHO_CNS5",)
CIMPACT_3: tuple[str, ...] = ("WHO_CNS5", "CIMPACT_3")
CIMPACT_5: tuple[str, ...] = ("WHO_CNS5", "CIMPACT_5")

Family = Literal["glioblastoma", "astrocytoma", "oligodendroglioma", "diffuse_astrocytic_idhwt", "diffuse_glioma"]

INSUFFICIENT = "insufficient_evidence"
GLIOBLASTOMA = "Glioblastoma, IDH-wildtype, CNS WHO grade 4"
DIFFUSE_ASTROCYTIC_IDHWT_NOS = "Diffuse astrocytic glioma, IDH-wildtype, NOS"
DIFFUSE_GLIOMA_NOS = "Diffuse glioma, NOS"
ASTROCYTOMA_NOS = "Astrocytoma, IDH-mutant, NOS"
OLIGODENDROGLIOMA_NOS = "Oligodendroglioma, NOS"


def astrocytoma(grade: int) -> str:
    return f"Astrocytoma, IDH-mutant, CNS WHO grade {grade}"


def oligodendroglioma(grade: int) -> str:
    return f"Oligodendroglioma, IDH-mutant and 1p/19q-codeleted, CNS WHO grade {grade}"


@dataclass(frozen=True)
class Candidate:
    """One specific integrated diagnosis the posterior runs over."""

    label: str
    family: Family
    grade: int | None  # None: not a graded entity (the IDH-wildtype tumour without glioblastoma criteria)


CANDIDATES: tuple[Candidate, ...] = (
    Candidate(GLIOBLASTOMA, "glioblastoma", 4),
    Candidate(DIFFUSE_ASTROCYTIC_IDHWT_NOS, "diffuse_astrocytic_idhwt", None),
    Candidate(astrocytoma(2), "astrocytoma", 2),
    Candidate(astrocytoma(3), "astrocytoma", 3),
    Candidate(astrocytoma(4), "astrocytoma", 4),
    Candidate(oligodendroglioma(2), "oligodendroglioma", 2),
    Candidate(oligodendroglioma(3), "oligodendroglioma", 3),
)
# Labels that leave part of the diagnosis open, and the candidate families each one covers.
NOS_LABELS: dict[str, tuple[Family, ...]] = {
    DIFFUSE_GLIOMA_NOS: ("glioblastoma", "diffuse_astrocytic_idhwt", "astrocytoma", "oligodendroglioma"),
    ASTROCYTOMA_NOS: ("astrocytoma",),
    OLIGODENDROGLIOMA_NOS: ("oligodendroglioma",),
}
# How the fusion model's (molecular subtype, grade) labels map onto candidates: the model's
# joint belief before the tested markers and the pathologist's read constrain it.
MODEL_CANDIDATE: dict[tuple[str, str], str] = {
    ("IDHwt", "G4"): GLIOBLASTOMA,
    ("IDHwt", "G3"): DIFFUSE_ASTROCYTIC_IDHWT_NOS,
    ("IDHwt", "G2"): DIFFUSE_ASTROCYTIC_IDHWT_NOS,
    ("IDHmut-non-codel", "G2"): astrocytoma(2),
    ("IDHmut-non-codel", "G3"): astrocytoma(3),
    ("IDHmut-non-codel", "G4"): astrocytoma(4),
    ("IDHmut-codel", "G2"): oligodendroglioma(2),
    ("IDHmut-codel", "G3"): oligodendroglioma(3),
    ("IDHmut-codel", "G4"): oligodendroglioma(3),  # oligodendroglioma stops at CNS WHO grade 3
}


@dataclass(frozen=True)
class MarkerSpec:
    """A marker the report must account for, and the test that settles it."""

    key: str
    name: str
    test: str
    required: bool  # needed for some integrated diagnosis (not merely prognostic or predictive)


MARKERS: tuple[MarkerSpec, ...] = (
    MarkerSpec("IDH", "IDH1/2 mutation", "IDH1/IDH2 sequencing", True),
    MarkerSpec("IDH1_R132H_IHC", "IDH1 R132H (immunohistochemistry)", "IDH1 R132H immunohistochemistry", False),
    MarkerSpec("1p19q", "1p/19q codeletion", "1p/19q codeletion testing (FISH or CNV array)", True),
    MarkerSpec("CDKN2AB", "CDKN2A/B homozygous deletion", "CDKN2A/B deletion testing (CNV array or FISH)", True),
    MarkerSpec("TERT", "TERT promoter mutation", "TERT promoter sequencing", True),
    MarkerSpec("EGFR", "EGFR amplification", "EGFR amplification testing (CNV array or FISH)", True),
    MarkerSpec("7+10-", "chromosome 7 gain / chromosome 10 loss (+7/-10)", "chromosome 7/10 copy-number testing (CNV array)", True),
    MarkerSpec("ATRX", "ATRX loss or mutation", "ATRX immunohistochemistry or sequencing", False),
    MarkerSpec("TP53", "TP53 mutation", "TP53 sequencing", False),
    MarkerSpec("MGMT", "MGMT promoter methylation", "MGMT promoter methylation testing (methylation-specific PCR or pyrosequencing)", False),
    MarkerSpec("H3K27M", "H3 K27M", "H3 K27M immunohistochemistry or sequencing", False),
)
MARKER_SPECS: dict[str, MarkerSpec] = {m.key: m for m in MARKERS}
HISTOLOGY_TEST = "histological review and grading of tumour tissue"

# Genes on each chromosome arm whose GISTIC calls, together, can show an arm-level change.
# A focal EGFR amplicon alone is not a chromosome 7 gain, hence genes on both arms.
ARM_GENES: dict[str, tuple[str, ...]] = {
    "1p": ("CHD5", "CAMTA1", "KIF1B", "ARID1A", "JUN", "FUBP1", "NRAS"),
    "19q": ("CIC", "AKT2", "ERCC1", "ERCC2", "BAX", "POLD1"),
    "7p": ("EGFR", "SEC61G", "LANCL2", "VSTM2A", "VOPP1", "IL6"),
    "7q": ("MET", "CDK6", "BRAF", "SMO"),
    "10p": ("GATA3", "MLLT10"),
    "10q": ("PTEN", "MGMT", "FGFR2"),
}
GISTIC_AMPLIFICATION = 2
GISTIC_GAIN = 1
GISTIC_LOSS = -1
GISTIC_HOMOZYGOUS_DELETION = -2
TERT_PROMOTER_VARIANTS = ("C228T", "C250T", "-124", "-146", "promoter")
H3_GENES = ("H3F3A", "H3-3A", "HIST1H3B", "H3C2")
H3_K27M_VARIANTS = ("K27M", "K28M")


@dataclass(frozen=True)
class Rule:
    """One diagnostic rule: when every `all_of` fact holds and (if given) any `any_of` fact holds,
    the tumour is `family` at `grade` (None: the rule settles the family, not the grade).

    Facts are "<marker key>:<status>" or "histology:<feature>" (necrosis, microvascular_proliferation,
    who_grade_2, who_grade_3, who_grade_4). `for_family` limits a grade rule to a family already found.
    """

    id: str
    all_of: tuple[str, ...]
    any_of: tuple[str, ...]
    family: Family
    grade: int | None
    statement: str
    citations: tuple[str, ...]  # keys of CITATIONS
    for_family: Family | None = None

    def citation(self) -> str:
        return "; ".join(CITATIONS[c] for c in self.citations)


# Family rules: the first that holds names the tumour family.
FAMILY_RULES: tuple[Rule, ...] = (
    Rule("oligodendroglioma", ("IDH:detected", "1p19q:detected"), (), "oligodendroglioma", None,
         "IDH mutation with 1p/19q whole-arm codeletion is oligodendroglioma.", WHO_CNS5),
    Rule("astrocytoma", ("IDH:detected",), ("1p19q:not_detected", "ATRX:detected"), "astrocytoma", None,
         "IDH mutation with ATRX loss or without 1p/19q codeletion is astrocytoma, IDH-mutant.", WHO_CNS5),
    Rule("glioblastoma_molecular", ("IDH:not_detected",), ("TERT:detected", "EGFR:detected", "7+10-:detected"),
         "glioblastoma", 4,
         "An IDH-wildtype diffuse astrocytic glioma with TERT promoter mutation, EGFR amplification or +7/-10 "
         "is glioblastoma, CNS WHO grade 4, whatever its histological grade.", CIMPACT_3),
    Rule("glioblastoma_histological", ("IDH:not_detected",),
         ("histology:necrosis", "histology:microvascular_proliferation"), "glioblastoma", 4,
         "An IDH-wildtype diffuse astrocytic glioma with necrosis or microvascular proliferation is "
         "glioblastoma, CNS WHO grade 4.", WHO_CNS5),
    Rule("diffuse_astrocytic_idhwt", ("IDH:not_detected",), (), "diffuse_astrocytic_idhwt", None,
         "An IDH-wildtype diffuse astrocytic glioma without a glioblastoma criterion is not classifiable "
         "further here (NOS).", WHO_CNS5),
)
# Grade rules: the first that holds for the family sets the CNS WHO grade.
GRADE_RULES: tuple[Rule, ...] = (
    Rule("astrocytoma_cdkn2ab", ("CDKN2AB:detected",), (), "astrocytoma", 4,
         "CDKN2A/B homozygous deletion makes an IDH-mutant astrocytoma CNS WHO grade 4, whatever its histology.",
         CIMPACT_5, for_family="astrocytoma"),
    Rule("astrocytoma_grade4_histology", (),
         ("histology:necrosis", "histology:microvascular_proliferation", "histology:who_grade_4"), "astrocytoma", 4,
         "Necrosis or microvascular proliferation makes an IDH-mutant astrocytoma CNS WHO grade 4.",
         CIMPACT_5, for_family="astrocytoma"),
    Rule("astrocytoma_grade3", ("histology:who_grade_3",), (), "astrocytoma", 3,
         "Anaplasia with mitotic activity, without necrosis or microvascular proliferation, is grade 3.",
         WHO_CNS5, for_family="astrocytoma"),
    Rule("astrocytoma_grade2", ("histology:who_grade_2",), (), "astrocytoma", 2,
         "A well-differentiated diffusely infiltrating IDH-mutant astrocytoma is grade 2.",
         WHO_CNS5, for_family="astrocytoma"),
    Rule("oligodendroglioma_grade3", (),
         ("histology:necrosis", "histology:microvascular_proliferation", "histology:who_grade_3",
          "histology:who_grade_4"), "oligodendroglioma", 3,
         "Brisk mitoses, microvascular proliferation or necrosis make an oligodendroglioma grade 3 "
         "(its highest grade).", WHO_CNS5, for_family="oligodendroglioma"),
    Rule("oligodendroglioma_grade2", ("histology:who_grade_2",), (), "oligodendroglioma", 2,
         "An oligodendroglioma without anaplastic features is grade 2.", WHO_CNS5, for_family="oligodendroglioma"),
)

# The model's molecular-subtype label each family corresponds to (for citing evidence).
FAMILY_SUBTYPE: dict[Family, str | None] = {
    "glioblastoma": "IDHwt",
    "diffuse_astrocytic_idhwt": "IDHwt",
    "astrocytoma": "IDHmut-non-codel",
    "oligodendroglioma": "IDHmut-codel",
    "diffuse_glioma": None,
}


def family_and_grade(label: str) -> tuple[Family | None, int | None]:
    """Family and CNS WHO grade a label states (None for insufficient_evidence)."""
    candidate = next((c for c in CANDIDATES if c.label == label), None)
    if candidate is not None:
        return candidate.family, candidate.grade
    families = NOS_LABELS.get(label)
    if families is None:
        return None, None
    return (families[0] if len(families) == 1 else "diffuse_glioma"), None

RULES_BY_ID: dict[str, Rule] = {r.id: r for r in (*FAMILY_RULES, *GRADE_RULES)}
# Rules whose grade comes from molecular criteria, so no re-biopsy can change it.
MOLECULAR_GRADE_RULES = ("glioblastoma_molecular", "astrocytoma_cdkn2ab")
