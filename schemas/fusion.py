"""What the fusion model hands to the workflow: per-task probabilities and attributions."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from schemas.common import ContractModel, Modality

Task = Literal["diagnosis", "grade", "molecular_subtype", "risk", "response"]


class TaskPrediction(ContractModel):
    """One task's calibrated output."""

    task: Task = Field(description="Clinical question answered.")
    labels: list[str] = Field(min_length=1, description="Candidate labels, in the model's order.")
    probabilities: dict[str, float] = Field(description="Calibrated probability per candidate label; sums to 1.")
    score: float | None = Field(default=None, description="For risk: linear predictor, higher = worse prognosis.")
    risk_group: str | None = Field(default=None, description="For risk: group from the training-cohort cut points.")
    prediction_set: list[str] = Field(
        default_factory=list,
        description="Split-conformal prediction set: labels kept at `set_coverage` (empty when the model gives none).",
    )
    set_coverage: float | None = Field(
        default=None, ge=0, le=1, description="Target marginal coverage of `prediction_set`, e.g. 0.9."
    )

    @model_validator(mode="after")
    def _probabilities_cover_labels(self) -> "TaskPrediction":
        if set(self.probabilities) != set(self.labels):
            raise ValueError("probabilities must have exactly one entry per label")
        if any(not (0.0 <= p <= 1.0) for p in self.probabilities.values()):
            raise ValueError("probabilities must lie in [0, 1]")
        if not math.isclose(sum(self.probabilities.values()), 1.0, abs_tol=1e-3):
            raise ValueError("probabilities must sum to 1")
        return self

    def top(self) -> tuple[str, float]:
        label = max(self.labels, key=lambda k: self.probabilities[k])
        return label, self.probabilities[label]


class PatchAttention(ContractModel):
    """One pathology patch the attention-MIL branch looked at most."""

    slide_id: str = Field(description="Slide (or feature file) id.")
    patch_index: int = Field(ge=0, description="Row in the slide's feature matrix.")
    coord_level0: tuple[int, int] = Field(description="Top-left corner of the patch, level-0 pixels.")
    patch_size_level0: int = Field(gt=0, description="Patch side length in level-0 pixels.")
    attention: float = Field(ge=0, le=1, description="Normalised attention weight of the patch within its slide.")
    pattern: str = Field(description="Tissue pattern the patch-level head assigns to this patch.")
    pattern_probability: float = Field(ge=0, le=1, description="Probability of that pattern.")
    slide_patches: int | None = Field(
        default=None, ge=1, description="Patches on the slide, so attention can be read against uniform 1/N."
    )


class SlideAttention(ContractModel):
    """Attention over every patch of one slide, for the heatmap drawn from the slide's `coords`."""

    slide_id: str = Field(description="Slide (or feature file) id.")
    attention: list[float] = Field(
        description="Attention per row of the slide's feature matrix, renormalised within the slide (sums to 1)."
    )


class PathwayPatchAttention(ContractModel):
    """The patch one pathway's genomic token attended to most (co-attention / pathway-to-patch heads)."""

    pathway: str = Field(description="Pathway programme whose token attended, e.g. 'hypoxia'.")
    slide_id: str = Field(description="Slide (or feature file) id.")
    patch_index: int = Field(ge=0, description="Row in the slide's feature matrix.")
    coord_level0: tuple[int, int] = Field(description="Top-left corner of the patch, level-0 pixels.")
    patch_size_level0: int = Field(gt=0, description="Patch side length in level-0 pixels.")
    attention: float = Field(ge=0, le=1, description="The pathway token's attention on this patch (over all patches).")
    slide_patches: int = Field(ge=1, description="Patches the pathway attended over, so it reads against uniform 1/N.")


class ModalityOOD(ContractModel):
    """How far one modality's input sits from what the model was trained on (or what a gate found implausible)."""

    modality: Modality = Field(description="Modality scored.")
    method: str = Field(description="Detector or gate, e.g. 'mahalanobis' or 'gate:expression_scale'.")
    score: float = Field(description="Distance or score; higher = further from the training data.")
    threshold: float = Field(description="Score above which the input counts as out of distribution.")
    false_alarm_rate: float | None = Field(
        default=None, ge=0, le=1, description="Rate of clean held-out cases above `threshold`, where measured."
    )
    out_of_distribution: bool = Field(description="score > threshold.")
    action: Literal["none", "down_weighted", "masked"] = Field(
        default="none", description="What the model did with the modality because of it."
    )
    detail: str = Field(default="", description="Plain reason, naming file and field where there is one.")


class FusionOutput(ContractModel):
    """Inference result of a fusion model for one case."""

    model_name: str = Field(description="Registered fusion model name.")
    model_version: str = Field(description="Model version string from its card.")
    weights_sha256: str | None = Field(default=None, description="SHA-256 of the checkpoint file used.")
    predictions: list[TaskPrediction] = Field(description="One entry per task the model answers.")
    modalities_used: list[Modality] = Field(description="Modalities that entered the fusion (others were masked).")
    modality_contributions: dict[str, float] = Field(
        description="Fusion attention weight per modality used; sums to 1."
    )
    patch_attention: list[PatchAttention] = Field(default_factory=list, description="Top-attended patches.")
    slide_attention: list[SlideAttention] = Field(
        default_factory=list, description="Attention over all patches, per slide (empty when no slide was used)."
    )
    habitat_attribution: dict[str, float] = Field(
        default_factory=dict, description="Share of the imaging branch's attribution per habitat phenotype."
    )
    pattern_fractions: dict[str, float] = Field(
        default_factory=dict, description="Fraction of patches per tissue pattern, over all slides."
    )
    ood: list[ModalityOOD] = Field(
        default_factory=list, description="Out-of-distribution scores per modality (model detector and input gates)."
    )
    fusion_head: str | None = Field(
        default=None, description="Registered fusion head that fused the modalities, e.g. 'attention_mil', 'mcat'."
    )
    ensemble_members: int | None = Field(
        default=None, ge=1, description="Deep-ensemble size whose averaged, then calibrated, outputs these are."
    )
    pathway_patch_attention: list[PathwayPatchAttention] = Field(
        default_factory=list, description="Per measured pathway, the patch its genomic token attended to most."
    )
    node_attention: dict[str, float] = Field(
        default_factory=dict, description="Graph read-out attention per node (modalities and habitats); sums to 1."
    )
    timepoint_attention: dict[str, float] = Field(
        default_factory=dict, description="Attention of the latest scan over the imaging time points; sums to 1."
    )
    attribution_methods: dict[str, str] = Field(
        default_factory=dict,
        description="How each interpretability field was obtained (e.g. modality attention vs occlusion).",
    )

    def prediction(self, task: str) -> TaskPrediction | None:
        return next((p for p in self.predictions if p.task == task), None)
