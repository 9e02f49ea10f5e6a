"""Bad input: one-line errors naming file and field, unusable modalities flagged, batches that lose nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from agents.cli import main
from agents.output import LOCKS_DIR
from agents.runner import BATCH_SUMMARY

CASE = "DEMO-004"  # a case with every modality


@pytest.fixture()
def cohort(demo_cohort, tmp_path) -> Path:
    """A private copy of one complete demo case, to break in each test."""
    root = tmp_path / "cohort"
    shutil.copytree(demo_cohort / "cases" / CASE, root / "cases" / CASE)
    return root


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def report_json(out: Path, case_id: str = CASE) -> dict:
    return json.loads((out / case_id / "report.json").read_text())


def test_malformed_case_json_is_one_line_naming_file_and_field(cohort, settings, tmp_path, capsys):
    case_dir = cohort / "cases" / CASE
    (case_dir / "case.json").write_text('{"case_id": "DEMO-004", "cancer_type": ')
    code, err = run_cli(["report", str(case_dir), "--out", str(tmp_path / "out"), "--checkpoint", str(settings.checkpoint)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "case.json" in err
    assert not (tmp_path / "out" / CASE).exists()


def test_unsafe_case_id_is_rejected_before_anything_is_written(cohort, settings, tmp_path, capsys):
    case_dir = cohort / "cases" / CASE
    manifest = json.loads((case_dir / "case.json").read_text())
    manifest["case_id"] = "../../etc/evil"
    (case_dir / "case.json").write_text(json.dumps(manifest))
    code, err = run_cli(["report", str(case_dir), "--out", str(tmp_path / "out"), "--checkpoint", str(settings.checkpoint)], capsys)
    assert code == 2 and "case.json: case_id:" in err
    assert not (tmp_path / "etc").exists() and not any((tmp_path / "out").glob("**/report.json"))


def test_missing_checkpoint_is_a_clear_error(cohort, tmp_path, capsys):
    code, err = run_cli(["report", str(cohort / "cases" / CASE), "--out", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "none.pt")], capsys)
    assert code == 2 and "none.pt: checkpoint:" in err


def test_truncated_nifti_marks_imaging_unusable_with_a_flag(cohort, settings, tmp_path, capsys):
    mask = cohort / "cases" / CASE / "imaging" / "T0" / "lesion_mask.nii.gz"
    mask.write_bytes(mask.read_bytes()[:200])
    code, _ = run_cli(["report", str(cohort / "cases" / CASE), "--out", str(tmp_path / "out"), "--checkpoint", str(settings.checkpoint)], capsys)
    assert code == 0
    report = report_json(tmp_path / "out")
    unusable = report["modalities"]["unusable"]
    assert any(u["modality"] == "imaging" and "lesion_mask.nii.gz" in u["reason"] for u in unusable)
    assert "unusable_input" in {f["kind"] for f in report["consistency_flags"]}
    assert report["spatial_evidence"] == []


def test_h5_with_another_feature_size_marks_pathology_features_unusable(cohort, settings, tmp_path, capsys):
    (h5_path,) = (cohort / "cases" / CASE / "pathology").glob("*.h5")
    with h5py.File(h5_path, "r") as f:
        coords, attrs = f["coords"][:], dict(f.attrs)
    h5_path.unlink()
    with h5py.File(h5_path, "w") as f:
        f["features"] = np.zeros((len(coords), 768), dtype=np.float32)
        f["coords"] = coords
        f.attrs.update(attrs)
    code, _ = run_cli(["report", str(cohort / "cases" / CASE), "--out", str(tmp_path / "out"), "--checkpoint", str(settings.checkpoint)], capsys)
    assert code == 0
    report = report_json(tmp_path / "out")
    reasons = [u["reason"] for u in report["modalities"]["unusable"] if u["modality"] == "pathology"]
    assert reasons and "features" in reasons[0] and "768" in reasons[0]
    assert not [h for h in report["histology_evidence"] if h["origin"] == "patch_attention"]
    # The pathologist's structured read still counts as histology evidence.
    assert [h for h in report["histology_evidence"] if h["origin"] == "pathologist_findings"]


def test_tsv_with_unknown_genes_marks_genomics_unusable(cohort, settings, tmp_path, capsys):
    tsv = cohort / "cases" / CASE / "genomics" / "expression.tsv"
    rows = tsv.read_text().splitlines()
    tsv.write_text("\n".join([rows[0]] + [f"NOTAGENE{i}\t{line.split(chr(9))[1]}" for i, line in enumerate(rows[1:])]) + "\n")
    code, _ = run_cli(["report", str(cohort / "cases" / CASE), "--out", str(tmp_path / "out"), "--checkpoint", str(settings.checkpoint)], capsys)
    assert code == 0
    report = report_json(tmp_path / "out")
    reasons = [u["reason"] for u in report["modalities"]["unusable"] if u["modality"] == "genomics"]
    assert reasons and reasons[0].startswith("genomics/expression.tsv: gene:")
    assert not [m for m in report["mechanism_evidence"] if m["kind"] == "pathway_activity"]


def test_batch_with_bad_cases_finishes_the_others_and_lists_every_case(demo_cohort, settings, tmp_path, capsys):
    root = tmp_path / "cohort" / "cases"
    shutil.copytree(demo_cohort / "cases" / CASE, root / CASE)
    shutil.copytree(demo_cohort / "cases" / CASE, root / "BROKEN-JSON")
    (root / "BROKEN-JSON" / "case.json").write_text("not json")
    (root / "NO-MANIFEST").mkdir()
    out = tmp_path / "out"
    code, _ = run_cli(["batch", str(tmp_path / "cohort"), "--out", str(out), "--quiet", "--checkpoint", str(settings.checkpoint)], capsys)
    assert code == 2
    summary = json.loads((out / BATCH_SUMMARY).read_text())
    status = {c["case_id"]: (c["status"], c["error"]) for c in summary["cases"]}
    assert status[CASE] == ("ok", None)
    assert status["BROKEN-JSON"][0] == "bad_input" and status["BROKEN-JSON"][1].startswith("case.json:")
    assert status["NO-MANIFEST"][0] == "bad_input" and "case.json" in status["NO-MANIFEST"][1]
    # Nothing half-written: only the good case's folder, the summary and the per-case locks, no staging leftovers.
    assert sorted(p.name for p in out.iterdir()) == [LOCKS_DIR, CASE, BATCH_SUMMARY]


def test_evchain_entry_point_runs_as_a_process(cohort, settings, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "agents.cli", "report", str(cohort / "cases" / CASE), "--out", str(tmp_path / "out"),
         "--checkpoint", str(settings.checkpoint), "--lang", "zh"],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / CASE / "report.html").read_text().count("<html") == 1
