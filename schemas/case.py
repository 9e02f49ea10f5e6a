"""Input contract: the case manifest (`case.json`) and the structured pathology read."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field

from schemas.common import ContractModel, SampledRegion

IhcStain = Literal["IDH1_R132H", "ATRX", "H3_K27M"]
IhcResult = Literal["positive", "negative", "lost", "retained", "equivocal"]
CASE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class TimepointSpec(ContractModel):
    """An imaging time point with its acquisition date."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Folder name under imaging/.")
    date: dt.date | None = Field(default=None, description="Acquisition date, YYYY-MM-DD.")


class CaseManifest(ContractModel):
    """`case.json`: the only required file of a case bundle."""

    model_config = ContractModel.model_config | {"extra": "ignore"}

    case_id: str = Field(pattern=CASE_ID_PATTERN, description="1-64 characters of [A-Za-z0-9_-]; used as a folder name.")
    cancer_type: str = Field(min_length=1, description="Cancer type, e.g. 'glioma'.")
    age_band: str | None = Field(default=None, pattern=r"^\d{1,3}-\d{1,3}$|^\d{1,3}\+$", description="Age band, e.g. '60-69'.")
    sex: Literal["M", "F", "other", "unknown"] | None = Field(default=None, description="Sex as recorded.")
    clinical_notes: str = Field(default="", description="Free text. Data only: it never changes a conclusion, flag or action.")
    timepoints: list[str | TimepointSpec] = Field(
        default_factory=list,
        description="Imaging time points, oldest first: a folder name under imaging/ or {name, date}.",
    )

    def timepoint_names(self) -> list[str]:
        return [t if isinstance(t, str) else t.name for t in self.timepoints]

    def age_years(self) -> float | None:
        """Mid-point of the age band, the only age the contract allows."""
        if self.age_band is None:
            return None
        if self.age_band.endswith("+"):
            return float(self.age_band[:-1]) + 5.0
        lo, hi = (float(x) for x in self.age_band.split("-"))
        return (lo + hi) / 2.0


class PathologyFindings(ContractModel):
    """`pathology/findings.json`: a pathologist's structured read; any subset of fields."""

    # Strict types: JSON `true` is not grade 1 and `1` is not "necrosis seen", so a mistyped
    # field makes the read unusable instead of silently changing it.
    who_grade: int | None = Field(
        default=None, ge=1, le=4, strict=True, description="WHO CNS grade, an integer 1-4."
    )
    histology: str | None = Field(default=None, description="Histological diagnosis, free text.")
    necrosis: bool | None = Field(default=None, strict=True, description="Necrosis seen.")
    microvascular_proliferation: bool | None = Field(
        default=None, strict=True, description="Microvascular proliferation seen."
    )
    cellularity: Literal["low", "moderate", "high"] | None = Field(default=None, description="Tumour cellularity.")
    ki67_percent: float | None = Field(
        default=None, ge=0, le=100, strict=True, description="Ki-67 labelling index, percent."
    )
    sampled_region: SampledRegion | None = Field(
        default=None, description="Imaging habitat the specimen came from, if known."
    )
    immunohistochemistry: dict[IhcStain, IhcResult] | None = Field(
        default=None,
        description="Stain -> result, e.g. {'IDH1_R132H': 'negative', 'ATRX': 'retained'}; ATRX reads lost/retained.",
    )
