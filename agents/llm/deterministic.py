"""The default drafting backend, and every language-model backend's fallback: a fill from phrase templates.

It writes one sentence per conclusion citing the evidence the vote rules count for it, and one
uncertainty sentence, in English and Chinese. It never reads `clinical_notes`.
"""

from __future__ import annotations

from agents.context import Settings
from agents.llm.registry import Drafted, register_drafting_backend
from prompts import Listing, Phrase, Term, localise
from schemas.drafting import ConclusionDigest, DraftFill, DraftRequest, Statement


def template_fill(request: DraftRequest) -> DraftFill:
    phrases = _phrases(request)
    return DraftFill(
        rationales={c.task: _statement(*phrases[i]) for i, c in enumerate(request.conclusions)},
        uncertainty=_statement(*phrases[-1]),
    )


def template_phrases(request: DraftRequest) -> list[str]:
    """The phrase key of each sentence of `template_fill(request)`, in draft order (conclusions, then
    uncertainty): what the claim verifier reads an uncited template sentence by."""
    return [phrase.key for phrase, _ in _phrases(request)]


def _phrases(request: DraftRequest) -> list[tuple[Phrase, list[str]]]:
    return [*(_rationale(c) for c in request.conclusions), (_uncertainty_phrase(request), [])]


def _statement(phrase: Phrase, evidence: list[str]) -> Statement:
    text = localise(phrase)
    return Statement(evidence=evidence, en=text.en, zh=text.zh)


def _rationale(c: ConclusionDigest) -> tuple[Phrase, list[str]]:
    # A risk conclusion is read by its group; its label names the quantity (two-year mortality).
    fields = {"task": Term("task", c.task), "label": Term("label", c.risk_group or c.label)}
    if c.supporting_evidence:
        return Phrase("rationale.supported", fields), list(c.supporting_evidence)
    return Phrase("rationale.unsupported", fields), []


def _uncertainty_phrase(request: DraftRequest) -> Phrase:
    """The largest source of uncertainty the draft can already name: a missing modality, else an open prediction set."""
    if request.modalities_missing:
        names = Listing(tuple(Term("modality", m) for m in request.modalities_missing))
        return Phrase("rationale.uncertainty_missing", {"modalities": names})
    open_sets = [c.task for c in request.conclusions if len(c.prediction_set) > 1]
    if open_sets:
        return Phrase("rationale.uncertainty_sets", {"tasks": Listing(tuple(Term("task", t) for t in open_sets))})
    return Phrase("rationale.uncertainty_none")


class DeterministicDrafter:
    name = "deterministic"

    def fill(self, request: DraftRequest) -> Drafted:
        return Drafted(fill=template_fill(request), source="template")


@register_drafting_backend("deterministic")
def deterministic(_settings: Settings) -> DeterministicDrafter:  # every factory takes the settings; templates need none
    return DeterministicDrafter()
