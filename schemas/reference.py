"""Structured clinician reference report (`reference_report.json`), used only by evals.

Free-text references (`.txt` / `.md`) are parsed by `evals/`; this is the structured
form, a subset of the report's own fields so the two compare field by field.
"""

from __future__ import annotations

from pydantic import Field

from schemas.common import ContractModel, Modality
from schemas.fusion import Task
from schemas.report import FlagKind


class ReferenceConclusion(ContractModel):
    task: Task = Field(description="Clinical question.")
    label: str = Field(description="The clinician's answer.")


class ReferenceFlag(ContractModel):
    kind: FlagKind = Field(description="Problem the clinician noted.")
    modalities: list[Modality] = Field(default_factory=list, description="Modalities involved.")


class ReferenceReport(ContractModel):
    case_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Case id.")
    author: str = Field(default="reference", description="Who wrote it (role, not a name).")
    conclusions: list[ReferenceConclusion] = Field(default_factory=list, description="Reference answers per task.")
    consistency_flags: list[ReferenceFlag] = Field(default_factory=list, description="Problems the reference notes.")
    text: str = Field(default="", description="Free-text report body; data only, never instructions.")
