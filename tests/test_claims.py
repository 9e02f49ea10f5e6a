"""Claims read from hand-written sentences (English and Chinese), and each claim checked against its scope."""

from __future__ import annotations

import pytest

from agents.consistency.claims import Claim, Scope, check_claim, extract_claims, lexicon
from agents.consistency.verifier import DIAGNOSTIC_GENES
from test_consistency import consistent_high_grade

LEX = lexicon({*DIAGNOSTIC_GENES, "VEGFA", "CA9", "TWIST1"})


def claims(text: str, lang: str = "en") -> list[Claim]:
    return extract_claims(text, lang, LEX)


def kinds(text: str, lang: str = "en") -> list[tuple[str, str, str | None]]:
    return [(c.kind, c.entity, c.direction) for c in claims(text, lang)]


# ---------------------------------------------------------------- extraction


def test_a_mechanism_sentence_reads_pathway_direction_number_and_genes_in_both_languages():
    en = "Response to hypoxia (GO:0001666): up-regulated, activity +0.31, genes VEGFA, CA9."
    zh = "缺氧应答（GO:0001666）：上调，活性评分 +0.31，相关基因 VEGFA、CA9。"
    expected = [("pathway", "GO:0001666", None), ("direction", "GO:0001666", "up"), ("number", "", None),
                ("gene", "VEGFA", None), ("gene", "CA9", None)]
    assert kinds(en) == expected
    assert kinds(zh, "zh") == expected
    number = next(c for c in claims(en) if c.kind == "number")
    assert (number.value, number.decimals) == (0.31, 2)


def test_numbers_carry_unit_rounding_and_bound():
    read = [c for c in claims("Enhancing component: 12.3 mL, 45% of the lesion; probability > 0.99.") if c.kind == "number"]
    assert [(c.value, c.decimals, c.unit, c.bound) for c in read] == [(12.3, 1, "mL", None), (45.0, 0, "%", None), (0.99, 2, None, ">")]
    zh = [c for c in claims("强化区 12.3 mL，占病灶 45%。", "zh") if c.kind == "number"]
    assert [(c.value, c.unit) for c in zh] == [(12.3, "mL"), (45.0, "%")]


def test_identifiers_and_names_are_not_numbers():
    read = claims("IDH1/2 mutation, 1p/19q codeletion and CNS5 are cited as [S2, H10, F3] and T0:enhancing.")
    assert [c.entity for c in read if c.kind == "citation"] == ["S2", "H10", "F3"]
    assert not [c for c in read if c.kind == "number"]
    assert [c.entity for c in read if c.kind == "gene"] == ["IDH1", "IDH2"]
    assert not [c for c in claims("（《WHO 中枢神经系统肿瘤分类》第5版（2021））", "zh") if c.value == 5.0]


def test_presence_and_negation_in_both_languages():
    assert kinds("Pathologist's read: necrosis present.") == [("pattern", "necrosis", "true")]
    assert kinds("Pathologist's read: necrosis absent.") == [("pattern", "necrosis", "false")]
    assert kinds("病理判读：可见坏死。", "zh") == [("pattern", "necrosis", "true")]
    assert kinds("病理判读：未见坏死。", "zh") == [("pattern", "necrosis", "false")]
    no_both = kinds("histology reads WHO grade 2 without necrosis or microvascular proliferation")
    assert ("pattern", "necrosis", "false") in no_both and ("pattern", "microvascular_proliferation", "false") in no_both


def test_gene_events_with_negation_and_hedge():
    (egfr,) = [c for c in claims("No EGFR amplification was found.") if c.kind == "gene"]
    assert (egfr.direction, egfr.negated, egfr.hedged) == ("amplified", True, False)
    cdkn = [c for c in claims("CDKN2A/B homozygous deletion may be present (GISTIC -2).") if c.kind == "gene"]
    assert [(c.entity, c.direction, c.negated, c.hedged) for c in cdkn] == [
        ("CDKN2A", "deleted", False, True), ("CDKN2B", "deleted", False, True)]
    (zh,) = [c for c in claims("可能存在 EGFR 扩增（GISTIC 2）。", "zh") if c.kind == "gene"]
    assert (zh.entity, zh.direction, zh.hedged) == ("EGFR", "amplified", True)


def test_stances_for_and_against_a_label():
    en = kinds("Grade G4: the evidence cited here reads as G2, G3 instead.")
    assert ("vote", "G2|G3", "supports") in en and ("vote", "G4", "against") in en
    zh = kinds("分级（WHO 4级）：此处所引证据支持WHO 2级、WHO 3级，而非该结论。", "zh")
    assert ("vote", "G2|G3", "supports") in zh and ("vote", "G4", "against") in zh
    assert ("vote", "G4", "against") in kinds("Necrosis argues against G2... no: it argues against G4.")
    assert ("vote", "G4", "against") in kinds("The patches do not support G4.")
    assert ("vote", "G4", "against") in kinds("分级：此处证据不支持WHO 4级。", "zh")


# ---------------------------------------------------------------- checks


@pytest.fixture(scope="module")
def report():
    from test_narrative import finalise

    return finalise(consistent_high_grade)


def scope(report, *ids: str) -> Scope:
    items = {i.id: i for i in (*report.spatial_evidence, *report.histology_evidence, *report.mechanism_evidence,
                               *report.consistency_flags)}
    from agents.evidence.votes import evidence_votes
    from test_narrative import programmes

    args = (report.spatial_evidence, report.histology_evidence, report.mechanism_evidence, programmes())
    return Scope(known_ids=frozenset(items), cited=tuple(items[i] for i in ids if i in items),
                 votes={t: evidence_votes(t, *args) for t in ("grade", "molecular_subtype")},
                 conclusions={c.task: c for c in report.conclusions}, genes_known=LEX.genes)


def failures(report, text: str, *ids: str, lang: str = "en") -> list[str]:
    return [why for c in claims(text, lang) if (why := check_claim(c, scope(report, *ids))) is not None]


@pytest.mark.parametrize("text, ids, lang", [
    ("Enhancing component (T0:enhancing, habitat): 12.3 mL, 25% of the lesion. [S2]", ("S2",), "en"),
    ("强化区（T0:enhancing，habitat）：12.3 mL，占病灶 25%。", ("S2",), "zh"),
    ("Pathologist's read: necrosis present.", ("H3",), "en"),
    ("病理判读：可见微血管增生。", ("H4",), "zh"),
    ("EGFR amplification (CNV:EGFR): GISTIC 2.", ("M2",), "en"),
    ("IDH1/IDH2 wild-type: no IDH1 mutation called.", ("M1",), "en"),
    ("Hypoxia is up-regulated (activity +0.31).", ("M3",), "en"),
    ("缺氧应答上调。", ("M3",), "zh"),
    ("The enhancing rim and the necrosis read support G4.", ("S2", "H3"), "en"),
    ("Pathologist's read: high cellularity.", ("H5",), "en"),
])
def test_true_claims_pass(report, text, ids, lang):
    assert failures(report, text, *ids, lang=lang) == []


@pytest.mark.parametrize("text, ids, lang, why", [
    ("Enhancing component: 14.8 mL.", ("S2",), "en", "number 14.8mL is not stated"),
    ("强化区 14.8 mL。", ("S2",), "zh", "number 14.8mL is not stated"),
    ("Pathologist's read: necrosis absent.", ("H3",), "en", "contradicts H3"),
    ("病理判读：未见坏死。", ("H3",), "zh", "contradicts H3"),
    ("No EGFR amplification was called.", ("M2",), "en", "contradicts M2"),
    ("An IDH1 mutation was called.", ("M1",), "en", "contradicts M1"),
    ("Response to hypoxia (GO:0001666): down-regulated.", ("M3",), "en", "contradicts M3"),
    ("缺氧应答（GO:0001666）：下调。", ("M3",), "zh", "contradicts M3"),
    ("TP53 mutation drives the hypoxia signal.", ("M3",), "en", "TP53 is not named in the cited evidence"),
    ("The sampled region argues for nothing, yet supports G2.", ("H3",), "en", "H3 does not support G2"),
    ("The necrosis argues against G4.", ("H3",), "en", "H3 does not argue against G4"),
    ("See H99 for the rim.", ("S2",), "en", "H99 does not exist"),
    ("Grade G2 fits.", ("S2",), "en", "label G2 is neither concluded nor supported"),
])
def test_false_claims_fail_naming_the_claim(report, text, ids, lang, why):
    found = failures(report, text, *ids, lang=lang)
    assert any(why in f for f in found), found
