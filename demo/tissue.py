"""Demo histology on real tissue: H&E-like tiles cut from scikit-image's real IHC image.

The IHC image (haematoxylin + DAB) is restained in optical-density space: its DAB
(cytoplasm, membranes) becomes eosin, so every tile keeps real nuclear and cytoplasmic
morphology. Each tissue pattern of TISSUE_PATTERNS is a transform of real crops: which
crop (sparse or dense nuclei) and how its stains are changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage
from skimage.color import rgb2hed, rgb_from_hed

from schemas.case import PathologyFindings
from schemas.common import TISSUE_PATTERNS

TILE_SIDE = 256  # level-0 px at 0.5 um/px (20x), the patch size of every demo slide
SOURCE_REPEAT = 2  # mirror-tile the 512 px image to 1024 px so crops can start anywhere
CROP_STRIDE = 32
NUCLEAR_OD = 0.03  # haematoxylin optical density of a nucleus in the IHC image
DENSITY_BANDS = {"sparse": (0.0, 0.3), "mid": (0.35, 0.7), "dense": (0.75, 1.0)}  # quantiles of nuclear fraction
# H&E haematoxylin stains nuclei darker than the IHC counterstain; eosin takes the DAB signal.
H_GAIN = 2.2
EOSIN_PER_DAB = 0.35

PATTERN_CODES: dict[str, int] = {name: i for i, name in enumerate(TISSUE_PATTERNS)}


@dataclass(frozen=True)
class TissueSource:
    """Optical densities of the mirrored IHC image and crop corners per nuclear-density band."""

    hed: np.ndarray  # (S, S, 3) float32
    corners: dict[str, np.ndarray]  # band -> (K, 2) top-left corners


@lru_cache(maxsize=1)
def tissue_source() -> TissueSource:
    """The real IHC image as optical densities, with its crops ranked by nuclear density."""
    from skimage import data  # the image ships with scikit-image; no download

    rgb = data.immunohistochemistry()
    tiled = _mirror_tile(rgb, SOURCE_REPEAT)
    hed = rgb2hed(tiled).astype(np.float32)
    nuclear = ndimage.gaussian_filter(hed[..., 0], 1.0) > NUCLEAR_OD
    side = tiled.shape[0] - TILE_SIDE
    starts = np.arange(0, side + 1, CROP_STRIDE)
    grid = np.array([(y, x) for y in starts for x in starts])
    integral = np.pad(nuclear.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    y, x, t = grid[:, 0], grid[:, 1], TILE_SIDE
    fraction = (integral[y + t, x + t] - integral[y, x + t] - integral[y + t, x] + integral[y, x]) / t**2
    rank = fraction.argsort().argsort() / (len(fraction) - 1)
    corners = {band: grid[(rank >= lo) & (rank <= hi)] for band, (lo, hi) in DENSITY_BANDS.items()}
    return TissueSource(hed=hed, corners=corners)


def _mirror_tile(rgb: np.ndarray, repeat: int) -> np.ndarray:
    """Tile an image `repeat` x `repeat` times, mirroring alternate copies so edges match."""
    rows = [rgb if i % 2 == 0 else rgb[::-1] for i in range(repeat)]
    column = np.concatenate(rows, axis=0)
    return np.concatenate([column if j % 2 == 0 else column[:, ::-1] for j in range(repeat)], axis=1)


def _crop(rng: np.random.Generator, source: TissueSource, band: str) -> np.ndarray:
    """A randomly oriented TILE_SIDE crop (optical densities) from the given density band."""
    corners = source.corners[band]
    y, x = corners[rng.integers(len(corners))]
    crop = source.hed[y : y + TILE_SIDE, x : x + TILE_SIDE]
    crop = np.rot90(crop, k=int(rng.integers(4)))
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def restain(haematoxylin: np.ndarray, eosin: np.ndarray) -> np.ndarray:
    """Optical densities -> uint8 RGB with no DAB: scikit-image's `hed2rgb` on two stains, in float32."""
    # hed2rgb scales densities by -log(1e-6) to undo the sum in rgb2hed.
    log_adjust = np.float32(-np.log(1e-6))
    h_vec, e_vec = (rgb_from_hed[i].astype(np.float32) for i in (0, 1))
    density = haematoxylin.astype(np.float32)[..., None] * h_vec + eosin.astype(np.float32)[..., None] * e_vec
    rgb = np.exp(-log_adjust * np.clip(density, 0.0, None))
    return (rgb * 255.0 + 0.5).astype(np.uint8)


PatternMaker = Callable[[np.random.Generator, TissueSource], tuple[np.ndarray, np.ndarray]]
_PATTERNS: dict[str, PatternMaker] = {}


def _pattern(name: str) -> Callable[[PatternMaker], PatternMaker]:
    def decorator(maker: PatternMaker) -> PatternMaker:
        if name not in PATTERN_CODES:
            raise ValueError(f"unknown tissue pattern {name!r}")
        _PATTERNS[name] = maker
        return maker

    return decorator


@_pattern("background")
def _background(rng: np.random.Generator, source: TissueSource) -> tuple[np.ndarray, np.ndarray]:
    """Pale parenchyma with sparse nuclei."""
    crop = _crop(rng, source, "sparse")
    pale = rng.uniform(0.5, 0.7)
    return crop[..., 0] * H_GAIN * pale, crop[..., 2] * EOSIN_PER_DAB * pale


@_pattern("infiltrating_tumour")
def _infiltrating(rng: np.random.Generator, source: TissueSource) -> tuple[np.ndarray, np.ndarray]:
    """Moderate nuclear density: tumour cells spreading through parenchyma."""
    crop = _crop(rng, source, "mid")
    return crop[..., 0] * H_GAIN, crop[..., 2] * EOSIN_PER_DAB


@_pattern("high_cellularity")
def _high_cellularity(rng: np.random.Generator, source: TissueSource) -> tuple[np.ndarray, np.ndarray]:
    """Dense, crowded, darker nuclei: two dense crops overlaid."""
    a, b = _crop(rng, source, "dense"), _crop(rng, source, "dense")
    haematoxylin = np.maximum(a[..., 0], b[..., 0]) * H_GAIN * 1.3
    return haematoxylin, a[..., 2] * EOSIN_PER_DAB


@_pattern("necrosis")
def _necrosis(rng: np.random.Generator, source: TissueSource) -> tuple[np.ndarray, np.ndarray]:
    """Pale eosinophilic ghost tissue, blurred, with scattered karyorrhectic debris."""
    crop = _crop(rng, source, "mid")
    coarse = ndimage.gaussian_filter(crop[::4, ::4, 2], 1.5)  # blur at a quarter of the resolution: cheap
    eosin = np.kron(coarse, np.ones((4, 4), np.float32)) * EOSIN_PER_DAB * 0.6 + rng.uniform(0.015, 0.03)
    haematoxylin = np.zeros(crop.shape[:2], np.float32)
    yy, xx = np.mgrid[-4:5, -4:5]
    for y, x in rng.integers(4, TILE_SIDE - 4, size=(rng.poisson(25), 2)):
        radius = rng.uniform(1.0, 3.5)
        speck = (np.hypot(yy, xx) <= radius) * rng.uniform(0.08, 0.2)
        window = haematoxylin[y - 4 : y + 5, x - 4 : x + 5]
        np.maximum(window, speck, out=window)
    return haematoxylin, eosin


@_pattern("microvascular_proliferation")
def _mvp(rng: np.random.Generator, source: TissueSource) -> tuple[np.ndarray, np.ndarray]:
    """Glomeruloid vessels: rings of crowded nuclei around clear lumina in cellular tumour."""
    crop, ring_source = _crop(rng, source, "mid"), _crop(rng, source, "dense")
    haematoxylin, eosin = crop[..., 0] * H_GAIN, crop[..., 2] * EOSIN_PER_DAB
    yy, xx = np.mgrid[:TILE_SIDE, :TILE_SIDE]
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0.2, 0.8, size=2) * TILE_SIDE
        lumen, wall = rng.uniform(12, 30), rng.uniform(16, 30)
        r = np.hypot(yy - cy, xx - cx)
        ring = (r >= lumen) & (r < lumen + wall)
        haematoxylin = np.where(ring, np.maximum(haematoxylin, ring_source[..., 0] * H_GAIN * 1.8), haematoxylin)
        haematoxylin[r < lumen] = 0.0
        eosin[r < lumen] = 0.0
    return haematoxylin, eosin


def make_tile(rng: np.random.Generator, pattern: str) -> np.ndarray:
    """One uint8 RGB tile (TILE_SIDE x TILE_SIDE) showing `pattern`."""
    haematoxylin, eosin = _PATTERNS[pattern](rng, tissue_source())
    return restain(haematoxylin, eosin)


def draw_patterns(rng: np.random.Generator, pattern_mix: dict[str, float], n: int) -> np.ndarray:
    """`n` pattern codes drawn from `pattern_mix`."""
    weights = np.array([pattern_mix.get(p, 0.0) for p in TISSUE_PATTERNS], dtype=float)
    return rng.choice(len(TISSUE_PATTERNS), size=n, p=weights / weights.sum()).astype(np.int64)


def make_tiles(rng: np.random.Generator, codes: np.ndarray) -> np.ndarray:
    """One tile per pattern code, (N, TILE_SIDE, TILE_SIDE, 3) uint8."""
    return np.stack([make_tile(rng, TISSUE_PATTERNS[c]) for c in codes])


def make_slide_tiles(rng: np.random.Generator, pattern_mix: dict[str, float], n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` tiles whose patterns are drawn from `pattern_mix`; returns (tiles, pattern codes)."""
    codes = draw_patterns(rng, pattern_mix, n)
    return make_tiles(rng, codes), codes


# Expected pattern fractions of a specimen by what it shows (histological grade) and
# where it was taken; a specimen from oedema shows infiltrated parenchyma only.
_SPECIMEN_MIX: dict[str, dict[str, float]] = {
    "G2": {"background": 0.35, "infiltrating_tumour": 0.6, "high_cellularity": 0.05},
    "G3": {"background": 0.15, "infiltrating_tumour": 0.4, "high_cellularity": 0.45},
    "G4": {
        "background": 0.05,
        "infiltrating_tumour": 0.15,
        "high_cellularity": 0.35,
        "necrosis": 0.25,
        "microvascular_proliferation": 0.2,
    },
    "G4_necrotic_core": {
        "background": 0.02,
        "infiltrating_tumour": 0.08,
        "high_cellularity": 0.2,
        "necrosis": 0.55,
        "microvascular_proliferation": 0.15,
    },
    "oedema": {"background": 0.6, "infiltrating_tumour": 0.35, "high_cellularity": 0.05},
}
MIX_CONCENTRATION = 60.0
# A finding is reported when at least this share of the specimen's patches shows it.
FINDING_MIN_FRACTION = 0.05
_KI67_RANGE = {"G2": (2.0, 6.0), "G3": (8.0, 18.0), "G4": (20.0, 40.0)}
_CELLULARITY = {"G2": "low", "G3": "moderate", "G4": "high"}
_HISTOLOGY_TEXT = {
    "G2": "Diffusely infiltrating glioma, low cellularity, no mitoses seen",
    "G3": "Diffusely infiltrating glioma with increased cellularity and mitotic activity",
    "G4": "Diffuse glioma with marked atypia, brisk mitoses",
}


def _specimen_key(histology_grade: str, sampled_region: str) -> str:
    if sampled_region == "oedema":
        return "oedema"
    if histology_grade == "G4" and sampled_region == "necrotic_core":
        return "G4_necrotic_core"
    return histology_grade


def pattern_mix(rng: np.random.Generator, histology_grade: str, sampled_region: str) -> dict[str, float]:
    """Pattern fractions of one specimen: the expected mix with Dirichlet noise."""
    expected = _SPECIMEN_MIX[_specimen_key(histology_grade, sampled_region)]
    alpha = np.array([MIX_CONCENTRATION * expected.get(p, 0.0) + 0.1 for p in TISSUE_PATTERNS])
    return {p: float(f) for p, f in zip(TISSUE_PATTERNS, rng.dirichlet(alpha), strict=True)}


def pathology_findings(
    rng: np.random.Generator, histology_grade: str, sampled_region: str, codes: np.ndarray
) -> PathologyFindings:
    """The pathologist's structured read of the specimen's patches (what it shows, not the tumour's truth)."""
    fraction = np.bincount(codes, minlength=len(TISSUE_PATTERNS)) / max(len(codes), 1)
    # Plain bools: the findings contract is strict, and numpy's bool is not one.
    necrosis = bool(histology_grade == "G4" and fraction[PATTERN_CODES["necrosis"]] >= FINDING_MIN_FRACTION)
    mvp = bool(histology_grade == "G4" and fraction[PATTERN_CODES["microvascular_proliferation"]] >= FINDING_MIN_FRACTION)
    features = [name for name, seen in (("necrosis", necrosis), ("microvascular proliferation", mvp)) if seen]
    text = _HISTOLOGY_TEXT[histology_grade] + (f", with {' and '.join(features)}" if features else "")
    return PathologyFindings(
        who_grade=int(histology_grade[1]),
        histology=text + ".",
        necrosis=necrosis,
        microvascular_proliferation=mvp,
        cellularity=_CELLULARITY[histology_grade],  # type: ignore[arg-type]
        ki67_percent=round(float(rng.uniform(*_KI67_RANGE[histology_grade])), 1),
        sampled_region=sampled_region,  # type: ignore[arg-type]
    )


# Patterns from the centre of a specimen outwards: necrosis is surrounded by vessels and
# crowded tumour, infiltration and parenchyma lie at the edge.
_CENTRALITY: tuple[str, ...] = (
    "necrosis",
    "microvascular_proliferation",
    "high_cellularity",
    "infiltrating_tumour",
    "background",
)


def patch_coords(rng: np.random.Generator, codes: np.ndarray, patch: int = TILE_SIDE) -> np.ndarray:
    """Level-0 (x, y) corners of one tissue blob on a patch grid (one empty cell of margin), zoned by centrality."""
    n = len(codes)
    side = int(np.ceil(np.sqrt(n) * 1.25)) + 1
    cells = np.array([(x, y) for y in range(side) for x in range(side)], dtype=np.int64)
    centre = side / 2.0 + rng.normal(0.0, 0.5, size=2)
    distance = np.hypot(*(cells - centre).T) + rng.normal(0.0, 0.7, size=len(cells))
    blob = cells[np.argsort(distance, kind="stable")[:n]]
    centrality = np.array([_CENTRALITY.index(TISSUE_PATTERNS[c]) for c in codes])
    coords = np.empty((n, 2), dtype=np.int64)
    coords[np.argsort(centrality, kind="stable")] = (blob + 1) * patch
    return coords


def slide_mosaic(tiles: np.ndarray, coords: np.ndarray, side_px: int) -> np.ndarray:
    """A whole-slide RGB image: tiles placed at their level-0 corners on bare glass."""
    glass = np.full((side_px, side_px, 3), 242, dtype=np.uint8)
    for tile, (x, y) in zip(tiles, coords, strict=True):
        glass[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return glass
