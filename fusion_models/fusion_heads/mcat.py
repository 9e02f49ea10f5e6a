"""Genomics-guided co-attention over patches (MCAT: Chen et al., ICCV 2021, "Multimodal Co-Attention Transformer").

Every genomic token (a pathway score or a driver event) queries the patch bag; each query
returns a genomics-guided bag embedding, and these are pooled by attention into the
pathology token. The co-attention map is the pathway-to-patch attention of the report.
A case without genomics keeps the plain attention-MIL token; modality tokens are then
fused by attention over the present ones.
"""

from __future__ import annotations

import torch

from fusion_models.fusion_heads.base import (
    AttentionPool,
    CrossAttention,
    FusionHead,
    HeadConfig,
    HeadOutput,
    register_fusion_head,
)
from fusion_models.fusion_heads.inputs import PATHWAYS, HeadInputs
from fusion_models.heads import ModalityAttention, mlp


@register_fusion_head("mcat")
class CoAttentionFusion(FusionHead):
    needs = frozenset({"pathology", "genomics"})

    def __init__(self, config: HeadConfig):
        super().__init__(config)
        d = config.dim
        self.coattention = CrossAttention(d)
        self.pool = AttentionPool(d)
        self.guided = mlp(d, d, d, config.dropout)
        self.fusion = ModalityAttention(d, len(config.modalities), d // 2)

    def forward(self, x: HeadInputs) -> HeadOutput:
        e = self.encoders(x)
        tokens = e.tokens
        mask = e.genomic_mask.unsqueeze(-1) & e.patch_mask.unsqueeze(1)
        guided, attention = self.coattention(e.genomic_tokens, e.patch_tokens, mask)
        pooled, query_weights = self.pool(guided, e.genomic_mask)
        has_genomics = e.genomic_mask.any(1, keepdim=True)
        index = self.config.modalities.index("pathology")
        replaced = torch.where(has_genomics, self.guided(pooled), tokens[:, index])
        tokens = torch.cat([tokens[:, :index], replaced.unsqueeze(1), tokens[:, index + 1 :]], dim=1)
        patch_attention = torch.where(
            has_genomics, torch.einsum("bg,bgn->bn", query_weights, attention), e.patch_attention
        )
        pathway_patch = attention[:, : len(PATHWAYS)]
        fused, weights = self.fusion(tokens, e.present)
        interpretation = self.interpretation(
            e, modality_weights=weights, patch_attention=patch_attention, pathway_patch_attention=pathway_patch
        )
        return HeadOutput(self.predict(fused), interpretation)

