"""Patch encoders chosen by name: `@register_encoder` over factories, `create_encoder(name)`.

A plain name ("hed_texture") names one encoder. A family ("timm", "open_clip") takes
any architecture after the first '/': `create_encoder("timm/vit_small_patch16_224")`
calls the "timm" factory with `arch="vit_small_patch16_224"`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch


@runtime_checkable
class PatchEncoder(Protocol):
    """Turns RGB tiles into one feature vector each."""

    name: str
    dim: int

    def embed(self, tiles: np.ndarray) -> np.ndarray:
        """uint8 tiles (N, H, W, 3) -> float32 features (N, dim)."""
        ...

    def info(self) -> dict[str, Any]:
        """name, version, weights_sha256 (or None), licence, input_size and whether it is trained."""
        ...


EncoderFactory = Callable[..., PatchEncoder]


@dataclass(frozen=True)
class _Entry:
    factory: EncoderFactory
    family: bool


_REGISTRY: dict[str, _Entry] = {}


def register_encoder(name: str, *, family: bool = False) -> Callable[[EncoderFactory], EncoderFactory]:
    """Register `factory(weights=None, **kw)`; a family factory also receives `arch=`."""
    if "/" in name:
        raise ValueError(f"encoder name {name!r} must not contain '/'; '/' separates family and architecture")

    def decorator(factory: EncoderFactory) -> EncoderFactory:
        if name in _REGISTRY:
            raise ValueError(f"encoder {name!r} is already registered")
        _REGISTRY[name] = _Entry(factory, family)
        return factory

    return decorator


def list_encoders() -> list[str]:
    """Registered names; families are listed by their prefix (create them as 'prefix/<arch>')."""
    return sorted(_REGISTRY)


def is_encoder_family(name: str) -> bool:
    return _entry(name).family


def create_encoder(name: str, weights: Path | None = None, **kw: Any) -> PatchEncoder:
    """Build the encoder registered under `name` ('hed_texture', 'timm/<arch>', 'open_clip/<arch>')."""
    prefix, _, arch = name.partition("/")
    entry = _entry(prefix)
    if entry.family and not arch:
        raise ValueError(f"encoder family {prefix!r} needs an architecture: '{prefix}/<arch>'")
    if not entry.family and arch:
        raise ValueError(f"encoder {prefix!r} takes no architecture, got {name!r}")
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"weights file for encoder {name!r} not found: {weights}")
    if entry.family:
        return entry.factory(weights, arch=arch, **kw)
    return entry.factory(weights, **kw)


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

    def embed(self, tiles: np.ndarray) -> np.ndarray:
        import torch  # deferred: importing torch costs seconds and hed_texture users never need it

        tiles = check_tiles(tiles)
        out = np.zeros((len(tiles), self.dim), dtype=np.float32)
        self.module.eval()
        with torch.inference_mode():
            for start in range(0, len(tiles), self.batch_size):
                chunk = tiles[start : start + self.batch_size]
                batch = torch.stack([self.transform(Image.fromarray(t)) for t in chunk])
                out[start : start + len(chunk)] = self.module(batch).float().numpy()
        return out

    def info(self) -> dict[str, Any]:
        return dict(self.meta)


def check_tiles(tiles: np.ndarray) -> np.ndarray:
    """The one tile format every encoder takes: uint8 RGB (N, H, W, 3)."""
    tiles = np.asarray(tiles)
    if tiles.ndim != 4 or tiles.shape[-1] != 3 or tiles.dtype != np.uint8:
        raise ValueError(f"tiles must be uint8 (N, H, W, 3), got {tiles.dtype} {tiles.shape}")
    return tiles


def file_sha256(path: Path) -> str:
    """SHA-256 of a weights file, read in chunks so multi-GB checkpoints do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; registered: {', '.join(list_encoders())}") from None
