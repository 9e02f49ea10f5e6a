"""verify_narrative: failing sentences replaced by their fallback or removed, flagged, counted; the demo passes."""

from __future__ import annotations

import json

import pytest

from agents.consistency.verifier import UNCITED_PHRASES, verify_narrative
from agents.narrative import build_narrative
from schemas.report import LocalisedText, NarrativeSection, Sentence
from test_consistency import consistent_high_grade
from test_narrative import _knowledge, finalise, programmes


@pytest.fixture(scope="module")
def report():
    return finalise(consistent_high_grade)


def llm(en: str, zh: str, evidence: list[str]) -> Sentence:
    return Sentence(text=LocalisedText(en=en, zh=zh), evidence=evidence, grounded=False, source="language_model")


def mechanism(*sentences: Sentence) -> list[NarrativeSection]:
    return [NarrativeSection(key="mechanism", title=LocalisedText(en="Mechanism", zh="机制"), sentences=list(sentences))]


def verify(report, sections, fallback=()):
    return verify_narrative(report, sections, list(fallback), programme_of=programmes(), genes=_knowledge().gene_universe)


GOOD = llm("EGFR is amplified (GISTIC 2), which supports G4.", "EGFR 扩增（GISTIC 2），支持WHO 4级。", ["M2"])
# Each invents one thing: a number, a direction, a flipped negation, a gene, an id, or cites nothing.
BAD = {
    "wrong number": llm("EGFR is amplified (GISTIC 3).", "EGFR 扩增（GISTIC 3）。", ["M2"]),
    "wrong direction": llm("Response to hypoxia (GO:0001666) is down-regulated.", "缺氧应答（GO:0001666）下调。", ["M3"]),
    "negation flipped": llm("No EGFR amplification was called.", "未检出 EGFR 扩增。", ["M2"]),
    "gene not cited": llm("A TP53 mutation drives the hypoxia programme.", "TP53 突变驱动缺氧程序。", ["M3"]),
    "nonexistent id": llm("The rim is enhancing, see H99.", "强化边缘，见 H99。", ["S2"]),
    "no citation": llm("The tumour is aggressive.", "肿瘤侵袭性强。", []),
    "wrong stance": llm("The necrosis read argues against G4.", "坏死判读不支持WHO 4级。", ["H3"]),
}


def test_a_true_language_model_sentence_is_kept_and_grounded(report):
    result = verify(report, mechanism(GOOD))
    (kept,) = result.sections[0].sentences
    assert kept.grounded and kept.source == "language_model"
    assert result.flags == [] and result.summary.sentences_stripped == 0
    assert result.summary.claims_checked == result.summary.claims_passed > 0


@pytest.mark.parametrize("kind", sorted(BAD))
def test_an_invented_claim_is_removed_and_flagged(report, kind):
    result = verify(report, mechanism(GOOD, BAD[kind]))
    assert [s.text.en for s in result.sections[0].sentences] == [GOOD.text.en]
    (flag,) = result.flags
    assert flag.kind == "ungrounded_claim" and flag.id == f"F{len(report.consistency_flags) + 1}"
    assert "removed" in flag.message and BAD[kind].text.en in flag.message
    assert set(flag.evidence) <= report.evidence_ids()
    (failure,) = result.failures
    assert failure.action == "removed" and failure.reason in flag.message
    assert result.summary.sentences_checked == 2 and result.summary.sentences_stripped == 1
    assert result.summary.claims_passed < result.summary.claims_checked


def test_a_failing_sentence_is_replaced_by_its_aligned_fallback(report):
    template = build_narrative(report, programme_of=programmes())
    fallback = [s for s in template if s.key == "mechanism"]
    drafted = fallback[0].model_copy(update={"sentences": [
        s if i != 1 else BAD["wrong number"] for i, s in enumerate(fallback[0].sentences)
    ]})
    result = verify(report, [drafted], fallback)
    assert [s.text.en for s in result.sections[0].sentences] == [s.text.en for s in fallback[0].sentences]
    assert all(s.grounded for s in result.sections[0].sentences)
    assert result.failures[0].action == "replaced" and "replaced by the template sentence" in result.flags[0].message


def test_flags_continue_after_the_consistency_flags_and_the_report_validates(report):
    result = verify(report, mechanism(BAD["wrong number"], BAD["no citation"]))
    assert [f.id for f in result.flags] == [f"F{len(report.consistency_flags) + n}" for n in (1, 2)]
    assert result.sections == []  # a section left with no sentence is dropped
    report.model_validate({**report.model_dump(), "narrative": [],
                           "consistency_flags": [f.model_dump() for f in (*report.consistency_flags, *result.flags)]})


def test_only_a_template_sentence_of_a_declared_phrase_may_cite_nothing(report):
    declared = Sentence(text=LocalisedText(en="No cross-modal check lowered confidence.", zh="跨模态核查未降低置信度。"),
                        evidence=[], grounded=False, phrase="uncertainty.no_flags")
    assert "uncertainty.no_flags" in UNCITED_PHRASES
    section = [NarrativeSection(key="uncertainty", title=LocalisedText(en="U", zh="不"), sentences=[declared])]
    assert verify(report, section).summary.sentences_stripped == 0
    as_model = declared.model_copy(update={"source": "language_model"})
    assert verify(report, [section[0].model_copy(update={"sentences": [as_model]})]).summary.sentences_stripped == 1


def test_against_sentence_says_what_the_evidence_reads_as():
    from test_consistency import oedema_biopsy

    report = finalise(oedema_biopsy)
    (against,) = [s for s in report.narrative[1].sentences if s.phrase == "summary.against"]
    assert against.text.en == "Grade G4: the evidence cited here reads as G2 instead." and against.evidence == ["H1"]
    assert against.text.zh == "分级（WHO 4级）：此处所引证据支持WHO 2级，而非该结论。"
    assert against.grounded


def test_demo_reports_have_no_ungrounded_template_sentence(demo_reports):
    out, results = demo_reports
    totals = {"sentences_checked": 0, "claims_checked": 0, "claims_passed": 0, "sentences_stripped": 0}
    for case_id in results:
        data = json.loads((out / case_id / "report.json").read_text(encoding="utf-8"))
        for key in totals:
            totals[key] += data["grounding"][key]
        for section in data["narrative"]:
            for sentence in section["sentences"]:
                assert sentence["grounded"], (case_id, sentence["text"]["en"])
                assert sentence["evidence"] or sentence["phrase"] in UNCITED_PHRASES, (case_id, sentence["text"]["en"])
        assert not [f for f in data["consistency_flags"] if f["kind"] == "ungrounded_claim" and "sentence" in f["message"]]
    assert totals["sentences_stripped"] == 0 and totals["claims_checked"] == totals["claims_passed"] > 1000
