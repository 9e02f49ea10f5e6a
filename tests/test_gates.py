"""The input gates' pure functions on hand-checked numbers, and each gate on a small CaseInputs."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.consistency import ConsistencyContext, check_consistency
from fusion_models.gates import InputNeeds, PatchStats, apply_gates, list_gates
from fusion_models.gates.clinical import age_band_problem, cancer_type_matches
from fusion_models.gates.genomics import detect_scale, log2_cpm, to_zscore, within_sample_z
from fusion_models.gates.imaging import lesion_volume_ml, mask_problem, voxel_size_problem
from fusion_models.gates.pathology import OOD_RMS, standardised_rms, value_problem
from fusion_models.genomics.io import GenomicsInput
from fusion_models.imaging.io import ImagingTimepoint
from fusion_models.inputs import CaseInputs
from fusion_models.pathology.h5 import SlideFeatures
from schemas.case import CaseManifest, PathologyFindings
from schemas.errors import InputError
from schemas.fusion import ModalityOOD
from schemas.report import Conclusion, Modalities

GENES = [f"G{i}" for i in range(200)]


def case_inputs(**changes) -> CaseInputs:
    manifest = CaseManifest(case_id="C1", cancer_type="glioma", age_band="50-59")
    bare = CaseInputs(case_dir=Path("C1"), manifest=manifest, imaging=[], slides=[], findings=None, genomics=None)
    return replace(bare, **changes)


def genomics_of(values: np.ndarray, meta: str | None) -> GenomicsInput:
    files = {"expression": "genomics/expression.tsv"} | ({"meta": "genomics/meta.json"} if meta else {})
    expression = pd.Series(values, index=pd.Index(GENES[: len(values)], name="gene"), dtype=np.float64)
    return GenomicsInput(expression, meta or "zscore", None, None, files)


# ---- expression scale -----------------------------------------------------------------------------


def test_scales_are_told_from_the_values():
    rng = np.random.default_rng(0)
    z = rng.normal(size=200)
    assert detect_scale(z).scale == "zscore"
    assert detect_scale(np.clip(6 + 2 * z, 0, None)).scale == "log2"
    assert detect_scale(rng.poisson(2.0 ** (6 + 2 * z)).astype(float)).scale == "raw_counts"
    # Linear TPM: non-negative, fractional, far above any log2 value: none of the three.
    assert detect_scale(2.0 ** (6 + 2 * z) + 0.5).scale is None
    assert detect_scale(z[:5]).scale is None


def test_log2_cpm_and_within_sample_z_by_hand():
    counts = pd.Series([1.0, 3.0])  # 250,000 and 750,000 per million
    assert log2_cpm(counts).tolist() == pytest.approx([math.log2(250_001), math.log2(750_001)])
    assert within_sample_z(pd.Series([1.0, 2.0, 3.0])).tolist() == pytest.approx([-1.224745, 0.0, 1.224745], abs=1e-6)
    z = pd.Series([0.3, -1.0])
    assert to_zscore(z, "zscore") is z


def test_log2_without_meta_is_converted_and_recorded_as_out_of_distribution():
    z = np.random.default_rng(1).normal(size=200)
    inputs = apply_gates(case_inputs(genomics=genomics_of(np.clip(6 + 2 * z, 0, None), None)), InputNeeds())
    assert inputs.conversions == [
        "genomics/expression.tsv: log2 (told from the values, genomics/meta.json absent) -> zscore within the sample"
    ]
    assert inputs.genomics.expression_scale == "zscore"
    assert inputs.genomics.expression.mean() == pytest.approx(0.0, abs=1e-9)
    (record,) = inputs.ood
    assert (record.modality, record.method, record.out_of_distribution) == ("genomics", "gate:expression_scale", True)
    assert inputs.unusable == []


@pytest.mark.parametrize(
    ("meta", "values", "reason"),
    [
        ("banana", "z", "genomics/meta.json: expression_scale: unknown scale 'banana'; known: raw_counts, log2_tpm"),
        ("zscore", "counts", "genomics/meta.json: expression_scale: says 'zscore' but genomics/expression.tsv looks like raw counts"),
        ("log2_tpm", "z", "genomics/meta.json: expression_scale: says 'log2_tpm' but genomics/expression.tsv looks like zscore"),
    ],
)
def test_a_scale_that_cannot_be_used_makes_expression_unusable(meta, values, reason):
    z = np.random.default_rng(2).normal(size=200)
    data = {"z": z, "counts": np.random.default_rng(3).poisson(2.0 ** (6 + 2 * z)).astype(float)}[values]
    inputs = apply_gates(case_inputs(genomics=genomics_of(data, meta)), InputNeeds())
    (unusable,) = inputs.unusable
    assert unusable.reason.startswith(reason) and unusable.modality == "genomics"
    assert inputs.genomics is None  # nothing but expression was given
    assert inputs.conversions == [] and inputs.ood == []


def test_gene_coverage_below_the_model_minimum_is_unusable():
    needs = InputNeeds(model="m", expression_genes=frozenset(f"X{i}" for i in range(10)) | {"G0", "G1"})
    inputs = apply_gates(case_inputs(genomics=genomics_of(np.random.default_rng(4).normal(size=200), "zscore")), needs)
    (unusable,) = inputs.unusable
    assert unusable.reason == "genomics/expression.tsv: gene: 2 of the 12 genes m reads are measured; it needs at least 6"


# ---- imaging --------------------------------------------------------------------------------------


def test_voxel_size_and_lesion_volume_by_hand():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    mask = np.zeros((10, 10, 10), dtype=np.int16)
    mask[:5, :2, :1] = 2  # 10 voxels of 8 mm3
    assert lesion_volume_ml(mask, affine) == pytest.approx(0.08)
    assert voxel_size_problem(affine) is None
    assert voxel_size_problem(np.diag([100.0, 100.0, 100.0, 1.0])) == "voxel size 100 x 100 x 100 mm is outside the 0.1-10 mm of MRI"
    assert mask_problem(mask, affine) is None
    assert mask_problem(np.zeros_like(mask), affine) == "the lesion mask holds no lesion voxel"
    full = np.full((100, 100, 100), 2, dtype=np.int16)  # 1,000,000 mm3 = 1,000 mL at 1 mm
    assert mask_problem(full, np.eye(4)) == "lesion volume 1,000 mL exceeds the 600 mL of a cerebral hemisphere"


def test_imaging_gate_keeps_the_sound_parts_of_a_time_point():
    mask = np.zeros((4, 4, 4), dtype=np.int16)
    mask[1, 1, 1] = 3
    bad = np.ones((4, 4, 4), dtype=np.float32)
    bad[0, 0, 0] = np.nan
    timepoint = ImagingTimepoint(
        "T0", None, mask, np.eye(4), {"t1c": bad, "flair": np.ones((4, 4, 4), np.float32)},
        {"mask": "imaging/T0/lesion_mask.nii.gz", "t1c": "imaging/T0/t1c.nii.gz", "flair": "imaging/T0/flair.nii.gz"},
    )
    inputs = apply_gates(case_inputs(imaging=[timepoint]), InputNeeds())
    (kept,) = inputs.imaging
    assert set(kept.sequences) == {"flair"} and set(kept.files) == {"mask", "flair"}
    assert [u.reason for u in inputs.unusable] == ["imaging/T0/t1c.nii.gz: voxels: 1 of 64 voxels are NaN or infinite"]


# ---- pathology ------------------------------------------------------------------------------------


def slide(features: np.ndarray, coords: np.ndarray | None = None) -> SlideFeatures:
    coords = np.zeros((len(features), 2), dtype=np.int64) if coords is None else coords
    return SlideFeatures("s1", features.astype(np.float32), coords, 256, 20.0, "hed_texture", "pathology/s1.h5")


def test_standardised_rms_by_hand():
    stats = PatchStats(mean=np.array([1.0, 1.0]), std=np.array([2.0, 0.0]))  # a zero std counts as 1
    features = np.array([[3.0, 1.0], [1.0, 3.0], [5.0, 5.0]])  # z rows (1, 0), (0, 2), (2, 4)
    # Row RMS: sqrt(1/2), sqrt(2), sqrt(10); median sqrt(2).
    assert standardised_rms(features, stats) == pytest.approx(math.sqrt(2.0))


def test_patch_values_that_are_no_embedding():
    assert value_problem(slide(np.zeros((3, 4)))) == ("features", "every value of the 3 x 4 matrix is 0")
    assert value_problem(slide(np.tile([1.0, 2.0], (3, 1)))) == ("features", "all 3 patches have identical features")
    negative = np.array([[0, 0], [-256, 0]], dtype=np.int64)
    assert value_problem(slide(np.eye(2), negative)) == ("coords", "negative level-0 coordinates")
    assert value_problem(slide(np.eye(2))) is None


def test_pathology_gate_flags_far_patches_and_drops_absurd_ones():
    stats = PatchStats(mean=np.zeros(4), std=np.ones(4))
    needs = InputNeeds(model="m", patch_stats=stats)
    rng = np.random.default_rng(5)
    near, far, absurd = rng.normal(size=(8, 4)), rng.normal(scale=10.0, size=(8, 4)), rng.normal(size=(8, 4)) * 1e30
    inputs = apply_gates(case_inputs(slides=[slide(near), slide(far)]), needs)
    assert len(inputs.slides) == 2 and inputs.unusable == []
    (record,) = inputs.ood
    assert record.method == "gate:patch_magnitude" and record.threshold == OOD_RMS and record.score > OOD_RMS
    inputs = apply_gates(case_inputs(slides=[slide(absurd)]), needs)
    assert inputs.slides == [] and "absurd magnitude" in inputs.unusable[0].reason


# ---- clinical -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("band", "problem"),
    [
        ("60-69", None),
        ("90+", None),
        ("240-260", "'240-260' reaches 260 years; a plausible age band lies within 0-120"),
        ("130+", "'130+' reaches 130 years; a plausible age band lies within 0-120"),
        ("70-60", "'70-60' has its lower bound above its upper bound"),
    ],
)
def test_age_bands(band, problem):
    assert age_band_problem(band) == problem


def test_cancer_types():
    assert cancer_type_matches("glioma", ("glioma",))
    assert cancer_type_matches("Adult diffuse glioma (IDH-mutant)", ("glioma",))
    assert not cancer_type_matches("breast carcinoma", ("glioma", "glioblastoma"))
    assert not cancer_type_matches("gliomatosis", ("glioma",))


def test_cancer_type_is_refused_or_recorded_by_setting():
    inputs = case_inputs()
    inputs.manifest = inputs.manifest.model_copy(update={"cancer_type": "breast carcinoma"})
    with pytest.raises(InputError) as err:
        apply_gates(inputs, InputNeeds(model="m"))
    assert str(err.value).startswith("case.json: cancer_type: 'breast carcinoma' is not a cancer type m was trained for")
    gated = apply_gates(inputs, InputNeeds(model="m", other_cancer_type="report_without_conclusions"))
    (record,) = gated.ood
    assert (record.modality, record.method, record.action) == ("clinical", "gate:cancer_type", "masked")


def test_implausible_age_band_is_removed_and_recorded():
    inputs = case_inputs()
    inputs.manifest = inputs.manifest.model_copy(update={"age_band": "240-260"})
    gated = apply_gates(inputs, InputNeeds())
    assert gated.manifest.age_band is None
    assert gated.unusable[0].reason.startswith("case.json: age_band: '240-260' reaches 260 years")
    assert gated.missing_modalities() == ["imaging", "pathology", "genomics"]  # clinical is unusable, not missing


def test_repeated_time_point_is_used_once():
    def timepoint(name: str) -> ImagingTimepoint:
        return ImagingTimepoint(name, None, None, np.eye(4), {"t1c": np.ones((2, 2, 2), np.float32)}, {"t1c": f"{name}/t1c"})

    inputs = case_inputs(imaging=[timepoint("T0"), timepoint("T0")])
    inputs.manifest = inputs.manifest.model_copy(update={"timepoints": ["T0", "T0"]})
    gated = apply_gates(inputs, InputNeeds())
    assert [t.name for t in gated.imaging] == ["T0"]
    assert gated.unusable[0].reason == "case.json: timepoints: 'T0' listed more than once; only the first listing is used"


def test_gates_run_cancer_type_first():
    assert list_gates()[0] == "cancer_type"


# ---- findings typing ------------------------------------------------------------------------------


@pytest.mark.parametrize("field", [{"who_grade": True}, {"who_grade": 2.0}, {"who_grade": "2"}, {"necrosis": 1}, {"ki67_percent": True}])
def test_findings_are_typed_strictly(field):
    with pytest.raises(ValueError):
        PathologyFindings.model_validate(field)
    assert PathologyFindings.model_validate({"who_grade": 2, "necrosis": False, "ki67_percent": 5}).who_grade == 2


# ---- the out_of_distribution rule -----------------------------------------------------------------


def conclusion(task: str, modalities: list[str]) -> Conclusion:
    return Conclusion(
        task=task, label="G2", probability=0.95, class_probabilities={"G2": 0.95, "G4": 0.05},
        confidence="low", confidence_basis="draft", modalities_used=modalities,
    )


def test_out_of_distribution_record_flags_its_modality_and_lowers_what_rests_on_it():
    record = ModalityOOD(
        modality="pathology", method="gate:patch_magnitude", score=74.2, threshold=4.0,
        out_of_distribution=True, detail="pathology/s1.h5: features: median patch RMS",
    )
    clean = ModalityOOD(modality="imaging", method="gate:x", score=0.1, threshold=4.0, out_of_distribution=False)
    ctx = ConsistencyContext(
        spatial=(), histology=(), mechanism=(),
        conclusions=(conclusion("grade", ["pathology", "genomics"]), conclusion("molecular_subtype", ["genomics"])),
        modalities=Modalities(present=["pathology", "genomics"], missing=[]),
        ood=(record, clean),
    )
    result = check_consistency(ctx)
    flags = [f for f in result.flags if f.kind == "out_of_distribution"]
    assert len(flags) == 1 and flags[0].modalities == ["pathology"]
    assert flags[0].message.startswith("The pathology input lies outside what the model was trained on (74.2 against a threshold of 4)")
    by_task = {c.task: c.confidence for c in result.conclusions}
    assert by_task == {"grade": "moderate", "molecular_subtype": "high"}
    assert flags[0].id in result.flag_texts and result.flag_texts[flags[0].id].message.zh
