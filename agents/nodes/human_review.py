"""human_review: where a run pauses for a clinician (LangGraph `interrupt`) when Settings.interactive_review is on.

It runs after write_report, so the paused case folder holds the draft the clinician reads.
The resume value is a `schemas.review.ReviewStep` (as JSON): edits route back through
consistency_check and write_report, so flags and narrative follow; approve or reject are
written once more and end the run. Without interactive review, and once a version is closed,
it ends the run at once. Everything before `interrupt()` only reads, so running the node
again on resume changes nothing.
"""

from __future__ import annotations

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agents.context import Settings
from agents.review.workflow import CLOSED, apply_step
from agents.state import CaseState
from schemas.review import ReviewStep


def node(state: CaseState, runtime: Runtime[Settings]) -> dict:
    report = state["report"]
    if not runtime.context.interactive_review or report.review.status in CLOSED:
        return {"next_step": "end"}
    step = interrupt(
        {
            "case_id": report.case_id,
            "status": report.review.status,
            "version": report.review.version,
            "revision": len(report.review.audit_trail),
            "outputs": state.get("outputs", {}),
        }
    )
    return apply_step(report, ReviewStep.model_validate(step), state.get("edits", []))


def route(state: CaseState) -> str:
    return state.get("next_step", "end")
