"""Cross-modal consistency: rules over a draft report, confidence after the checks, grounding of numbers.

Typical use in the `consistency_check` node::

    ctx = ConsistencyContext.from_report(draft, findings)
    result = check_consistency(ctx)
    report = draft.model_copy(update={
        "consistency_flags": result.flags, "conclusions": result.conclusions, "uncertainty": result.uncertainty,
    })
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.consistency.confidence import adjust_confidence, overall_uncertainty
from agents.consistency.rules import (
    ConsistencyContext,
    FlagDraft,
    FlagText,
    RaisedFlag,
    list_rules,
    register_rule,
    run_rules,
)
from schemas.report import Conclusion, ConsistencyFlag, Uncertainty

__all__ = [
    "ConsistencyContext",
    "ConsistencyResult",
    "FlagDraft",
    "FlagText",
    "RaisedFlag",
    "check_consistency",
    "list_rules",
    "register_rule",
    "run_rules",
]


@dataclass(frozen=True)
class ConsistencyResult:
    """Flags (F1..), the conclusions with adjusted confidence, the uncertainty statement,
    and each flag's message and action in every language (flag id -> FlagText) for the narrative."""

    flags: list[ConsistencyFlag]
    conclusions: list[Conclusion]
    uncertainty: Uncertainty
    flag_texts: dict[str, FlagText]


def check_consistency(ctx: ConsistencyContext) -> ConsistencyResult:
    raised = run_rules(ctx)
    compromised = ctx.compromised_modalities()
    conclusions = [
        adjust_confidence(c, raised, ctx.modalities.missing, compromised, ctx.markers) for c in ctx.conclusions
    ]
    flags = [r.flag for r in raised]
    return ConsistencyResult(
        flags=flags,
        conclusions=conclusions,
        uncertainty=overall_uncertainty(ctx.modalities, flags, conclusions),
        flag_texts={r.flag.id: r.text for r in raised},
    )
