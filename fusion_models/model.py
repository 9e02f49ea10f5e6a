"""The fusion model: per-modality tokens, attention over the present ones, one head per task.

Pathology: gated attention-MIL over the patch bag (plus a patch-level tissue-pattern
head), merged with the findings vector into one token. Imaging, genomics and clinical
vectors: small MLPs. The fusion attention is a softmax over present modalities only,
so its weights are the modality contributions and a missing modality gets exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from fusion_models.features import BLOCK_MODALITY, Batch, InputSpec
from fusion_models.heads import GatedAttentionMIL, ModalityAttention, Standardiser, mlp
from fusion_models.task_heads import TaskSpec, task_head
from schemas.common import TISSUE_PATTERNS

__all__ = ["FusionForward", "FusionModel", "FusionModelConfig", "Standardiser", "TaskSpec", "TrainingSpec"]

INTENDED_USE = "research use only, not for diagnosis"


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainingSpec(_Config):
    lr: float = 3e-3
    weight_decay: float = 1e-3
    batch_size: int = 32
    patience: int = Field(default=8, description="Epochs without held-out improvement before stopping.")
    pattern_loss_weight: float = 0.5


class FusionModelConfig(_Config):
    """Everything that defines a fusion model except its weights; travels inside the checkpoint."""

    name: str
    version: str
    description: str
    tasks: tuple[TaskSpec, ...] = Field(
        min_length=1, description="In order of importance; the imaging attribution explains the first."
    )
    inputs: InputSpec
    patterns: tuple[str, ...] = TISSUE_PATTERNS
    hidden_dim: int = 32
    token_dim: int = 32
    attention_dim: int = 16
    dropout: float = 0.1
    modality_dropout: float = Field(default=0.3, ge=0, lt=1, description="Training: chance to hide a present modality.")
    training: TrainingSpec = TrainingSpec()
    licence: str = "Apache-2.0"
    intended_use: str = INTENDED_USE

    @model_validator(mode="after")
    def _has_inputs(self) -> "FusionModelConfig":
        if not self.inputs.modalities():
            raise ValueError("a fusion model needs at least one input modality")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate task names {names}")
        return self


@dataclass
class FusionForward:
    outputs: dict[str, Tensor]  # task -> its head type's raw output, (B, ...)
    modality_weights: Tensor  # (B, M), model.modalities order
    patch_attention: Tensor  # (B, N)
    pattern_logits: Tensor  # (B, N, P)
    standardised: dict[str, Tensor]  # block -> (B, D), the inputs attributions are taken against


class FusionModel(nn.Module):
    def __init__(self, config: FusionModelConfig):
        super().__init__()
        self.config = config
        self.modalities = config.inputs.modalities()
        blocks = config.inputs.vector_names()
        h, d = config.hidden_dim, config.token_dim
        self.standardisers = nn.ModuleDict({b: Standardiser(len(names)) for b, names in blocks.items()})
        self.token_encoders = nn.ModuleDict(
            {b: mlp(2 * len(names), h, d, config.dropout) for b, names in blocks.items() if b != "findings"}
        )
        pathology = config.inputs.pathology
        if pathology:
            self.patch_standardiser = Standardiser(pathology.embed_dim)
            self.patch_embed = nn.Sequential(nn.Linear(pathology.embed_dim, h), nn.GELU(), nn.Dropout(config.dropout))
            self.mil = GatedAttentionMIL(h, config.attention_dim)
            self.pattern_head = nn.Linear(h, len(config.patterns))
            # bag embedding + "has patches" flag + findings values and known flags
            self.pathology_token = mlp(h + 1 + 2 * len(blocks["findings"]), h, d, config.dropout)
        self.fusion = ModalityAttention(d, len(self.modalities), config.attention_dim)
        self.heads = nn.ModuleDict({t.name: task_head(t.kind).layer(d, t) for t in config.tasks})

    def set_normalisation(self, stats: dict[str, tuple[Tensor, Tensor]]) -> None:
        """Training statistics per vector block and 'patches'; std of 0 becomes 1 (constant feature)."""
        for name, (mean, std) in stats.items():
            module = self.patch_standardiser if name == "patches" else self.standardisers[name]
            module.mean.copy_(mean)
            module.std.copy_(torch.where(std > 0, std, torch.ones_like(std)))

    def forward(self, batch: Batch) -> FusionForward:
        standardised = {b: s(batch.values[b]) * batch.known[b] for b, s in self.standardisers.items()}
        tokens = {
            BLOCK_MODALITY[b]: enc(torch.cat([standardised[b], batch.known[b]], dim=-1))
            for b, enc in self.token_encoders.items()
        }
        b, n = batch.patch_mask.shape
        attention = torch.zeros(b, n)
        pattern_logits = torch.zeros(b, n, len(self.config.patterns))
        if self.config.inputs.pathology:
            embedded = self.patch_embed(self.patch_standardiser(batch.patches))
            bag, attention = self.mil(embedded, batch.patch_mask)
            pattern_logits = self.pattern_head(embedded)
            has_patches = batch.patch_mask.any(dim=1, keepdim=True).float()
            findings = torch.cat([standardised["findings"], batch.known["findings"]], dim=-1)
            tokens["pathology"] = self.pathology_token(torch.cat([bag, has_patches, findings], dim=-1))
        stacked = torch.stack([tokens[m] for m in self.modalities], dim=1)
        present = torch.stack([batch.present[m] for m in self.modalities], dim=1)
        fused, weights = self.fusion(stacked, present)
        outputs = {name: head(fused) for name, head in self.heads.items()}
        return FusionForward(outputs, weights, attention, pattern_logits, standardised)
