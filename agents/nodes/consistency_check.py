"""consistency_check: cross-modal rules over the draft, confidence after the checks, and the sampling plan.

Runs before any narrative exists, so no sentence can be written about a claim
these checks would have flagged. A reviewer's edits are applied around the checks
(agents/review/edits.py), so flags follow an overridden label and overrides survive a re-check.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from agents.consistency import ConsistencyContext, check_consistency
from agents import resources
from agents.context import Settings
from agents.review import edits as review_edits
from agents.sampling import sampling_plan
from agents.state import CaseState


def node(state: CaseState, runtime: Runtime[Settings]) -> dict:
    edits = state.get("edits", [])
    draft = review_edits.before_checks(state["draft"], edits)
    findings = resources.case_inputs(state, runtime.context).findings
    fusion = state.get("fusion")
    result = check_consistency(ConsistencyContext.from_report(draft, findings, fusion.ood if fusion else ()))
    diagnosis = next((c for c in result.conclusions if c.task == "diagnosis"), None)
    plan = sampling_plan(draft.spatial_evidence, diagnosis, findings, "pathology" in draft.modalities.present)
    report = draft.model_validate(
        draft.model_dump()
        | {
            "consistency_flags": [f.model_dump() for f in result.flags],
            "conclusions": [c.model_dump() for c in result.conclusions],
            "uncertainty": result.uncertainty.model_dump(),
            "sampling_plan": [t.model_dump() for t in plan.targets],
            "sampling_statement": plan.statement.model_dump(),
        }
    )
    return {"report": review_edits.after_checks(report, edits), "flag_texts": result.flag_texts, "basis_texts": result.basis_texts}
