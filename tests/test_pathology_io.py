"""Pathology inputs: CLAM/TRIDENT HDF5 features, pyramidal TIFF slides, tissue tiling, case-level choice."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import tiffslide
from skimage import data

from fusion_models.encoders import create_encoder
from fusion_models.inputs import load_pathology
from fusion_models.pathology.h5 import read_patch_features, write_patch_features
from fusion_models.pathology.slides import (
    cell_fractions,
    spread_subsample,
    tile_slide,
    tissue_mask,
    write_pyramidal_tiff,
)
from schemas.errors import InputError


@pytest.fixture(scope="module")
def ihc() -> np.ndarray:
    return data.immunohistochemistry()


def features_file(folder: Path, name="s1", n=5, dim=32, encoder="hed_texture", **attrs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    path = folder / f"{name}.h5"
    coords = np.arange(2 * n).reshape(n, 2) * 256
    write_patch_features(
        path, name, rng.normal(size=(n, dim)), coords, encoder=encoder, patch_size=256, magnification=20.0
    )
    if attrs:
        with h5py.File(path, "a") as h5:
            for key, value in attrs.items():
                if value is None:
                    del h5.attrs[key]
                else:
                    h5.attrs[key] = value
    return path


def test_h5_round_trip_is_atomic_and_typed(tmp_path):
    path = features_file(tmp_path / "pathology")
    assert sorted(p.name for p in path.parent.iterdir()) == ["s1.h5"]  # no temp file left behind
    slide = read_patch_features(path, tmp_path, 32, expected_encoder="hed_texture")
    assert slide.slide_id == "s1" and slide.file == "pathology/s1.h5"
    assert slide.features.dtype == np.float32 and slide.features.shape == (5, 32)
    assert slide.coords.dtype == np.int64 and slide.coords[1].tolist() == [512, 768]
    assert (slide.patch_size_level0, slide.magnification, slide.encoder) == (256, 20.0, "hed_texture")


def test_h5_without_optional_attrs(tmp_path):
    path = features_file(tmp_path, slide_id=None, magnification=None)
    slide = read_patch_features(path, tmp_path, None)
    assert slide.slide_id == "s1" and slide.magnification is None


def test_feature_size_mismatch_message(tmp_path):
    path = features_file(tmp_path / "pathology", dim=768)
    with pytest.raises(InputError) as err:
        read_patch_features(path, tmp_path, 32, expected_encoder="hed_texture")
    assert str(err.value) == "pathology/s1.h5: features: feature size 768 does not match encoder 'hed_texture' (32)"


def test_features_from_another_encoder_are_rejected(tmp_path):
    path = features_file(tmp_path, encoder="timm/vit_small_patch16_224")
    with pytest.raises(InputError) as err:
        read_patch_features(path, tmp_path, 32, expected_encoder="hed_texture")
    assert err.value.field == "attrs.encoder"


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        ("drop_features", "features"),
        ("short_coords", "coords"),
        ("nan_features", "features"),
        ("no_encoder", "attrs.encoder"),
        ("bad_patch_size", "attrs.patch_size_level0"),
        ("clam_bad_patch_size", "attrs.patch_size"),
        ("bad_magnification", "attrs.magnification"),
        ("not_hdf5", "hdf5"),
    ],
)
def test_broken_h5_names_dataset_or_attribute(tmp_path, damage, field):
    path = features_file(tmp_path)
    if damage == "not_hdf5":
        path.write_bytes(b"this is not an HDF5 file")
    else:
        with h5py.File(path, "a") as h5:
            if damage == "drop_features":
                del h5["features"]
            elif damage == "short_coords":
                del h5["coords"]
                h5["coords"] = np.zeros((4, 2), dtype=np.int64)
            elif damage == "nan_features":
                h5["features"][2, 3] = np.nan
            elif damage == "no_encoder":
                del h5.attrs["encoder"]
            elif damage == "bad_patch_size":
                h5.attrs["patch_size_level0"] = 12.5
            elif damage == "clam_bad_patch_size":  # a CLAM file has only patch_size
                del h5.attrs["patch_size_level0"]
                h5.attrs["patch_size"] = 12.5
            elif damage == "bad_magnification":
                h5.attrs["magnification"] = "twenty"
    with pytest.raises(InputError) as err:
        read_patch_features(path, tmp_path, 32)
    assert err.value.file == "s1.h5"
    assert err.value.field == field


def test_pyramidal_tiff_from_real_ihc_image_reads_back(tmp_path, ihc):
    path = tmp_path / "ihc.tif"
    write_pyramidal_tiff(path, ihc, mpp=0.5, tile=128)
    assert [p.name for p in tmp_path.iterdir()] == ["ihc.tif"]
    with tiffslide.TiffSlide(path) as slide:
        assert slide.level_count == 3  # 512 -> 256 -> 128
        assert slide.dimensions == (512, 512)
        assert slide.level_dimensions[1] == (256, 256)
        assert slide.level_downsamples[1] == pytest.approx(2.0)
        assert float(slide.properties[tiffslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.5)
        region = slide.read_region((64, 32), 0, (100, 50), as_array=True)
    np.testing.assert_array_equal(region[..., :3], ihc[32:82, 64:164])


def test_tile_slide_keeps_tissue_and_skips_glass(tmp_path, ihc):
    glass = np.full_like(ihc, 244)
    path = tmp_path / "half.tif"
    write_pyramidal_tiff(path, np.concatenate([ihc, glass], axis=1), mpp=0.25)
    tiles, coords, magnification = tile_slide(path, patch_size=128)
    assert magnification == pytest.approx(40.0)  # 10 um / 0.25 um per px
    assert tiles.shape[1:] == (128, 128, 3) and tiles.dtype == np.uint8
    assert len(tiles) == len(coords) >= 8
    assert (coords[:, 0] < 512).all()  # nothing from the glass half
    assert (coords % 128 == 0).all()
    x, y = coords[0]
    np.testing.assert_array_equal(tiles[0], ihc[y : y + 128, x : x + 128])


def test_tile_slide_cap_is_deterministic_and_spread(tmp_path, ihc):
    path = tmp_path / "ihc.tif"
    write_pyramidal_tiff(path, ihc, mpp=0.5)
    all_tiles = tile_slide(path, patch_size=64)[1]
    first = tile_slide(path, patch_size=64, max_tiles=6)[1]
    again = tile_slide(path, patch_size=64, max_tiles=6)[1]
    np.testing.assert_array_equal(first, again)
    assert len(first) == 6
    np.testing.assert_array_equal(first[0], all_tiles[0])
    np.testing.assert_array_equal(first[-1], all_tiles[-1])


def test_glass_only_slide_has_no_tiles(tmp_path):
    path = tmp_path / "glass.tif"
    write_pyramidal_tiff(path, np.full((512, 512, 3), 243, dtype=np.uint8), mpp=0.5)
    tiles, coords, _ = tile_slide(path, patch_size=128)
    assert tiles.shape == (0, 128, 128, 3) and coords.shape == (0, 2)


def test_unreadable_slide_is_an_input_error(tmp_path):
    folder = tmp_path / "pathology"
    folder.mkdir()
    path = folder / "broken.svs"
    path.write_bytes(b"II*\x00garbage")
    with pytest.raises(InputError) as err:
        tile_slide(path, case_dir=tmp_path)
    assert err.value.file == "pathology/broken.svs" and err.value.field == "slide"


def test_cell_fractions_hand_values():
    mask = np.zeros((4, 8), dtype=bool)  # thumbnail at half the resolution of a 16 x 8 (w x h) slide
    mask[:2, :4] = True
    mask[2:, 4:6] = True
    fractions = cell_fractions(mask, (16, 8), patch_size=8)
    np.testing.assert_allclose(fractions, [[0.5, 0.25]])
    assert cell_fractions(mask, (7, 7), patch_size=8).shape == (0, 0)


def test_spread_subsample_and_tissue_mask():
    assert spread_subsample(10, 4).tolist() == [0, 3, 6, 9]
    assert spread_subsample(3, 5).tolist() == [0, 1, 2]
    thumb = np.full((20, 20, 3), 240, dtype=np.uint8)
    thumb[5:15, 5:15] = (150, 60, 140)  # stained tissue, saturation 0.6
    mask = tissue_mask(thumb)
    assert mask[6:14, 6:14].all() and not mask[:4].any()


def test_h5_wins_over_slide_and_slide_is_fallback(tmp_path, ihc):
    encoder = create_encoder("hed_texture")
    folder = tmp_path / "pathology"
    folder.mkdir()
    write_pyramidal_tiff(folder / "a.tif", ihc, mpp=0.5)
    write_pyramidal_tiff(folder / "b.tif", ihc, mpp=0.5)
    features_file(folder, name="a", n=3)
    features_file(folder, name="b", n=3, dim=768)
    slides, findings, unusable = load_pathology(tmp_path, encoder=encoder, patch_size=128)
    assert findings is None
    by_id = {s.slide_id: s for s in slides}
    assert by_id["a"].file == "pathology/a.h5" and len(by_id["a"].features) == 3
    assert by_id["b"].file == "pathology/b.tif"  # its .h5 has the wrong size: the slide is re-embedded
    assert by_id["b"].features.shape[1] == encoder.dim and by_id["b"].encoder == "hed_texture"
    assert by_id["b"].magnification == pytest.approx(20.0)
    assert [u.file for u in unusable] == ["pathology/b.h5"]
    assert unusable[0].reason.endswith("feature size 768 does not match encoder 'hed_texture' (32)")


def test_findings_are_read_and_validated(tmp_path):
    folder = tmp_path / "pathology"
    folder.mkdir()
    (folder / "findings.json").write_text('{"who_grade": 4, "necrosis": true, "sampled_region": "enhancing"}')
    slides, findings, unusable = load_pathology(tmp_path, encoder=create_encoder("hed_texture"))
    assert slides == [] and unusable == []
    assert findings.who_grade == 4 and findings.necrosis is True
    (folder / "findings.json").write_text('{"cellularity": "extreme"}')
    _, findings, unusable = load_pathology(tmp_path, encoder=create_encoder("hed_texture"))
    assert findings is None
    assert unusable[0].reason.startswith("pathology/findings.json: cellularity:")
