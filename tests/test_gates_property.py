"""Property: any perturbed case bundle gives a valid report or a one-line error, never a traceback,
and no high-confidence conclusion rests on a modality marked unusable or out of distribution.

Hypothesis draws a combination of the issue's perturbation families (with their strengths)
and applies them to a copy of one complete demo case; one compiled graph and the session's
trained model serve every example, so the whole test stays around a minute.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from jsonschema import Draft202012Validator

from agents.runner import run_case
from bundles import rewrite_h5, rewrite_nifti, update_json
from schemas.export import load_schema
from schemas.report import EvidenceChainReport

CASE = "DEMO-004"  # every modality
ONE_LINE_ERROR = re.compile(r"^[^\n:]+: [^\n:]+: [^\n]+$")


@pytest.fixture(scope="module")
def report_schema():
    return Draft202012Validator(load_schema("evidence_chain_report"))


# ---- perturbations: (case_dir, rng, strength) -> None ----------------------------------------------


def _h5(case: Path) -> Path:
    return next((case / "pathology").glob("*.h5"))


def scale_patch_features(case, rng, strength):
    rewrite_h5(_h5(case), features=lambda f: (f * np.float32(10.0 ** (strength * 30))).astype(np.float32))


def noise_patch_features(case, rng, strength):
    rewrite_h5(_h5(case), features=lambda f: rng.normal(scale=1 + 9 * strength, size=f.shape).astype(np.float32))


def constant_patch_features(case, rng, strength):
    rewrite_h5(_h5(case), features=lambda f: np.full_like(f, strength))


def nan_patch_coords(case, rng, strength):
    rewrite_h5(_h5(case), coords=lambda c: np.where(rng.random(c.shape) < strength, np.nan, c.astype(np.float64)))


def scale_voxels(case, rng, strength):
    affine = np.diag([*(10.0 ** (4 * strength - 2),) * 3, 1.0])  # 0.01 .. 100 mm
    for path in (case / "imaging" / "T0").glob("*.nii.gz"):
        rewrite_nifti(path, affine=affine)


def nan_voxels(case, rng, strength):
    def poison(a):
        a = a.astype(np.float32)
        a[rng.random(a.shape) < strength / 10] = rng.choice([np.nan, np.inf, -np.inf])
        return a

    rewrite_nifti(case / "imaging" / "T0" / "t1c.nii.gz", data=poison)


def relabel_mask(case, rng, strength):
    """Emptied (strength < 1/3), random labels, or the whole volume (strength > 2/3)."""

    def relabel(a):
        if strength < 1 / 3:
            return np.zeros_like(a)
        if strength > 2 / 3:
            return np.full_like(a, 2)
        return rng.choice(np.array([0, 1, 2, 4], dtype=a.dtype), size=a.shape)

    rewrite_nifti(case / "imaging" / "T0" / "lesion_mask.nii.gz", data=relabel)


def rescale_expression(case, rng, strength):
    """z-scores re-expressed as log2 TPM or raw counts, or multiplied; meta.json drawn apart from the values."""
    path = case / "genomics" / "expression.tsv"
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    z = np.array([float(v) for _, v in rows])
    log2 = np.clip(rng.uniform(1, 10, len(z)) + z, 0, None)
    values = [z * (1 + 1e3 * strength), log2, rng.poisson(2.0 ** log2 * 10).astype(float)][int(strength * 2.999)]
    path.write_text("gene\tvalue\n" + "".join(f"{g}\t{v:g}\n" for (g, _), v in zip(rows, values, strict=True)))
    meta = case / "genomics" / "meta.json"
    choice = [None, "zscore", "log2_tpm", "raw_counts", "banana", 3, ""][rng.integers(7)]
    if choice is None:
        meta.unlink()
    else:
        update_json(meta, expression_scale=choice)


def age_band(case, rng, strength):
    lo = int(strength * 300)
    update_json(case / "case.json", age_band=f"{lo}-{lo + int(rng.integers(-20, 30))}" if lo < 980 else f"{lo}+")


def cancer_type(case, rng, strength):
    update_json(case / "case.json", cancer_type=["breast carcinoma", "Glioblastoma", "melanoma", "adult diffuse glioma"][int(strength * 3.999)])


def repeat_timepoints(case, rng, strength):
    update_json(case / "case.json", timepoints=["T0"] * (2 + int(strength * 3)))


def who_grade(case, rng, strength):
    value = [True, False, 0, 1, 2, 4, 5, 2.5, "3", None][int(strength * 9.999)]
    update_json(case / "pathology" / "findings.json", who_grade=value)


PERTURBATIONS = {
    f.__name__: f
    for f in (
        scale_patch_features, noise_patch_features, constant_patch_features, nan_patch_coords,
        scale_voxels, nan_voxels, relabel_mask, rescale_expression,
        age_band, cancer_type, repeat_timepoints, who_grade,
    )
}

bundles = st.lists(
    st.tuples(st.sampled_from(sorted(PERTURBATIONS)), st.floats(0.0, 1.0, allow_nan=False)),
    min_size=1, max_size=3, unique_by=lambda t: t[0],
)


@hypothesis_settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(bundle=bundles, seed=st.integers(0, 2**16))
def test_perturbed_bundles_give_a_valid_report_or_a_one_line_error(demo_cohort, settings, report_schema, bundle, seed):
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        case = Path(tmp) / "cases" / CASE
        shutil.copytree(demo_cohort / "cases" / CASE, case)
        for name, strength in bundle:
            PERTURBATIONS[name](case, rng, strength)
        result = run_case(case, Path(tmp) / "out", settings)
        assert result.status in ("ok", "bad_input"), result.error  # "error" is a traceback
        if result.status == "bad_input":
            assert ONE_LINE_ERROR.match(result.error), result.error
            return
        raw = json.loads((Path(tmp) / "out" / CASE / "report.json").read_text())
    assert not list(report_schema.iter_errors(raw))
    report = EvidenceChainReport.model_validate(raw)
    compromised = {u.modality for u in report.modalities.unusable}
    compromised |= {m for f in report.consistency_flags if f.kind == "out_of_distribution" for m in f.modalities}
    for c in report.conclusions:
        if compromised & set(c.modalities_used):
            assert c.confidence != "high", (c.task, c.confidence, bundle)
