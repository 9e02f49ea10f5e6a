"""IBSI radiomics per habitat with pyradiomics: hand-checked first-order values, the features file and its citations."""

from __future__ import annotations

import json
import shutil
import sys

import jsonschema
import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("radiomics", reason="pyradiomics is an optional extra (.ci/setup.d/15-pyradiomics.sh)")

from agents.evidence.imaging_features import cite_features, imaging_features, timepoint_features  # noqa: E402
from agents.evidence.spatial import spatial_evidence  # noqa: E402
from agents.runner import run_case  # noqa: E402
from fusion_models.imaging.io import ImagingTimepoint  # noqa: E402
from fusion_models.imaging.radiomics import RadiomicsUnavailable, extract  # noqa: E402
from schemas.export import load_schema  # noqa: E402
from schemas.imaging import ImagingFeatures  # noqa: E402
from schemas.report import EvidenceChainReport  # noqa: E402
from tests.test_imaging_grid import grid_affine  # noqa: E402
from tests.test_imaging_loading import load, shells, write_case  # noqa: E402


def ramp_region():
    """18 voxels of 2 mm (144 mm^3) holding the values 0..17."""
    image = np.zeros((10, 10, 10), dtype=np.float32)
    region = np.zeros(image.shape, dtype=bool)
    region[2:5, 2:5, 2:4] = True
    image[2:5, 2:5, 2:4] = np.arange(18).reshape(3, 3, 2)
    return image, region, grid_affine((2.0, 2.0, 2.0))


def test_first_order_and_shape_values_by_hand():
    features = extract(*ramp_region(), bin_width=1.0)
    assert features["firstorder_Mean"] == pytest.approx(8.5)
    assert features["firstorder_Median"] == pytest.approx(8.5)
    assert (features["firstorder_Minimum"], features["firstorder_Maximum"]) == (0.0, 17.0)
    assert features["firstorder_Energy"] == pytest.approx(1785.0)  # sum of squares 0..17 = 17 * 18 * 35 / 6
    # one value per 1-wide bin: 18 equally likely grey levels
    assert features["firstorder_Entropy"] == pytest.approx(np.log2(18), abs=1e-6)
    assert features["shape_VoxelVolume"] == pytest.approx(18 * 8.0)
    assert {k.split("_")[0] for k in features} == {"firstorder", "glcm", "shape"}


def test_bin_width_sets_the_grey_levels_and_a_flat_region_has_no_texture():
    image, region, affine = ramp_region()
    assert extract(image, region, affine, ("firstorder",), bin_width=100.0)["firstorder_Entropy"] == pytest.approx(0.0)
    flat = extract(np.where(region, 5.0, 0.0), region, affine, ("firstorder", "glcm"), bin_width=1.0)
    assert flat["firstorder_Variance"] == pytest.approx(0.0)
    assert flat["glcm_JointEnergy"] == pytest.approx(1.0) and flat["glcm_Contrast"] == pytest.approx(0.0)


def test_bad_requests_and_a_missing_pyradiomics_are_clear_errors(monkeypatch):
    image, region, affine = ramp_region()
    with pytest.raises(ValueError, match="unknown feature classes"):
        extract(image, region, affine, ("glrlm2",))
    with pytest.raises(ValueError, match="at least 10"):
        extract(image, np.zeros_like(region), affine)
    with pytest.raises(ValueError, match="bin_width"):
        extract(image, region, affine, bin_width=0.0)
    monkeypatch.setitem(sys.modules, "radiomics", None)
    with pytest.raises(RadiomicsUnavailable, match="pyradiomics==3.0.1"):
        extract(image, region, affine)


def test_features_file_per_habitat_with_bands_and_the_evidence_cites_it(tmp_path):
    affine = grid_affine((2.0, 2.0, 2.0), origin=(-30.0, -30.0, -30.0))
    volumes, truth = shells((30, 30, 30), affine, (0.0, 0.0, 0.0))
    (timepoint,) = load(write_case(tmp_path, volumes, affine)).imaging
    features = imaging_features("C1", [timepoint])
    jsonschema.validate(json.loads(features.model_dump_json()), load_schema("imaging_features"))
    (tp,) = features.timepoints
    assert tp.habitat_method == "kmeans_intensity" and tp.spacing_mm == 2.0 and tp.native_spacing_mm is None
    regions = {r.phenotype: r for r in tp.regions}
    assert list(regions) == ["lesion", "intensity_high", "intensity_mid", "intensity_low"]
    rim = regions["intensity_high"]
    assert rim.shape["shape_VoxelVolume"] == pytest.approx(rim.voxels * 8.0)
    assert rim.voxels == pytest.approx(truth["intensity_high"].sum(), rel=0.02)
    cluster = timepoint.clusters.labels == 1
    for sequence in ("t1c", "flair"):
        expected = timepoint.normalised[sequence][cluster].mean()
        assert rim.intensity[sequence]["firstorder_Mean"] == pytest.approx(expected, abs=1e-4)
    assert [b.unit_id for b in tp.margin_bands] == ["T1:margin_0-5mm", "T1:margin_5-10mm"]
    assert all(set(b.mean_z) == {"t1c", "flair"} for b in tp.margin_bands)
    cited = {s.unit_id: s.features_ref for s in cite_features(spatial_evidence([timepoint], {}), features)}
    assert cited["T1:intensity_high"] == "imaging_features.json#T1:intensity_high"
    assert cited["T1:margin_ring"] == "imaging_features.json#T1:margin_0-5mm"
    assert ImagingFeatures.model_validate_json(features.model_dump_json()) == features


def test_a_habitat_too_small_for_radiomics_is_listed_with_a_note():
    image, region, affine = ramp_region()
    mask = region.astype(np.int16) * 2  # oedema, 18 voxels
    mask[3, 3, 2] = 4  # one enhancing voxel
    tp = ImagingTimepoint("T1", None, mask, affine, {"t1c": image + 1.0}, {"mask": "imaging/T1/lesion_mask.nii.gz"})
    regions = {r.phenotype: r for r in timepoint_features(tp).regions}
    assert regions["enhancing"].voxels == 1 and regions["enhancing"].intensity == {}
    assert regions["enhancing"].note == "1 voxels: too few for radiomic features (< 10)"
    assert regions["oedema"].note is None and set(regions["oedema"].intensity) == {"t1c"}


def whole_tumour_only(demo_cohort, tmp_path, case_id: str = "DEMO-004"):
    """A demo case whose label maps are replaced by whole-tumour masks: its habitats must be clustered."""
    case = tmp_path / "cases" / case_id
    shutil.copytree(demo_cohort / "cases" / case_id, case)
    for path in case.glob("imaging/*/lesion_mask.nii.gz"):
        image = nib.load(path)
        whole = (np.asanyarray(image.dataobj) > 0).astype(np.uint8)
        nib.save(nib.Nifti1Image(whole, image.affine, image.header), path.with_name("whole_tumour_mask.nii.gz"))
        path.unlink()
    return case


def test_a_whole_tumour_case_through_the_graph_writes_and_cites_its_features_file(demo_cohort, settings, tmp_path):
    case = whole_tumour_only(demo_cohort, tmp_path)
    out = tmp_path / "out"
    result = run_case(case, out, settings.model_copy(update={"imaging_features": True}))
    assert result.status == "ok", result.error
    report = EvidenceChainReport.model_validate_json((out / result.case_id / "report.json").read_text())
    habitats = [s for s in report.spatial_evidence if s.unit_level == "habitat"]
    assert habitats and {s.habitat_method for s in habitats} == {"kmeans_intensity"}
    assert {s.phenotype for s in habitats} <= {"intensity_high", "intensity_mid", "intensity_low"}
    features = ImagingFeatures.model_validate_json((out / result.case_id / "imaging_features.json").read_text())
    units = {r.unit_id for t in features.timepoints for r in t.regions}
    assert all(s.features_ref == f"imaging_features.json#{s.unit_id}" for s in habitats)
    assert {s.unit_id for s in habitats} <= units
