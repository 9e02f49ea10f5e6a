"""Gated tensor fusion (Pathomic Fusion: Chen et al., IEEE TMI 2020).

Each modality token is gated by a sigmoid computed from itself and the other present
modalities (the paper's attention gating), shrunk to a few units, extended with a constant
1, and the modalities are combined by their Kronecker product: the constant keeps every
unimodal and lower-order term, and a missing modality is the vector (0, ..., 0, 1), which
drops exactly its terms. The products then pass an MLP.
"""

from __future__ import annotations

import torch
from torch import nn

from fusion_models.fusion_heads.base import FusionHead, HeadConfig, HeadOutput, register_fusion_head
from fusion_models.fusion_heads.inputs import HeadInputs
from fusion_models.heads import mlp

# 4 modalities x (8 + 1) units -> 9^4 = 6561 product features: small enough for 2 CPU cores.
DEFAULT_GATE_DIM = 8


@register_fusion_head("pathomic")
class GatedTensorFusion(FusionHead):
    def __init__(self, config: HeadConfig):
        super().__init__(config)
        d, g = config.dim, int(config.options.get("gate_dim", DEFAULT_GATE_DIM))
        m = len(config.modalities)
        self.project = nn.ModuleList(nn.Linear(d, g) for _ in range(m))
        self.gates = nn.ModuleList(nn.Linear(2 * d, g) for _ in range(m))
        self.fuse = mlp((g + 1) ** m, d, d, config.dropout)

    def forward(self, x: HeadInputs) -> HeadOutput:
        e = self.encoders(x)
        present = e.present.float()
        tokens = e.tokens * present.unsqueeze(-1)
        total = tokens.sum(1)
        others = present.sum(1, keepdim=True)
        product, gate_means = torch.ones(len(x), 1), []
        for i, (project, gate) in enumerate(zip(self.project, self.gates, strict=True)):
            context = (total - tokens[:, i]) / (others - present[:, i : i + 1]).clamp_min(1)
            g = torch.sigmoid(gate(torch.cat([tokens[:, i], context], dim=1))) * present[:, i : i + 1]
            gated = g * torch.relu(project(tokens[:, i]))
            gate_means.append(g.mean(1))
            extended = torch.cat([gated, torch.ones(len(x), 1)], dim=1)
            product = (product.unsqueeze(-1) * extended.unsqueeze(1)).flatten(1)
        gates = torch.stack(gate_means, dim=1)
        weights = gates / gates.sum(1, keepdim=True).clamp_min(1e-6)
        return HeadOutput(self.predict(self.fuse(product)), self.interpretation(e, modality_weights=weights))
