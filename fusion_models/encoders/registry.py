"""Patch encoders chosen by name: `@register_encoder` over factories, `create_encoder(name)`.

A plain name ("hed_texture") names one encoder. A family ("timm", "open_clip") takes
any architecture after the first '/': `create_encoder("timm/vit_small_patch16_224")`
calls the "timm" factory with `arch="vit_small_patch16_224"`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from schemas.errors import InputError
from toolkit.registry import Registry

# 20x: the pixel size most patch encoders are trained at; the tile size of an encoder that states none.
DEFAULT_MPP = 0.5
WEIGHTS_SETTING = "--encoder-weights / Settings.encoder_weights"


def weights_error(encoder: str, weights: Path | None, problem: str) -> InputError:
    """Missing or unusable local weights: one line naming the encoder, the file and the setting that gives it."""
    return InputError(
        str(weights) if weights is not None else "--encoder-weights",
        "encoder_weights",
        f"encoder {encoder!r}: {problem} (set {WEIGHTS_SETTING} to a local weights file; nothing is downloaded)",
    )


@runtime_checkable
class PatchEncoder(Protocol):
    """Turns RGB tiles into one feature vector each."""

    name: str
    dim: int

    def embed(self, tiles: np.ndarray) -> np.ndarray:
        """uint8 tiles (N, H, W, 3) -> float32 features (N, dim)."""
        ...

    def info(self) -> dict[str, Any]:
        """name, version, weights_sha256 (or None), licence, input_size, whether it is trained, and the tiles
        it reads: `tile_px` (side in pixels) at `mpp` (microns per pixel)."""
        ...


EncoderFactory = Callable[..., PatchEncoder]


@dataclass(frozen=True)
class _Entry:
    factory: EncoderFactory
    family: bool


_REGISTRY: Registry[_Entry] = Registry("encoder", missing=ValueError)


def register_encoder(name: str, *, family: bool = False) -> Callable[[EncoderFactory], EncoderFactory]:
    """Register `factory(weights=None, **kw)`; a family factory also receives `arch=`."""
    if "/" in name:
        raise ValueError(f"encoder name {name!r} must not contain '/'; '/' separates family and architecture")

    def decorator(factory: EncoderFactory) -> EncoderFactory:
        _REGISTRY.add(name, _Entry(factory, family))
        return factory

    return decorator


def list_encoders() -> list[str]:
    """Registered names; families are listed by their prefix (create them as 'prefix/<arch>')."""
    return _REGISTRY.names()


def is_encoder_family(name: str) -> bool:
    return _REGISTRY.get(name).family


def create_encoder(name: str, weights: Path | None = None, **kw: Any) -> PatchEncoder:
    """Build the encoder registered under `name` ('hed_texture', 'timm/<arch>', 'open_clip/<arch>')."""
    prefix, _, arch = name.partition("/")
    entry = _REGISTRY.get(prefix)
    if entry.family and not arch:
        raise ValueError(f"encoder family {prefix!r} needs an architecture: '{prefix}/<arch>'")
    if not entry.family and arch:
        raise ValueError(f"encoder {prefix!r} takes no architecture, got {name!r}")
    if weights is not None and not Path(weights).is_file():
        raise weights_error(name, weights, "weights file not found")
    if entry.family:
        return entry.factory(weights, arch=arch, **kw)
    return entry.factory(weights, **kw)


def check_tiles(tiles: np.ndarray) -> np.ndarray:
    """The one tile format every encoder takes: uint8 RGB (N, H, W, 3)."""
    tiles = np.asarray(tiles)
    if tiles.ndim != 4 or tiles.shape[-1] != 3 or tiles.dtype != np.uint8:
        raise ValueError(f"tiles must be uint8 (N, H, W, 3), got {tiles.dtype} {tiles.shape}")
    return tiles


def tile_geometry(encoder: PatchEncoder) -> tuple[int, float]:
    """(tile side in px, microns per pixel) of the tiles `encoder` reads: its field of view on the slide."""
    info = encoder.info()
    return int(info["tile_px"]), float(info["mpp"])
