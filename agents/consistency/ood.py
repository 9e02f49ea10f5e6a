"""out_of_distribution: a flag per modality the input gates or the model's detector placed outside training.

Each record of `FusionOutput.ood` that is out of distribution becomes a warning naming
the modality, the distance and the reason. The confidence rule (confidence.py) caps every
conclusion that rests on that modality at moderate, so none of them stays high.
"""

from __future__ import annotations

from agents.consistency.rules import ConsistencyContext, FlagDraft, register_rule
from prompts import Phrase, Term

SCORE_DIGITS = 3


@register_rule("out_of_distribution")
def out_of_distribution(ctx: ConsistencyContext) -> list[FlagDraft]:
    drafts = []
    for record in (r for r in ctx.ood if r.out_of_distribution):
        modality = Term("modality", record.modality)
        message = Phrase("flag.out_of_distribution", {
            "modality": modality,
            "score": f"{record.score:.{SCORE_DIGITS}g}",
            "threshold": f"{record.threshold:.{SCORE_DIGITS}g}",
            "detail": record.detail or record.method,
        })
        drafts.append(FlagDraft(
            "out_of_distribution", "warning", (record.modality,), (), message,
            # Affects no task: the confidence rule already caps every conclusion resting on an OOD modality,
            # and lowering it again for the same finding would count it twice.
            Phrase("action.check_ood", {"modality": modality}), (),
        ))
    return drafts
