"""Pathway-to-patch cross-attention (SurvPath: Jaume et al., CVPR 2024).

Pathway (and driver) tokens and patch tokens form one sequence under one attention layer
whose mask follows the paper's memory-efficient scheme: genomic tokens attend to
everything, patch tokens attend to genomic tokens only, never patch to patch. The mean
genomic and mean patch outputs replace the genomics and pathology tokens, which are then
fused with the other modalities by attention over the present ones.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fusion_models.fusion_heads.base import CrossAttention, FusionHead, HeadConfig, HeadOutput, register_fusion_head
from fusion_models.fusion_heads.inputs import PATHWAYS, HeadInputs
from fusion_models.heads import ModalityAttention, mlp


def _masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    return (tokens * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)


@register_fusion_head("survpath")
class PathwayPatchAttention(FusionHead):
    needs = frozenset({"pathology", "genomics"})

    def __init__(self, config: HeadConfig):
        super().__init__(config)
        d = config.dim
        self.attention = CrossAttention(d)
        self.norm = nn.LayerNorm(d)
        self.genomic_out, self.patch_out = mlp(d, d, d, config.dropout), mlp(d, d, d, config.dropout)
        self.fusion = ModalityAttention(d, len(config.modalities), d // 2)

    def forward(self, x: HeadInputs) -> HeadOutput:
        e = self.encoders(x)
        g = e.genomic_tokens.shape[1]
        sequence = torch.cat([e.genomic_tokens, e.patch_tokens], dim=1)
        valid = torch.cat([e.genomic_mask, e.patch_mask], dim=1)
        is_patch = torch.zeros_like(valid)
        is_patch[:, g:] = True
        allowed = valid.unsqueeze(1) & valid.unsqueeze(2) & ~(is_patch.unsqueeze(1) & is_patch.unsqueeze(2))
        attended, attention = self.attention(sequence, sequence, allowed)
        out = self.norm(sequence + attended) * valid.unsqueeze(-1)
        replaced = {
            "genomics": self.genomic_out(_masked_mean(out[:, :g], e.genomic_mask)),
            "pathology": self.patch_out(_masked_mean(out[:, g:], e.patch_mask)),
        }
        tokens = torch.stack(
            [replaced.get(m, e.tokens[:, i]) for i, m in enumerate(self.config.modalities)], dim=1
        )
        fused, weights = self.fusion(tokens, e.present)
        pathway_patch = attention[:, : len(PATHWAYS), g:]
        # Patch attribution: how much attention the measured pathways pay each patch, normalised per case.
        known = e.genomic_mask[:, : len(PATHWAYS)].unsqueeze(-1)
        received = (pathway_patch * known).sum(1)
        patch_attention = torch.where(
            received.sum(1, keepdim=True) > 0,
            received / received.sum(1, keepdim=True).clamp_min(1e-12),
            e.patch_attention,
        )
        interpretation = self.interpretation(
            e, modality_weights=weights, patch_attention=patch_attention, pathway_patch_attention=pathway_patch
        )
        return HeadOutput(self.predict(fused), interpretation)
