"""Imaging loader and the case manifest: NIfTI reading, label and grid checks, time points, case assembly."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fusion_models.encoders import create_encoder
from fusion_models.imaging.habitats import habitat_stats
from fusion_models.imaging.io import check_labels, load_imaging, load_nifti
from fusion_models.inputs import load_case_inputs, load_manifest
from schemas.case import CaseManifest
from schemas.errors import InputError

AFFINE = np.array([[2.0, 0, 0, -20.0], [0, 2.0, 0, 10.0], [0, 0, 2.0, 4.0], [0, 0, 0, 1.0]])
SHAPE = (12, 12, 8)


def save(path: Path, data: np.ndarray, aff: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, aff), path)
    return path


def lesion() -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=np.int16)
    mask[3:9, 3:9, 2:6] = 2
    mask[4:8, 4:8, 3:5] = 4
    mask[5:7, 5:7, 3:5] = 1
    return mask


def write_timepoint(case: Path, name: str, *, mask: np.ndarray | None = None, sequences=("t1c", "flair")) -> Path:
    folder = case / "imaging" / name
    if mask is not None:
        save(folder / "lesion_mask.nii.gz", mask)
    rng = np.random.default_rng(0)
    for seq in sequences:
        save(folder / f"{seq}.nii.gz", rng.uniform(0, 100, SHAPE).astype(np.float32))
    return folder


def manifest(**kw) -> CaseManifest:
    return CaseManifest(case_id="C1", cancer_type="glioma", **kw)


def test_load_nifti_returns_array_and_affine(tmp_path):
    path = save(tmp_path / "t1.nii.gz", np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE))
    data, aff = load_nifti(path, tmp_path)
    assert data.shape == SHAPE and data[1, 2, 3] == pytest.approx(np.ravel_multi_index((1, 2, 3), SHAPE))
    np.testing.assert_allclose(aff, AFFINE)


def test_load_nifti_squeezes_a_trailing_singleton_axis(tmp_path):
    path = save(tmp_path / "t1.nii.gz", np.ones((*SHAPE, 1), dtype=np.float32))
    assert load_nifti(path, tmp_path)[0].shape == SHAPE
    path4d = save(tmp_path / "dwi.nii.gz", np.ones((*SHAPE, 3), dtype=np.float32))
    with pytest.raises(InputError) as err:
        load_nifti(path4d, tmp_path)
    assert err.value.field == "shape"


def test_truncated_gzip_is_an_input_error_naming_the_file(tmp_path):
    good = save(tmp_path / "imaging" / "T1" / "t1c.nii.gz", np.ones(SHAPE, dtype=np.float32))
    raw = good.read_bytes()
    good.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError) as err:
        load_nifti(good, tmp_path)
    assert err.value.file == "imaging/T1/t1c.nii.gz"
    assert err.value.field == "nifti"
    assert err.value.message.startswith("cannot read NIfTI:")
    assert "\n" not in str(err.value)


def test_label_checks():
    assert check_labels(np.array([[[0, 1, 2, 3, 4]]], dtype=np.uint8), "m").dtype == np.int16
    np.testing.assert_array_equal(check_labels(np.array([[[0.0, 2.0, 4.0]]]), "m"), [[[0, 2, 4]]])
    for bad, needle in (
        (np.array([[[0, 5]]]), "[5]"),
        (np.array([[[1.5, 0.0]]]), "non-integer"),
        (np.array([[[-1, 2]]]), "[-1]"),
    ):
        with pytest.raises(InputError) as err:
            check_labels(bad, "imaging/T1/lesion_mask.nii.gz")
        assert err.value.field == "labels" and needle in err.value.message


def test_load_imaging_orders_time_points_as_the_manifest(tmp_path):
    write_timepoint(tmp_path, "pre", mask=lesion())
    write_timepoint(tmp_path, "post", mask=lesion())
    m = manifest(timepoints=[{"name": "pre", "date": "2024-01-05"}, "post"])
    timepoints, unusable = load_imaging(tmp_path, m)
    assert unusable == []
    assert [t.name for t in timepoints] == ["pre", "post"]
    assert timepoints[0].date == dt.date(2024, 1, 5) and timepoints[1].date is None
    tp = timepoints[0]
    assert tp.mask.dtype == np.int16 and tp.mask.shape == SHAPE
    assert set(tp.sequences) == {"t1c", "flair"}
    assert all(v.dtype == np.float32 and v.shape == SHAPE for v in tp.sequences.values())
    assert tp.files == {
        "mask": "imaging/pre/lesion_mask.nii.gz",
        "flair": "imaging/pre/flair.nii.gz",
        "t1c": "imaging/pre/t1c.nii.gz",
    }
    np.testing.assert_allclose(tp.affine, AFFINE)


def test_without_listed_time_points_subfolders_are_used_sorted(tmp_path):
    write_timepoint(tmp_path, "b_followup", mask=lesion())
    write_timepoint(tmp_path, "a_baseline", mask=lesion())
    (tmp_path / "imaging" / "notes.txt").write_text("ignored")
    timepoints, _ = load_imaging(tmp_path, manifest())
    assert [t.name for t in timepoints] == ["a_baseline", "b_followup"]


def test_no_imaging_folder_is_no_imaging(tmp_path):
    assert load_imaging(tmp_path, manifest()) == ([], [])


def test_broken_files_become_unusable_and_the_rest_loads(tmp_path):
    folder = write_timepoint(tmp_path, "T1", mask=lesion())
    save(folder / "t2.nii.gz", np.ones((10, 10, 10), dtype=np.float32))
    shifted = AFFINE.copy()
    shifted[0, 3] += 7.0
    save(folder / "t1.nii.gz", np.ones(SHAPE, dtype=np.float32), shifted)
    (folder / "notes.txt").write_text("not an image")
    timepoints, unusable = load_imaging(tmp_path, manifest(timepoints=["T1", "T9"]))
    assert len(timepoints) == 1 and set(timepoints[0].sequences) == {"t1c", "flair"}
    reasons = {u.file: u.reason for u in unusable}
    assert reasons["imaging/T1/t2.nii.gz"].startswith("imaging/T1/t2.nii.gz: shape: grid (10, 10, 10)")
    assert reasons["imaging/T1/t1.nii.gz"].startswith("imaging/T1/t1.nii.gz: affine:")
    assert reasons["imaging/T9"].startswith("imaging/T9: folder:")
    assert all(u.modality == "imaging" for u in unusable)


def test_time_point_without_mask_keeps_sequences_and_says_why(tmp_path):
    write_timepoint(tmp_path, "T1")
    timepoints, unusable = load_imaging(tmp_path, manifest())
    assert timepoints[0].mask is None and set(timepoints[0].sequences) == {"t1c", "flair"}
    assert [u.file for u in unusable] == ["imaging/T1/lesion_mask.nii.gz"]
    assert "habitat evidence needs one" in unusable[0].reason


def test_bad_mask_labels_are_unusable_but_sequences_load(tmp_path):
    bad = lesion()
    bad[0, 0, 0] = 7
    write_timepoint(tmp_path, "T1", mask=bad)
    timepoints, unusable = load_imaging(tmp_path, manifest())
    assert timepoints[0].mask is None
    assert unusable[0].reason == (
        "imaging/T1/lesion_mask.nii.gz: labels: labels must be BraTS labels [0, 1, 2, 3, 4]; found [7]"
    )


def test_mni152_template_case_gives_habitat_centroid_in_mni_mm(tmp_path):
    spec = importlib.util.find_spec("nilearn")
    template = Path(spec.origin).parent / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    if not template.is_file():
        pytest.skip("nilearn's bundled MNI152 template is not installed")
    image = nib.load(template)
    t1 = np.asarray(image.dataobj, dtype=np.float32)
    # 5x5x5 voxel cube centred on MNI (30, -20, 10) mm in the right hemisphere
    centre = np.round(np.linalg.inv(image.affine) @ np.array([30.0, -20.0, 10.0, 1.0]))[:3].astype(int)
    mask = np.zeros(t1.shape, dtype=np.int16)
    mask[tuple(slice(c - 2, c + 3) for c in centre)] = 3
    folder = tmp_path / "imaging" / "T1"
    save(folder / "t1.nii.gz", t1, image.affine)
    save(folder / "lesion_mask.nii.gz", mask, image.affine)
    timepoints, unusable = load_imaging(tmp_path, manifest())
    assert unusable == []
    stat = habitat_stats(timepoints[0].mask, timepoints[0].affine)[0]
    expected = (image.affine @ np.append(centre, 1.0))[:3]
    assert stat.centroid_mm == pytest.approx(tuple(expected))
    assert np.abs(np.array(stat.centroid_mm) - [30.0, -20.0, 10.0]).max() <= 1.0 + 1e-6  # within half a 2-mm voxel
    spacing = np.linalg.norm(image.affine[:3, :3], axis=0)
    assert stat.volume_ml == pytest.approx(125 * np.prod(spacing) / 1000)
    assert timepoints[0].sequences["t1"].max() > 0


def write_manifest(case: Path, data) -> None:
    case.mkdir(parents=True, exist_ok=True)
    (case / "case.json").write_text(data if isinstance(data, str) else json.dumps(data))


def test_manifest_errors_name_case_json_and_the_field(tmp_path):
    with pytest.raises(InputError, match=r"^case.json: file: not found$"):
        load_manifest(tmp_path)
    write_manifest(tmp_path, "{not json")
    with pytest.raises(InputError) as err:
        load_manifest(tmp_path)
    assert err.value.file == "case.json" and err.value.field == "json"
    for case_id in ("../etc", "a/b", "x" * 65, ""):
        write_manifest(tmp_path, {"case_id": case_id, "cancer_type": "glioma"})
        with pytest.raises(InputError) as err:
            load_manifest(tmp_path)
        assert err.value.field == "case_id"
    bad_date = [{"name": "T1", "date": "2024-13-01"}]
    write_manifest(tmp_path, {"case_id": "C1", "cancer_type": "glioma", "timepoints": bad_date})
    with pytest.raises(InputError) as err:
        load_manifest(tmp_path)
    assert err.value.field.startswith("timepoints.0")


def test_case_with_every_modality_and_broken_parts(tmp_path):
    write_manifest(tmp_path, {"case_id": "C1", "cancer_type": "glioma", "age_band": "50-59", "timepoints": ["T1"]})
    write_timepoint(tmp_path, "T1", mask=lesion())
    (tmp_path / "pathology").mkdir()
    (tmp_path / "pathology" / "findings.json").write_text(json.dumps({"who_grade": 7}))
    (tmp_path / "genomics").mkdir()
    (tmp_path / "genomics" / "expression.tsv").write_text("gene\tvalue\nEGFR\t1.5\nTP53\t-0.2\n")
    inputs = load_case_inputs(tmp_path, encoder=create_encoder("hed_texture"))
    assert inputs.present_modalities() == ["imaging", "genomics", "clinical"]
    assert inputs.missing_modalities() == []  # pathology has a file, it is unusable, not missing
    assert [u.file for u in inputs.unusable] == ["pathology/findings.json"]
    assert inputs.unusable[0].reason.startswith("pathology/findings.json: who_grade:")
    assert inputs.files_read == [
        "case.json",
        "imaging/T1/lesion_mask.nii.gz",
        "imaging/T1/flair.nii.gz",
        "imaging/T1/t1c.nii.gz",
        "genomics/expression.tsv",
    ]


def test_case_json_alone_has_every_modality_missing(tmp_path):
    write_manifest(tmp_path, {"case_id": "C1", "cancer_type": "glioma"})
    inputs = load_case_inputs(tmp_path, encoder=create_encoder("hed_texture"))
    assert inputs.present_modalities() == []
    assert inputs.missing_modalities() == ["imaging", "pathology", "genomics", "clinical"]
