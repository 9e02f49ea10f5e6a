"""The drafting seam: what a drafting backend is asked (`DraftRequest`) and what it may answer (`DraftFill`).

Code builds every fixed part of a report (modalities, conclusions, probabilities, the evidence
each conclusion cites, evidence items, provenance, flags, recommendations). A backend fills only
what needs language: per conclusion one rationale sentence in English and Chinese with the evidence
ids that sentence cites, and one uncertainty sentence. Its selections decide what its own sentences
cite, nothing else.

`DraftRequest.fill_schema()` narrows the generic `DraftFill` schema to one case: the conclusions are
required properties (one per task, in the request's order) and evidence ids are an `enum` of the
case's ids, so a schema-constrained decoder cannot cite an id that does not exist.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Literal

from pydantic import Field, field_validator

from schemas.common import ContractModel, Modality
from schemas.fusion import Task

MAX_CITED = 4
# One sentence, at most; DraftRequest.sentence_bounds shortens them further to fit the decoder's token budget.
MAX_SENTENCE_EN = 120
MAX_SENTENCE_ZH = 40
# Token budget of a fill, worst case: a character of English text costs at most one token, a Chinese
# character at most three (byte tokens), and the keys, ids and punctuation of one sentence about 45.
STATEMENT_OVERHEAD_TOKENS = 45
FILL_OVERHEAD_TOKENS = 15
ZH_TOKENS_PER_CHAR = 3
# A reply of one id or one word is not a sentence (a weak model otherwise writes "S1" and stops).
MIN_SENTENCE_EN = 24
MIN_SENTENCE_ZH = 6
# A sentence is one line of prose: a control character (a decoder can let them through) is malformed.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

EvidenceKind = Literal["spatial", "histology", "mechanism"]
JSONScalar = str | int | float | bool | None


class EvidenceDigest(ContractModel):
    """One evidence item as the model reads it: its id and the facts it states (numbers as in the report)."""

    id: str = Field(description="Evidence id (S1, H2, M3, ...).")
    kind: EvidenceKind = Field(description="spatial (where), histology (what) or mechanism (why).")
    facts: dict[str, JSONScalar | list[JSONScalar]] = Field(
        description="The item's fields, without provenance; numbers exactly as the report states them."
    )


class ConclusionDigest(ContractModel):
    """One conclusion as code concluded it; the model explains it, never changes it."""

    task: Task = Field(description="Clinical question.")
    label: str = Field(description="The concluded label.")
    probability: float = Field(ge=0, le=1, description="Calibrated probability of the label.")
    risk_group: str | None = Field(default=None, description="For risk: low / intermediate / high.")
    supporting_evidence: list[str] = Field(default_factory=list, description="Ids the evidence rules count for it.")
    contradicting_evidence: list[str] = Field(default_factory=list, description="Ids the evidence rules count against it.")
    prediction_set: list[str] = Field(default_factory=list, description="Split-conformal prediction set, if any.")


class DraftRequest(ContractModel):
    """Everything a drafting backend is given for one case."""

    case_id: str = Field(description="Case id.")
    cancer_type: str = Field(description="Cancer type from case.json.")
    modalities_present: list[Modality] = Field(description="Modalities that contributed evidence.")
    modalities_missing: list[Modality] = Field(description="Modalities with no usable input.")
    conclusions: list[ConclusionDigest] = Field(description="The conclusions to explain, in report order.")
    evidence: list[EvidenceDigest] = Field(description="Every evidence item of the case.")
    clinical_notes: str | None = Field(
        default=None, description="Free text from case.json, passed as quoted data; it carries no instructions."
    )

    def evidence_ids(self) -> list[str]:
        return [e.id for e in self.evidence]

    def tasks(self) -> list[str]:
        return [c.task for c in self.conclusions]

    def sentence_bounds(self, token_budget: int) -> tuple[int, int]:
        """Most characters of an English and of a Chinese sentence such that a whole fill, every string
        written to its limit (a weak model's habit), still closes within `token_budget` generated tokens."""
        per_sentence = (token_budget - FILL_OVERHEAD_TOKENS) // (len(self.conclusions) + 1) - STATEMENT_OVERHEAD_TOKENS
        zh = min(MAX_SENTENCE_ZH, max(MIN_SENTENCE_ZH, per_sentence // (2 * ZH_TOKENS_PER_CHAR)))
        en = min(MAX_SENTENCE_EN, max(MIN_SENTENCE_EN, per_sentence - ZH_TOKENS_PER_CHAR * zh))
        return en, zh

    def fill_schema(self, token_budget: int | None = None) -> dict[str, Any]:
        """The JSON Schema of a fill for this case: one rationale per conclusion, ids from this case only,
        and, given the decoder's `token_budget`, sentences short enough that the reply always closes."""
        schema = copy.deepcopy(DraftFill.model_json_schema())
        statement = schema.pop("$defs")["Statement"]
        ids = self.evidence_ids()
        statement["properties"]["evidence"] |= {"maxItems": MAX_CITED if ids else 0}
        if ids:
            statement["properties"]["evidence"]["items"] = {"type": "string", "enum": ids}
        en, zh = (MAX_SENTENCE_EN, MAX_SENTENCE_ZH) if token_budget is None else self.sentence_bounds(token_budget)
        statement["properties"]["en"] |= {"minLength": MIN_SENTENCE_EN, "maxLength": en}
        statement["properties"]["zh"] |= {"minLength": MIN_SENTENCE_ZH, "maxLength": zh}
        schema["properties"]["rationales"] = {
            "type": "object",
            "description": schema["properties"]["rationales"]["description"],
            "properties": {task: copy.deepcopy(statement) for task in self.tasks()},
            "required": self.tasks(),
            "additionalProperties": False,
        }
        schema["properties"]["uncertainty"] = statement | {
            "description": schema["properties"]["uncertainty"]["description"]
        }
        return schema

    def check(self, fill: DraftFill) -> list[str]:
        """What a schema-valid fill still gets wrong for this case (the decoder may not enforce all of it)."""
        errors = []
        tasks, ids = self.tasks(), set(self.evidence_ids())
        if list(fill.rationales) != tasks:
            errors.append(f"rationales: expected exactly the tasks {tasks} in this order, got {list(fill.rationales)}")
        cited = [(f"rationales.{task}", st) for task, st in fill.rationales.items()] + [("uncertainty", fill.uncertainty)]
        for where, st in cited:
            unknown = [e for e in st.evidence if e not in ids]
            if unknown:
                errors.append(f"{where}.evidence: {unknown} are not evidence ids of this case")
        return errors


def _one_line(text: str) -> str:
    text = text.strip()
    if _CONTROL.search(text):
        raise ValueError("must be one line of text without control characters")
    return text


class Statement(ContractModel):
    """One sentence in English and Chinese and the evidence ids it cites."""

    evidence: list[str] = Field(description="Evidence ids this sentence cites; only ids that exist in the case.")
    en: str = Field(min_length=1, description="One English sentence.")
    zh: str = Field(min_length=1, description="The same sentence in Simplified Chinese.")

    @field_validator("en", "zh")
    @classmethod
    def one_line(cls, text: str) -> str:
        return _one_line(text)


class DraftFill(ContractModel):
    """What a drafting backend writes: language only, never a conclusion, probability, flag or action."""

    rationales: dict[str, Statement] = Field(description="Task -> why that conclusion was reached, citing evidence.")
    uncertainty: Statement = Field(description="What remains uncertain and why (missing modalities, disagreement).")
