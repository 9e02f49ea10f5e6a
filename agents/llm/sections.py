"""A fill as narrative sections: the sentences a backend wrote, in the order the verifier aligns them.

Every fill gives the same sentences in the same order (one per conclusion, then the uncertainty
sentence), so a language model's sentence that fails its check can be replaced by the template
sentence at the same place.
"""

from __future__ import annotations

from collections.abc import Sequence

from agents.llm.deterministic import template_phrases
from agents.llm.registry import Drafted
from prompts import Phrase, localise
from schemas.drafting import DraftRequest, Statement
from schemas.report import EvidenceChainReport, LocalisedText, NarrativeSection, Sentence

SECTION_KEY = "rationale"


def draft_sections(drafted: Drafted, request: DraftRequest) -> list[NarrativeSection]:
    statements = [drafted.fill.rationales[t] for t in request.tasks()] + [drafted.fill.uncertainty]
    # A template fill's sentences keep their phrase keys: an uncited one is judged by what its phrase rests on.
    phrases = template_phrases(request) if drafted.source == "template" else [None] * len(statements)
    sentences = [_sentence(st, drafted, phrase) for st, phrase in zip(statements, phrases, strict=True)]
    return [NarrativeSection(key=SECTION_KEY, title=localise(Phrase(f"section.{SECTION_KEY}")), sentences=sentences)]


def _sentence(st: Statement, drafted: Drafted, phrase: str | None) -> Sentence:
    # Unverified until write_report's claim verifier has checked it against what it cites.
    return Sentence(
        text=LocalisedText(en=st.en, zh=st.zh), evidence=list(dict.fromkeys(st.evidence)), grounded=False,
        source=drafted.source, phrase=phrase,
    )


def without_relabelled(sections: Sequence[NarrativeSection], report: EvidenceChainReport) -> list[NarrativeSection]:
    """`sections` without the sentence of each conclusion a clinician relabelled.

    That sentence argued for the model's label with the model's evidence; after the override the
    clinician's label and reason speak for the conclusion. Drafted and fallback sections lose the
    same sentences, so they stay aligned for the verifier.
    """
    relabelled = {i for i, c in enumerate(report.conclusions) if any(o.field == "label" for o in c.overrides)}
    return [
        s.model_copy(update={"sentences": [x for i, x in enumerate(s.sentences) if i not in relabelled]})
        if s.key == SECTION_KEY else s
        for s in sections
    ]
