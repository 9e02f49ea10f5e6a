"""Attribution by occlusion: how much a scalar of the head's output falls when one habitat, or one
modality, is masked.

Attention pooling weights over habitats say what a head averaged, not what drove its answer
(measured: a trained head's habitat attention picks the driving habitat no better than an
untrained one's). Occlusion asks the head itself, through the same mask every head honours,
so it works for any registered head. For a class, explain its log-odds rather than its
log-probability: a confident head's log p saturates at 0, and every drop would read as a tie.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from fusion_models.fusion_heads.base import FusionHead
from fusion_models.fusion_heads.inputs import HeadInputs
from schemas.common import MODALITIES


def log_odds(logits: Tensor, label: int) -> Tensor:
    """log p(label) - log(1 - p(label)) from logits (B, K), without forming the probabilities."""
    others = torch.cat([logits[:, :label], logits[:, label + 1 :]], dim=1)
    return logits[:, label] - torch.logsumexp(others, dim=1)


Explained = Callable[[dict[str, Tensor]], Tensor]  # a head's outputs -> (B,) scalar per case


@torch.no_grad()
def habitat_occlusion(head: FusionHead, x: HeadInputs, explained: Explained) -> Tensor:
    """(B, R): drop in `explained` when habitat r of the latest scan is masked; 0 for absent habitats."""
    head.eval()
    reference = explained(head(x).outputs)
    drops = torch.zeros(x.region_mask.shape[0], x.region_mask.shape[2])
    for r in range(x.region_mask.shape[2]):
        present = x.region_mask[:, -1, r]
        if not present.any():
            continue
        mask = x.region_mask.clone()
        mask[:, -1, r] = False
        occluded = explained(head(HeadInputs(**{**vars(x), "region_mask": mask})).outputs)
        drops[:, r] = torch.where(present, reference - occluded, torch.zeros_like(reference))
    return drops


@torch.no_grad()
def modality_occlusion(head: FusionHead, x: HeadInputs, explained: Explained) -> Tensor:
    """(B, M) over MODALITIES: drop in `explained` when the modality is masked; 0 where the case lacks it."""
    head.eval()
    reference = explained(head(x).outputs)
    drops = torch.zeros(x.present.shape)
    for m, modality in enumerate(MODALITIES):
        present = x.present[:, m]
        if present.any():
            occluded = explained(head(x.without(modality)).outputs)
            drops[:, m] = torch.where(present, reference - occluded, torch.zeros_like(reference))
    return drops
