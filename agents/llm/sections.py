"""A fill as narrative sections: the sentences a backend wrote, in the order the verifier aligns them.

Every fill gives the same sentences in the same order (one per conclusion, then the uncertainty
sentence), so a language model's sentence that fails its check can be replaced by the template
sentence at the same place.
"""

from __future__ import annotations

from agents.consistency.grounding import cited_values, sentence_is_grounded, values_of
from agents.llm.registry import Drafted
from prompts import Phrase, localise
from schemas.drafting import DraftRequest, Statement
from schemas.report import EvidenceChainReport, LocalisedText, NarrativeSection, Sentence

SECTION_KEY = "rationale"


def draft_sections(drafted: Drafted, request: DraftRequest, draft: EvidenceChainReport) -> list[NarrativeSection]:
    by_task = {c.task: c for c in draft.conclusions}
    statements = [(drafted.fill.rationales[t], [by_task[t]]) for t in request.tasks()]
    statements.append((drafted.fill.uncertainty, list(draft.conclusions)))
    sentences = [_sentence(st, about, drafted, draft) for st, about in statements]
    return [NarrativeSection(key=SECTION_KEY, title=localise(Phrase(f"section.{SECTION_KEY}")), sentences=sentences)]


def _sentence(st: Statement, about: list, drafted: Drafted, draft: EvidenceChainReport) -> Sentence:
    evidence = list(dict.fromkeys(st.evidence))
    # The number check every template sentence gets; the claim verifier decides `grounded` in the final report.
    numbers = cited_values(draft, evidence) + values_of(*about)
    return Sentence(
        text=LocalisedText(en=st.en, zh=st.zh), evidence=evidence, grounded=sentence_is_grounded(st.en, numbers),
        source=drafted.source,
    )
