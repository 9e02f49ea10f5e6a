"""The language-model drafter: the same fill as the templates, written by a chat model under the case's schema.

`transformers` and `openai` drafting are this drafter over the chat model of that name. Whatever the
model answers, it only writes sentences and picks what they cite; the deterministic fill stands in
whenever the model is unavailable or never produces an acceptable answer.
"""

from __future__ import annotations

from agents.context import Settings
from agents.llm.deterministic import template_fill
from agents.llm.registry import Drafted, register_drafting_backend
from agents.llm.request import evidence_lines
from agents.llm.structured import StructuredTask, structured_call
from schemas.drafting import DraftFill, DraftRequest


class LanguageModelDrafter:
    def __init__(self, settings: Settings, chat_backend: str) -> None:
        self.name = chat_backend
        self.settings = settings

    def fill(self, request: DraftRequest) -> Drafted:
        task = StructuredTask(
            agent="drafting",
            template="drafting",
            context={
                "request": request, "evidence_lines": evidence_lines(request), "cancer_type": request.cancer_type,
                "evidence_ids": request.evidence_ids(), "tasks": request.tasks(),
            },
            output=DraftFill,
            json_schema=request.fill_schema(self.settings.llm_max_new_tokens),
            check=request.check,
        )
        result = structured_call(task, lambda: template_fill(request), self.settings, self.name)
        return Drafted(fill=result.value, source="language_model" if result.accepted else "template", call=result.call)


@register_drafting_backend("transformers")
def transformers(settings: Settings) -> LanguageModelDrafter:
    return LanguageModelDrafter(settings, "transformers")


@register_drafting_backend("openai")
def openai(settings: Settings) -> LanguageModelDrafter:
    return LanguageModelDrafter(settings, "openai")
