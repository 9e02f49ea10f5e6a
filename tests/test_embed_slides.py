"""`evchain embed-slides`: tissue grid at the encoder's magnification, batched inference, CLAM/TRIDENT HDF5, resume."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import tiffslide
from PIL import Image
from skimage import data

from agents.cli import main
from fusion_models.encoders import create_encoder
from fusion_models.inputs import load_case_inputs
from fusion_models.pathology.embedding import embed_slides, level0_patch_size, list_slides
from fusion_models.pathology.slides import write_pyramidal_tiff

SLIDE_MPP = 0.25  # a 40x scan: the 0.5-um/px encoders read 2x2 level-0 pixels per tile pixel
SIDE = 2048
# Tissue blocks (level-0 x0, y0, x1, y1) on white glass, aligned to the 512-px level-0 grid of a
# 256-px tile at 0.5 um/px, so the patches that must be found are known exactly.
TISSUE_BLOCKS = ((512, 0, 1536, 512), (0, 1024, 512, 2048))
EXPECTED = {(512, 0), (1024, 0), (0, 1024), (0, 1536)}


def tissue_slide(path: Path, mpp: float | None = SLIDE_MPP) -> Path:
    """A pyramidal TIFF: real IHC-stained tissue (scikit-image) in TISSUE_BLOCKS, near-white glass elsewhere."""
    rng = np.random.default_rng(0)
    rgb = np.clip(rng.normal(244, 2, (SIDE, SIDE, 3)), 0, 255).astype(np.uint8)
    # Upsampled 2x (the scan is at twice the resolution of the image) and shifted per block, so no two
    # tissue patches show the same part of the image.
    texture = np.tile(data.immunohistochemistry().repeat(2, axis=0).repeat(2, axis=1), (3, 3, 1))
    for i, (x0, y0, x1, y1) in enumerate(TISSUE_BLOCKS):
        rgb[y0:y1, x0:x1] = texture[y0 + 256 * i : y1 + 256 * i, x0:x1]
    if mpp is None:
        tifffile.imwrite(path, rgb, tile=(256, 256), photometric="rgb")
    else:
        write_pyramidal_tiff(path, rgb, mpp=mpp, tile=256)
    return path


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("slides")
    tissue_slide(folder / "good.tif")
    tissue_slide(folder / "nompp.tif", mpp=None)
    whole = (folder / "good.tif").read_bytes()
    (folder / "broken.tif").write_bytes(whole[: len(whole) // 3])
    (folder / "notes.txt").write_text("not a slide")
    return folder


@pytest.fixture(scope="module")
def small_uni():
    return create_encoder("uni", small=True, random_init=True)


def test_level0_patch_size_matches_the_field_of_view():
    assert level0_patch_size(256, 0.5, 0.25) == 512  # 40x scan, 20x encoder
    assert level0_patch_size(224, 0.5, 0.5) == 224
    assert level0_patch_size(512, 0.5, 0.2527) == 1013  # 128 um / 0.2527 um per px = 1012.7


def test_slides_are_listed_by_suffix(slides):
    assert [p.name for p in list_slides(slides)] == ["broken.tif", "good.tif", "nompp.tif"]


def test_embedding_writes_tissue_patches_at_the_encoder_magnification(slides, small_uni, tmp_path):
    outcomes = embed_slides([slides / "good.tif"], tmp_path, small_uni, batch_size=3, workers=0, progress=False)
    assert [(o.slide, o.status, o.patches) for o in outcomes] == [("good.tif", "embedded", 4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.h5"]
    with h5py.File(tmp_path / "good.h5", "r") as h5:
        features, coords, attrs = h5["features"][()], h5["coords"][()], dict(h5.attrs)
    assert features.shape == (4, small_uni.dim) and features.dtype == np.float32
    assert len(np.unique(features.round(5), axis=0)) == 4
    assert {tuple(c) for c in coords.tolist()} == EXPECTED
    assert attrs["encoder"] == "uni" and attrs["slide_id"] == "good"
    assert (attrs["patch_size"], attrs["patch_size_level0"], attrs["read_level"]) == (256, 512, 1)
    assert attrs["mpp"] == 0.5 and attrs["slide_mpp"] == pytest.approx(SLIDE_MPP)
    assert attrs["magnification"] == 20.0 and not attrs["encoder_trained"] and "weights_sha256" not in attrs
    # Each row embeds its own tile: the 512-px level-0 square, read at level 1 (256 px).
    with tiffslide.TiffSlide(slides / "good.tif") as slide:
        x, y = coords[2]
        tile = slide.read_region((int(x), int(y)), 1, (256, 256), as_array=True)[..., :3]
        reference = np.asarray(Image.fromarray(slide.read_region((int(x), int(y)), 0, (512, 512), as_array=True)))
    np.testing.assert_allclose(features[2], small_uni.embed(tile[None])[0], rtol=1e-5, atol=1e-5)
    # Level 1 is level 0 halved: the tile shows the same tissue as the level-0 square.
    assert np.abs(tile.astype(float) - reference[::2, ::2, :3].astype(float)).mean() < 20


def test_dataloader_workers_give_the_same_features(slides, small_uni, tmp_path):
    embed_slides([slides / "good.tif"], tmp_path / "a", small_uni, batch_size=4, workers=0, progress=False)
    embed_slides([slides / "good.tif"], tmp_path / "b", small_uni, batch_size=2, workers=2, progress=False)
    with h5py.File(tmp_path / "a" / "good.h5") as a, h5py.File(tmp_path / "b" / "good.h5") as b:
        np.testing.assert_array_equal(a["coords"][()], b["coords"][()])
        np.testing.assert_allclose(a["features"][()], b["features"][()], rtol=1e-5, atol=1e-5)


def test_a_finished_slide_is_skipped_and_another_encoders_file_refused(slides, small_uni, tmp_path):
    embed_slides([slides / "good.tif"], tmp_path, small_uni, progress=False)
    first = (tmp_path / "good.h5").stat().st_mtime_ns
    again = embed_slides([slides / "good.tif"], tmp_path, small_uni, progress=False)
    assert [(o.status, o.patches) for o in again] == [("skipped", 0)]
    assert (tmp_path / "good.h5").stat().st_mtime_ns == first
    other = embed_slides([slides / "good.tif"], tmp_path, create_encoder("hed_texture"), progress=False)
    assert other[0].status == "failed"
    assert other[0].error.startswith("good.h5: attrs.encoder: already holds features of encoder 'uni'")


def test_cli_names_each_bad_slide_and_finishes_the_others(slides, tmp_path, capsys):
    code = main(["embed-slides", str(slides), "--encoder", "hed_texture", "--out", str(tmp_path),
                 "--workers", "0", "--quiet"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out.splitlines() == ["broken.tif: failed", "good.tif: 4 patches", "nompp.tif: failed"]
    errors = captured.err.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith("evchain: error: broken.tif: slide: ")
    assert errors[1].startswith("evchain: error: nompp.tif: mpp: the slide records no microns per pixel")
    # Only the good slide's file; the failed slides left nothing behind, not even a temporary file.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.h5"]


@pytest.mark.parametrize("workers", [0, 1])
def test_a_tile_that_cannot_be_read_fails_its_slide_with_one_line(slides, small_uni, tmp_path, workers):
    # Zeros over pyramid level 1 (the level the encoder reads here); the thumbnail levels stay intact.
    damaged = bytearray((slides / "good.tif").read_bytes())
    start, stop = int(len(damaged) * 0.77), int(len(damaged) * 0.9)
    damaged[start:stop] = bytes(stop - start)
    (tmp_path / "damaged.tif").write_bytes(bytes(damaged))
    (outcome,) = embed_slides([tmp_path / "damaged.tif"], tmp_path / "out", small_uni, workers=workers, progress=False)
    assert outcome.status == "failed"
    assert outcome.error.startswith("damaged.tif: slide: cannot read the tile at level-0 (")
    assert "\n" not in outcome.error and not (tmp_path / "out").exists()


def test_cli_weights_and_encoder_errors_are_one_line(slides, tmp_path, capsys):
    assert main(["embed-slides", str(slides), "--encoder", "uni", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "evchain: error: --encoder-weights: encoder_weights: encoder 'uni': needs local weights (set "
        "--encoder-weights / Settings.encoder_weights to a local weights file; nothing is downloaded)"
    )
    assert main(["embed-slides", str(slides), "--encoder", "nope", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("evchain: error: --encoder: encoder: unknown encoder 'nope'")
    assert not any(tmp_path.iterdir())


def test_the_report_pipeline_reads_the_embedded_h5_instead_of_tiling(slides, small_uni, tmp_path):
    case = tmp_path / "case"
    (case / "pathology").mkdir(parents=True)
    (case / "case.json").write_text(json.dumps({"case_id": "C1", "cancer_type": "glioma"}))
    tissue_slide(case / "pathology" / "s1.tif")
    hed = create_encoder("hed_texture")
    assert [o.status for o in embed_slides([case / "pathology" / "s1.tif"], case / "pathology", hed,
                                           progress=False)] == ["embedded"]
    inputs = load_case_inputs(case, encoder=hed)
    assert inputs.files_read == ["case.json", "pathology/s1.h5"]  # the slide itself is not read again
    (slide,) = inputs.slides
    assert (slide.encoder, slide.patch_size_level0, slide.magnification) == ("hed_texture", 512, 20.0)
    assert {tuple(c) for c in slide.coords.tolist()} == EXPECTED
    # Features of another encoder than the one the model reads are refused, naming the file and attribute.
    embed_slides([case / "pathology" / "s1.tif"], tmp_path / "uni", small_uni, progress=False)
    (tmp_path / "uni" / "s1.h5").replace(case / "pathology" / "s1.h5")
    inputs = load_case_inputs(case, encoder=hed)
    assert [u.reason for u in inputs.unusable] == [
        "pathology/s1.h5: attrs.encoder: features come from encoder 'uni', the model expects 'hed_texture'"
    ]
