"""What every fusion head shares: config, registry, per-modality encoders, task outputs, interpretation.

The encoders turn each modality into tokens (habitat tokens, patch tokens, pathway and
driver tokens, an age token) and one summary token per modality. A modality that is not
present contributes zero values and a False mask, so a head that masks correctly (masked
softmax, vacuous evidence, explicit presence flags) never reads what a case lacks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from fusion_models.features import HABITATS
from fusion_models.fusion_heads.inputs import DRIVERS, PATHWAYS, REGION_FEATURES, HeadInputs
from fusion_models.heads import GatedAttentionMIL, Standardiser, masked_softmax, mlp
from fusion_models.task_heads import TaskSpec, task_head
from schemas.common import MODALITIES, TISSUE_PATTERNS, Modality
from toolkit.registry import Registry


class HeadConfig(BaseModel):
    """Everything that builds a head except its weights; saved beside them.

    Tasks are the task_heads specs every model family uses: their head type builds the output
    layer and owns the loss, calibration and prediction mapping.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    head: str
    modalities: tuple[Modality, ...] = MODALITIES
    tasks: tuple[TaskSpec, ...]
    patch_dim: int = 32
    dim: int = Field(default=32, gt=0)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    options: dict[str, Any] = Field(default_factory=dict, description="Head-specific settings.")

    @model_validator(mode="after")
    def _check(self) -> HeadConfig:
        if not self.modalities or any(m not in MODALITIES for m in self.modalities):
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {self.modalities}")
        if not self.tasks:
            raise ValueError("a head needs at least one task")
        missing = fusion_head_needs(self.head) - set(self.modalities)
        if missing:
            raise ValueError(f"fusion head {self.head!r} needs {sorted(missing)}; its modalities are {self.modalities}")
        return self


@dataclass
class Interpretation:
    """The common interpretability record; None where a head has no such output.

    The glioma_heads family (fusion_models/head_family.py) averages it over the ensemble and maps
    it, with names, onto FusionOutput, which the vision-analysis and drafting agents read.
    """

    modalities: tuple[str, ...]
    modality_weights: Tensor | None = None  # (B, M), 0 for masked modalities
    region_attention: Tensor | None = None  # (B, R) over HABITATS of the latest scan
    patch_attention: Tensor | None = None  # (B, N)
    pathway_patch_attention: Tensor | None = None  # (B, P, N) pathway query -> patch
    node_attention: Tensor | None = None  # (B, K) graph read-out over node_names
    node_names: tuple[str, ...] | None = None
    timepoint_attention: Tensor | None = None  # (B, T), right-aligned like the input
    pattern_logits: Tensor | None = None  # (B, N, len(TISSUE_PATTERNS)) tissue pattern per patch


@dataclass
class HeadOutput:
    outputs: dict[str, Tensor]  # task -> the raw output of its head type (logits, cumulative logits, Cox risk)
    interpretation: Interpretation
    aux_loss: Tensor | None = None  # a head's own regulariser (e.g. orthogonality), already averaged


class ScalarTokens(nn.Module):
    """One token per scalar input (a pathway score, a driver event): value * w_k + b_k (SurvPath-style)."""

    def __init__(self, n: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, dim) * 0.1)
        self.bias = nn.Parameter(torch.randn(n, dim) * 0.1)

    def forward(self, values: Tensor) -> Tensor:
        return values.unsqueeze(-1) * self.weight + self.bias


class AttentionPool(nn.Module):
    """Masked attention pooling of tokens (B, K, d) -> (B, d) and the weights (B, K)."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim // 2), nn.Tanh(), nn.Linear(dim // 2, 1))

    def forward(self, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        weights = masked_softmax(self.score(tokens).squeeze(-1), mask)
        return torch.einsum("bk,bkd->bd", weights, tokens), weights


@dataclass
class Encoded:
    """Tokens of a batch; `tokens` has one row per configured modality (config.modalities order)."""

    tokens: Tensor  # (B, M, d)
    present: Tensor  # (B, M) bool
    scan_region_tokens: Tensor  # (B, T, R, d)
    scan_region_mask: Tensor  # (B, T, R)
    scan_tokens: Tensor  # (B, T, d) one pooled imaging token per scan
    scan_mask: Tensor  # (B, T)
    scan_region_attention: Tensor  # (B, T, R)
    patch_tokens: Tensor  # (B, N, d)
    patch_mask: Tensor  # (B, N)
    patch_attention: Tensor  # (B, N)
    pattern_logits: Tensor | None  # (B, N, len(TISSUE_PATTERNS)); None without a pathology branch
    genomic_tokens: Tensor  # (B, P + E, d), pathways first
    genomic_mask: Tensor  # (B, P + E)

    @property
    def region_tokens(self) -> Tensor:
        return self.scan_region_tokens[:, -1]

    @property
    def region_mask(self) -> Tensor:
        return self.scan_region_mask[:, -1]

    @property
    def region_attention(self) -> Tensor:
        return self.scan_region_attention[:, -1]


class Encoders(nn.Module):
    """Per-modality encoders; only the configured modalities get parameters."""

    def __init__(self, config: HeadConfig):
        super().__init__()
        d, p = config.dim, config.dropout
        self.dim, self.modalities = d, config.modalities
        self.standardisers = nn.ModuleDict(
            {
                "regions": Standardiser(len(REGION_FEATURES)),
                "patches": Standardiser(config.patch_dim),
                "pathways": Standardiser(len(PATHWAYS)),
                "age": Standardiser(1),
            }
        )
        if "imaging" in self.modalities:
            self.region_encoder = mlp(len(REGION_FEATURES), d, d, p)
            # Which habitat a token describes matters as much as its numbers.
            self.region_embedding = nn.Parameter(torch.zeros(len(HABITATS), d))
            self.region_pool = AttentionPool(d)
        if "pathology" in self.modalities:
            self.patch_encoder = nn.Sequential(nn.Linear(config.patch_dim, d), nn.GELU(), nn.Dropout(p))
            self.mil = GatedAttentionMIL(d, d // 2)
            # The tissue pattern of each patch, as the attention-MIL model has: what a cited patch shows.
            self.patterns = nn.Linear(d, len(TISSUE_PATTERNS))
        if "genomics" in self.modalities:
            self.pathway_tokens = ScalarTokens(len(PATHWAYS), d)
            self.driver_tokens = ScalarTokens(len(DRIVERS), d)
            self.genomics_summary = mlp(d, d, d, p)
        if "clinical" in self.modalities:
            self.clinical_encoder = mlp(2, d, d, p)
        self.summaries = nn.ModuleDict({m: mlp(d, d, d, p) for m in ("imaging", "pathology") if m in self.modalities})

    def set_normalisation(self, stats: dict[str, tuple[Tensor, Tensor]]) -> None:
        for name, (mean, std) in stats.items():
            self.standardisers[name].mean.copy_(mean)
            self.standardisers[name].std.copy_(torch.where(std > 0, std, torch.ones_like(std)))

    def forward(self, x: HeadInputs) -> Encoded:
        present_all = {m: x.present[:, i] for i, m in enumerate(MODALITIES)}
        b, t, r, _ = x.regions.shape
        n, dim = x.patches.shape[1], self.dim
        region_mask = x.region_mask & present_all["imaging"][:, None, None]
        patch_mask = x.patch_mask & present_all["pathology"][:, None]
        genomic_mask = torch.cat([x.pathway_known, x.driver_known], dim=1) & present_all["genomics"][:, None]
        age_known = x.age_known & present_all["clinical"][:, None]
        zeros = x.patches.new_zeros
        tokens: dict[str, Tensor] = {}
        scan_region_tokens, scan_attention = zeros(b, t, r, dim), zeros(b, t, r)
        scan_tokens = zeros(b, t, dim)
        if "imaging" in self.modalities:
            regions = self.standardisers["regions"](x.regions) * region_mask.unsqueeze(-1)
            scan_region_tokens = (self.region_encoder(regions) + self.region_embedding) * region_mask.unsqueeze(-1)
            pooled, scan_attention = self.region_pool(scan_region_tokens.flatten(0, 1), region_mask.flatten(0, 1))
            scan_tokens, scan_attention = pooled.view(b, t, dim), scan_attention.view(b, t, r)
            tokens["imaging"] = self.summaries["imaging"](scan_tokens[:, -1])
        patch_tokens, patch_attention, pattern_logits = zeros(b, n, dim), zeros(b, n), None
        if "pathology" in self.modalities:
            patches = self.standardisers["patches"](x.patches) * patch_mask.unsqueeze(-1)
            patch_tokens = self.patch_encoder(patches) * patch_mask.unsqueeze(-1)
            bag, patch_attention = self.mil(patch_tokens, patch_mask)
            pattern_logits = self.patterns(patch_tokens)
            tokens["pathology"] = self.summaries["pathology"](bag)
        genomic_tokens = zeros(b, genomic_mask.shape[1], dim)
        if "genomics" in self.modalities:
            pathways = self.standardisers["pathways"](x.pathways)
            genomic_tokens = torch.cat([self.pathway_tokens(pathways), self.driver_tokens(x.drivers)], dim=1)
            genomic_tokens = genomic_tokens * genomic_mask.unsqueeze(-1)
            count = genomic_mask.sum(1, keepdim=True).clamp_min(1)
            tokens["genomics"] = self.genomics_summary(genomic_tokens.sum(1) / count)
        if "clinical" in self.modalities:
            age = self.standardisers["age"](x.age) * age_known
            tokens["clinical"] = self.clinical_encoder(torch.cat([age, age_known.float()], dim=-1))
        return Encoded(
            tokens=torch.stack([tokens[m] for m in self.modalities], dim=1),
            present=torch.stack([present_all[m] for m in self.modalities], dim=1),
            scan_region_tokens=scan_region_tokens,
            scan_region_mask=region_mask,
            scan_tokens=scan_tokens,
            scan_mask=region_mask.any(-1),
            scan_region_attention=scan_attention,
            patch_tokens=patch_tokens,
            patch_mask=patch_mask,
            patch_attention=patch_attention,
            pattern_logits=pattern_logits,
            genomic_tokens=genomic_tokens,
            genomic_mask=genomic_mask,
        )


def task_layers(config: HeadConfig) -> nn.ModuleDict:
    """One output layer per task, of its registered head type, on a (B, dim) representation."""
    return nn.ModuleDict({t.name: task_head(t.kind).layer(config.dim, t) for t in config.tasks})


class FusionHead(nn.Module):
    """Base of every registered head: the shared encoders, one output layer per task, `forward -> HeadOutput`.

    `needs`: modalities without which the head is not the method it names (MCAT's co-attention
    needs patches and genomics); a config without them is refused.
    """

    needs: ClassVar[frozenset[Modality]] = frozenset()

    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        self.encoders = Encoders(config)
        self.task_layers = task_layers(config)

    def predict(self, fused: Tensor) -> dict[str, Tensor]:
        """Per-task outputs of a fused (B, d) representation."""
        return {t.name: self.task_layers[t.name](fused) for t in self.config.tasks}

    def interpretation(self, encoded: Encoded, **kw: Any) -> Interpretation:
        """The encoders' attributions (habitats, patches), overridden or extended by the head's own."""
        values = {
            "region_attention": encoded.region_attention, "patch_attention": encoded.patch_attention,
            "pattern_logits": encoded.pattern_logits, **kw,
        }
        if "imaging" not in self.config.modalities:
            values["region_attention"] = None
        if "pathology" not in self.config.modalities:
            values["patch_attention"] = values["pathway_patch_attention"] = None
        return Interpretation(self.config.modalities, **values)

    def forward(self, x: HeadInputs) -> HeadOutput:
        raise NotImplementedError


_HEADS: Registry[type[FusionHead]] = Registry("fusion head", missing=ValueError)


def register_fusion_head(name: str) -> Callable[[type[FusionHead]], type[FusionHead]]:
    """Class decorator: the head `name` is built by `create_fusion_head(config)` with config.head == name."""
    return _HEADS.register(name)


def fusion_head_names() -> list[str]:
    return list(_HEADS)


def fusion_head_needs(name: str) -> frozenset[Modality]:
    """The modalities head `name` cannot do without (see FusionHead.needs)."""
    return _HEADS.get(name).needs


def create_fusion_head(config: HeadConfig) -> FusionHead:
    return _HEADS.get(config.head)(config)


class PerModalityTasks(nn.Module):
    """One set of task layers per modality: decision-level heads predict from each token alone."""

    def __init__(self, config: HeadConfig):
        super().__init__()
        self.tasks = config.tasks
        self.layers = nn.ModuleList(task_layers(config) for _ in config.modalities)

    def forward(self, tokens: Tensor) -> dict[str, Tensor]:
        """tokens (B, M, d) -> task -> (B, M, ...): each head type's output with the modality second."""
        return {
            t.name: torch.stack([layers[t.name](tokens[:, i]) for i, layers in enumerate(self.layers)], dim=1)
            for t in self.tasks
        }

    @staticmethod
    def combine(per: dict[str, Tensor], weights: Tensor) -> dict[str, Tensor]:
        """Weighted sum over modalities (weights (B, M), 0 for the masked ones)."""
        return {name: torch.einsum("bm,bm...->b...", weights, values) for name, values in per.items()}


class CrossAttention(nn.Module):
    """Single-head scaled dot-product attention with a boolean mask; rows with nothing to attend to give 0."""

    def __init__(self, dim: int):
        super().__init__()
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))
        self.scale = dim**-0.5

    def forward(self, queries: Tensor, keys: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """queries (B, Q, d), keys (B, K, d), mask (B, Q, K) -> (B, Q, d), attention (B, Q, K)."""
        logits = torch.einsum("bqd,bkd->bqk", self.query(queries), self.key(keys)) * self.scale
        attention = masked_softmax(logits, mask)
        return torch.einsum("bqk,bkd->bqd", attention, self.value(keys)), attention
