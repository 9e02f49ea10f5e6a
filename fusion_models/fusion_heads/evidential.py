"""Dempster-Shafer combination of per-modality evidence (TMC: Han et al., ICLR 2021, "Trusted Multi-View Classification").

Each modality gives non-negative evidence per class, read as a Dirichlet, i.e. a
subjective-logic opinion: beliefs b_k = e_k / S and uncertainty u = K / S with
S = sum(e) + K. Opinions are merged with the reduced Dempster rule. A missing modality is
the vacuous opinion (b = 0, u = 1), the identity of that rule, so masking is exact rather
than an imputation. The output logits are log expected probabilities (alpha / S) of the
merged Dirichlet; training uses cross-entropy on them rather than TMC's digamma loss.
Other head types (survival risk, ordinal cumulative logits) have no evidential form: their
per-modality outputs are averaged with weights (1 - u) of the first classification task's
opinions, so a more certain modality counts more.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fusion_models.fusion_heads.base import (
    FusionHead,
    HeadConfig,
    HeadOutput,
    PerModalityTasks,
    register_fusion_head,
)
from fusion_models.fusion_heads.inputs import HeadInputs


def combine_opinions(b1: Tensor, u1: Tensor, b2: Tensor, u2: Tensor) -> tuple[Tensor, Tensor]:
    """Reduced Dempster rule for two opinions: beliefs (B, K), uncertainties (B, 1)."""
    conflict = b1.sum(-1, keepdim=True) * b2.sum(-1, keepdim=True) - (b1 * b2).sum(-1, keepdim=True)
    scale = 1.0 / (1.0 - conflict).clamp_min(1e-6)
    return scale * (b1 * b2 + b1 * u2 + b2 * u1), scale * u1 * u2


def opinion(evidence: Tensor) -> tuple[Tensor, Tensor]:
    """Evidence (B, K) >= 0 -> beliefs (B, K), uncertainty (B, 1)."""
    strength = evidence.sum(-1, keepdim=True) + evidence.shape[-1]
    return evidence / strength, evidence.shape[-1] / strength


@register_fusion_head("evidential")
class EvidentialFusion(FusionHead):
    def __init__(self, config: HeadConfig):
        super().__init__(config)
        self.per_modality = PerModalityTasks(config)

    def forward(self, x: HeadInputs) -> HeadOutput:
        e = self.encoders(x)
        per = self.per_modality(e.tokens)
        present = e.present.float().unsqueeze(-1)
        outputs: dict[str, Tensor] = {}
        certainty = present.squeeze(-1)
        classification = [t for t in self.config.tasks if t.kind == "classification"]
        for task in classification:
            evidence = F.softplus(per[task.name]) * present  # (B, M, K); absent -> vacuous
            beliefs, uncertainty = opinion(evidence[:, 0])
            opinions = [opinion(evidence[:, i]) for i in range(evidence.shape[1])]
            for b, u in opinions[1:]:
                beliefs, uncertainty = combine_opinions(beliefs, uncertainty, b, u)
            k = evidence.shape[-1]
            alpha = beliefs * (k / uncertainty) + 1.0
            outputs[task.name] = torch.log(alpha / alpha.sum(-1, keepdim=True))
            if task is classification[0]:
                certainty = torch.cat([1.0 - u for _, u in opinions], dim=1) * present.squeeze(-1)
        weights = certainty / certainty.sum(1, keepdim=True).clamp_min(1e-6)
        others = {t.name: per[t.name] for t in self.config.tasks if t.name not in outputs}
        averaged = self.per_modality.combine(others, weights)
        ordered = {t.name: outputs.get(t.name, averaged.get(t.name)) for t in self.config.tasks}
        return HeadOutput(ordered, self.interpretation(e, modality_weights=weights))
