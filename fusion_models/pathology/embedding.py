"""Whole slides -> CLAM/TRIDENT-layout HDF5 patch features, one file per slide (`evchain embed-slides`).

The stages TRIDENT separates: tissue found on a thumbnail (`slides.tissue_grid`, Otsu on
saturation), a patch grid at the encoder's pixel size computed from the slide's own
microns-per-pixel, batched inference through a torch DataLoader whose workers read the
tiles, and one HDF5 per slide written atomically. A slide whose HDF5 already holds
features of the same encoder and weights is skipped, so a stopped run resumes where it
was; a crash leaves no partial file; a bad slide is recorded and the others still run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import h5py
import numpy as np
import tiffslide
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fusion_models.encoders.registry import PatchEncoder, tile_geometry
from fusion_models.pathology.h5 import write_patch_features
from fusion_models.pathology.slides import MICRONS_AT_1X, READ_ERRORS, SLIDE_SUFFIXES, slide_mpp, tissue_grid
from schemas.errors import InputError

DEFAULT_TISSUE_THRESHOLD = 0.5


def level0_patch_size(tile_px: int, mpp: float, slide_mpp: float) -> int:
    """Side in level-0 px of a tile_px tile at `mpp`: the same field of view on a slide scanned at slide_mpp."""
    return max(1, round(tile_px * mpp / slide_mpp))


@dataclass(frozen=True)
class PatchGrid:
    """Where one slide's tiles are and how to read them at the encoder's pixel size."""

    coords: np.ndarray  # (N, 2) int64, level-0 top-left x, y
    patch_size_level0: int
    level: int  # pyramid level read (the finest one at or below the wanted downsample)
    read_size: int  # patch side in px at `level`, resized to tile_px when it differs
    tile_px: int
    mpp: float  # the encoder's microns per pixel
    slide_mpp: float  # the slide's level-0 microns per pixel


def patch_grid(
    slide: tiffslide.TiffSlide, rel: str, tile_px: int, mpp: float, tissue_threshold: float
) -> PatchGrid:
    """Tissue patches of `slide` covering tile_px x mpp microns each; a slide without mpp is an InputError."""
    level0_mpp = slide_mpp(slide)
    if level0_mpp is None or not np.isfinite(level0_mpp) or level0_mpp <= 0:
        raise InputError(
            rel, "mpp", "the slide records no microns per pixel (resolution tags or mpp property): "
            "without it no patch grid can match the encoder's magnification"
        )
    size0 = level0_patch_size(tile_px, mpp, level0_mpp)
    level = slide.get_best_level_for_downsample(size0 / tile_px)
    read_size = max(1, round(size0 / slide.level_downsamples[level]))
    coords = tissue_grid(slide, size0, tissue_threshold)
    return PatchGrid(coords, size0, level, read_size, tile_px, mpp, level0_mpp)


@runtime_checkable
class StagedEncoder(Protocol):
    """An encoder whose preprocessing runs apart from its forward pass (TorchTileEncoder).

    The DataLoader's workers then preprocess while the main process runs the model: on a
    busy machine, tensor conversion of single tiles in the main process (two intra-op
    threads spinning per tiny op) costs as much as the forward pass itself.
    """

    def preprocess(self, tile: np.ndarray) -> torch.Tensor: ...

    def forward(self, batch: torch.Tensor) -> np.ndarray: ...


class SlideReadError(RuntimeError):
    """A tile could not be read; one-argument, so a DataLoader worker can re-raise it in the main process."""


class SlideTiles(Dataset):
    """Tiles of one slide's grid: uint8 (tile_px, tile_px, 3), or what `preprocess` makes of them.

    Each worker process opens its own slide handle.
    """

    def __init__(self, path: Path, grid: PatchGrid, preprocess: Callable[[np.ndarray], Any] | None = None):
        self.path = Path(path)
        self.grid = grid
        self.preprocess = preprocess
        self._slide: tiffslide.TiffSlide | None = None

    def __len__(self) -> int:
        return len(self.grid.coords)

    def __getitem__(self, index: int) -> np.ndarray:
        grid = self.grid
        x, y = (int(v) for v in grid.coords[index])
        try:
            if self._slide is None:
                self._slide = tiffslide.TiffSlide(self.path)
            region = self._slide.read_region((x, y), grid.level, (grid.read_size,) * 2, as_array=True)[..., :3]
        except READ_ERRORS as exc:
            raise SlideReadError(f"cannot read the tile at level-0 ({x}, {y}): {exc}") from None
        if grid.read_size != grid.tile_px:
            region = np.asarray(Image.fromarray(region).resize((grid.tile_px,) * 2, Image.Resampling.BILINEAR))
        region = np.ascontiguousarray(region)
        return region if self.preprocess is None else self.preprocess(region)

    def __getstate__(self) -> dict:
        # An open slide handle does not travel to a worker process; the worker opens its own.
        return {**self.__dict__, "_slide": None}


def _read_error_message(exc: SlideReadError) -> str:
    # From a worker the message carries the worker's traceback; its last line is the original message.
    return str(exc).strip().splitlines()[-1].split(f"{SlideReadError.__name__}: ", 1)[-1]


def embed_slide(
    path: Path,
    out_path: Path,
    encoder: PatchEncoder,
    *,
    batch_size: int = 32,
    workers: int = 0,
    tissue_threshold: float = DEFAULT_TISSUE_THRESHOLD,
    progress: bool = True,
) -> int:
    """Embed every tissue patch of one slide into `out_path` (atomic); returns the number of patches."""
    rel = Path(path).name
    tile_px, mpp = tile_geometry(encoder)
    try:
        with tiffslide.TiffSlide(path) as slide:
            grid = patch_grid(slide, rel, tile_px, mpp, tissue_threshold)
    except READ_ERRORS as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(rel, "slide", f"cannot read slide: {exc}") from None
    if len(grid.coords) == 0:
        raise InputError(rel, "slide", f"no patch of {grid.patch_size_level0} level-0 px with enough tissue")
    features = np.empty((len(grid.coords), encoder.dim), dtype=np.float32)
    staged = isinstance(encoder, StagedEncoder)
    tiles = SlideTiles(path, grid, encoder.preprocess if staged else None)
    run = encoder.forward if staged else encoder.embed
    loader = DataLoader(tiles, batch_size=batch_size, num_workers=workers, collate_fn=torch.stack if staged else np.stack)
    done = 0
    try:
        with tqdm(total=len(features), desc=rel, unit="tile", disable=not progress, leave=False) as bar:
            for batch in loader:
                features[done : done + len(batch)] = run(batch)
                done += len(batch)
                bar.update(len(batch))
    except SlideReadError as exc:
        raise InputError(rel, "slide", _read_error_message(exc)) from None
    info = encoder.info()
    attrs: dict[str, str | int | float | bool] = {
        "mpp": grid.mpp,
        "slide_mpp": grid.slide_mpp,
        "read_level": grid.level,
        "encoder_version": str(info.get("version", "")),
        "encoder_trained": bool(info.get("trained", False)),
    }
    if info.get("weights_sha256"):
        attrs["weights_sha256"] = info["weights_sha256"]
    write_patch_features(
        out_path,
        Path(path).stem,
        features,
        grid.coords,
        encoder=encoder.name,
        patch_size=grid.tile_px,
        patch_size_level0=grid.patch_size_level0,
        magnification=MICRONS_AT_1X / grid.mpp,
        attrs=attrs,
    )
    return len(features)


def already_embedded(out_path: Path, encoder: PatchEncoder) -> bool:
    """True when out_path holds this encoder's features (same weights); another encoder's file is an InputError."""
    if not out_path.exists():
        return False
    try:
        with h5py.File(out_path, "r") as h5:
            attrs = dict(h5.attrs)
    except OSError as exc:
        raise InputError(out_path.name, "hdf5", f"exists but cannot be read ({exc}); remove it to embed again") from None
    found = attrs.get("encoder")
    found = found.decode() if isinstance(found, bytes) else found
    if found != encoder.name or attrs.get("weights_sha256") != encoder.info().get("weights_sha256"):
        raise InputError(
            out_path.name, "attrs.encoder",
            f"already holds features of encoder {found!r} (weights {attrs.get('weights_sha256')}), not of "
            f"{encoder.name!r} (weights {encoder.info().get('weights_sha256')}); remove it or choose another --out",
        )
    return True


@dataclass(frozen=True)
class SlideOutcome:
    slide: str
    status: Literal["embedded", "skipped", "failed"]
    patches: int = 0
    error: str | None = None


def list_slides(slides_dir: Path) -> list[Path]:
    slides_dir = Path(slides_dir)
    if not slides_dir.is_dir():
        raise InputError(str(slides_dir), "SLIDES_DIR", "not a folder")
    slides = sorted(p for p in slides_dir.iterdir() if p.suffix.lower() in SLIDE_SUFFIXES and p.is_file())
    if not slides:
        raise InputError(str(slides_dir), "SLIDES_DIR", f"no slide files ({', '.join(SLIDE_SUFFIXES)})")
    return slides


def embed_slides(
    slides: Sequence[Path],
    out_dir: Path,
    encoder: PatchEncoder,
    *,
    batch_size: int = 32,
    workers: int = 0,
    tissue_threshold: float = DEFAULT_TISSUE_THRESHOLD,
    progress: bool = True,
) -> list[SlideOutcome]:
    """One `<out_dir>/<slide stem>.h5` per slide; a bad slide is an outcome with its error, never a stop."""
    outcomes: list[SlideOutcome] = []
    for path in tqdm(slides, desc="slides", unit="slide", disable=not progress):
        out_path = Path(out_dir) / f"{Path(path).stem}.h5"
        try:
            if already_embedded(out_path, encoder):
                outcomes.append(SlideOutcome(Path(path).name, "skipped"))
                continue
            n = embed_slide(
                path, out_path, encoder,
                batch_size=batch_size, workers=workers, tissue_threshold=tissue_threshold, progress=progress,
            )
        except InputError as exc:
            outcomes.append(SlideOutcome(Path(path).name, "failed", error=str(exc)))
            continue
        outcomes.append(SlideOutcome(Path(path).name, "embedded", n))
    return outcomes
