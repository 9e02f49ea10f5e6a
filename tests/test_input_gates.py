"""The fuzzed inputs of issue 6, one test each, through the real graph.

Each one must end in a clear error (exit 2 naming file and field), an `unusable` input
with an `unusable_input` flag, or an `out_of_distribution` flag, and no conclusion
resting on the affected modality may stay at high confidence.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agents.runner import run_case
from bundles import rewrite_h5, rewrite_nifti, update_json
from fusion_models.pathology.slides import write_pyramidal_tiff
from knowledge.sources import load_knowledge
from schemas.report import EvidenceChainReport

FULL_CASE = "DEMO-004"  # every modality: imaging T0, patch features, findings, genomics
SLIDE_CASE = "DEMO-006"  # a whole-slide image instead of patch features


def copy_case(demo_cohort: Path, case_id: str, tmp_path: Path) -> Path:
    target = tmp_path / "cases" / case_id
    shutil.copytree(demo_cohort / "cases" / case_id, target)
    return target


def run(case_dir: Path, settings, tmp_path: Path):
    """(CaseResult, report or None)."""
    out = tmp_path / "out"
    result = run_case(case_dir, out, settings)
    path = out / result.case_id / "report.json"
    report = EvidenceChainReport.model_validate_json(path.read_text()) if result.status == "ok" else None
    return result, report


def flags_of(report: EvidenceChainReport, kind: str, modality: str) -> list:
    return [f for f in report.consistency_flags if f.kind == kind and modality in f.modalities]


def assert_unusable(report: EvidenceChainReport, modality: str, *where: str) -> None:
    reasons = [u.reason for u in report.modalities.unusable if u.modality == modality]
    assert any(all(w in r for w in where) for r in reasons), reasons
    assert flags_of(report, "unusable_input", modality)
    assert_no_high_conclusion(report)


def assert_out_of_distribution(report: EvidenceChainReport, modality: str, *where: str) -> None:
    flags = flags_of(report, "out_of_distribution", modality)
    assert flags and all(w in flags[0].message for w in where), [f.message for f in flags]
    resting = [c for c in report.conclusions if modality in c.modalities_used]
    assert resting and all(c.confidence != "high" for c in resting)


def assert_no_high_conclusion(report: EvidenceChainReport) -> None:
    assert all(c.confidence != "high" for c in report.conclusions), [(c.task, c.confidence) for c in report.conclusions]


def write_expression(case_dir: Path, values, genes, meta: dict | None) -> None:
    folder = case_dir / "genomics"
    lines = ["gene\tvalue", *(f"{g}\t{v:g}" for g, v in zip(genes, values, strict=True))]
    (folder / "expression.tsv").write_text("\n".join(lines) + "\n")
    (folder / "meta.json").unlink()
    if meta is not None:
        (folder / "meta.json").write_text(json.dumps(meta))


# ---- pathology ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "transform", "field"),
    [
        ("all zero", lambda f: np.zeros_like(f), "every value"),
        ("times 1e30", lambda f: f * np.float32(1e30), "absurd magnitude"),
    ],
)
def test_patch_features_that_are_not_embeddings_are_unusable(demo_cohort, settings, tmp_path, name, transform, field):
    case = copy_case(demo_cohort, FULL_CASE, tmp_path)
    (h5_path,) = (case / "pathology").glob("*.h5")
    rewrite_h5(h5_path, features=transform)
    result, report = run(case, settings, tmp_path)
    assert result.status == "ok"
    assert_unusable(report, "pathology", f"{h5_path.name}: features:", field)
    assert not [h for h in report.histology_evidence if h.origin == "patch_attention"]


def test_gaussian_noise_patch_features_are_out_of_distribution(demo_cohort, settings, tmp_path):
    case = copy_case(demo_cohort, FULL_CASE, tmp_path)
    (h5_path,) = (case / "pathology").glob("*.h5")
    rewrite_h5(h5_path, features=lambda f: np.random.default_rng(0).normal(size=f.shape).astype(np.float32))
    result, report = run(case, settings, tmp_path)
    assert result.status == "ok"
    assert_out_of_distribution(report, "pathology", "median patch RMS")


def test_random_noise_slide_is_unusable_or_out_of_distribution(demo_cohort, settings, tmp_path):
    case = copy_case(demo_cohort, SLIDE_CASE, tmp_path)
    (slide,) = (case / "pathology").glob("*.tif")
    noise = np.random.default_rng(0).integers(0, 256, size=(1024, 1024, 3), dtype=np.uint8)
    slide.unlink()
    write_pyramidal_tiff(slide, noise, mpp=0.5)
    result, report = run(case, settings, tmp_path)
    assert result.status == "ok"
    unusable = [u for u in report.modalities.unusable if u.modality == "pathology" and slide.name in u.reason]
    if unusable:
        assert_unusable(report, "pathology", slide.name)
    else:
        assert_out_of_distribution(report, "pathology", slide.name)


def test_nan_patch_coordinates_are_a_named_error_not_a_huge_bounding_box(demo_cohort, settings, tmp_path):
    case = copy_case(demo_cohort, FULL_CASE, tmp_path)
    (h5_path,) = (case / "pathology").glob("*.h5")
    rewrite_h5(h5_path, coords=lambda c: np.where(np.arange(len(c))[:, None] == 0, np.nan, c.astype(np.float64)))
    result, report = run(case, settings, tmp_path)
    assert result.status == "ok"
    assert_unusable(report, "pathology", f"{h5_path.name}: coords:", "NaN")
    assert "-9223372036854775808" not in report.model_dump_json()


def test_who_grade_true_is_not_grade_one(demo_cohort, settings, tmp_path):
    case = copy_case(demo_cohort, FULL_CASE, tmp_path)
    update_json(case / "pathology" / "findings.json", who_grade=True)
    result, report = run(case, settings, tmp_path)
    assert result.status == "ok"
    assert_unusable(report, "pathology", "pathology/findings.json: who_grade:")
    assert not [h for h in report.histology_evidence if h.origin == "pathologist_findings"]


# ---- imaging --------------------------------------------------------------------------------------


def test_nan_and_inf_voxels_in_t1c_make_that_sequence_unusable(demo_cohort, settings, tmp_path):
    case = copy_case(demo_cohort, FULL_CASE, tmp_path)

    def poison(a):
        a = a.astype(np.float32)
        a.flat[:10] = np.nan
        a.flat[10:20] = np.inf
        return a

    rewrite_nifti(case / "imaging" / "T0" / "t1c.nii.gz", data=poison)
    result, report = run(case, settings, tmp_path)
    assert result.status == "ok"
    assert_unusable(report, "imaging", "imaging/T0/t1c.nii.gz: voxels:", "20 of")
    assert "imaging/T0/t1c.nii.gz" not in report.provenance.inputs


def test_all_zero_lesion_mask_is_unusable_not_a_confident_report(demo_cohort, settings, tmp_path):
    case = copy_case(demo_cohort, FULL_CASE, tmp_path)
    rewrite_nifti(case / "imaging" / "T0" / "lesion_mask.nii.gz", data=np.zeros_like)
    result, report = run(case, settings, tmp_path)
    assert result.status == "ok"
    assert_unusable(report, "imaging", "imaging/T0/lesion_mask.nii.gz: labels:", "no lesion voxel")
    assert report.spatial_evidence == []


def test_whole_volume_mask_is_unusable(demo_cohort, settings, tmp_path):
    case = copy_case(demo_cohort, FULL_CASE, tmp_path)
    rewrite_nifti(case / "imaging" / "T0" / "lesion_mask.nii.gz", data=lambda a: np.full_like(a, 2))
    result, report = run(case, settings, tmp_path)
    assert result.status == "ok"
    assert_unusable(report, "imaging", "lesion_mask.nii.gz: labels: lesion volume", "cerebral hemisphere")
    assert report.spatial_evidence == []


def test_100_mm_voxels_make_the_time_point_unusable(demo_cohort, settings, tmp_path):
    case = copy_case(demo_cohort, FULL_CASE, tmp_path)
    affine = np.diag([100.0, 100.0, 100.0, 1.0])
    for path in (case / "imaging" / "T0").glob("*.nii.gz"):
        rewrite_nifti(path, affine=affine)
    result, report = run(case, settings, tmp_path)
    assert result.status == "ok"
    assert_unusable(report, "imaging", "imaging/T0/lesion_mask.nii.gz: affine: voxel size 100 x 100 x 100 mm")
    assert report.spatial_evidence == []


def test_a_time_point_listed_twice_invents_no_growth(demo_cohort, settings, tmp_path):
    case = copy_case(demo_cohort, FULL_CASE, tmp_path)
    update_json(case / "case.json", timepoints=["T0", "T0"])
    result, report = run(case, settings, tmp_path)
    assert result.status == "ok"
    assert_unusable(report, "imaging", "case.json: timepoints: 'T0' listed more than once")
    assert not [s for s in report.spatial_evidence if s.unit_level == "longitudinal"]


# ---- clinical and case ----------------------------------------------------------------------------


def test_age_band_240_260_is_unusable(demo_cohort, settings, tmp_path):
    case = copy_case(demo_cohort, FULL_CASE, tmp_path)
    update_json(case / "case.json", age_band="240-260")
    result, report = run(case, settings, tmp_path)
    assert result.status == "ok"
    assert_unusable(report, "clinical", "case.json: age_band: '240-260'")


def test_another_cancer_type_is_refused_naming_the_field(demo_cohort, settings, tmp_path):
    case = copy_case(demo_cohort, FULL_CASE, tmp_path)
    update_json(case / "case.json", cancer_type="breast carcinoma")
    result, report = run(case, settings, tmp_path)
    assert result.exit_code == 2 and report is None
    assert result.error.startswith("case.json: cancer_type: 'breast carcinoma' is not a cancer type glioma_demo")


def test_another_cancer_type_can_be_reported_without_conclusions(demo_cohort, settings, tmp_path):
    case = copy_case(demo_cohort, FULL_CASE, tmp_path)
    update_json(case / "case.json", cancer_type="breast carcinoma")
    reporting = settings.model_copy(update={"other_cancer_type": "report_without_conclusions"})
    result, report = run(case, reporting, tmp_path)
    assert result.status == "ok"
    assert report.conclusions == []
    (flag,) = flags_of(report, "out_of_distribution", "clinical")
    assert "case.json: cancer_type" in flag.message


# ---- genomics -------------------------------------------------------------------------------------


def twenty_thousand_raw_counts(case_dir: Path) -> tuple[list[str], np.ndarray]:
    """The case's panel plus other known genes, as Poisson read counts of a 20,000-gene library."""
    panel = [line.split("\t")[0] for line in (case_dir / "genomics" / "expression.tsv").read_text().splitlines()[1:]]
    others = sorted(load_knowledge("bundled").gene_universe - set(panel))[: 20_000 - len(panel)]
    genes = panel + others
    rng = np.random.default_rng(0)
    return genes, rng.poisson(2.0 ** rng.uniform(0, 12, size=len(genes))).astype(float)


@pytest.mark.parametrize(
    ("meta", "outcome"),
    [
        ({"expression_scale": "zscore"}, "unusable"),
        (None, "converted"),
        ({"expression_scale": "raw_counts"}, "converted"),
    ],
)
def test_twenty_thousand_raw_counts(demo_cohort, settings, tmp_path, meta, outcome):
    case = copy_case(demo_cohort, FULL_CASE, tmp_path)
    genes, counts = twenty_thousand_raw_counts(case)
    write_expression(case, counts, genes, meta)
    result, report = run(case, settings, tmp_path)
    assert result.status == "ok"
    if outcome == "unusable":
        assert_unusable(report, "genomics", "genomics/meta.json: expression_scale: says 'zscore'", "raw counts")
        assert not [m for m in report.mechanism_evidence if m.kind == "pathway_activity"]
    else:
        (conversion,) = report.provenance.input_conversions
        assert conversion.startswith("genomics/expression.tsv: raw_counts (") and conversion.endswith("-> zscore within the sample")
        assert_out_of_distribution(report, "genomics", "standardised within the sample")


def test_unknown_expression_scale_is_one_line_naming_the_field(demo_cohort, settings, tmp_path):
    case = copy_case(demo_cohort, FULL_CASE, tmp_path)
    (case / "genomics" / "meta.json").write_text(json.dumps({"expression_scale": "banana"}))
    result, report = run(case, settings, tmp_path)
    assert result.status == "ok"
    (reason,) = [u.reason for u in report.modalities.unusable]
    assert reason.startswith("genomics/meta.json: expression_scale: unknown scale 'banana'") and "\n" not in reason
    assert_unusable(report, "genomics", "banana")
