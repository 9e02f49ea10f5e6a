"""Consistency rules, confidence and grounding on hand-built reports with planted situations."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from agents.consistency import ConsistencyContext, check_consistency, list_rules, register_rule, run_rules
from agents.consistency.confidence import adjust_confidence, base_confidence, lowered
from agents.consistency.claims import Scope
from agents.consistency.grounding import fmt, number_is_grounded, numbers_in, values_of
from schemas.case import PathologyFindings
from schemas.common import CONFIDENCE_ORDER, SourceRef
from schemas.report import (
    Conclusion,
    EvidenceChainReport,
    HistologyEvidence,
    MechanismEvidence,
    Modalities,
    ModelInfo,
    Provenance,
    Review,
    SpatialEvidence,
    Uncertainty,
    UnusableModality,
)

CJK = re.compile(r"[\u4e00-\u9fff]")
ALL_PRESENT = ["imaging", "pathology", "genomics", "clinical"]


# ---------------------------------------------------------------- factory


def unit(eid: str, phenotype: str, ml: float, tp: str = "T0", level: str = "habitat", fraction: float = 0.25) -> SpatialEvidence:
    return SpatialEvidence(
        id=eid, unit_level=level, unit_id=f"{tp}:{phenotype}", phenotype=phenotype, timepoint=tp, volume_ml=ml,
        fraction_of_lesion=None if level == "lesion" else fraction, centroid_mm=(12.0, -30.4, 8.2),
        source=SourceRef(file=f"imaging/{tp}/lesion_mask.nii.gz", locator="labels"),
    )


def necrotic_enhancing_imaging() -> list[SpatialEvidence]:
    return [
        unit("S1", "lesion", 46.6, level="lesion"), unit("S2", "enhancing", 12.3), unit("S3", "necrotic_core", 4.1),
        unit("S4", "oedema", 30.2), unit("S5", "margin_ring", 18.0, level="margin_ring"),
    ]


def non_enhancing_imaging() -> list[SpatialEvidence]:
    return [
        unit("S1", "lesion", 35.0, level="lesion"), unit("S2", "non_enhancing_core", 20.0), unit("S3", "oedema", 15.0),
        unit("S4", "margin_ring", 12.0, level="margin_ring"),
    ]


def findings_evidence(findings: PathologyFindings, linked: str | None = None) -> list[HistologyEvidence]:
    """Like the vision_analysis node: one item per findings.json field that is set."""
    fields = [(k, v) for k, v in findings.model_dump().items() if v is not None]
    return [
        HistologyEvidence(
            id=f"H{i}", pattern=k, value=v, origin="pathologist_findings", linked_spatial_unit=linked,
            source=SourceRef(file="pathology/findings.json", locator=k),
        )
        for i, (k, v) in enumerate(fields, start=1)
    ]


def mechanism(eid: str, event: str, activity: float | None = None) -> MechanismEvidence:
    """Mechanism items as the retrieval node writes them, by event id."""
    gene = event.split(":")[1]
    table = {
        "WT:IDH": dict(kind="driver_mutation", pathway_name="IDH1/IDH2 wild-type (no mutation called)",
                       direction="neutral", driver_genes=["IDH1", "IDH2"], file="genomics/mutations.tsv"),
        "MUT:IDH1": dict(kind="driver_mutation", pathway_name="IDH1 mutation (R132H)", direction="altered",
                         driver_genes=["IDH1"], file="genomics/mutations.tsv"),
        "CNV:EGFR": dict(kind="copy_number", pathway_name="EGFR amplification", direction="altered",
                         driver_genes=["EGFR"], file="genomics/cnv.tsv"),
        "CNV:CDKN2A": dict(kind="copy_number", pathway_name="CDKN2A homozygous deletion", direction="altered",
                           driver_genes=["CDKN2A"], file="genomics/cnv.tsv"),
        "GO:0001666": dict(kind="pathway_activity", pathway_name="response to hypoxia", direction="up",
                           driver_genes=["VEGFA", "CA9"], file="genomics/expression.tsv"),
        "GO:0000278": dict(kind="pathway_activity", pathway_name="mitotic cell cycle", direction="up",
                           driver_genes=["MKI67", "TOP2A"], file="genomics/expression.tsv"),
    }[event]
    file = table.pop("file")
    return MechanismEvidence(id=eid, pathway_id=event, activity=activity, source=SourceRef(file=file, locator=f"gene={gene}"), **table)


def conclusion(task: str, probabilities: dict[str, float], supporting=(), contradicting=(), modalities=("imaging", "pathology", "genomics")) -> Conclusion:
    label = max(probabilities, key=probabilities.__getitem__)
    return Conclusion(
        task=task, label=label, probability=probabilities[label], class_probabilities=probabilities,
        confidence="low", confidence_basis="draft", modalities_used=list(modalities),
        supporting_evidence=list(supporting), contradicting_evidence=list(contradicting),
    )


def make_report(
    conclusions: list[Conclusion], spatial=(), histology=(), mechanism_items=(), present=ALL_PRESENT, missing=(), unusable=(),
) -> EvidenceChainReport:
    return EvidenceChainReport(
        case_id="planted-1", cancer_type="glioma",
        provenance=Provenance(models=[ModelInfo(name="glioma_demo", version="0.1.0")], code_version="test",
                              configuration={}, generated_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)),
        modalities=Modalities(present=list(present), missing=list(missing), unusable=list(unusable)),
        conclusions=conclusions, spatial_evidence=list(spatial), histology_evidence=list(histology),
        mechanism_evidence=list(mechanism_items),
        modality_contributions={m: round(1.0 / len(present), 4) for m in present if m != "clinical"},
        uncertainty=Uncertainty(level="low", statement="draft"), review=Review(status="draft"),
    )


G4 = {"G2": 0.04, "G3": 0.05, "G4": 0.91}
G2 = {"G2": 0.85, "G3": 0.10, "G4": 0.05}
IDH_WT = {"IDHwt": 0.88, "IDHmut-codel": 0.04, "IDHmut-non-codel": 0.08}


def consistent_high_grade() -> tuple[EvidenceChainReport, PathologyFindings]:
    findings = PathologyFindings(who_grade=4, necrosis=True, microvascular_proliferation=True, cellularity="high",
                                 ki67_percent=25, sampled_region="enhancing", histology="glioblastoma, IDH-wild-type")
    mech = [mechanism("M1", "WT:IDH"), mechanism("M2", "CNV:EGFR", 2.0), mechanism("M3", "GO:0001666", 0.31)]
    report = make_report(
        [conclusion("grade", G4, ["S2", "S3", "H1", "H2", "M2"]), conclusion("molecular_subtype", IDH_WT, ["M1", "M2"])],
        necrotic_enhancing_imaging(), findings_evidence(findings, "T0:enhancing"), mech,
    )
    return report, findings


def oedema_biopsy() -> tuple[EvidenceChainReport, PathologyFindings]:
    findings = PathologyFindings(who_grade=2, necrosis=False, microvascular_proliferation=False, sampled_region="oedema",
                                 histology="diffuse astrocytoma")
    mech = [mechanism("M1", "WT:IDH"), mechanism("M2", "CNV:EGFR", 2.0)]
    report = make_report(
        [conclusion("grade", G4, ["S2", "S3", "M2"], ["H1"]), conclusion("molecular_subtype", IDH_WT, ["M1", "M2"])],
        necrotic_enhancing_imaging(), findings_evidence(findings, "T0:oedema"), mech,
    )
    return report, findings


def genomics_discordant() -> tuple[EvidenceChainReport, PathologyFindings]:
    findings = PathologyFindings(who_grade=2, necrosis=False, microvascular_proliferation=False,
                                 sampled_region="non_enhancing_core")
    mech = [mechanism("M1", "WT:IDH"), mechanism("M2", "CNV:EGFR", 2.0), mechanism("M3", "CNV:CDKN2A", -2.0)]
    report = make_report(
        [conclusion("grade", G2, ["S2", "H1"], ["M2", "M3"]), conclusion("molecular_subtype", IDH_WT, ["M1"])],
        non_enhancing_imaging(), findings_evidence(findings, "T0:non_enhancing_core"), mech,
    )
    return report, findings


def missing_pathology() -> tuple[EvidenceChainReport, None]:
    mech = [mechanism("M1", "WT:IDH"), mechanism("M2", "CNV:EGFR", 2.0)]
    report = make_report(
        [conclusion("grade", G4, ["S2", "S3", "M2"], modalities=("imaging", "genomics")),
         conclusion("molecular_subtype", IDH_WT, ["M1"], modalities=("imaging", "genomics"))],
        necrotic_enhancing_imaging(), (), mech, present=["imaging", "genomics", "clinical"], missing=["pathology"],
    )
    return report, None


def imaging_only() -> tuple[EvidenceChainReport, None]:
    report = make_report(
        [conclusion("grade", G4, ["S2", "S3"], modalities=("imaging",))],
        necrotic_enhancing_imaging(), present=["imaging", "clinical"], missing=["pathology", "genomics"],
    )
    return report, None


def genomics_only_with_spatial_claim() -> tuple[EvidenceChainReport, None]:
    """A drafter that invented imaging evidence for a genomics-only case."""
    mech = [mechanism("M1", "WT:IDH"), mechanism("M2", "CNV:EGFR", 2.0)]
    report = make_report(
        [conclusion("grade", G4, ["M2", "S1"], modalities=("imaging", "genomics"))],
        [unit("S1", "enhancing", 10.0)], (), mech, present=["genomics", "clinical"], missing=["imaging", "pathology"],
    )
    return report, None


def check(scenario):
    report, findings = scenario()
    return check_consistency(ConsistencyContext.from_report(report, findings))


def kinds(result) -> list[tuple[str, str]]:
    return [(f.kind, f.severity) for f in result.flags]


def confidence_of(result, task: str) -> str:
    return next(c.confidence for c in result.conclusions if c.task == task)


# ---------------------------------------------------------------- planted situations


def test_consistent_high_grade_raises_no_flag_and_keeps_high_confidence():
    result = check(consistent_high_grade)
    assert result.flags == []
    assert confidence_of(result, "grade") == "high"
    assert result.uncertainty.level == "high"
    assert "No cross-modal check lowered confidence" in result.uncertainty.statement


def test_biopsy_from_oedema_is_a_critical_sampling_mismatch():
    result = check(oedema_biopsy)
    assert kinds(result) == [
        ("cross_modal_disagreement", "warning"), ("sampling_mismatch", "critical"), ("cross_modal_disagreement", "warning"),
    ]
    mismatch = result.flags[1]
    assert mismatch.id == "F2"
    assert mismatch.message.startswith("Specimen from the oedema may under-grade")
    assert "WHO grade 2" in mismatch.message and "T0:enhancing, 12.3 mL" in mismatch.message
    assert mismatch.recommended_action.startswith("Repeat biopsy of the enhancing rim (unit T0:enhancing): tissue from it")
    assert mismatch.evidence == ["S2", "H1", "H5"]  # enhancing unit, who_grade, sampled_region
    disagreement = result.flags[0]
    assert "enhancing component T0:enhancing, 12.3 mL, with necrotic core T0:necrotic_core, 4.1 mL" in disagreement.message
    # the EGFR-amplified IDH-wild-type genomics sides with imaging, so it is named in the disagreement
    assert set(disagreement.modalities) == {"imaging", "pathology", "genomics"}
    assert "genomics (IDH wild-type with EGFR amplification (GISTIC 2))" in disagreement.message
    # a grade that differs from the pathologist's always raises its own flag naming pathology
    assert "differs from the pathologist's WHO grade 2" in result.flags[2].message
    assert "pathology" in result.flags[2].modalities
    assert confidence_of(result, "grade") == "low"
    assert "F1 (warning), F2 (critical), F3 (warning)" in next(c.confidence_basis for c in result.conclusions if c.task == "grade")
    assert confidence_of(result, "molecular_subtype") == "high"


def test_confidence_order_consistent_above_discordant():
    consistent, discordant = check(consistent_high_grade), check(oedema_biopsy)
    assert CONFIDENCE_ORDER[confidence_of(consistent, "grade")] > CONFIDENCE_ORDER[confidence_of(discordant, "grade")]
    genomic = check(genomics_discordant)
    assert CONFIDENCE_ORDER[confidence_of(consistent, "grade")] > CONFIDENCE_ORDER[confidence_of(genomic, "grade")]


def test_genomics_discordant_with_low_grade_morphology():
    result = check(genomics_discordant)
    assert kinds(result) == [("cross_modal_disagreement", "warning")]
    flag = result.flags[0]
    assert flag.modalities == ["imaging", "pathology", "genomics"]
    assert "IDH wild-type with EGFR amplification (GISTIC 2)" in flag.message
    assert "CDKN2A/B homozygous deletion (GISTIC -2)" in flag.message
    assert "imaging shows no enhancing component" in flag.message
    assert "histology reads WHO grade 2 without necrosis" in flag.message
    assert "cIMPACT-NOW" in flag.recommended_action and "repeat assay" in flag.recommended_action
    assert {"M1", "M2", "M3", "S2", "S3", "H1"} <= set(flag.evidence)
    assert confidence_of(result, "grade") == "moderate"  # 0.85 is high band, one warning


def test_missing_pathology_flags_it_and_caps_grade_confidence():
    result = check(missing_pathology)
    assert kinds(result) == [("missing_modality", "info")]
    flag = result.flags[0]
    assert flag.modalities == ["pathology"]
    assert "histology is required for a WHO diagnosis" in flag.message
    assert flag.recommended_action.endswith("if clinically indicated.")
    grade = next(c for c in result.conclusions if c.task == "grade")
    assert grade.confidence == "moderate"  # 0.91 would be high
    assert "capped at moderate: pathology was not available" in grade.confidence_basis
    assert confidence_of(result, "molecular_subtype") == "high"  # pathology does not cap the subtype
    assert result.uncertainty.statement.startswith("Pathology was not available; the conclusions rest on imaging, genomics")
    assert result.uncertainty.missing_modalities == ["pathology"]


def test_imaging_only_names_every_missing_modality():
    result = check(imaging_only)
    assert kinds(result) == [("missing_modality", "info"), ("missing_modality", "info")]
    assert [f.modalities for f in result.flags] == [["pathology"], ["genomics"]]
    assert result.uncertainty.statement.startswith("Pathology and genomics were not available")
    assert confidence_of(result, "grade") == "moderate"


def test_genomics_only_report_may_make_no_spatial_claim():
    result = check(genomics_only_with_spatial_claim)
    ungrounded = [f for f in result.flags if f.kind == "ungrounded_claim"]
    assert [(f.severity, f.modalities) for f in ungrounded] == [("warning", ["imaging"]), ("critical", ["imaging"])]
    assert ungrounded[1].evidence == ["S1"]
    assert "No imaging input was available, yet the report contains imaging evidence: S1." == ungrounded[1].message
    assert confidence_of(result, "grade") == "low"


# ---------------------------------------------------------------- single rules


def ctx_of(report: EvidenceChainReport, findings: PathologyFindings | None = None, **changes) -> ConsistencyContext:
    ctx = ConsistencyContext.from_report(report, findings)
    return ConsistencyContext(**{**ctx.__dict__, **changes})


def test_histology_high_grade_without_enhancement():
    findings = PathologyFindings(who_grade=4, necrosis=True, microvascular_proliferation=False)
    report = make_report([conclusion("grade", G4)], non_enhancing_imaging(), findings_evidence(findings))
    flags = [r.flag for r in run_rules(ctx_of(report, findings), ["imaging_vs_histology"])]
    assert len(flags) == 1
    assert flags[0].message == "Histology shows necrosis and WHO grade 4, but imaging shows no enhancing component."
    assert flags[0].evidence == ["H1", "H2", "H3", "S2", "S3"]


def test_idh_mutation_contradicting_wildtype_subtype():
    subtype = conclusion("molecular_subtype", {"IDHwt": 0.72, "IDHmut-codel": 0.1, "IDHmut-non-codel": 0.18}, ["M1"])
    report = make_report([subtype], mechanism_items=[mechanism("M1", "MUT:IDH1", 0.41)])
    flags = [r.flag for r in run_rules(ctx_of(report), ["idh_vs_subtype"])]
    assert [f.message for f in flags] == [
        "Mutation calls show an IDH1 mutation, but the predicted molecular subtype is IDHwt (probability 0.72)."
    ]
    assert "R132H" in flags[0].recommended_action


def test_idh_wildtype_calls_contradicting_mutant_subtype_and_agreement():
    mutant = conclusion("molecular_subtype", {"IDHwt": 0.3, "IDHmut-codel": 0.6, "IDHmut-non-codel": 0.1})
    wild = make_report([mutant], mechanism_items=[mechanism("M1", "WT:IDH")])
    assert [r.flag.evidence for r in run_rules(ctx_of(wild), ["idh_vs_subtype"])] == [["M1"]]
    agree = make_report([mutant], mechanism_items=[mechanism("M1", "MUT:IDH1")])
    assert run_rules(ctx_of(agree), ["idh_vs_subtype"]) == []
    no_calls = make_report([mutant], mechanism_items=[mechanism("M1", "GO:0001666", 0.3)])
    assert run_rules(ctx_of(no_calls), ["idh_vs_subtype"]) == []


def test_unusable_input_message_is_the_reason_and_lowers_every_task():
    reason = "pathology/slide1.h5: features: expected 2 dimensions, got 1"
    report, findings = consistent_high_grade()
    report = report.model_copy(update={"modalities": Modalities(
        present=["imaging", "genomics", "clinical"], missing=[],
        unusable=[UnusableModality(modality="pathology", reason=reason, file="pathology/slide1.h5")],
    ), "histology_evidence": [], "conclusions": [conclusion("grade", G4, ["S2"], modalities=("imaging", "genomics"))]})
    result = check_consistency(ConsistencyContext.from_report(report, None))
    flag = next(f for f in result.flags if f.kind == "unusable_input")
    assert flag.severity == "warning" and flag.message == reason
    assert flag.recommended_action.startswith("Fix or re-export pathology/slide1.h5")
    assert confidence_of(result, "grade") == "moderate"  # high, lowered by the unusable-input warning
    assert reason in result.uncertainty.statement


def test_citations_sources_and_modalities_are_grounded():
    report, findings = consistent_high_grade()
    bad_source = report.spatial_evidence[1].model_copy(update={"source": SourceRef(file=" ")})
    grade = conclusion("grade", G4, ["S2", "S9"], modalities=("imaging", "pathology", "genomics"))
    subtype = conclusion("molecular_subtype", IDH_WT, ["M1"], modalities=("genomics", "clinical"))
    ctx = ctx_of(report, findings, spatial=(report.spatial_evidence[0], bad_source, *report.spatial_evidence[2:]),
                 conclusions=(grade, subtype),
                 modalities=Modalities(present=["imaging", "pathology", "genomics"], missing=["clinical"]))
    raised = run_rules(ctx, ["citations_resolve", "evidence_has_source", "modalities_used_present"])
    messages = [r.flag.message for r in raised]
    assert messages == [
        "The grade conclusion cites evidence that does not exist: S9.",
        "Evidence S2 does not name the input file it came from.",
        "The molecular subtype conclusion claims to rest on clinical data, which this case does not have.",
    ]
    assert raised[0].flag.evidence == []  # a flag may only cite ids that exist
    assert [r.affects for r in raised] == [("grade",), ("grade",), ("molecular_subtype",)]


def test_rules_are_registered_by_name_and_numbered_in_order():
    assert list_rules()[:9] == [
        "imaging_vs_histology", "sampling_site", "genomics_vs_morphology", "idh_vs_subtype", "grade_vs_pathology",
        "patch_vs_read", "missing_test", "missing_modality", "unusable_input",
    ]
    report, findings = oedema_biopsy()
    raised = run_rules(ConsistencyContext.from_report(report, findings), ["sampling_site", "imaging_vs_histology"])
    assert [(r.flag.id, r.rule) for r in raised] == [("F1", "sampling_site"), ("F2", "imaging_vs_histology")]
    with pytest.raises(KeyError, match="no_such_rule"):
        run_rules(ConsistencyContext.from_report(report, findings), ["no_such_rule"])
    with pytest.raises(ValueError, match="already registered"):
        register_rule("sampling_site")(lambda ctx: [])


@pytest.mark.parametrize("scenario", [consistent_high_grade, oedema_biopsy, genomics_discordant, missing_pathology, imaging_only])
def test_flag_text_in_chinese_carries_the_same_numbers(scenario):
    report, findings = scenario()
    for r in run_rules(ConsistencyContext.from_report(report, findings)):
        for text in (r.text.message, r.text.action):
            assert CJK.search(text.zh), text.zh
            # a grade label reads 'G4' in English and 'WHO 4级' in Chinese: the same number either way
            english = re.sub(r"\bG(\d)\b", r"\1", text.en)
            assert sorted(numbers_in(english)) == sorted(numbers_in(text.zh)), (text.en, text.zh)


# ---------------------------------------------------------------- confidence


@pytest.mark.parametrize("p, level", [(0.95, "high"), (0.80, "high"), (0.7999, "moderate"), (0.60, "moderate"), (0.5999, "low")])
def test_base_confidence_bands(p, level):
    assert base_confidence(p) == level


def test_lowering_stops_at_low():
    assert lowered("high", 1) == "moderate"
    assert lowered("high", 2) == "low"
    assert lowered("moderate", 5) == "low"


def test_insufficient_evidence_is_low_whatever_the_probability():
    c = conclusion("grade", {"insufficient_evidence": 0.9, "G4": 0.1})
    adjusted = adjust_confidence(c, [], [])[0]
    assert adjusted.confidence == "low" and "insufficient_evidence" in adjusted.confidence_basis


def test_confidence_is_never_high_when_the_cited_evidence_only_argues_against():
    """The seen case: a G4 at probability 1.00 whose cited evidence all points to a low grade."""
    c = conclusion("grade", {"G2": 0.0, "G3": 0.0, "G4": 1.0}, supporting=(), contradicting=("H1", "H2", "M1"))
    adjusted = adjust_confidence(c, [], [])[0]
    assert adjusted.confidence == "low"
    assert "capped at low: the cited evidence only argues against it" in adjusted.confidence_basis


def test_more_evidence_against_than_for_caps_at_moderate():
    c = conclusion("grade", G4, supporting=("S2",), contradicting=("H1", "H3"))
    assert adjust_confidence(c, [], [])[0].confidence == "moderate"


def test_a_prediction_set_of_several_labels_caps_and_one_of_every_label_abstains():
    two = conclusion("grade", G4).model_copy(update={"prediction_set": ["G3", "G4"], "prediction_set_coverage": 0.9})
    assert adjust_confidence(two, [], [])[0].confidence == "moderate"
    every = conclusion("grade", G4).model_copy(update={"prediction_set": ["G2", "G3", "G4"], "prediction_set_coverage": 0.9})
    abstained = adjust_confidence(every, [], [])[0]
    assert (abstained.label, abstained.confidence) == ("insufficient_evidence", "low")
    assert "the 90% prediction set holds every label" in abstained.confidence_basis
    assert "most probable G4" in abstained.confidence_basis


def test_split_evidence_at_a_low_probability_abstains():
    split = conclusion("grade", {"G2": 0.35, "G3": 0.25, "G4": 0.40}, supporting=("S2", "S3"), contradicting=("H1", "H3"))
    abstained = adjust_confidence(split, [], [])[0]
    assert abstained.label == "insufficient_evidence"
    assert "the cited evidence is split (2 for, 2 against)" in abstained.confidence_basis
    # the same split at a high probability is a capped conclusion, not an abstention
    sure = conclusion("grade", G4, supporting=("S2", "S3"), contradicting=("H1", "H3"))
    assert adjust_confidence(sure, [], [])[0].label == "G4"


@pytest.mark.parametrize("how", ["unusable", "ood"])
def test_never_high_when_a_modality_it_rests_on_is_unusable_or_out_of_distribution(how):
    from schemas.fusion import ModalityOOD

    report, findings = consistent_high_grade()
    ood = ()
    if how == "unusable":
        report = report.model_copy(update={"modalities": Modalities(
            present=ALL_PRESENT, missing=[], unusable=[UnusableModality(modality="genomics", reason="bad scale")])})
    else:
        ood = (ModalityOOD(modality="genomics", method="mahalanobis", score=9.0, threshold=3.0, out_of_distribution=True),)
    result = check_consistency(ConsistencyContext.from_report(report, findings, ood))
    grade = next(c for c in result.conclusions if c.task == "grade")
    assert grade.confidence != "high"
    assert "it rests on genomics, which is unusable or out of distribution" in grade.confidence_basis


def test_codeleted_subtype_is_not_high_without_1p19q_data():
    """DEMO-009: IDHmut-codel at 0.99 resting on CIC and IDH1 calls, with no 1p/19q test in the case."""
    from schemas.report import Marker

    c = conclusion("molecular_subtype", {"IDHwt": 0.005, "IDHmut-codel": 0.99, "IDHmut-non-codel": 0.005}, ("M1",))
    markers = [Marker(marker="IDH1/2 mutation", status="detected", source="mutation_call"),
               Marker(marker="1p/19q codeletion", status="predicted", source="model")]
    adjusted = adjust_confidence(c, [], [], (), markers)[0]
    assert adjusted.confidence == "moderate" and "not tested: 1p/19q codeletion" in adjusted.confidence_basis
    tested = [markers[0], Marker(marker="1p/19q codeletion", status="detected", source="copy_number")]
    assert adjust_confidence(c, [], [], (), tested)[0].confidence == "high"


def test_grade_that_differs_from_the_pathologist_always_flags_pathology():
    findings = PathologyFindings(who_grade=3, necrosis=False, microvascular_proliferation=False, sampled_region="enhancing")
    report = make_report([conclusion("grade", G4, ["S2", "S3"])], necrotic_enhancing_imaging(),
                         findings_evidence(findings, "T0:enhancing"))
    result = check_consistency(ConsistencyContext.from_report(report, findings))
    flag = next(f for f in result.flags if "differs from the pathologist's WHO grade 3" in f.message)
    assert flag.kind == "cross_modal_disagreement" and "pathology" in flag.modalities
    assert flag.recommended_action.startswith("Review the grade with the pathologist")
    assert "H1" in flag.evidence  # the who_grade read


def test_patch_pattern_contradicting_the_read_is_flagged():
    """DEMO-006: a necrosis patch against the pathologist's 'necrosis: false'."""
    findings = PathologyFindings(who_grade=3, necrosis=False)
    patch = HistologyEvidence(id="H9", slide_id="s1", bbox_level0=(0, 0, 256, 256), attention=0.3, pattern="necrosis",
                              value=0.97, origin="patch_attention", source=SourceRef(file="pathology/s1.h5", locator="features[3]"))
    report = make_report([conclusion("grade", {"G2": 0.1, "G3": 0.8, "G4": 0.1}, ["H1"])], (),
                         [*findings_evidence(findings), patch], present=["pathology", "clinical"], missing=["imaging", "genomics"])
    result = check_consistency(ConsistencyContext.from_report(report, findings))
    flag = next(f for f in result.flags if f.kind == "cross_modal_disagreement")
    assert flag.message == "Patches H9 are classed as necrosis, but the pathologist's read reports no necrosis."
    assert flag.evidence == ["H9", "H2"] and "坏死" in result.flag_texts[flag.id].message.zh


def test_missing_test_flag_names_the_test_and_what_it_would_change():
    from schemas.report import DiagnosisLayers

    layers = DiagnosisLayers(histology="h", molecular="m", integrated="Oligodendroglioma, NOS",
                             missing_tests=["1p/19q codeletion testing (FISH or CNV array)"], settled=False)
    dx = Conclusion(task="diagnosis", label="Oligodendroglioma, NOS", probability=0.99,
                    class_probabilities={"Oligodendroglioma, IDH-mutant and 1p/19q-codeleted, CNS WHO grade 2": 1.0},
                    confidence="low", confidence_basis="d", modalities_used=["pathology", "genomics"], diagnosis_layers=layers)
    result = check_consistency(ConsistencyContext.from_report(make_report([dx]), None))
    flag = next(f for f in result.flags if f.kind == "missing_test")
    assert "1p/19q codeletion testing (FISH or CNV array)" in flag.message
    assert "codeletion makes it oligodendroglioma, its absence astrocytoma" in flag.recommended_action
    assert "1p/19q 共缺失检测" in result.flag_texts[flag.id].action.zh
    assert next(c for c in result.conclusions if c.task == "diagnosis").confidence == "moderate"


@pytest.mark.parametrize("agreement, level", [(0.9, "high"), (0.3, "moderate"), (0.05, "low")])
def test_diagnosis_that_overrules_the_model_is_not_high(agreement, level):
    """Tests that leave little of the model's belief possible (e.g. no IDH call against an IDH-mutant prediction)."""
    from schemas.report import DiagnosisLayers

    gbm = "Glioblastoma, IDH-wildtype, CNS WHO grade 4"
    layers = DiagnosisLayers(histology="h", molecular="m", integrated=gbm, settled=True, model_agreement=agreement)
    dx = Conclusion(task="diagnosis", label=gbm, probability=0.95, class_probabilities={gbm: 0.95, "other": 0.05},
                    confidence="low", confidence_basis="d", modalities_used=["pathology", "genomics"],
                    supporting_evidence=["M1"], diagnosis_layers=layers)
    assert adjust_confidence(dx, [], [])[0].confidence == level


# ---------------------------------------------------------------- grounding


def test_numbers_in_reads_quantities_not_identifiers():
    text = "Enhancing component (T0:enhancing, S2): 12.3 mL, 45% of the lesion; IDH1, GO:0001666, 1p/19q, CNS5, activity -0.31."
    assert numbers_in(text) == [12.3, 45.0, -0.31]
    assert numbers_in("强化区 12.3 mL，占病灶 45%，WHO 2 级") == [12.3, 45.0, 2.0]
    assert numbers_in("centroid (12, -30, 8) mm; change +1.5 mL") == [12.0, -30.0, 8.0, 1.5]


def test_number_grounding_uses_the_written_rounding():
    assert number_is_grounded(12.3, 1, None, [12.345])
    assert number_is_grounded(45.0, 0, None, values_of(unit("S2", "enhancing", 12.3, fraction=0.449)))
    assert not number_is_grounded(12.4, 1, None, [12.345])
    assert not number_is_grounded(14.0, 0, None, [0.91])
    assert fmt(-0.001, 2) == "0.00" and fmt(0.31, 2, signed=True) == "+0.31"


def test_cited_values_cover_evidence_and_flags():
    result = check(oedema_biopsy)
    report, _ = oedema_biopsy()
    report = report.model_copy(update={"consistency_flags": result.flags})
    items = {i.id: i for i in (*report.spatial_evidence, *report.consistency_flags)}
    values = Scope(known_ids=frozenset(items), cited=(items["S2"], items["F2"])).values
    assert 12.3 in values and 2.0 in values  # S2 volume; WHO grade 2 quoted in F2's message
    assert 30.2 not in values  # S4 was not cited
