"""Early fusion: concatenate the modality tokens with explicit presence flags, then an MLP.

The baseline every fusion paper compares with (e.g. Mobadersany et al., PNAS 2018, for
histology + genomics). A missing modality enters as a zero token *and* a 0 flag, so the
network is told it is missing instead of reading an imputed value.
"""

from __future__ import annotations

import torch

from fusion_models.fusion_heads.base import FusionHead, HeadConfig, HeadOutput, register_fusion_head
from fusion_models.fusion_heads.inputs import HeadInputs
from fusion_models.heads import mlp


@register_fusion_head("early")
class EarlyFusion(FusionHead):
    def __init__(self, config: HeadConfig):
        super().__init__(config)
        m = len(config.modalities)
        self.fuse = mlp(m * (config.dim + 1), config.dim, config.dim, config.dropout)

    def forward(self, x: HeadInputs) -> HeadOutput:
        e = self.encoders(x)
        flags = e.present.float()
        fused = self.fuse(torch.cat([(e.tokens * flags.unsqueeze(-1)).flatten(1), flags], dim=1))
        return HeadOutput(self.predict(fused), self.interpretation(e))
