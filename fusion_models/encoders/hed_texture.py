"""`hed_texture`: handcrafted tissue descriptors, no weights, deterministic.

Each tile is reduced to 64 x 64 px (at 256 px level-0 tiles and 0.5 um/px one
analysis pixel is 2 um, so a glioma nucleus of 8-10 um still spans ~4 px) and
described by 32 numbers:

* stain: haematoxylin / eosin / DAB optical density (scikit-image `rgb2hed`);
* nuclei: fraction of haematoxylin-dense pixels, blob count and size;
* texture: grey-level co-occurrence contrast / homogeneity / energy at 1 and 2 px,
  uniform local-binary-pattern histogram;
* colour: saturation and brightness, fraction of bare glass.

Together they separate bare glass (bright, unsaturated, no texture), pale eosinophilic
necrosis (eosin without nuclei, smooth) and dense cellular tumour (many
haematoxylin blobs, high contrast). Values are centred and scaled with fixed
constants from the physical range of each descriptor so that every feature is
O(1) and a feature never changes meaning between cohorts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import skimage
from scipy import ndimage
from skimage.color import rgb2gray, rgb2hed
from skimage.feature import graycomatrix, local_binary_pattern
from skimage.filters import threshold_otsu
from skimage.transform import resize

from fusion_models.encoders.registry import DEFAULT_MPP, PatchEncoder, check_tiles, register_encoder

ANALYSIS_SIDE = 64
TILE_PX = 256  # level-0 tiles at DEFAULT_MPP (0.5 um/px): the scale ANALYSIS_SIDE is chosen for
GLCM_LEVELS = 32
GLCM_DISTANCES = (1, 2)
LBP_POINTS = 8
# Haematoxylin OD (rgb2hed units) below which no pixel counts as nuclear, whatever Otsu says:
# glass reads ~0.004, haematoxylin-counterstained stroma ~0.02, nuclei 0.04 and above.
NUCLEAR_OD_FLOOR = 0.04
MIN_BLOB_PX = 2
GLASS_BRIGHTNESS = 0.85
GLASS_SATURATION = 0.10

# (name, centre, scale): feature = (raw - centre) / scale. Set by hand to the middle and
# half-width of the range each descriptor spans from bare glass to dense cellular tissue
# (rgb2hed OD units, fractions, GLCM on 32 grey levels); fixed, never re-fitted per cohort.
FEATURES: tuple[tuple[str, float, float], ...] = (
    ("haematoxylin_mean", 0.04, 0.04),
    ("haematoxylin_std", 0.02, 0.02),
    ("haematoxylin_p90", 0.06, 0.05),
    ("eosin_mean", 0.03, 0.03),
    ("eosin_std", 0.015, 0.015),
    ("eosin_p90", 0.05, 0.04),
    ("dab_mean", 0.03, 0.05),
    ("dab_std", 0.02, 0.03),
    ("nuclear_fraction", 0.2, 0.2),
    ("nuclear_blobs_per_1000px", 5.0, 5.0),
    ("nuclear_blob_mean_px", 8.0, 8.0),
    *(
        (f"glcm_{prop}_d{d}", centre, scale)
        for d in GLCM_DISTANCES
        for prop, centre, scale in (("contrast", 8.0, 8.0), ("homogeneity", 0.6, 0.4), ("energy", 0.4, 0.4))
    ),
    *((f"lbp_uniform_{i}", 0.1, 0.2) for i in range(LBP_POINTS + 2)),
    ("saturation_mean", 0.3, 0.3),
    ("saturation_std", 0.08, 0.08),
    ("brightness_mean", 0.7, 0.2),
    ("brightness_std", 0.08, 0.08),
    ("glass_fraction", 0.5, 0.5),
)
FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _, _ in FEATURES)
_CENTRE = np.array([c for _, c, _ in FEATURES], dtype=np.float64)
_SCALE = np.array([s for _, _, s in FEATURES], dtype=np.float64)


def downsample(tiles: np.ndarray, side: int = ANALYSIS_SIDE) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, side, side, 3) in [0, 1] by block mean (area-preserving)."""
    h, w = tiles.shape[1:3]
    if h % side or w % side:
        small = [resize(t / 255.0, (side, side), order=1, anti_aliasing=True) for t in tiles]
        return np.asarray(small, dtype=np.float32).reshape(len(tiles), side, side, 3)
    fy, fx = h // side, w // side
    # Summing strided views is ~10x faster than reshape().mean() over the small block axes.
    rows = sum(tiles[:, i::fy].astype(np.uint32) for i in range(fy))
    blocks = sum(rows[:, :, j::fx] for j in range(fx))
    return (blocks / (255.0 * fy * fx)).astype(np.float32)


def _stain_stats(hed: np.ndarray) -> np.ndarray:
    """(N, s, s, 3) HED optical densities -> (N, 8)."""
    axes = (1, 2)
    mean, std = hed.mean(axis=axes), hed.std(axis=axes)
    p90 = np.percentile(hed, 90, axis=axes)
    h, e, d = 0, 1, 2
    return np.column_stack([mean[:, h], std[:, h], p90[:, h], mean[:, e], std[:, e], p90[:, e], mean[:, d], std[:, d]])


def _colour_stats(rgb: np.ndarray) -> np.ndarray:
    """(N, s, s, 3) RGB in [0, 1] -> (N, 5): saturation and brightness (HSV), glass fraction."""
    brightness = rgb.max(axis=-1)
    saturation = (brightness - rgb.min(axis=-1)) / np.maximum(brightness, 1e-6)
    glass = (brightness > GLASS_BRIGHTNESS) & (saturation < GLASS_SATURATION)
    axes = (1, 2)
    return np.column_stack(
        [
            saturation.mean(axis=axes),
            saturation.std(axis=axes),
            brightness.mean(axis=axes),
            brightness.std(axis=axes),
            glass.mean(axis=axes),
        ]
    )


def _nuclear_stats(haematoxylin: np.ndarray) -> list[float]:
    """One tile's haematoxylin channel -> nuclear fraction, blobs per 1000 px, mean blob size."""
    # Per-tile Otsu adapts to staining strength; the floor stops it from splitting
    # nucleus-free tissue into "nuclei" and "rest".
    threshold = max(float(threshold_otsu(haematoxylin)), NUCLEAR_OD_FLOOR)
    nuclear = haematoxylin > threshold
    labels, _ = ndimage.label(nuclear)
    sizes = np.bincount(labels.ravel())[1:]
    blobs = sizes[sizes >= MIN_BLOB_PX]
    per_1000 = 1000.0 * len(blobs) / haematoxylin.size
    return [float(nuclear.mean()), per_1000, float(blobs.mean()) if len(blobs) else 0.0]


def glcm_properties(levels: np.ndarray) -> list[float]:
    """Contrast, homogeneity, energy per distance in GLCM_DISTANCES, averaged over 0 and 90 degrees."""
    glcm = graycomatrix(
        levels,
        distances=list(GLCM_DISTANCES),
        angles=[0.0, np.pi / 2],
        levels=GLCM_LEVELS,
        symmetric=True,
        normed=True,
    )
    i, j = np.ogrid[:GLCM_LEVELS, :GLCM_LEVELS]
    sq = ((i - j) ** 2)[:, :, None, None]
    # Same definitions as skimage's graycoprops, written out because graycoprops costs ~4x more here.
    contrast = (glcm * sq).sum(axis=(0, 1)).mean(axis=1)
    homogeneity = (glcm / (1.0 + sq)).sum(axis=(0, 1)).mean(axis=1)
    energy = np.sqrt((glcm**2).sum(axis=(0, 1))).mean(axis=1)
    return [v for d in range(len(GLCM_DISTANCES)) for v in (contrast[d], homogeneity[d], energy[d])]


def _texture_stats(gray: np.ndarray) -> list[float]:
    """One tile's grey image in [0, 1] -> GLCM properties and uniform-LBP histogram."""
    levels = np.minimum((gray * GLCM_LEVELS).astype(np.uint8), GLCM_LEVELS - 1)
    lbp = local_binary_pattern(levels, LBP_POINTS, 1, method="uniform")
    hist = np.bincount(lbp.astype(np.int64).ravel(), minlength=LBP_POINTS + 2) / lbp.size
    return [*glcm_properties(levels), *hist]


def raw_descriptors(tiles: np.ndarray) -> np.ndarray:
    """Unscaled descriptors (N, 32) of uint8 RGB tiles, in FEATURE_NAMES order."""
    rgb = downsample(tiles)
    hed = rgb2hed(rgb)
    gray = rgb2gray(rgb)
    per_tile = np.array([_nuclear_stats(hed[k, ..., 0]) + _texture_stats(gray[k]) for k in range(len(rgb))])
    return np.column_stack([_stain_stats(hed), per_tile, _colour_stats(rgb)]).astype(np.float64)


def standardise(raw: np.ndarray) -> np.ndarray:
    return ((raw - _CENTRE) / _SCALE).astype(np.float32)


class HedTextureEncoder:
    """Handcrafted stain, nuclear, texture and colour descriptors (see module docstring)."""

    name = "hed_texture"
    dim = len(FEATURES)

    def embed(self, tiles: np.ndarray) -> np.ndarray:
        tiles = check_tiles(tiles)
        if len(tiles) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return standardise(raw_descriptors(tiles))

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": f"1.0 (scikit-image {skimage.__version__})",
            "weights_sha256": None,
            "licence": "Apache-2.0 (project code; no weights)",
            "input_size": [ANALYSIS_SIDE, ANALYSIS_SIDE],
            "tile_px": TILE_PX,
            "mpp": DEFAULT_MPP,
            "trained": False,
            "features": list(FEATURE_NAMES),
        }


@register_encoder("hed_texture")
def hed_texture(weights: Path | None = None) -> PatchEncoder:
    """Default encoder: needs no weights, so it takes none."""
    if weights is not None:
        raise ValueError("encoder 'hed_texture' has no weights")
    return HedTextureEncoder()
