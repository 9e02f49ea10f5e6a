"""Whole-slide images: tissue-aware tiling (tiffslide, OpenSlide API) and pyramidal TIFF writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
import tiffslide
from scipy import ndimage
from skimage.filters import threshold_otsu

from schemas.errors import InputError
from toolkit.atomic import atomic_path
from toolkit.case_files import checked_file

# Thumbnail pixels per grid-cell side: enough to measure a cell's tissue fraction in steps of 1/64.
THUMB_PX_PER_CELL = 8
MAX_THUMB_SIDE = 4096
# Otsu on saturation separates glass from tissue when both are present, but on an all-tissue
# field it splits the tissue itself and drops pale stroma and necrosis. The threshold is
# therefore clipped: on a thumbnail clean glass reads below 0.02 and loose, pale stroma
# 0.02-0.07 (scikit-image's IHC image), stained cellular tissue 0.2 and above.
SATURATION_FLOOR = 0.02
SATURATION_CEILING = 0.05
# Conventional objective/pixel-size pairing (40x ~ 0.25 um/px) for slides that record only mpp.
MICRONS_AT_1X = 10.0
SLIDE_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi")
# Codec failures on a damaged or cut-off slide (imagecodecs' DeflateError, JpegError...) are RuntimeErrors.
READ_ERRORS = (OSError, ValueError, KeyError, IndexError, RuntimeError, tifffile.TiffFileError)


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation of a uint8 RGB image, in [0, 1]."""
    rgb = rgb.astype(np.float32)
    brightest = rgb.max(axis=-1)
    return (brightest - rgb.min(axis=-1)) / np.maximum(brightest, 1.0)


def tissue_mask(thumbnail: np.ndarray) -> np.ndarray:
    """Boolean tissue mask of a low-resolution RGB thumbnail (median-smoothed saturation, clipped Otsu)."""
    sat = ndimage.median_filter(saturation(thumbnail), size=3)
    otsu = threshold_otsu(sat) if np.ptp(sat) > 0 else SATURATION_CEILING
    return sat > np.clip(otsu, SATURATION_FLOOR, SATURATION_CEILING)


def cell_fractions(mask: np.ndarray, level0_size: tuple[int, int], patch_size: int) -> np.ndarray:
    """Tissue fraction of each full patch_size grid cell at level 0: (rows, cols), from a mask of any size."""
    width, height = level0_size
    cols, rows = width // patch_size, height // patch_size
    if cols == 0 or rows == 0:
        return np.zeros((rows, cols))
    sy, sx = mask.shape[0] / height, mask.shape[1] / width
    integral = np.pad(mask.astype(np.int64).cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))

    def edges(n: int, scale: float, limit: int) -> tuple[np.ndarray, np.ndarray]:
        start = np.minimum(np.floor(np.arange(n) * patch_size * scale).astype(int), limit - 1)
        stop = np.maximum(np.floor(np.arange(1, n + 1) * patch_size * scale).astype(int), start + 1)
        return start, np.minimum(stop, limit)

    y0, y1 = edges(rows, sy, mask.shape[0])
    x0, x1 = edges(cols, sx, mask.shape[1])
    total = integral[y1][:, x1] - integral[y0][:, x1] - integral[y1][:, x0] + integral[y0][:, x0]
    area = (y1 - y0)[:, None] * (x1 - x0)[None, :]
    return total / area


def spread_subsample(n: int, k: int) -> np.ndarray:
    """k of n indices, evenly spaced, so a capped tile set still covers the whole tissue."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def slide_magnification(slide: tiffslide.TiffSlide) -> float | None:
    """Objective power from the slide, else estimated from the pixel size."""
    props = slide.properties
    power = props.get(tiffslide.PROPERTY_NAME_OBJECTIVE_POWER)
    if power:
        return float(power)
    mpp = slide_mpp(slide)
    return MICRONS_AT_1X / mpp if mpp else None


def tissue_grid(slide: tiffslide.TiffSlide, patch_size: int, tissue_threshold: float) -> np.ndarray:
    """Level-0 top-left (x, y) of every full patch_size grid cell whose tissue fraction reaches the threshold.

    Tissue is found on a thumbnail (saturation, clipped Otsu: `tissue_mask`), the CLAM way;
    cells are in row-major order.
    """
    size = slide.dimensions
    thumb_side = min(MAX_THUMB_SIDE, max(size) // patch_size * THUMB_PX_PER_CELL, max(size))
    thumbnail = np.asarray(slide.get_thumbnail((max(thumb_side, 1),) * 2).convert("RGB"))
    rows, cols = np.nonzero(cell_fractions(tissue_mask(thumbnail), size, patch_size) >= tissue_threshold)
    return np.column_stack([cols, rows]).astype(np.int64) * patch_size


def slide_mpp(slide: tiffslide.TiffSlide) -> float | None:
    """Level-0 microns per pixel (x), from the slide's resolution metadata; None when it records none."""
    mpp = slide.properties.get(tiffslide.PROPERTY_NAME_MPP_X)
    return float(mpp) if mpp else None


def tile_slide(
    path: Path,
    *,
    patch_size: int = 256,
    max_tiles: int = 512,
    tissue_threshold: float = 0.5,
    case_dir: Path | None = None,
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Tissue tiles of a slide at level 0: uint8 tiles (N, p, p, 3), coords (N, 2) x, y, magnification.

    Grid cells whose tissue fraction on a thumbnail reaches `tissue_threshold` are
    read; beyond `max_tiles` an evenly spaced subset is kept (deterministic).
    """
    real, rel = checked_file(path, case_dir, "slide")
    try:
        with tiffslide.TiffSlide(real) as slide:
            cells = tissue_grid(slide, patch_size, tissue_threshold)
            coords = cells[spread_subsample(len(cells), max_tiles)]
            tiles = np.zeros((len(coords), patch_size, patch_size, 3), dtype=np.uint8)
            for i, (x, y) in enumerate(coords):
                region = slide.read_region((int(x), int(y)), 0, (patch_size, patch_size), as_array=True)
                tiles[i] = region[..., :3]
            magnification = slide_magnification(slide)
    except READ_ERRORS as exc:
        raise InputError(rel, "slide", f"cannot read slide: {exc}") from None
    return tiles, coords, magnification


def _halve(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    blocks = rgb[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).astype(np.float32)
    return blocks.mean(axis=(1, 3)).round().astype(np.uint8)


def write_pyramidal_tiff(path: Path, rgb: np.ndarray, *, mpp: float, tile: int = 256) -> None:
    """Tiled pyramidal RGB TIFF (halved levels as SubIFDs, resolution tags in cm) readable by tiffslide.

    Written to a temporary file in the same folder and renamed, so a reader never sees half a slide.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if mpp <= 0 or tile % 16:
        raise ValueError(f"mpp must be positive and tile a multiple of 16, got mpp={mpp}, tile={tile}")
    levels = [rgb]
    while min(levels[-1].shape[:2]) // 2 >= tile:
        levels.append(_halve(levels[-1]))
    options = {"tile": (tile, tile), "photometric": "rgb", "compression": "zlib", "resolutionunit": "CENTIMETER"}
    pixels_per_cm = 1e4 / mpp
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=rgb.nbytes > 2**31) as writer:
        writer.write(levels[0], subifds=len(levels) - 1, resolution=(pixels_per_cm,) * 2, **options)
        for i, level in enumerate(levels[1:], start=1):
            scale = pixels_per_cm / 2**i
            writer.write(level, subfiletype=1, resolution=(scale, scale), **options)
