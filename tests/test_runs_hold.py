"""Runs that hold: one test per finding of issue 10, through the real loaders, graph and batch."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from forked import in_child, open_copy

from agents.cli import main
from agents.output import LOCKS_DIR, case_lock, clean_leftovers, write_case_folder, write_json
from agents.runner import BATCH_SUMMARY, LOGS_DIR, check_out_dir, run_batch
from agents.summary import exit_code
from schemas.errors import InputError
from toolkit.atomic import _umask

CASE = "DEMO-004"  # every modality, patch features as .h5
SLIDE_CASE = "DEMO-006"  # a raw whole-slide TIFF
MARKER = "root:x:0:0:root:/root:/bin/bash"


@pytest.fixture()
def cohort(demo_cohort, tmp_path) -> Path:
    root = tmp_path / "cohort"
    shutil.copytree(demo_cohort / "cases" / CASE, root / "cases" / CASE)
    return root


def batch(cohort: Path, out: Path, settings, **options) -> dict[str, object]:
    return {Path(r.case_dir).name: r for r in run_batch(cohort, out, settings, progress=False, **options)}


def summary(out: Path) -> dict:
    return json.loads((out / BATCH_SUMMARY).read_text())


def report_texts(out: Path, case_id: str) -> str:
    return "".join(p.read_text() for p in sorted((out / case_id).glob("report*")))


def test_deep_endless_and_fifo_manifests_fail_only_their_own_case(cohort, settings, tmp_path):
    cases = cohort / "cases"
    (cases / "DEEP").mkdir()
    (cases / "DEEP" / "case.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    (cases / "ZERO").mkdir()
    (cases / "ZERO" / "case.json").symlink_to("/dev/zero")
    (cases / "FIFO").mkdir()
    os.mkfifo(cases / "FIFO" / "case.json")
    out = tmp_path / "out"
    results = batch(cohort, out, settings)
    assert results[CASE].status == "ok"
    assert results["DEEP"].error == "case.json: json: nested deeper than 32 levels"
    assert results["ZERO"].error == "case.json: path: leads outside the case folder (symlink?); refused"
    assert results["FIFO"].error == "case.json: file: not a regular file (device, FIFO or socket); refused"
    written = summary(out)
    assert written["complete"] and written["n_cases"] == 4 and written["n_failed"] == 3


def test_links_out_of_the_case_are_refused_and_never_quoted(cohort, demo_cohort, settings, tmp_path):
    case = cohort / "cases" / CASE
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "passwd").write_text(f"{MARKER}\n")
    (outside / "findings.json").write_text(json.dumps({"who_grade": 4, "necrosis": True}))
    shutil.copytree(demo_cohort / "cases" / SLIDE_CASE / "imaging" / "T0", outside / "T0")
    for rel, target in [("genomics/expression.tsv", "passwd"), ("pathology/findings.json", "findings.json")]:
        (case / rel).unlink()
        (case / rel).symlink_to(outside / target)
    shutil.rmtree(case / "imaging" / "T0")
    (case / "imaging" / "T0").symlink_to(outside / "T0", target_is_directory=True)
    out = tmp_path / "out"
    assert batch(cohort, out, settings)[CASE].status == "ok"
    report = json.loads((out / CASE / "report.json").read_text())
    refused = {u["file"] for u in report["modalities"]["unusable"] if "leads outside the case folder" in u["reason"]}
    assert refused == {"genomics/expression.tsv", "pathology/findings.json", "imaging/T0"}
    assert MARKER not in report_texts(out, CASE)
    assert not [h for h in report["histology_evidence"] if h["origin"] == "pathologist_findings"]
    assert report["spatial_evidence"] == []


def test_truncated_slide_is_unusable_naming_the_file(demo_cohort, settings, tmp_path):
    root = tmp_path / "cohort" / "cases"
    shutil.copytree(demo_cohort / "cases" / SLIDE_CASE, root / SLIDE_CASE)
    (slide,) = (root / SLIDE_CASE / "pathology").glob("*.tif")
    slide.write_bytes(slide.read_bytes()[: slide.stat().st_size // 10])
    out = tmp_path / "out"
    assert batch(tmp_path / "cohort", out, settings)[SLIDE_CASE].status == "ok"
    reasons = [u["reason"] for u in json.loads((out / SLIDE_CASE / "report.json").read_text())["modalities"]["unusable"]]
    assert any(r.startswith(f"pathology/{slide.name}: slide: cannot read slide") for r in reasons), reasons


def _unusable_of(case_dir: Path) -> list[tuple[str, str]]:
    from fusion_models.encoders import create_encoder
    from fusion_models.inputs import load_case_inputs

    inputs = load_case_inputs(case_dir, encoder=create_encoder("hed_texture"))
    return sorted((u.modality, u.reason) for u in inputs.unusable)


@pytest.mark.parametrize(
    "locked, expected",
    [
        (
            ["genomics/expression.tsv", "genomics/meta.json"],
            [
                ("genomics", "genomics/expression.tsv: value: scale unknown because genomics/meta.json is unusable"),
                ("genomics", "genomics/meta.json: file: cannot read: Permission denied"),
            ],
        ),
        (
            ["pathology", "genomics", "imaging/T0"],
            [
                ("genomics", "genomics: folder: cannot list: Permission denied"),
                ("imaging", "imaging/T0: folder: cannot list: Permission denied"),
                ("pathology", "pathology/findings.json: path: cannot check: Permission denied"),
                ("pathology", "pathology: folder: cannot list: Permission denied"),
            ],
        ),
    ],
    ids=["files", "folders"],
)
def test_unreadable_files_and_folders_are_unusable_not_crashes(demo_cohort, locked, expected):
    root = open_copy(demo_cohort / "cases" / CASE)
    # Lazy imports (codecs, submodules) happen here first: the unprivileged child cannot read the root-owned venv.
    _unusable_of(root / CASE)
    try:
        for rel in locked:
            (root / CASE / rel).chmod(0)
        assert in_child(_unusable_of, root / CASE, unprivileged=True) == expected
    finally:
        for rel in locked:
            (root / CASE / rel).chmod(0o755)
        shutil.rmtree(root)


def test_second_folder_with_a_used_case_id_is_an_error_listed_in_the_summary(cohort, settings, tmp_path):
    shutil.copytree(cohort / "cases" / CASE, cohort / "cases" / "ZZ-COPY")
    out = tmp_path / "out"
    results = batch(cohort, out, settings)
    assert results[CASE].status == "ok"
    assert results["ZZ-COPY"].status == "bad_input"
    assert results["ZZ-COPY"].error.startswith(f"case.json: case_id: '{CASE}' is also the id of ")
    assert exit_code(list(results.values())) == 2
    assert {Path(c["case_dir"]).name for c in summary(out)["cases"]} == {CASE, "ZZ-COPY"}


def test_out_that_is_a_file_fails_before_any_case(cohort, settings, tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("not a folder")
    code = main(["batch", str(cohort), "--out", str(out), "--quiet", "--checkpoint", str(settings.checkpoint)])
    err = capsys.readouterr().err
    assert code == 2 and err == f"evchain: error: {out}: --out: exists and is not a folder\n"


def test_out_not_writable_fails_before_any_case(cohort):
    root = open_copy()
    try:
        (root / "out").mkdir(mode=0o555)
        (root / "out").chmod(0o555)
        with pytest.raises(InputError, match=r"out: --out: not writable: Permission denied"):
            in_child(check_out_dir, root / "out", cohort, [], unprivileged=True)
    finally:
        shutil.rmtree(root)


def test_out_inside_a_flat_cohort_is_not_read_as_a_case(cohort, settings, tmp_path):
    flat = tmp_path / "flat"
    shutil.copytree(cohort / "cases" / CASE, flat / CASE)
    out = flat / "reports"
    assert list(batch(flat, out, settings)) == [CASE]
    again = batch(flat, out, settings)
    assert list(again) == [CASE] and again[CASE].reused


@pytest.mark.parametrize("where", ["cohort", "case"])
def test_out_that_is_the_cohort_or_inside_a_case_is_refused(cohort, settings, where):
    out = cohort / "cases" if where == "cohort" else cohort / "cases" / CASE / "out"
    with pytest.raises(InputError, match="--out: is an input folder or inside one"):
        run_batch(cohort / "cases", out, settings, progress=False)


def test_internal_error_is_one_line_with_the_traceback_in_a_log(cohort, settings, tmp_path, capsys):
    out = tmp_path / "out"
    # A real fault: the case's lock file cannot be opened because a folder stands in its place.
    (out / LOCKS_DIR / f"{CASE}.lock").mkdir(parents=True)
    code = main(["batch", str(cohort), "--out", str(out), "--quiet", "--checkpoint", str(settings.checkpoint)])
    captured = capsys.readouterr()
    log = out / LOGS_DIR / f"{CASE}.log"
    assert code == 1
    assert captured.err == f"evchain: {CASE}: internal error: IsADirectoryError: [Errno 21] Is a directory: " \
        f"'{out / LOCKS_DIR / CASE}.lock' (traceback: {log})\n"
    assert "Traceback (most recent call last)" in log.read_text() and "Traceback" not in captured.out
    assert summary(out)["cases"][0]["log"] == str(log)


def test_outputs_follow_the_umask(tmp_path):
    def write(out: Path) -> dict[str, int]:
        _umask.cache_clear()
        write_case_folder(out, "C1", {"report.json": "{}\n"})
        write_json(out / BATCH_SUMMARY, {})
        return {p: os.stat(out / p).st_mode & 0o777 for p in ("C1", "C1/report.json", BATCH_SUMMARY)}

    assert in_child(write, tmp_path / "out", umask=0o027) == {"C1": 0o750, "C1/report.json": 0o640, BATCH_SUMMARY: 0o640}


def test_concurrent_writers_of_one_case_never_collide(tmp_path):
    out, errors = tmp_path / "out", []

    def writer(tag: str) -> None:
        try:
            for i in range(15):
                with case_lock(out, "C1"):
                    write_case_folder(out, "C1", {"a.txt": f"{tag}{i}", "b.txt": f"{tag}{i}"})
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in "xyz"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert (out / "C1" / "a.txt").read_text() == (out / "C1" / "b.txt").read_text()
    assert sorted(p.name for p in out.iterdir()) == [LOCKS_DIR, "C1"]


def test_leftovers_of_a_killed_run_are_cleaned_and_a_half_replaced_report_restored(tmp_path):
    out = tmp_path / "out"
    (out / ".C1.dead0001.tmp").mkdir(parents=True)
    (out / ".C1.dead0002.old").mkdir()
    (out / ".C1.dead0002.old" / "report.json").write_text("previous")
    (out / ".C2.dead0003.tmp").mkdir()
    (out / "C2").mkdir()
    clean_leftovers(out, "C1")
    clean_leftovers(out, "C2")
    assert (out / "C1" / "report.json").read_text() == "previous"
    assert sorted(p.name for p in out.iterdir()) == ["C1", "C2"]
