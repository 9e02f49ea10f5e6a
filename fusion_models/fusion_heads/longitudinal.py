"""Longitudinal imaging head: attention over two or more scans and their changes.

Each scan is pooled from its habitat tokens into one token; the latest scan queries the
earlier ones and the scan-to-scan differences (with a learned embedding of how many scans
back each is), the way temporal-attention models of serial MRI read treatment response
(e.g. Jin et al., Nature Communications 2021, for serial MRI in rectal cancer). A single scan reduces to a plain imaging
token; the imaging token is then fused with the other modalities by attention.
"""

from __future__ import annotations

import torch
from torch import nn

from fusion_models.fusion_heads.base import CrossAttention, FusionHead, HeadConfig, HeadOutput, register_fusion_head
from fusion_models.fusion_heads.inputs import HeadInputs
from fusion_models.heads import ModalityAttention, mlp

DEFAULT_MAX_SCANS = 4  # scans further back share the oldest embedding


@register_fusion_head("longitudinal")
class LongitudinalFusion(FusionHead):
    needs = frozenset({"imaging"})

    def __init__(self, config: HeadConfig):
        super().__init__(config)
        d = config.dim
        self.max_scans = int(config.options.get("max_scans", DEFAULT_MAX_SCANS))
        self.scans_back = nn.Embedding(self.max_scans, d)
        self.change = nn.Linear(d, d)
        self.attention = CrossAttention(d)
        self.imaging = mlp(2 * d, d, d, config.dropout)
        self.fusion = ModalityAttention(d, len(config.modalities), d // 2)

    def forward(self, x: HeadInputs) -> HeadOutput:
        e = self.encoders(x)
        scans, mask = e.scan_tokens, e.scan_mask
        t = scans.shape[1]
        back = self.scans_back(torch.arange(t - 1, -1, -1).clamp(max=self.max_scans - 1))
        changes = self.change(scans[:, 1:] - scans[:, :-1]) * (mask[:, 1:] & mask[:, :-1]).unsqueeze(-1)
        keys = torch.cat([scans + back, changes + back[1:]], dim=1)
        key_mask = torch.cat([mask, mask[:, 1:] & mask[:, :-1]], dim=1)
        latest = scans[:, -1:] + back[-1]
        attended, attention = self.attention(latest, keys, key_mask.unsqueeze(1))
        imaging = self.imaging(torch.cat([scans[:, -1], attended[:, 0]], dim=1))
        index = self.config.modalities.index("imaging")
        tokens = torch.cat([e.tokens[:, :index], imaging.unsqueeze(1), e.tokens[:, index + 1 :]], dim=1)
        # Credit each scan with its own key and the change that ends at it.
        timepoint_attention = attention[:, 0, :t].clone()
        timepoint_attention[:, 1:] += attention[:, 0, t:]
        fused, weights = self.fusion(tokens, e.present)
        interpretation = self.interpretation(e, modality_weights=weights, timepoint_attention=timepoint_attention)
        return HeadOutput(self.predict(fused), interpretation)
