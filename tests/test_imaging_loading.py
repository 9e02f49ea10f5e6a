"""Case loading puts imaging on an isotropic grid; whole-tumour masks get k-means habitats; spatial evidence says which."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from agents.evidence.spatial import spatial_evidence
from fusion_models.encoders import create_encoder
from fusion_models.imaging.habitats import voxel_volume_ml
from fusion_models.inputs import load_case_inputs
from tests.test_imaging_grid import grid_affine, sphere


def write_case(root: Path, volumes: dict[str, np.ndarray], affine: np.ndarray) -> Path:
    case = root / "C1"
    folder = case / "imaging" / "T1"
    folder.mkdir(parents=True)
    (case / "case.json").write_text(json.dumps({"case_id": "C1", "cancer_type": "glioma", "timepoints": ["T1"]}))
    for name, data in volumes.items():
        nib.save(nib.Nifti1Image(data, affine), folder / f"{name}.nii.gz")
    return case


def load(case: Path):
    return load_case_inputs(case, encoder=create_encoder("hed_texture"))


def brain_box(shape) -> np.ndarray:
    """A skull-stripped-looking background: signal everywhere but a 2-voxel border."""
    brain = np.zeros(shape, dtype=np.float32)
    brain[2:-2, 2:-2, 1:-1] = 100.0
    return brain


def test_anisotropic_case_loads_on_a_1_mm_grid_with_its_sphere_volume_kept(tmp_path):
    affine = grid_affine((1.0, 1.0, 3.0), origin=(-30.0, -30.0, -36.0))
    shape = (60, 60, 24)
    centre = (2.0, -1.0, 0.0)
    mask = 2 * sphere(shape, affine, centre, 15.0) + 2 * sphere(shape, affine, centre, 8.0)  # oedema, enhancing 4
    t1c = brain_box(shape) + 200.0 * (mask == 4)
    case = write_case(tmp_path, {"lesion_mask": mask.astype(np.int16), "t1c": t1c}, affine)
    (timepoint,) = load(case).imaging
    assert timepoint.native_spacing_mm == (1.0, 1.0, 3.0)
    np.testing.assert_allclose(np.linalg.norm(timepoint.affine[:3, :3], axis=0), 1.0)
    assert timepoint.mask.shape == timepoint.sequences["t1c"].shape == (60, 60, 72)
    lesion = timepoint.habitats[0]
    native_ml = (mask > 0).sum() * voxel_volume_ml(affine)
    assert lesion.volume_ml == pytest.approx(native_ml, rel=0.01)
    assert lesion.volume_ml == pytest.approx(4 / 3 * np.pi * 15.0**3 / 1000, rel=0.05)
    assert lesion.centroid_mm == pytest.approx(centre, abs=0.5)
    items = {s.unit_id: s for s in spatial_evidence([timepoint], {})}
    enhancing = items["T1:enhancing"]
    assert enhancing.habitat_method == "brats_labels"
    assert enhancing.volume_ml == pytest.approx(4 / 3 * np.pi * 8.0**3 / 1000, rel=0.06)
    assert enhancing.source.locator == "labels 4; resampled to 1 mm isotropic from 1x1x3 mm"
    assert items["T1:lesion"].habitat_method is None


def test_isotropic_case_is_left_on_its_grid(tmp_path):
    affine = grid_affine((2.0, 2.0, 2.0))
    mask = sphere((20, 20, 20), affine, (20.0, 20.0, 20.0), 8.0).astype(np.int16)
    case = write_case(tmp_path, {"lesion_mask": mask, "flair": brain_box((20, 20, 20))}, affine)
    (timepoint,) = load(case).imaging
    assert timepoint.native_spacing_mm is None
    np.testing.assert_array_equal(timepoint.mask, mask)
    np.testing.assert_array_equal(timepoint.affine, affine)


def shells(shape, affine, centre) -> dict[str, np.ndarray]:
    """A 14 mm lesion: dark necrotic-looking core (< 5 mm), bright rim (5-9 mm), FLAIR-bright rest."""
    core, rim, whole = (sphere(shape, affine, centre, r).astype(bool) for r in (5.0, 9.0, 14.0))
    rim &= ~core
    outer = whole & ~rim & ~core
    rng = np.random.default_rng(0)
    t1c = brain_box(shape) + np.select([core, rim, outer], [-60.0, 300.0, 20.0], 0.0)
    flair = brain_box(shape) + np.select([core, rim, outer], [50.0, 100.0, 250.0], 0.0)
    noise = lambda: rng.normal(0, 2.0, shape).astype(np.float32) * (brain_box(shape) > 0)  # noqa: E731
    return {
        "whole_tumour_mask": whole.astype(np.uint8),
        "t1c": (t1c + noise()).astype(np.float32),
        "flair": (flair + noise()).astype(np.float32),
    }, {"intensity_high": rim, "intensity_mid": outer, "intensity_low": core}


def test_whole_tumour_mask_gets_kmeans_habitats_named_by_t1c(tmp_path):
    affine = grid_affine((2.0, 2.0, 2.0), origin=(-30.0, -30.0, -30.0))
    shape = (30, 30, 30)
    volumes, truth = shells(shape, affine, (0.0, 0.0, 0.0))
    case = write_case(tmp_path, volumes, affine)
    inputs = load(case)
    (timepoint,) = inputs.imaging
    assert timepoint.mask is None and timepoint.habitat_method == "kmeans_intensity"
    assert "imaging" in inputs.present_modalities()
    stats = {s.phenotype: s for s in timepoint.habitats}
    assert stats["lesion"].volume_ml == pytest.approx(volumes["whole_tumour_mask"].sum() * 0.008)
    for name, region in truth.items():
        assert stats[name].volume_ml == pytest.approx(region.sum() * 0.008, rel=0.02), name
    evidence = spatial_evidence([timepoint], {})
    habitats = [s for s in evidence if s.unit_level == "habitat"]
    assert [s.phenotype for s in habitats] == ["intensity_high", "intensity_mid", "intensity_low"]
    assert {s.habitat_method for s in habitats} == {"kmeans_intensity"}
    assert habitats[0].source.file == "imaging/T1/whole_tumour_mask.nii.gz"
    assert habitats[0].source.locator.startswith("k-means 1/3 on flair,t1c; mean z")
    assert [s.unit_level for s in evidence] == ["lesion", "habitat", "habitat", "habitat", "margin_ring"]


def test_a_label_map_wins_over_a_whole_tumour_mask_and_a_non_binary_one_is_unusable(tmp_path):
    affine = grid_affine((2.0, 2.0, 2.0))
    mask = sphere((20, 20, 20), affine, (20.0, 20.0, 20.0), 8.0).astype(np.int16)
    both = write_case(tmp_path / "both", {"lesion_mask": 4 * mask, "whole_tumour_mask": mask}, affine)
    (timepoint,) = load(both).imaging
    assert timepoint.habitat_method == "brats_labels" and "whole_tumour" not in timepoint.files
    assert "whole_tumour_mask" not in timepoint.sequences
    bad = write_case(tmp_path / "bad", {"whole_tumour_mask": 2 * mask, "t1c": brain_box((20, 20, 20))}, affine)
    inputs = load(bad)
    assert inputs.imaging[0].habitat_method is None
    (problem,) = [u for u in inputs.unusable if u.modality == "imaging"]
    assert problem.reason.startswith("imaging/T1/whole_tumour_mask.nii.gz: labels: a whole-tumour mask holds only 0 and 1")
