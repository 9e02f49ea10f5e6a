"""The review API the CLI and the web app share: list, read, edit, approve, reject, reopen one case in OUT.

A case reviewed here was run with interactive review: its run is paused at human_review on the
thread `thread_id(case_id, input fingerprint)` of OUT's checkpointer. Every change resumes that
run with a ReviewStep, so the review state lives in the checkpointer and the written case folder,
nowhere else. A change holds the case's file lock and checks the caller's revision (the number
of audit entries), so two processes cannot silently overwrite each other.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from langgraph.types import Command

from agents.context import Settings
from agents.output import FINGERPRINT_FILE, case_lock
from agents.review.checkpoint import open_checkpointer, thread_id
from agents.review.edits import InvalidEdit, stamp
from agents.review.workflow import CLOSED, reopen
from schemas.report import AuditEntry, EvidenceChainReport
from schemas.review import Approve, CaseReviewSummary, Edit, Reject, Reopen, ReviewStep

SEVERITY_ORDER = ("info", "warning", "critical")

__all__ = [
    "InvalidEdit", "ReviewClosed", "ReviewService", "UnknownCase", "VersionConflict",
]


class UnknownCase(KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown case"


class VersionConflict(Exception):
    """The caller acted on a revision that is no longer current."""


class ReviewClosed(Exception):
    """A change to an approved or rejected version (reopen it first), or to a report run without review."""


class ReviewService:
    def __init__(self, out_dir: Path, settings: Settings):
        self.out_dir = Path(out_dir)
        self.settings = settings

    # -- reading ---------------------------------------------------------------------------------

    def cases(self) -> list[CaseReviewSummary]:
        """Every reported case in OUT, decisions needed first."""
        rows = []
        for folder in sorted(p for p in self.out_dir.iterdir() if (p / "report.json").is_file()):
            report = self._written(folder.name)
            open_flags = [f for f in report.consistency_flags if f.dismissal is None]
            worst = max((f.severity for f in open_flags), key=SEVERITY_ORDER.index, default=None)
            pending = report.review.status in ("draft", "awaiting_review")
            rows.append(CaseReviewSummary(
                case_id=report.case_id, status=report.review.status, version=report.review.version,
                revision=len(report.review.audit_trail), flags=len(open_flags), most_severe=worst,
                decisions_needed=(sum(f.severity != "info" for f in open_flags) + 1) if pending else 0,
            ))
        return sorted(rows, key=lambda r: (-r.decisions_needed, r.case_id))

    def get(self, case_id: str) -> EvidenceChainReport:
        """The current report: the paused draft, or the closed version."""
        with self._graph(case_id) as (graph, config):
            if graph is None:
                return self._written(case_id)
            return self._settled(graph, config)

    def revision(self, case_id: str) -> int:
        return len(self.get(case_id).review.audit_trail)

    def audit(self, case_id: str) -> list[AuditEntry]:
        return list(self.get(case_id).review.audit_trail)

    def base(self, case_id: str) -> EvidenceChainReport:
        """The report as first written, before any review step: what the audit trail replays from."""
        with self._graph(case_id) as (graph, config):
            if graph is None:
                return self._written(case_id)
            written = [s.values["report"] for s in graph.get_state_history(config) if "outputs" in s.values]
            return written[-1]  # history is newest first

    # -- changing --------------------------------------------------------------------------------

    def edit(self, case_id: str, edits: list[Edit], *, actor: str, expected_revision: int) -> EvidenceChainReport:
        if not edits:
            raise InvalidEdit("edits: no edit given")
        return self._step(case_id, expected_revision, lambda now: ReviewStep(actor=actor, time=now, edits=edits))

    def approve(self, case_id: str, *, actor: str, expected_revision: int, comment: str | None = None):
        return self._step(case_id, expected_revision,
                          lambda now: ReviewStep(actor=actor, time=now, decision=Approve(comment=comment)))

    def reject(self, case_id: str, *, actor: str, expected_revision: int, reason: str) -> EvidenceChainReport:
        return self._step(case_id, expected_revision,
                          lambda now: ReviewStep(actor=actor, time=now, decision=Reject(reason=reason)))

    def reopen(self, case_id: str, *, actor: str, expected_revision: int, reason: str) -> EvidenceChainReport:
        """Start version n+1 of an approved or rejected report; version n stays as report.v<n>.json."""
        with case_lock(self.out_dir, case_id), self._graph(case_id) as (graph, config):
            report = self._current(graph, config, case_id, expected_revision)
            if report.review.status not in CLOSED:
                raise ReviewClosed(f"{case_id}: version {report.review.version} is {report.review.status}, not closed")
            step = ReviewStep(actor=actor, time=_now(), decision=Reopen(reason=reason))
            written = (self.out_dir / case_id / "report.json").read_bytes()
            values = graph.get_state(config).values
            update = reopen(report, written, step, values.get("closed_versions", {}))
            graph.update_state(config, update, as_node="human_review")
            graph.invoke(None, config, context=self._context(report))
            return self._settled(graph, config)

    # -- internals -------------------------------------------------------------------------------

    def _step(self, case_id: str, expected_revision: int, make_step) -> EvidenceChainReport:
        with case_lock(self.out_dir, case_id), self._graph(case_id) as (graph, config):
            report = self._current(graph, config, case_id, expected_revision)
            if report.review.status != "awaiting_review":
                raise ReviewClosed(
                    f"{case_id}: version {report.review.version} is {report.review.status}; reopen it to change it"
                )
            step = make_step(_now())
            for edit in step.edits:
                stamp(report, edit, step.actor, step.time, report.review.version)  # InvalidEdit before the run resumes
            graph.invoke(Command(resume=step.model_dump(mode="json")), config, context=self._context(report))
            return self._settled(graph, config)

    def _current(self, graph, config, case_id: str, expected_revision: int) -> EvidenceChainReport:
        if graph is None:
            raise ReviewClosed(f"{case_id}: reported without interactive review (run `evchain report --review`)")
        report = self._settled(graph, config)
        revision = len(report.review.audit_trail)
        if expected_revision != revision:
            raise VersionConflict(
                f"{case_id}: changed since you read it (your revision {expected_revision}, current revision {revision})"
            )
        return report

    def _settled(self, graph, config) -> EvidenceChainReport:
        """The report once the run is paused or done; a run cut off between steps (a killed process) is finished."""
        snapshot = graph.get_state(config)
        if snapshot.next and not snapshot.interrupts:
            graph.invoke(None, config, context=self._context(snapshot.values["report"]))
            snapshot = graph.get_state(config)
        return snapshot.values["report"]

    def _context(self, report: EvidenceChainReport) -> Settings:
        """The settings the case was run with (its provenance), paused for review, this service's database."""
        run = Settings.model_validate(report.provenance.configuration)
        return run.model_copy(update={"interactive_review": True, "review_db": self.settings.review_db})

    def _written(self, case_id: str) -> EvidenceChainReport:
        path = self.out_dir / case_id / "report.json"
        if "/" in case_id or case_id.startswith(".") or not path.is_file():
            raise UnknownCase(f"no case {case_id!r} in {self.out_dir}")
        return EvidenceChainReport.model_validate_json(path.read_text(encoding="utf-8"))

    @contextmanager
    def _graph(self, case_id: str) -> Iterator[tuple[object, dict]]:
        """The checkpointed graph and the case's thread config; (None, {}) when the case was not run for review."""
        from agents.graph import build_graph

        self._written(case_id)
        fingerprint = json.loads((self.out_dir / case_id / FINGERPRINT_FILE).read_text(encoding="utf-8"))
        config = {"configurable": {"thread_id": thread_id(case_id, fingerprint["inputs"])}}
        with open_checkpointer(self.out_dir, self.settings) as saver:
            graph = build_graph(saver)
            if not graph.get_state(config).values:
                yield None, {}
            else:
                yield graph, config


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
