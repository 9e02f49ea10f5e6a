"""DyAM: dynamic attention with masking (Vanguri et al., Nature Cancer 2022).

Like late fusion each modality makes its own prediction, but each modality's weight is
computed per patient from its own token, and the softmax runs over the modalities the
patient has: missing ones are masked and the others re-weighted.
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


@register_fusion_head("dyam")
class DynamicAttentionMasking(FusionHead):
    def __init__(self, config: HeadConfig):
        super().__init__(config)
        self.per_modality = PerModalityTasks(config)
        self.scores = nn.ModuleList(nn.Linear(config.dim, 1) for _ in config.modalities)

    def forward(self, x: HeadInputs) -> HeadOutput:
        e = self.encoders(x)
        logits = torch.cat([score(e.tokens[:, i]) for i, score in enumerate(self.scores)], dim=1)
        weights = masked_softmax(logits, e.present)
        outputs = self.per_modality.combine(self.per_modality(e.tokens), weights)
        return HeadOutput(outputs, self.interpretation(e, modality_weights=weights))
