"""Habitat attribution by occlusion: how much a class's log-odds fall when one habitat is masked.

Attention pooling weights over habitats say what a head averaged, not what drove its answer
(measured: a trained head's habitat attention picks the driving habitat no better than an
untrained one's). Occlusion asks the head itself, through the same mask every head honours,
so it works for any registered head that reads imaging. Log-odds rather than log-probability:
a confident head's log p saturates at 0, and every drop would read as a tie.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fusion_models.fusion_heads.base import FusionHead
from fusion_models.fusion_heads.inputs import HeadInputs


def log_odds(logits: Tensor, label: int) -> Tensor:
    """log p(label) - log(1 - p(label)) from logits (B, K), without forming the probabilities."""
    others = torch.cat([logits[:, :label], logits[:, label + 1 :]], dim=1)
    return logits[:, label] - torch.logsumexp(others, dim=1)


@torch.no_grad()
def habitat_occlusion(head: FusionHead, x: HeadInputs, task: str, label: int) -> Tensor:
    """(B, R): drop in the log-odds of `label` when habitat r of the latest scan is masked; 0 for absent habitats."""
    head.eval()
    reference = log_odds(head(x).outputs[task], label)
    drops = torch.zeros(x.region_mask.shape[0], x.region_mask.shape[2])
    for r in range(x.region_mask.shape[2]):
        present = x.region_mask[:, -1, r]
        if not present.any():
            continue
        mask = x.region_mask.clone()
        mask[:, -1, r] = False
        occluded = log_odds(head(HeadInputs(**{**vars(x), "region_mask": mask})).outputs[task], label)
        drops[:, r] = torch.where(present, reference - occluded, torch.zeros_like(reference))
    return drops
