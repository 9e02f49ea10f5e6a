"""Deep Orthogonal Fusion (Braman et al., MICCAI 2021).

Modality embeddings are fused by attention over the present modalities, and training adds
the multimodal orthogonalisation loss: for the embedding matrices H_m of each modality
over the batch (present cases only) and their concatenation H,
    L = sum_m max(1, ||H_m||_*) - ||H||_*   (nuclear norms, divided by the batch size),
which is smallest when the modalities span orthogonal subspaces, i.e. carry complementary
rather than redundant information.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fusion_models.fusion_heads.base import FusionHead, HeadConfig, HeadOutput, register_fusion_head
from fusion_models.fusion_heads.inputs import HeadInputs
from fusion_models.heads import ModalityAttention


def orthogonality_loss(tokens: Tensor, present: Tensor) -> Tensor:
    """tokens (B, M, d), present (B, M) -> the MMO loss above (0 for an empty batch)."""
    blocks = [tokens[present[:, m], m] for m in range(tokens.shape[1])]
    blocks = [h for h in blocks if len(h)]
    if not blocks:
        return tokens.sum() * 0
    individual = sum(torch.clamp(torch.linalg.matrix_norm(h, ord="nuc"), min=1.0) for h in blocks)
    joint = torch.linalg.matrix_norm(torch.cat(blocks, dim=0), ord="nuc")
    return (individual - joint) / len(tokens)


@register_fusion_head("orthogonal")
class DeepOrthogonalFusion(FusionHead):
    def __init__(self, config: HeadConfig):
        super().__init__(config)
        self.fusion = ModalityAttention(config.dim, len(config.modalities), config.dim // 2)

    def forward(self, x: HeadInputs) -> HeadOutput:
        e = self.encoders(x)
        fused, weights = self.fusion(e.tokens, e.present)
        aux = orthogonality_loss(e.tokens, e.present)
        return HeadOutput(self.predict(fused), self.interpretation(e, modality_weights=weights), aux)
