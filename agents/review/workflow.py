"""The review steps as pure functions of the graph state: what human_review, write_report and the
service call to apply a reviewer's step, to record it, and to start a new version.

Order of the graph around a review (agents/graph.py)::

    consistency_check -> write_report -> human_review --edit--> consistency_check
                              ^                |
                              +---decision-----+   (approve/reject: written, then END)

The draft is written before the run pauses, so the clinician reads the report files (and
pictures) of exactly the state they are asked to review.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any

from agents.context import Settings
from agents.review.audit import content_changes, get_path
from agents.review.edits import after_narrative, clinician_sentence, field_path, move_target, stamp
from schemas.report import AuditEntry, EvidenceChainReport, FlagDismissal, Review
from schemas.review import (
    Approve,
    ConclusionEdit,
    FlagDismissEdit,
    NarrativeEdit,
    Reopen,
    ReviewStep,
    SamplingTargetEdit,
    StampedEdit,
)

CLOSED = ("approved", "rejected")


def version_file(version: int) -> str:
    return f"report.v{version}.json"


def for_write(report: EvidenceChainReport, state: Mapping[str, Any], settings: Settings) -> EvidenceChainReport:
    """write_report's one call before rendering: the reviewer's sentences, the review block, and an
    audit entry for every field that followed the reviewer's last step (flags, narrative, ...)."""
    report = after_narrative(report, state.get("edits", []))
    review: Review | None = state.get("review")
    if review is None:
        entry = AuditEntry(
            time=dt.datetime.now(dt.timezone.utc),
            actor="system",
            action="drafted",
            detail=f"drafted by '{settings.drafting_backend}'; awaiting clinician review",
        )
        status = "awaiting_review" if settings.interactive_review else "draft"
        return report.model_copy(update={"review": Review(status=status, audit_trail=[*report.review.audit_trail, entry])})
    shown: EvidenceChainReport = state["shown"]
    step = review.audit_trail[len(shown.review.audit_trail):]
    new = report.model_dump(mode="json")
    covered = {e.field: e.after for e in step if e.field is not None}
    followed = [
        AuditEntry(time=step[-1].time, actor="system", action="edited", detail=f"follows the step of {step[-1].actor}",
                   field=path, before=before, after=after, version=review.version)
        for path, before, after in content_changes(shown, report)
        if not _covered(path, covered, new)
    ] if step else []
    return report.model_copy(update={"review": review.model_copy(update={"audit_trail": [*review.audit_trail, *followed]})})


def _covered(path: str, covered: dict[str, Any], new: dict) -> bool:
    """True when a reviewer's entry of this step set `path` (or a field above it) to its new value."""
    for field, after in covered.items():
        if path == field or path.startswith((f"{field}.", f"{field}[")):
            try:
                return get_path(new, field) == after
            except (KeyError, IndexError):
                return False
    return False


def apply_step(report: EvidenceChainReport, step: ReviewStep, edits: list[StampedEdit]) -> dict[str, Any]:
    """human_review's update for a reviewer's step on the paused report (InvalidEdit when an edit does not fit)."""
    review = report.review
    data = report.model_dump(mode="json")
    if step.decision is None:
        stamped = [stamp(report, e, step.actor, step.time, review.version) for e in step.edits]
        entries = [_edit_entry(data, s, report) for s in stamped]
        return {"edits": [*edits, *stamped], "review": _append(review, entries), "shown": report, "next_step": "revise"}
    decision = step.decision
    if isinstance(decision, Reopen):
        raise ValueError("a report under review is not reopened; edit it, approve or reject it")
    status = "approved" if isinstance(decision, Approve) else "rejected"
    reason = decision.comment if isinstance(decision, Approve) else decision.reason
    entries = [
        AuditEntry(time=step.time, actor=step.actor, action=status, field="review.status",
                   before=review.status, after=status, reason=reason, version=review.version),
        AuditEntry(time=step.time, actor=step.actor, action=status, field="review.reviewer",
                   before=review.reviewer, after=step.actor, version=review.version),
    ]
    closed = _append(review, entries).model_copy(update={"status": status, "reviewer": step.actor})
    return {"review": closed, "shown": report, "next_step": "write"}


def reopen(report: EvidenceChainReport, written: bytes, step: ReviewStep, closed_versions: Mapping[str, str]) -> dict:
    """The state update that starts version n+1 of a closed report; `written` is its report.json as on disk.

    The closed version is kept, byte for byte, as report.v<n>.json beside the new one.
    """
    assert isinstance(step.decision, Reopen)
    review = report.review
    sha = hashlib.sha256(written).hexdigest()
    version = review.version + 1
    changes = [("review.version", review.version, version), ("review.supersedes_sha256", review.supersedes_sha256, sha),
               ("review.status", review.status, "awaiting_review"), ("review.reviewer", review.reviewer, None)]
    entries = [AuditEntry(time=step.time, actor=step.actor, action="reopened", field=f, before=b, after=a,
                          reason=step.decision.reason, version=version) for f, b, a in changes]
    new = _append(review, entries).model_copy(
        update={"version": version, "supersedes_sha256": sha, "status": "awaiting_review", "reviewer": None}
    )
    files = {**closed_versions, version_file(review.version): written.decode("utf-8")}
    return {"review": new, "shown": report, "closed_versions": files, "next_step": "write"}


def _append(review: Review, entries: list[AuditEntry]) -> Review:
    return review.model_copy(update={"audit_trail": [*review.audit_trail, *entries]})


def _edit_entry(data: dict, s: StampedEdit, report: EvidenceChainReport) -> AuditEntry:
    edit, path = s.edit, field_path(s.edit)
    if isinstance(edit, ConclusionEdit):
        after: Any = edit.value
    elif isinstance(edit, FlagDismissEdit):
        after = FlagDismissal(reviewer=s.actor, reason=edit.reason, time=s.time).model_dump(mode="json")
    elif isinstance(edit, SamplingTargetEdit):
        after = [t.model_dump(mode="json") for t in move_target(report.sampling_plan, edit.unit_id, edit.rank)]
    else:
        assert isinstance(edit, NarrativeEdit)
        after = clinician_sentence(edit).model_dump(mode="json")
    try:
        before = get_path(data, path)
    except KeyError:
        before = None  # a sentence added at the end of its section
    return AuditEntry(time=s.time, actor=s.actor, action="edited", field=path, before=before, after=after,
                      reason=edit.reason, version=s.version, detail=edit.kind)
