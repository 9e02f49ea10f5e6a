"""human_review: in a non-interactive run the report stays a draft, with that fact in the audit trail.

The interactive edit/approve loop (interrupt + checkpoint) plugs in here.
"""

from __future__ import annotations

import datetime as dt

from langgraph.runtime import Runtime

from agents.context import Settings
from agents.state import CaseState
from schemas.report import AuditEntry, Review


def node(state: CaseState, runtime: Runtime[Settings]) -> dict:
    report = state["report"]
    entry = AuditEntry(
        time=dt.datetime.now(dt.timezone.utc),
        actor="system",
        action="drafted",
        detail=f"drafted by '{runtime.context.drafting_backend}'; awaiting clinician review",
    )
    review = Review(status="draft", reviewer=None, audit_trail=[*report.review.audit_trail, entry])
    return {"report": report.model_copy(update={"review": review})}
