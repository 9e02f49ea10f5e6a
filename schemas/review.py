"""Review contract: the typed changes a clinician makes to a draft report, and the decisions that close it.

An edit names one field of the report and carries the reviewer's reason; it is checked
against the report it applies to (agents.review.edits) before the paused run resumes.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field

from schemas.common import ContractModel


class ConclusionEdit(ContractModel):
    """Set a conclusion's label or confidence; the model's value is kept as a ClinicianOverride."""

    kind: Literal["conclusion"] = Field(default="conclusion", description="Change a conclusion's label or confidence.")
    task: str = Field(description="Task of the conclusion, e.g. 'grade'.")
    field: Literal["label", "confidence"] = Field(description="Which field to set.")
    value: str = Field(min_length=1, description="New label (one of the conclusion's candidate labels) or confidence.")
    reason: str = Field(min_length=1, description="Why, in the reviewer's words.")


class FlagDismissEdit(ContractModel):
    """Dismiss a consistency flag that does not apply to this case."""

    kind: Literal["dismiss_flag"] = Field(default="dismiss_flag", description="Dismiss a consistency flag.")
    flag_id: str = Field(description="Flag id, e.g. 'F2'.")
    reason: str = Field(min_length=1, description="Why it does not apply.")


class SamplingTargetEdit(ContractModel):
    """Move a unit of the sampling plan to another rank (1 = sample first)."""

    kind: Literal["sampling_target"] = Field(default="sampling_target", description="Move a sampling target to another rank.")
    unit_id: str = Field(description="Spatial unit of the plan, e.g. 'T1:enhancing'.")
    rank: int = Field(ge=1, description="New rank of that unit.")
    reason: str = Field(min_length=1, description="Why.")


class NarrativeEdit(ContractModel):
    """Replace (or, at index = number of sentences, add) a sentence of a narrative section with the reviewer's."""

    kind: Literal["narrative"] = Field(default="narrative", description="Replace or add a narrative sentence.")
    section: str = Field(description="Narrative section key, e.g. 'diagnosis'.")
    index: int = Field(ge=0, description="Sentence index in the section (0 = first).")
    text: str = Field(min_length=1, description="The reviewer's sentence.")
    text_zh: str | None = Field(default=None, description="Its Chinese wording; the sentence as written when absent.")
    evidence: list[str] = Field(default_factory=list, description="Evidence ids the sentence cites.")
    reason: str = Field(min_length=1, description="Why.")


Edit = Annotated[
    ConclusionEdit | FlagDismissEdit | SamplingTargetEdit | NarrativeEdit, Field(discriminator="kind")
]


class Approve(ContractModel):
    kind: Literal["approve"] = Field(default="approve", description="Approve the report (it becomes immutable).")
    comment: str | None = Field(default=None, description="Optional comment recorded with the approval.")


class Reject(ContractModel):
    kind: Literal["reject"] = Field(default="reject", description="Reject the report.")
    reason: str = Field(min_length=1, description="Why the report is rejected.")


class Reopen(ContractModel):
    """Start a new version of an approved or rejected report (the closed one is kept unchanged)."""

    kind: Literal["reopen"] = Field(default="reopen", description="Reopen a closed report as a new version.")
    reason: str = Field(min_length=1, description="Why a new version is needed.")


Decision = Annotated[Approve | Reject | Reopen, Field(discriminator="kind")]


class ReviewStep(ContractModel):
    """One reviewer action, as the paused workflow receives it: a batch of edits or one decision."""

    actor: str = Field(min_length=1, description="Who.")
    time: dt.datetime = Field(description="UTC time of the action.")
    edits: list[Edit] = Field(default_factory=list, description="Edits, applied in order.")
    decision: Decision | None = Field(default=None, description="Approve, reject or reopen (no edits with it).")


class StampedEdit(ContractModel):
    """An accepted edit with who made it and when: what the workflow re-applies after every re-check."""

    edit: Edit
    actor: str
    time: dt.datetime
    version: int = Field(ge=1, description="Report version the edit was made in.")
    flag_kind: str | None = Field(
        default=None, description="For a dismissal: the flag's kind, so it follows the flag when a re-check renumbers."
    )
    flag_evidence: list[str] = Field(default_factory=list, description="For a dismissal: the flag's evidence ids.")


class CaseReviewSummary(ContractModel):
    """One line of the review list."""

    case_id: str
    status: Literal["draft", "awaiting_review", "approved", "rejected"]
    version: int = Field(ge=1)
    revision: int = Field(ge=0, description="Optimistic-lock counter: bumps on every change.")
    flags: int = Field(ge=0, description="Consistency flags not dismissed.")
    most_severe: Literal["info", "warning", "critical"] | None = None
    decisions_needed: int = Field(ge=0, description="Open warning/critical flags plus an undecided review.")

