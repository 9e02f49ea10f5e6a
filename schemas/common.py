"""Vocabulary shared by every contract: modalities, confidence levels, phenotypes.

Fixed sets are `Literal`s so that the generated JSON Schema carries them as enums
and a typo in a producer fails validation instead of reaching a tumour board.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Modality = Literal["imaging", "pathology", "genomics", "clinical"]
MODALITIES: tuple[Modality, ...] = ("imaging", "pathology", "genomics", "clinical")

Confidence = Literal["high", "moderate", "low"]
CONFIDENCE_ORDER: dict[str, int] = {"low": 0, "moderate": 1, "high": 2}

# Imaging sub-regions (BraTS labels) plus the derived units the report talks about. Without a label
# map, habitats are k-means clusters of the lesion's intensities, named by their rank of mean T1c
# (then FLAIR): intensity_high / _mid / _low (fusion_models/imaging/clustering.py).
Phenotype = Literal[
    "lesion",
    "enhancing",
    "necrotic_core",
    "non_enhancing_core",
    "oedema",
    "margin_ring",
    "intensity_high",
    "intensity_mid",
    "intensity_low",
]
# How a time point's habitats were delineated: from the BraTS label map, or by clustering intensities.
HabitatMethod = Literal["brats_labels", "kmeans_intensity"]

# Patch-level tissue patterns: the pathology branch's patch head and the demo tiles share them.
TissuePattern = Literal[
    "background",
    "infiltrating_tumour",
    "high_cellularity",
    "necrosis",
    "microvascular_proliferation",
]
TISSUE_PATTERNS: tuple[str, ...] = (
    "background",
    "infiltrating_tumour",
    "high_cellularity",
    "necrosis",
    "microvascular_proliferation",
)

# Where a pathology specimen came from, as findings.json may state it.
SampledRegion = Literal["enhancing", "necrotic_core", "non_enhancing_core", "oedema", "unknown"]


class ContractModel(BaseModel):
    """Base for every contract model: unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SourceRef(ContractModel):
    """Points an evidence item back to the input it came from."""

    file: str = Field(description="Path of the input file, relative to the case folder (or a knowledge source id).")
    locator: str | None = Field(
        default=None,
        description="Where inside the file: mask labels, dataset and row, gene list or JSON field.",
    )
