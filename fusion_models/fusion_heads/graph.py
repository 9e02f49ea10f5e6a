"""Graph attention over modality and habitat nodes (GAT: Velickovic et al., ICLR 2018).

Nodes are the modality tokens and the habitat tokens of the latest scan. Edges join every
pair of modality nodes, every pair of habitat nodes (they share a lesion) and each habitat
to the imaging node; a node that is absent (missing modality, habitat not in the mask) has
no edges. Two GAT layers, then an attention read-out whose weights are the node attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusion_models.features import HABITATS
from fusion_models.fusion_heads.base import AttentionPool, FusionHead, HeadConfig, HeadOutput, register_fusion_head
from fusion_models.fusion_heads.inputs import HeadInputs
from fusion_models.heads import masked_softmax


class GraphAttentionLayer(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim, bias=False)
        self.source, self.target = nn.Linear(dim, 1, bias=False), nn.Linear(dim, 1, bias=False)

    def forward(self, nodes: Tensor, edges: Tensor) -> Tensor:
        """nodes (B, K, d), edges (B, K, K) bool (self-loops included) -> (B, K, d)."""
        h = self.linear(nodes)
        logits = F.leaky_relu(self.target(h) + self.source(h).transpose(1, 2), 0.2)  # [i, j]: i attends to j
        return nodes + F.elu(torch.einsum("bij,bjd->bid", masked_softmax(logits, edges), h))


def graph_edges(modalities: tuple[str, ...], n_regions: int) -> Tensor:
    """(K, K) adjacency over [modalities..., habitats...], self-loops included."""
    m = len(modalities)
    edges = torch.zeros(m + n_regions, m + n_regions, dtype=torch.bool)
    edges[:m, :m] = True
    edges[m:, m:] = True
    if "imaging" in modalities:
        imaging = modalities.index("imaging")
        edges[imaging, m:] = edges[m:, imaging] = True
    return edges


@register_fusion_head("graph")
class GraphAttentionFusion(FusionHead):
    def __init__(self, config: HeadConfig):
        super().__init__(config)
        self.has_regions = "imaging" in config.modalities
        self.register_buffer("edges", graph_edges(config.modalities, len(HABITATS) if self.has_regions else 0))
        self.node_embedding = nn.Parameter(torch.zeros(len(self.edges), config.dim))
        self.layers = nn.ModuleList(GraphAttentionLayer(config.dim) for _ in range(2))
        self.readout = AttentionPool(config.dim)

    def forward(self, x: HeadInputs) -> HeadOutput:
        e = self.encoders(x)
        nodes, valid = e.tokens, e.present
        if self.has_regions:
            nodes = torch.cat([nodes, e.region_tokens], dim=1)
            valid = torch.cat([valid, e.region_mask], dim=1)
        nodes = (nodes + self.node_embedding) * valid.unsqueeze(-1)
        edges = self.edges & valid.unsqueeze(1) & valid.unsqueeze(2)
        for layer in self.layers:
            nodes = layer(nodes, edges) * valid.unsqueeze(-1)
        fused, attention = self.readout(nodes, valid)
        m = len(self.config.modalities)
        names = (*self.config.modalities, *(HABITATS if self.has_regions else ()))
        region_attention = None
        if self.has_regions:
            regions = attention[:, m:]
            region_attention = regions / regions.sum(1, keepdim=True).clamp_min(1e-12)
        modality = attention[:, :m].clone()
        if self.has_regions:  # habitat nodes are imaging evidence
            modality[:, self.config.modalities.index("imaging")] += attention[:, m:].sum(1)
        interpretation = self.interpretation(
            e, modality_weights=modality, node_attention=attention, node_names=names, region_attention=region_attention
        )
        return HeadOutput(self.predict(fused), interpretation)
