"""Clinician review: the paused run, typed edits, the audit trail and its replay, versions, the review CLI.

Every test runs the real graph on a demo case with interactive review and a real SQLite
checkpointer in the output folder; the restart tests kill a real process holding the paused run.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agents.cli import main
from agents.review.audit import replay
from agents.consistency import FlagText
from agents.review.checkpoint import SQLITE_FILE, STATE_TYPES, open_checkpointer, serializer, thread_id
from agents.review.service import InvalidEdit, ReviewClosed, ReviewService, UnknownCase, VersionConflict
from agents.runner import run_case
from schemas.imaging import ImagingFeatures
from schemas.report import EvidenceChainReport, NarrativeSection, Review
from schemas.review import ConclusionEdit, FlagDismissEdit, NarrativeEdit, SamplingTargetEdit, StampedEdit

ROOT = Path(__file__).resolve().parents[1]
# DEMO-004: the pathologist read G2, the model says G4 (a grade disagreement flag); DEMO-001 has a sampling plan.
DISAGREEING, PLANNED = "DEMO-004", "DEMO-001"


@pytest.fixture
def review_settings(settings):
    return settings.model_copy(update={"interactive_review": True})


def paused(demo_cohort, out: Path, settings, case_id: str = DISAGREEING) -> ReviewService:
    result = run_case(demo_cohort / "cases" / case_id, out, settings)
    assert result.status == "ok", result.error
    assert result.headline["review"] == "awaiting_review"
    return ReviewService(out, settings)


def written(out: Path, case_id: str = DISAGREEING) -> dict:
    return json.loads((out / case_id / "report.json").read_text(encoding="utf-8"))


def grade(report: EvidenceChainReport):
    return next(c for c in report.conclusions if c.task == "grade")


def test_a_paused_run_has_written_its_draft_awaiting_review(demo_cohort, review_settings, tmp_path):
    service = paused(demo_cohort, tmp_path, review_settings)
    on_disk = written(tmp_path)
    assert on_disk["review"]["status"] == "awaiting_review"
    assert [e["action"] for e in on_disk["review"]["audit_trail"]] == ["drafted"]
    assert service.get(DISAGREEING).model_dump(mode="json") == on_disk
    [row] = service.cases()
    assert (row.case_id, row.status, row.version, row.revision) == (DISAGREEING, "awaiting_review", 1, 1)
    assert row.most_severe == "warning" and row.decisions_needed >= 2


def test_state_holds_no_arrays_and_every_type_is_allowed(demo_cohort, review_settings, tmp_path):
    paused(demo_cohort, tmp_path, review_settings)
    fingerprint = json.loads((tmp_path / DISAGREEING / ".fingerprint.json").read_text())["inputs"]
    config = {"configurable": {"thread_id": thread_id(DISAGREEING, fingerprint)}}
    with open_checkpointer(tmp_path, review_settings) as saver:
        checkpoint = saver.get_tuple(config).checkpoint
    values = checkpoint["channel_values"]
    assert "inputs" not in values and values["input_fingerprint"] == fingerprint
    size = len(serializer().dumps_typed(values)[1])
    assert size < 1_000_000, f"paused state is {size} bytes"
    # Rebuilt through the allow-list: models come back as models, not as plain dicts.
    assert isinstance(values["report"], EvidenceChainReport)
    assert isinstance(values["draft"], EvidenceChainReport)
    assert all(isinstance(s, NarrativeSection) for s in [*values["draft_narrative"], *values["fallback_narrative"]])
    # Keys this run left empty are allowed too (the allow-list is read from CaseState's annotations).
    assert {ImagingFeatures, StampedEdit, Review, FlagText} <= set(STATE_TYPES)


def test_a_label_override_is_kept_beside_the_model_value_and_flags_and_narrative_follow(
    demo_cohort, review_settings, tmp_path
):
    service = paused(demo_cohort, tmp_path, review_settings)
    before = service.get(DISAGREEING)
    grade_flags = [f for f in before.consistency_flags if "grade conclusion" in f.message]
    assert grade_flags and grade(before).label == "G4"

    after = service.edit(
        DISAGREEING, [ConclusionEdit(task="grade", field="label", value="G2", reason="pathologist's read")],
        actor="dr.li", expected_revision=service.revision(DISAGREEING),
    )
    g = grade(after)
    assert g.label == "G2" and g.probability == g.class_probabilities["G2"]
    [override] = g.overrides
    assert (override.field, override.model_value, override.value, override.reviewer) == ("label", "G4", "G2", "dr.li")
    # The disagreement between model grade and the read is gone once the clinician's grade is the read.
    assert not [f for f in after.consistency_flags if "grade conclusion" in f.message]
    narrative = " ".join(s.text.en for sec in after.narrative for s in sec.sentences)
    assert "Grade: G2" in narrative and "Grade: G4" not in narrative
    assert written(tmp_path) == after.model_dump(mode="json")
    md = (tmp_path / DISAGREEING / "report.en.md").read_text()
    html = (tmp_path / DISAGREEING / "report.html").read_text()
    assert "G2 (clinician override (model: G4))" in md
    assert "clinician override (model: G4)" in html
    assert "临床医生修改（模型：WHO 4级）" in (tmp_path / DISAGREEING / "report.zh.md").read_text()
    trail = after.review.audit_trail
    mine = [e for e in trail if e.actor == "dr.li"]
    assert [(e.field, e.before, e.after, e.reason) for e in mine] == [
        ("conclusions[grade].label", "G4", "G2", "pathologist's read")
    ]
    assert any(e.actor == "system" and (e.field or "").startswith("consistency_flags") for e in trail)


def test_dismissal_confidence_and_sentence_edits_and_invalid_edits(demo_cohort, review_settings, tmp_path):
    service = paused(demo_cohort, tmp_path, review_settings)
    report = service.get(DISAGREEING)
    flag = report.consistency_flags[0]
    revision = service.revision(DISAGREEING)
    bad = [
        (ConclusionEdit(task="survival", field="label", value="x", reason="r"), "unknown task 'survival'"),
        (ConclusionEdit(task="grade", field="label", value="G9", reason="r"), "'G9' is not one of G2, G3, G4"),
        (ConclusionEdit(task="grade", field="confidence", value="certain", reason="r"), "not one of high"),
        (FlagDismissEdit(flag_id="F99", reason="r"), "unknown flag id 'F99'"),
        (SamplingTargetEdit(unit_id="T9:nowhere", rank=1, reason="r"), "unknown unit 'T9:nowhere'"),
        (NarrativeEdit(section="diagnosis", index=0, text="t", evidence=["S99"], reason="r"), "unknown evidence ids S99"),
    ]
    for edit, message in bad:
        with pytest.raises(InvalidEdit, match=message):
            service.edit(DISAGREEING, [edit], actor="dr.li", expected_revision=revision)
    assert service.revision(DISAGREEING) == revision  # nothing was applied

    after = service.edit(DISAGREEING, [
        FlagDismissEdit(flag_id=flag.id, reason="known artefact"),
        ConclusionEdit(task="grade", field="confidence", value="moderate", reason="board consensus"),
        # a reviewer's sentence may cite a flag as well as evidence
        NarrativeEdit(section="diagnosis", index=0, text="Reviewed at the board.", evidence=[flag.id], reason="context"),
    ], actor="dr.li", expected_revision=revision)
    dismissed = next(f for f in after.consistency_flags if f.kind == flag.kind and f.evidence == flag.evidence)
    assert dismissed.dismissal.reason == "known artefact" and dismissed.dismissal.reviewer == "dr.li"
    g = grade(after)
    assert g.confidence == "moderate" and g.overrides[0].model_value == grade(report).confidence
    first = next(s for s in after.narrative if s.key == "diagnosis").sentences[0]
    assert (first.text.en, first.source, first.grounded, first.evidence) == ("Reviewed at the board.", "clinician", False, [flag.id])
    md = (tmp_path / DISAGREEING / "report.en.md").read_text()
    assert "dismissed by dr.li: known artefact" in md and "written by the reviewer" in md
    # A later edit re-runs the checks: the earlier edits stay applied.
    again = service.edit(DISAGREEING, [ConclusionEdit(task="grade", field="label", value="G3", reason="r")],
                         actor="dr.li", expected_revision=service.revision(DISAGREEING))
    assert next(s for s in again.narrative if s.key == "diagnosis").sentences[0].source == "clinician"
    assert [o.field for o in grade(again).overrides] == ["label", "confidence"]
    assert any(f.dismissal is not None for f in again.consistency_flags)


def test_a_sampling_target_moves_and_the_plan_is_ranked_again(demo_cohort, review_settings, tmp_path):
    service = paused(demo_cohort, tmp_path, review_settings, PLANNED)
    plan = service.get(PLANNED).sampling_plan
    assert len(plan) >= 2
    last = plan[-1].unit_id
    after = service.edit(PLANNED, [SamplingTargetEdit(unit_id=last, rank=1, reason="safer approach")],
                         actor="dr.li", expected_revision=service.revision(PLANNED))
    assert [t.unit_id for t in after.sampling_plan] == [last, *[t.unit_id for t in plan[:-1]]]
    assert [t.rank for t in after.sampling_plan] == list(range(1, len(plan) + 1))
    with pytest.raises(InvalidEdit, match="rank 9 is beyond"):
        service.edit(PLANNED, [SamplingTargetEdit(unit_id=last, rank=9, reason="r")], actor="dr.li",
                     expected_revision=service.revision(PLANNED))


def test_a_stale_revision_is_a_conflict_and_two_racing_edits_cannot_both_win(demo_cohort, review_settings, tmp_path):
    service = paused(demo_cohort, tmp_path, review_settings)
    revision = service.revision(DISAGREEING)
    edits = [ConclusionEdit(task="grade", field="label", value="G3", reason="r")]
    outcomes: list[str] = []

    def race() -> None:
        try:
            ReviewService(tmp_path, review_settings).edit(DISAGREEING, edits, actor="dr.li", expected_revision=revision)
            outcomes.append("ok")
        except VersionConflict as err:
            outcomes.append(str(err))

    threads = [threading.Thread(target=race) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes)[1] == "ok" and f"your revision {revision}, current revision" in sorted(outcomes)[0]
    with pytest.raises(UnknownCase):
        service.get("NOPE")


def test_the_approved_report_replays_from_its_trail_is_immutable_and_a_reopen_makes_a_new_version(
    demo_cohort, review_settings, tmp_path
):
    service = paused(demo_cohort, tmp_path, review_settings)
    service.edit(DISAGREEING, [ConclusionEdit(task="grade", field="label", value="G2", reason="read"),
                               FlagDismissEdit(flag_id="F1", reason="artefact")],
                 actor="dr.li", expected_revision=service.revision(DISAGREEING))
    approved = service.approve(DISAGREEING, actor="dr.wang", expected_revision=service.revision(DISAGREEING),
                               comment="agreed at the board")
    assert (approved.review.status, approved.review.reviewer) == ("approved", "dr.wang")
    approved_bytes = (tmp_path / DISAGREEING / "report.json").read_bytes()
    assert approved.model_dump(mode="json") == json.loads(approved_bytes)

    replayed = replay(service.base(DISAGREEING), approved.review.audit_trail)
    assert json.dumps(replayed.model_dump(mode="json"), sort_keys=True) == json.dumps(json.loads(approved_bytes), sort_keys=True)

    revision = service.revision(DISAGREEING)
    with pytest.raises(ReviewClosed, match="approved; reopen it"):
        service.edit(DISAGREEING, [FlagDismissEdit(flag_id="F2", reason="r")], actor="dr.li", expected_revision=revision)
    with pytest.raises(ReviewClosed):
        service.reject(DISAGREEING, actor="dr.li", expected_revision=revision, reason="r")
    assert (tmp_path / DISAGREEING / "report.json").read_bytes() == approved_bytes

    v2 = service.reopen(DISAGREEING, actor="dr.li", expected_revision=revision, reason="new IHC result")
    assert (v2.review.version, v2.review.status) == (2, "awaiting_review")
    assert v2.review.supersedes_sha256 == hashlib.sha256(approved_bytes).hexdigest()
    assert (tmp_path / DISAGREEING / "report.v1.json").read_bytes() == approved_bytes
    assert grade(v2).label == "G2"  # version 2 starts from version 1's content
    rejected = service.reject(DISAGREEING, actor="dr.li", expected_revision=service.revision(DISAGREEING),
                              reason="needs a new biopsy")
    assert rejected.review.status == "rejected"
    assert replay(service.base(DISAGREEING), rejected.review.audit_trail) == rejected
    assert (tmp_path / DISAGREEING / "report.v1.json").read_bytes() == approved_bytes


def test_review_cli(demo_cohort, review_settings, tmp_path, capsys):
    paused(demo_cohort, tmp_path, review_settings)
    out = ["--out", str(tmp_path)]
    assert main(["review", "list", *out]) == 0
    assert DISAGREEING in capsys.readouterr().out
    assert main(["review", "edit", DISAGREEING, *out, "--actor", "dr.li", "--conclusion", "grade",
                 "--label", "G9", "--reason", "r"]) == 2
    assert "'G9' is not one of" in capsys.readouterr().err
    assert main(["review", "edit", DISAGREEING, *out, "--actor", "dr.li", "--conclusion", "grade",
                 "--label", "G3", "--reason", "histology"]) == 0
    assert main(["review", "edit", DISAGREEING, *out, "--actor", "dr.li", "--json",
                 '{"kind": "dismiss_flag", "flag_id": "F1", "reason": "artefact"}']) == 0
    assert main(["review", "edit", DISAGREEING, *out, "--actor", "dr.li", "--expected-revision", "1",
                 "--dismiss-flag", "F2", "--reason", "r"]) == 3
    assert "your revision 1" in capsys.readouterr().err
    assert main(["review", "show", DISAGREEING, *out]) == 0
    assert "clinician override (model: G4)" in capsys.readouterr().out
    assert main(["review", "approve", DISAGREEING, *out, "--actor", "dr.li"]) == 0
    assert main(["review", "reject", DISAGREEING, *out, "--actor", "dr.li", "--reason", "late"]) == 3
    assert written(tmp_path)["review"]["status"] == "approved"


PAUSE_SCRIPT = """
import sys, time
from pathlib import Path
from agents.context import Settings
from agents.runner import run_case
case_dir, out, checkpoint, cache, review_db = sys.argv[1:6]
settings = Settings(checkpoint=Path(checkpoint), cache_dir=Path(cache), interactive_review=True,
                    review_db=review_db or None)
result = run_case(Path(case_dir), Path(out), settings)
print(result.status, result.headline.get("review"), flush=True)
time.sleep(600)
"""


def kill_while_pending(demo_cohort, settings, out: Path) -> dict:
    """Run a case to its pause in another process, SIGKILL that process, and return the written draft."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSE_SCRIPT, str(demo_cohort / "cases" / DISAGREEING), str(out),
         str(settings.checkpoint), str(settings.cache_dir), settings.review_db or ""],
        stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )
    try:
        line = proc.stdout.readline()
        assert line.split() == ["ok", "awaiting_review"], line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return written(out)


def resume_after_kill(demo_cohort, settings, out: Path) -> None:
    draft = kill_while_pending(demo_cohort, settings, out)
    service = ReviewService(out, settings)  # a new process would build the same: nothing in memory is needed
    assert service.get(DISAGREEING).model_dump(mode="json") == draft
    after = service.edit(DISAGREEING, [ConclusionEdit(task="grade", field="label", value="G2", reason="read")],
                         actor="dr.li", expected_revision=1)
    assert grade(after).label == "G2"
    approved = service.approve(DISAGREEING, actor="dr.li", expected_revision=service.revision(DISAGREEING))
    assert written(out) == approved.model_dump(mode="json")
    assert replay(service.base(DISAGREEING), approved.review.audit_trail) == approved


def test_a_killed_process_with_a_pending_review_resumes_from_sqlite(demo_cohort, review_settings, tmp_path):
    resume_after_kill(demo_cohort, review_settings, tmp_path)
    assert (tmp_path / SQLITE_FILE).is_file()


def test_a_killed_process_with_a_pending_review_resumes_from_postgres(demo_cohort, review_settings, postgres_url, tmp_path):
    settings = review_settings.model_copy(update={"review_db": postgres_url})
    resume_after_kill(demo_cohort, settings, tmp_path)
    assert not (tmp_path / SQLITE_FILE).exists()


def _postgres_bin(name: str) -> str | None:
    import glob
    import shutil

    return shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)


@pytest.fixture
def postgres_url():
    """A real PostgreSQL server on a free port, its data and socket in a temporary folder, stopped afterwards.

    As root it runs as `nobody` (PostgreSQL refuses to run as root).
    """
    import shutil
    import socket
    import tempfile

    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL is not installed (.ci/setup.d/30-postgres.sh installs Debian's postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="evchain-pg-"))
    as_user: list[str] = []
    user = os.environ.get("USER", "postgres")
    if os.geteuid() == 0:
        import pwd

        nobody = pwd.getpwnam("nobody")
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        as_user, user = ["runuser", "-u", "nobody", "--"], "nobody"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    started = False
    try:
        init = subprocess.run([*as_user, initdb, "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8"],
                              capture_output=True, text=True)
        if init.returncode != 0:
            pytest.skip(f"initdb could not run here: {init.stderr.strip()[-300:]}")
        start = subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-w", "-t", "60", "-o",
             f"-p {port} -k {folder} -c listen_addresses=''", "start"], capture_output=True, text=True,
        )
        if start.returncode != 0:
            pytest.skip(f"PostgreSQL could not start here: {(folder / 'log').read_text()[-300:]}")
        started = True
        yield f"postgresql://{user}@/postgres?host={folder}&port={port}"
    finally:
        if started:
            subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
