"""Torch image-model families (`timm/<arch>`, `open_clip/<arch>`) behind the PatchEncoder interface.

A family module registers only a builder: `build(arch, weights, **model_kw)` loads the
model with its library and returns it with that library's eval transform. The factory
around it is shared: keyword contract, batched inference and the `info()` provenance.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from fusion_models.encoders.registry import DEFAULT_MPP, PatchEncoder, check_tiles, register_encoder
from toolkit.torchvision_compat import ensure_torchvision

if TYPE_CHECKING:
    import torch

UNTRAINED_LICENCE = "n/a (random initialisation, untrained: tests only)"
UNKNOWN_LICENCE = "unknown: see the weights' model card"


@dataclass(frozen=True)
class TorchModel:
    """What a family builder returns: the model, its library's eval transform and how to describe it."""

    module: torch.nn.Module
    transform: Callable[[Image.Image], torch.Tensor]
    dim: int
    version: str  # library and its version, e.g. "timm 1.0.15"
    sizes: dict[str, Any]  # input_size, and mean/std where the library states them, for info()


TorchBuilder = Callable[..., TorchModel]


def register_torch_family(family: str) -> Callable[[TorchBuilder], TorchBuilder]:
    """Register `build(arch, weights, **model_kw)` as the encoder family `family/<arch>`."""

    def decorator(build: TorchBuilder) -> TorchBuilder:
        @register_encoder(family, family=True)
        def factory(
            weights: Path | None = None,
            *,
            arch: str,
            licence: str | None = None,
            batch_size: int = 32,
            **model_kw: Any,
        ) -> PatchEncoder:
            # Before the builder imports timm/open_clip: both import torchvision, which needs it beside CPU torch.
            ensure_torchvision()
            built = build(arch, weights, **model_kw)
            name = f"{family}/{arch}"
            # An architecture alone states no pixel size: its input-size tiles are read at DEFAULT_MPP.
            geometry = {"tile_px": built.sizes["input_size"][0], "mpp": DEFAULT_MPP, **built.sizes}
            meta = weights_info(name, built.version, weights, licence, **geometry)
            return TorchTileEncoder(name, built.dim, built.module, built.transform, meta, batch_size)

        return build

    return decorator


@dataclass
class TorchTileEncoder:
    """A torch image model behind the PatchEncoder interface, with the preprocessing its weights expect.

    `transform` maps one PIL RGB image to a normalised (3, H, W) tensor (the model
    library's own eval transform, so mean/std/size are never re-derived here);
    `module` maps a (B, 3, H, W) batch to (B, dim) features.
    """

    name: str
    dim: int
    module: torch.nn.Module
    transform: Callable[[Image.Image], torch.Tensor]
    meta: dict[str, Any]
    batch_size: int = 32

    def preprocess(self, tile: np.ndarray) -> torch.Tensor:
        """One uint8 (H, W, 3) tile -> the normalised (3, h, w) tensor the module takes (its library's transform).

        Apart from `forward` so that a DataLoader's workers can run it while the module runs.
        """
        return self.transform(Image.fromarray(tile))

    def forward(self, batch: torch.Tensor) -> np.ndarray:
        """Preprocessed (B, 3, h, w) -> float32 features (B, dim)."""
        import torch  # deferred: importing torch costs seconds and hed_texture users never need it

        self.module.eval()
        with torch.inference_mode():
            return self.module(batch).float().numpy()

    def embed(self, tiles: np.ndarray) -> np.ndarray:
        import torch

        tiles = check_tiles(tiles)
        out = np.zeros((len(tiles), self.dim), dtype=np.float32)
        for start in range(0, len(tiles), self.batch_size):
            chunk = tiles[start : start + self.batch_size]
            out[start : start + len(chunk)] = self.forward(torch.stack([self.preprocess(t) for t in chunk]))
        return out

    def info(self) -> dict[str, Any]:
        return dict(self.meta)


def weights_info(
    name: str, version: str, weights: Path | None, licence: str | None, **sizes: Any
) -> dict[str, Any]:
    """`info()` of an encoder built from an optional weights file; `sizes` are its input geometry."""
    trained = weights is not None
    return {
        "name": name,
        "version": version,
        "weights_sha256": file_sha256(Path(weights)) if trained else None,
        "licence": (licence or UNKNOWN_LICENCE) if trained else UNTRAINED_LICENCE,
        **sizes,
        "trained": trained,
    }


def file_sha256(path: Path) -> str:
    """SHA-256 of a weights file, read in chunks so multi-GB checkpoints do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
