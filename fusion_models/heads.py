"""Building blocks of the fusion model: masked softmax, gated attention-MIL, modality attention, Cox loss."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def masked_softmax(logits: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over the entries where `mask` is true; masked entries get exactly 0.

    A row with no true entry gives all zeros instead of NaN, so a case without
    patches (or a padded slot) contributes nothing rather than poisoning the batch.
    """
    if logits.shape[dim] == 0:  # a batch of cases that all lack patches
        return torch.zeros_like(logits)
    logits = logits.masked_fill(~mask, float("-inf"))
    row_max = logits.amax(dim=dim, keepdim=True).nan_to_num(neginf=0.0).detach()
    weights = torch.exp(logits - row_max) * mask
    return weights / weights.sum(dim=dim, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)


def mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    """Two-layer perceptron with GELU; the token encoder of every vector modality."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim), nn.GELU()
    )


class Standardiser(nn.Module):
    """(x - mean) / std from training statistics (buffers, so they travel in the state_dict)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class GatedAttentionMIL(nn.Module):
    """Gated attention pooling over a bag of patch embeddings (Ilse et al., ICML 2018)."""

    def __init__(self, dim: int, attention_dim: int):
        super().__init__()
        self.value = nn.Linear(dim, attention_dim)
        self.gate = nn.Linear(dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1)

    def forward(self, patches: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """patches (B, N, D), mask (B, N) -> bag embedding (B, D), attention (B, N)."""
        logits = self.score(torch.tanh(self.value(patches)) * torch.sigmoid(self.gate(patches))).squeeze(-1)
        attention = masked_softmax(logits, mask)
        return torch.einsum("bn,bnd->bd", attention, patches), attention


class ModalityAttention(nn.Module):
    """Attention over modality tokens; its weights are the reported modality contributions."""

    def __init__(self, dim: int, n_modalities: int, attention_dim: int):
        super().__init__()
        # A learned per-modality embedding lets the scorer prefer a modality for what it is,
        # not only for what its token says in this case.
        self.modality_embedding = nn.Parameter(torch.zeros(n_modalities, dim))
        self.score = nn.Sequential(nn.Linear(dim, attention_dim), nn.Tanh(), nn.Linear(attention_dim, 1))

    def forward(self, tokens: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
        """tokens (B, M, D), present (B, M) -> fused (B, D), weights (B, M) summing to 1 over present."""
        weights = masked_softmax(self.score(tokens + self.modality_embedding).squeeze(-1), present)
        return torch.einsum("bm,bmd->bd", weights, tokens), weights


def cox_partial_likelihood_loss(risk: Tensor, time: Tensor, event: Tensor) -> Tensor:
    """Negative Cox partial log-likelihood per event, Breslow's handling of tied times.

    risk (N,) linear predictors (higher = worse), time (N,), event (N,) 0/1. The risk
    set of a case holds every case still at risk at its time, ties included.
    """
    if not bool(event.any()):
        return risk.sum() * 0.0  # no event, no information; keeps the graph for backward()
    order = torch.argsort(time, descending=True)
    risk, time, event = risk[order], time[order], event[order]
    log_cumulative = torch.logcumsumexp(risk, dim=0)
    # With descending times, the last index of a tie group sees the whole tied risk set.
    negated = -time
    last_of_tie = torch.searchsorted(negated, negated, right=True) - 1
    log_risk_set = log_cumulative[last_of_tie]
    return -((risk - log_risk_set) * event).sum() / event.sum()
