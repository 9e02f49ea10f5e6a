"""Late fusion with learned modality weights: one prediction per modality, averaged over the present ones.

Each modality has its own task layers; the weights are one learned logit per modality,
softmaxed over the modalities a case has (decision-level fusion, as in Cheerla & Gevaert,
Bioinformatics 2019). Unlike DyAM the weights are the same for every case.
"""

from __future__ import annotations

import torch
from torch import nn

from fusion_models.fusion_heads.base import (
    FusionHead,
    HeadConfig,
    HeadOutput,
    PerModalityTasks,
    register_fusion_head,
)
from fusion_models.fusion_heads.inputs import HeadInputs
from fusion_models.heads import masked_softmax


@register_fusion_head("late")
class LateFusion(FusionHead):
    def __init__(self, config: HeadConfig):
        super().__init__(config)
        self.per_modality = PerModalityTasks(config)
        self.weight_logits = nn.Parameter(torch.zeros(len(config.modalities)))

    def forward(self, x: HeadInputs) -> HeadOutput:
        e = self.encoders(x)
        weights = masked_softmax(self.weight_logits.expand_as(e.present), e.present)
        outputs = self.per_modality.combine(self.per_modality(e.tokens), weights)
        return HeadOutput(outputs, self.interpretation(e, modality_weights=weights))
