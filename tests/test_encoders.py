"""Patch encoders: registry, the handcrafted hed_texture encoder, timm and open_clip families, torchvision fix."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage import data
from skimage.color import hed2rgb
from skimage.draw import disk
from skimage.feature import graycomatrix, graycoprops

from fusion_models.encoders import create_encoder, is_encoder_family, list_encoders, register_encoder
from fusion_models.encoders.foundation import FOUNDATION_ENCODERS
from fusion_models.encoders.hed_texture import FEATURE_NAMES, downsample, glcm_properties
from fusion_models.encoders.registry import PatchEncoder
from schemas.errors import InputError

REPO = Path(__file__).resolve().parents[1]

# Tissue rendered through the haematoxylin/eosin stain vectors (skimage hed2rgb), so each class
# has the optical-density make-up of real H&E: (nuclei, radius px, nuclear H OD, background H OD, eosin OD).
TISSUE = {
    "cellular": (110, (4, 7), (0.10, 0.16), 0.012, 0.05),
    "necrotic": (12, (1, 2), (0.05, 0.08), 0.004, 0.03),
    "background": (0, (1, 1), (0.0, 0.0), 0.001, 0.001),
}


def render(kind: str, seed: int, side: int = 256) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n, (r0, r1), (h0, h1), h_bg, eosin = TISSUE[kind]
    haem = np.full((side, side), h_bg) + rng.normal(0, h_bg * 0.2 + 1e-4, (side, side))
    for _ in range(n):
        rr, cc = disk(rng.uniform(0, side, 2), rng.uniform(r0, r1), shape=(side, side))
        haem[rr, cc] = rng.uniform(h0, h1)
    eos = ndimage.gaussian_filter(eosin + rng.normal(0, eosin * 0.3, (side, side)), 2)
    hed = np.stack([np.clip(haem, 0, None), np.clip(eos, 0, None), np.zeros((side, side))], axis=-1)
    return (np.clip(hed2rgb(hed), 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def tissue() -> dict[str, np.ndarray]:
    return {kind: np.stack([render(kind, seed) for seed in range(6)]) for kind in TISSUE}


@pytest.fixture(scope="module")
def ihc_tiles() -> np.ndarray:
    ihc = data.immunohistochemistry()
    return np.stack([ihc[y : y + 256, x : x + 256] for y in (0, 128, 256) for x in (0, 128, 256)])


def random_tiles(n=3, side=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


FOUNDATION = {config.name: config for config in FOUNDATION_ENCODERS}
# The named foundation encoders as tests build them: the same architecture, reduced, randomly initialised.
TEST_VARIANT = {"small": True, "random_init": True}


def build_for_test(name: str, **kw) -> PatchEncoder:
    return create_encoder(name, **(TEST_VARIANT if name in FOUNDATION else {}), **kw)


# --- registry ---------------------------------------------------------------------------------


def test_registry_lists_encoders_and_families():
    assert {"hed_texture", "timm", "open_clip"} <= set(list_encoders())
    assert is_encoder_family("timm") and is_encoder_family("open_clip") and not is_encoder_family("hed_texture")


@pytest.mark.parametrize(
    ("name", "needle"),
    [("nope", "unknown encoder"), ("timm", "needs an architecture"), ("hed_texture/x", "takes no architecture")],
)
def test_registry_rejects_bad_names(name, needle):
    with pytest.raises(ValueError, match=needle):
        create_encoder(name)


def test_registry_rejects_duplicates_missing_weights_and_slashes(tmp_path):
    with pytest.raises(ValueError, match="already registered"):
        register_encoder("hed_texture")(lambda weights=None: None)
    with pytest.raises(ValueError, match="must not contain"):
        register_encoder("a/b")
    with pytest.raises(InputError, match="encoder_weights: encoder .timm/resnet18.: weights file not found"):
        create_encoder("timm/resnet18", weights=tmp_path / "missing.safetensors")


@pytest.mark.parametrize("name", [n for n in list_encoders() if not is_encoder_family(n)])
def test_every_plain_encoder_meets_the_contract(name):
    encoder = build_for_test(name)
    assert isinstance(encoder, PatchEncoder)
    tiles = random_tiles()
    out = encoder.embed(tiles)
    assert out.shape == (3, encoder.dim) and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_array_equal(out, encoder.embed(tiles))
    assert encoder.embed(tiles[:0]).shape == (0, encoder.dim)
    info = encoder.info()
    assert {"name", "version", "weights_sha256", "licence", "input_size", "trained", "tile_px", "mpp"} <= set(info)
    with pytest.raises(ValueError, match="uint8"):
        encoder.embed(tiles.astype(np.float32))


# --- hed_texture --------------------------------------------------------------------------------


def test_downsample_is_a_block_mean():
    tile = np.zeros((1, 128, 128, 3), dtype=np.uint8)
    tile[0, 0, 0] = 255
    tile[0, 1, 1] = 255
    small = downsample(tile)
    assert small.shape == (1, 64, 64, 3)
    assert small[0, 0, 0, 0] == pytest.approx(0.5)  # two of four pixels white
    assert small[0, 0, 1, 0] == 0.0
    odd = downsample(np.full((1, 100, 100, 3), 255, dtype=np.uint8))
    assert odd.shape == (1, 64, 64, 3) and odd.min() == pytest.approx(1.0)


def test_glcm_properties_match_skimage_graycoprops():
    levels = np.random.default_rng(3).integers(0, 32, (64, 64)).astype(np.uint8)
    glcm = graycomatrix(levels, [1, 2], [0.0, np.pi / 2], levels=32, symmetric=True, normed=True)
    expected = [graycoprops(glcm, p)[d].mean() for d in range(2) for p in ("contrast", "homogeneity", "energy")]
    np.testing.assert_allclose(glcm_properties(levels), expected, rtol=1e-10)


def test_hed_texture_has_32_named_features():
    encoder = create_encoder("hed_texture")
    assert encoder.dim == 32 == len(FEATURE_NAMES) == len(set(FEATURE_NAMES))
    assert encoder.info()["weights_sha256"] is None
    with pytest.raises(ValueError, match="no weights"):
        create_encoder("hed_texture", weights=Path(__file__))


def test_hed_texture_separates_cellular_necrotic_and_background(tissue):
    encoder = create_encoder("hed_texture")
    feats = {kind: encoder.embed(tiles) for kind, tiles in tissue.items()}
    centroids = {kind: f.mean(axis=0) for kind, f in feats.items()}
    spread = max(np.linalg.norm(f - centroids[k], axis=1).max() for k, f in feats.items())
    kinds = list(feats)
    gaps = [np.linalg.norm(centroids[a] - centroids[b]) for i, a in enumerate(kinds) for b in kinds[i + 1 :]]
    assert min(gaps) > 3 * spread
    # leave-one-out nearest centroid: every tile goes to its own class
    for kind, f in feats.items():
        for i in range(len(f)):
            own = np.delete(f, i, axis=0).mean(axis=0)
            others = [centroids[k] for k in kinds if k != kind]
            assert np.linalg.norm(f[i] - own) < min(np.linalg.norm(f[i] - c) for c in others)


def test_hed_texture_features_mean_what_they_say(tissue):
    encoder = create_encoder("hed_texture")
    idx = {name: i for i, name in enumerate(FEATURE_NAMES)}
    f = {kind: encoder.embed(tiles).mean(axis=0) for kind, tiles in tissue.items()}
    nuclear = idx["nuclear_blobs_per_1000px"]
    assert f["cellular"][nuclear] > f["necrotic"][nuclear] >= f["background"][nuclear]
    glass = idx["glass_fraction"]
    assert f["background"][glass] > f["necrotic"][glass] and f["background"][glass] > f["cellular"][glass]
    eosin = idx["eosin_mean"]
    assert f["necrotic"][eosin] > f["background"][eosin]
    contrast = idx["glcm_contrast_d1"]
    assert f["cellular"][contrast] > f["necrotic"][contrast] > f["background"][contrast]


def test_hed_texture_is_order_one_on_real_ihc_tissue(ihc_tiles):
    out = create_encoder("hed_texture").embed(ihc_tiles)
    assert np.isfinite(out).all()
    assert np.abs(out).max() < 10
    assert np.abs(out).mean() < 2


# --- torch families -------------------------------------------------------------------------------

TIMM_TINY = {"img_size": 32}  # timm's own 0.2M-parameter test ViT, built for 32-px input


def test_timm_random_init_is_reported_untrained():
    encoder = create_encoder("timm/test_vit", **TIMM_TINY)
    out = encoder.embed(random_tiles(n=3, side=48))
    assert out.shape == (3, 64) and encoder.dim == 64 and out.dtype == np.float32
    info = encoder.info()
    assert info["name"] == "timm/test_vit"
    assert info["weights_sha256"] is None and info["trained"] is False
    assert info["input_size"] == [32, 32]
    assert "untrained" in info["licence"]


def test_timm_local_safetensors_weights_reproduce_the_model(tmp_path):
    from safetensors.torch import save_file

    first = create_encoder("timm/test_vit", **TIMM_TINY)
    weights = tmp_path / "test_vit.safetensors"
    save_file({k: v.contiguous() for k, v in first.module.state_dict().items()}, weights)
    loaded = create_encoder("timm/test_vit", weights=weights, licence="CC-BY-4.0", **TIMM_TINY)
    tiles = random_tiles(n=4, side=40, seed=5)
    np.testing.assert_allclose(loaded.embed(tiles), first.embed(tiles), rtol=1e-5, atol=1e-5)
    info = loaded.info()
    assert info["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert info["trained"] is True and info["licence"] == "CC-BY-4.0"


def test_timm_batches_do_not_change_results():
    encoder = create_encoder("timm/test_resnet", batch_size=2)
    tiles = random_tiles(n=5, side=32, seed=2)
    batched = encoder.embed(tiles)
    assert batched.shape == (5, encoder.dim)
    np.testing.assert_allclose(batched[4:], encoder.embed(tiles[4:]), rtol=1e-4, atol=1e-5)


# ViT-S-32 shrunk through open_clip's own config overrides, so the test builds in well under a second.
CLIP_TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1},
}


def test_open_clip_image_tower_with_local_weights(tmp_path):
    import torch

    first = create_encoder("open_clip/ViT-S-32", **CLIP_TINY)
    tiles = random_tiles(n=2, side=80, seed=7)
    out = first.embed(tiles)
    assert out.shape == (2, 32) and first.dim == 32
    info = first.info()
    assert info["trained"] is False and info["weights_sha256"] is None and info["input_size"] == [64, 64]
    # open_clip loads a full CLIP checkpoint; build one whose image tower is the encoder's
    import open_clip

    model = open_clip.create_model("ViT-S-32", **CLIP_TINY)
    model.visual.load_state_dict(first.module.state_dict())
    weights = tmp_path / "clip.pt"
    torch.save(model.state_dict(), weights)
    loaded = create_encoder("open_clip/ViT-S-32", weights=weights, **CLIP_TINY)
    np.testing.assert_allclose(loaded.embed(tiles), out, rtol=1e-5, atol=1e-5)
    assert loaded.info()["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


@pytest.mark.slow
def test_torchvision_timm_and_open_clip_import_in_a_fresh_process():
    code = (
        "from toolkit.torchvision_compat import ensure_torchvision\n"
        "ensure_torchvision(); ensure_torchvision()\n"
        "import torchvision, timm, open_clip\n"
        "import torch\n"
        "try:\n"
        "    torch.ops.torchvision.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)\n"
        "except (NotImplementedError, RuntimeError):\n"
        "    print('nms-raises')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "nms-raises" in result.stdout


# --- named pathology foundation encoders (uni, conch, virchow, ctranspath) ----------------------------


def test_every_foundation_encoder_is_registered_by_name():
    assert set(FOUNDATION) <= set(list_encoders())
    assert not any(is_encoder_family(name) for name in FOUNDATION)


@pytest.mark.parametrize("name", sorted(FOUNDATION))
def test_foundation_encoder_declares_its_geometry_and_is_deterministic(name):
    config = FOUNDATION[name]
    encoder = build_for_test(name)
    info = encoder.info()
    assert info["trained"] is False and info["weights_sha256"] is None
    assert info["input_size"] == [config.small_input_size] * 2
    assert (info["mean"], info["std"]) == (list(config.mean), list(config.std))
    assert (info["mpp"], info["tile_px"]) == (config.mpp, config.tile_px)
    assert info["magnification"] == pytest.approx(10.0 / config.mpp)
    # Tiles arrive at the encoder's tile size and are resized to its input by its own transform.
    tiles = random_tiles(n=3, side=config.tile_px, seed=1)
    out = encoder.embed(tiles)
    assert out.shape == (3, encoder.dim) and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_array_equal(out, encoder.embed(tiles))
    assert not np.allclose(out[0], out[1])  # different tiles, different features


@pytest.mark.parametrize("name", sorted(FOUNDATION))
def test_foundation_encoder_checkpoint_round_trip(name, tmp_path):
    import torch

    config = FOUNDATION[name]
    first = build_for_test(name)
    # Saved as released checkpoints are: wrapped in {"model": ...}, the image tower under its prefix.
    prefix = config.checkpoint_prefix or ""
    weights = tmp_path / f"{name}.pt"
    torch.save({"model": {prefix + k: v for k, v in first.module.backbone.state_dict().items()}}, weights)
    loaded = create_encoder(name, weights=weights, small=True)
    tiles = random_tiles(n=2, side=config.tile_px, seed=3)
    np.testing.assert_array_equal(loaded.embed(tiles), first.embed(tiles))
    info = loaded.info()
    assert info["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert info["trained"] is True and info["licence"] == config.licence


@pytest.mark.parametrize("name", sorted(FOUNDATION))
def test_foundation_encoder_weights_errors_name_encoder_and_setting(name, tmp_path):
    with pytest.raises(InputError) as err:
        create_encoder(name)
    assert str(err.value) == (
        f"--encoder-weights: encoder_weights: encoder {name!r}: needs local weights (set --encoder-weights / "
        "Settings.encoder_weights to a local weights file; nothing is downloaded)"
    )
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(InputError, match=f"{missing}: encoder_weights: encoder '{name}': weights file not found"):
        create_encoder(name, weights=missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=f"encoder '{name}': not a readable checkpoint"):
        create_encoder(name, weights=garbage, small=True)
    # Another encoder's weights: the architecture does not fit them.
    other = next(n for n in sorted(FOUNDATION) if n != name)
    import torch

    wrong = tmp_path / "wrong.pt"
    torch.save(build_for_test(other).module.backbone.state_dict(), wrong)
    with pytest.raises(InputError, match=f"encoder '{name}': weights do not fit") as err:
        create_encoder(name, weights=wrong, small=True)
    assert "\n" not in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FOUNDATION))
def test_full_size_foundation_architecture_has_the_published_embedding_size(name):
    encoder = create_encoder(name, random_init=True)
    assert encoder.dim == FOUNDATION[name].embed_dim
    assert encoder.info()["input_size"] == [FOUNDATION[name].input_size] * 2
