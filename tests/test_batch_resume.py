"""Resumable, crash-safe batches: skip up-to-date reports, redo changed ones, survive SIGKILL, same results on every engine."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agents.output import FINGERPRINT_FILE, LOCKS_DIR
from agents.runner import BATCH_SUMMARY, run_batch

REPO = Path(__file__).resolve().parents[1]
N_CASES = 4


@pytest.fixture(scope="module")
def small_cohort(demo_cohort, tmp_path_factory) -> Path:
    """Four demo cases without raw slides (those take seconds to embed), copied so tests may change them."""
    root = tmp_path_factory.mktemp("small_cohort")
    chosen = [c for c in sorted((demo_cohort / "cases").iterdir()) if not list(c.glob("pathology/*.tif"))][:N_CASES]
    for case in chosen:
        shutil.copytree(case, root / "cases" / case.name)
    return root


@pytest.fixture(scope="module")
def done_out(small_cohort, settings, tmp_path_factory) -> Path:
    """A finished batch over the small cohort, to copy and resume from."""
    out = tmp_path_factory.mktemp("done") / "out"
    assert all(r.status == "ok" for r in run_batch(small_cohort, out, settings, progress=False))
    return out


def reports(out: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted(out.glob("*/report.json"))}


def hidden_leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".") and p.name != LOCKS_DIR)


def test_rerun_skips_up_to_date_reports_and_redoes_changed_inputs(small_cohort, done_out, settings, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(done_out, out)
    before = reports(out)
    results = run_batch(small_cohort, out, settings, progress=False)
    assert all(r.reused and r.status == "ok" for r in results) and reports(out) == before
    assert all(r.headline.get("grade") for r in results), "a reused case still carries its headline"

    changed = sorted((small_cohort / "cases").iterdir())[0]
    manifest = json.loads((changed / "case.json").read_text())
    original = dict(manifest)
    manifest["clinical_notes"] = "Seen again after the first run."
    (changed / "case.json").write_text(json.dumps(manifest))
    try:
        results = {Path(r.case_dir).name: r for r in run_batch(small_cohort, out, settings, progress=False)}
    finally:
        (changed / "case.json").write_text(json.dumps(original, indent=2) + "\n")
    assert [name for name, r in results.items() if not r.reused] == [changed.name]
    assert reports(out)[changed.name] != before[changed.name]


def test_force_and_changed_settings_redo_every_case(small_cohort, done_out, settings, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(done_out, out)
    assert not any(r.reused for r in run_batch(small_cohort, out, settings, force=True, progress=False))
    other = settings.model_copy(update={"top_patches": settings.top_patches + 1})
    assert not any(r.reused for r in run_batch(small_cohort, out, other, progress=False))
    assert hidden_leftovers(out) == []


def cli_batch(cohort: Path, out: Path, checkpoint: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "agents.cli", "batch", str(cohort), "--out", str(out), "--quiet",
           "--checkpoint", str(checkpoint), *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finished_since(out: Path, start: float) -> int:
    count = 0
    for path in out.glob(f"*/{FINGERPRINT_FILE}"):
        try:
            count += path.stat().st_mtime >= start
        except FileNotFoundError:  # swapped out between listing and stat
            pass
    return count


def kill_after(proc: subprocess.Popen, out: Path, start: float, done: int, extra_s: float) -> None:
    """SIGKILL once `done` cases have finished in this run (fingerprint written), plus `extra_s` seconds."""
    deadline = time.monotonic() + 300
    while finished_since(out, start) < done and proc.poll() is None:
        assert time.monotonic() < deadline, "batch made no progress"
        time.sleep(0.05)
    time.sleep(extra_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_random_points_then_rerun_finishes_every_case_once(small_cohort, done_out, settings, tmp_path, seed):
    rng = np.random.default_rng(seed)
    replacing = seed % 2 == 1  # odd seeds kill a --force run that is replacing finished reports
    out = tmp_path / "out"
    if replacing:
        shutil.copytree(done_out, out)
    before = reports(out)
    start = time.time()
    proc = cli_batch(small_cohort, out, settings.checkpoint, *(["--force"] if replacing else []))
    kill_after(proc, out, start, done=int(rng.integers(0, N_CASES)), extra_s=float(rng.uniform(0, 0.8)))
    if replacing:
        assert sorted(reports(out)) == sorted(before), "a case vanished from OUT while its report was replaced"
    finished = {p.parent.name: p.read_bytes() for p in out.glob("*/report.json") if (p.parent / FINGERPRINT_FILE).exists()}

    rerun = cli_batch(small_cohort, out, settings.checkpoint)
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    summary = json.loads((out / BATCH_SUMMARY).read_text())
    names = [Path(c["case_dir"]).name for c in summary["cases"]]
    assert summary["complete"] and summary["pending"] == []
    assert sorted(names) == sorted(p.name for p in (small_cohort / "cases").iterdir())
    assert all(c["status"] == "ok" for c in summary["cases"])
    assert {Path(c["case_dir"]).name for c in summary["cases"] if c["reused"]} == set(finished)
    after = reports(out)
    assert {k: after[k] for k in finished} == finished, "an already finished report changed on the rerun"
    assert hidden_leftovers(out) == [] and sorted(after) == sorted(names)


def test_two_workers_give_the_same_reports_as_one(small_cohort, done_out, settings, tmp_path):
    out = tmp_path / "out"
    results = run_batch(small_cohort, out, settings, workers=2, force=True, progress=False)
    assert [r.status for r in results] == ["ok"] * N_CASES

    def decisions(root: Path) -> dict:
        return {k: json.loads(v)["conclusions"] for k, v in reports(root).items()}

    assert decisions(out) == decisions(done_out)


def worker_pids() -> list[int]:
    """Pool workers of this process (spawned through multiprocessing's spawn_main), not its resource tracker."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


def test_a_killed_worker_fails_no_case(small_cohort, settings, tmp_path):
    import threading

    out, results = tmp_path / "out", []
    runner = threading.Thread(target=lambda: results.extend(run_batch(small_cohort, out, settings, workers=2, progress=False)))
    runner.start()
    deadline = time.monotonic() + 300
    while not list(out.glob(f"*/{FINGERPRINT_FILE}")) and runner.is_alive():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    victims = worker_pids()
    if victims:  # as the OOM killer would
        os.kill(victims[0], signal.SIGKILL)
    runner.join(timeout=600)
    assert [r.status for r in results] == ["ok"] * N_CASES, [r.error for r in results]
    assert hidden_leftovers(out) == []


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (optional extra: evidencechain[ray])")
def test_ray_engine_has_the_same_summary_resume_and_errors(small_cohort, done_out, settings, tmp_path):
    cohort = tmp_path / "cohort"
    shutil.copytree(small_cohort, cohort)
    (cohort / "cases" / "BROKEN").mkdir()
    (cohort / "cases" / "BROKEN" / "case.json").write_text("[")
    out = tmp_path / "out"
    shutil.copytree(done_out, out)
    first = sorted((small_cohort / "cases").iterdir())[0].name
    shutil.rmtree(out / first)
    results = {Path(r.case_dir).name: r for r in run_batch(cohort, out, settings, engine="ray", workers=2, progress=False)}
    assert results["BROKEN"].status == "bad_input" and results["BROKEN"].error.startswith("case.json: json:")
    assert [n for n, r in results.items() if r.status == "ok" and not r.reused] == [first]
    assert json.loads((out / BATCH_SUMMARY).read_text())["complete"]
    assert json.loads(reports(out)[first])["conclusions"] == json.loads(reports(done_out)[first])["conclusions"]
