"""Torch layers of the named pathology encoders; imported only when one of them is built.

`ConvStem`: CTransPath's convolutional patch embedding, as a timm `embed_layer` for its Swin-T backbone.

CTransPath (Wang et al., Medical Image Analysis 2022) replaces Swin's 4x4 strided
patchify convolution with two stride-2 3x3 convolutions (BatchNorm, ReLU) and a 1x1
projection, so the same 4x down-sampling sees overlapping neighbourhoods. Layer
names follow the released checkpoint (`patch_embed.proj.<i>`), so its weights load
unchanged. `PooledBackbone`: a backbone with the pooling its authors embed patches with.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ConvStem(nn.Module):
    """(B, 3, H, W) -> (B, H/4, W/4, embed_dim), channels last as timm's Swin expects."""

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        norm_layer: type[nn.Module] | None = None,
        **_: Any,  # timm's own PatchEmbed options (strict_img_size, output_fmt, device/dtype) do not apply
    ):
        super().__init__()
        if patch_size != 4 or embed_dim % 8:
            raise ValueError(f"ConvStem needs patch_size 4 and embed_dim divisible by 8, got {patch_size}, {embed_dim}")
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.img_size = size
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (size[0] // patch_size, size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        layers: list[nn.Module] = []
        width_in, width_out = in_chans, embed_dim // 8
        for _ in range(2):
            layers += [
                nn.Conv2d(width_in, width_out, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width_out),
                nn.ReLU(inplace=True),
            ]
            width_in, width_out = width_out, width_out * 2
        layers.append(nn.Conv2d(width_in, embed_dim, kernel_size=1))
        self.proj = nn.Sequential(*layers)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class PooledBackbone(nn.Module):
    """A released backbone and the pooling its authors embed patches with: (B, 3, H, W) -> (B, dim).

    `backbone` keeps the released checkpoint's own parameter names (weights load into it
    unchanged). Pooling: "head" takes what the backbone returns (a timm model built with
    num_classes=0 pools itself; an open_clip CoCa tower returns (pooled, tokens) and the
    pooled contrastive token is kept); "class_mean" concatenates the class token with the
    mean of the patch tokens (Virchow's embedding).
    """

    def __init__(self, backbone: nn.Module, pool: str):
        super().__init__()
        if pool not in ("head", "class_mean"):
            raise ValueError(f"unknown pooling {pool!r}; expected 'head' or 'class_mean'")
        self.backbone = backbone
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool == "class_mean":
            tokens = self.backbone.forward_features(x)
            patches = tokens[:, self.backbone.num_prefix_tokens :]  # register tokens, where any, are not patches
            return torch.cat([tokens[:, 0], patches.mean(dim=1)], dim=-1)
        out = self.backbone(x)
        pooled = out[0] if isinstance(out, tuple) else out
        return pooled.flatten(1)  # a one-query attentional pooler returns (B, 1, D)
