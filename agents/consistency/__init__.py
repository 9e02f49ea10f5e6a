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

from agents.consistency import ood  # noqa: F401  (registers the out_of_distribution rule after the others)
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
from schemas.report import Conclusion, ConsistencyFlag, LocalisedText, Uncertainty

from agents.consistency import growth  # noqa: E402,F401  (registers its rule after the core rules)

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
    """Flags (F1..), the conclusions with adjusted confidence, the uncertainty statement, and for the
    narrative each flag's message and action (flag id -> FlagText) and each conclusion's confidence
    basis (task -> text) in every language."""

    flags: list[ConsistencyFlag]
    conclusions: list[Conclusion]
    uncertainty: Uncertainty
    flag_texts: dict[str, FlagText]
    basis_texts: dict[str, LocalisedText]


def check_consistency(ctx: ConsistencyContext) -> ConsistencyResult:
    raised = run_rules(ctx)
    compromised = ctx.compromised_modalities()
    decided = {
        c.task: adjust_confidence(c, raised, ctx.modalities.missing, compromised, ctx.markers) for c in ctx.conclusions
    }
    conclusions = [conclusion for conclusion, _ in decided.values()]
    flags = [r.flag for r in raised]
    return ConsistencyResult(
        flags=flags,
        conclusions=conclusions,
        uncertainty=overall_uncertainty(ctx.modalities, flags, conclusions),
        flag_texts={r.flag.id: r.text for r in raised},
        basis_texts={task: text for task, (_, text) in decided.items()},
    )
