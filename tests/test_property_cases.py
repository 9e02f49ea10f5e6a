"""Property: any case bundle gives a valid report or a one-line error, without traceback, hang or stray write.

Hypothesis builds bundles (manifest, findings, TSVs, meta.json, NIfTI masks and
sequences with random shapes, dtypes and labels, HDF5 features with random shapes,
dtypes and attributes, broken slides) and each goes through the real per-case path
of a batch (`plan_jobs` then `process_case`) with the components loaded once.
`--property-cases N` sets the number (default 2,000; the slow tier runs 10,000).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from agents.output import validate_report
from agents.runner import plan_jobs, process_case, settings_fingerprint
from toolkit.case_files import folder_fingerprint

GENES = ["EGFR", "TP53", "IDH1", "PTEN", "CDKN2A", "MKI67", "VEGFA", "HIF1A", "PDGFRA", "ATRX"]
CASE_TIMEOUT_S = 60.0

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 200), st.floats(allow_nan=False), st.text(max_size=12))
junk_json = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
timepoint = st.one_of(
    st.sampled_from(["T0", "T1", "../T0", ""]),
    st.fixed_dictionaries({"name": st.sampled_from(["T0", "T1"]), "date": st.sampled_from(["2024-01-06", "2024-13-40", "x"])}),
)
valid_manifest = st.fixed_dictionaries(
    {"case_id": st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True), "cancer_type": st.sampled_from(["glioma", "lung"])},
    optional={
        "age_band": st.sampled_from(["60-69", "20-29", "90+"]),
        "sex": st.sampled_from(["F", "M", "unknown"]),
        "clinical_notes": st.text(max_size=40),
        "timepoints": st.lists(timepoint, max_size=2),
    },
)
broken_manifest = st.one_of(
    valid_manifest.map(lambda m: {**m, "case_id": "../x"}),
    valid_manifest.map(lambda m: {**m, "sex": 3}),
    junk_json,
    st.binary(max_size=40),
)
manifest = st.one_of(valid_manifest, valid_manifest, valid_manifest, broken_manifest)
findings = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "who_grade": st.sampled_from([1, 2, 3, 4, 5, "4"]),
            "necrosis": st.sampled_from([True, False, "yes"]),
            "microvascular_proliferation": st.booleans(),
            "cellularity": st.sampled_from(["low", "moderate", "high", "huge"]),
            "ki67_percent": st.floats(-10, 120, allow_nan=False),
            "sampled_region": st.sampled_from(["enhancing", "oedema", "unknown", "brain"]),
            "histology": st.text(max_size=30),
        },
    ),
    junk_json,
)
cell = st.one_of(st.floats(-3, 3, allow_nan=False).map(lambda v: f"{v:.3f}"), st.sampled_from(["", "nan", "inf", "x", "1e999", "0.5"]))
gene = st.one_of(st.sampled_from(GENES), st.sampled_from(["", "FOO", "egfr", "TP53 "]))


@st.composite
def tsv(draw, columns: tuple[str, ...]) -> str:
    header = list(columns) if draw(st.booleans()) or draw(st.booleans()) else draw(st.lists(st.sampled_from(["gene", "value", "vaf", "x"]), max_size=3))
    rows = draw(st.lists(st.tuples(gene, cell, st.sampled_from(["R132H", "", "del"]), cell), max_size=8))
    lines = ["\t".join(header)]
    for g, v, variant, vaf in rows:
        by_name = {"gene": g, "value": v, "variant": variant, "vaf": vaf}
        lines.append("\t".join(by_name.get(c, "1") for c in header))
    return "\n".join(lines) + "\n"


@st.composite
def volume(draw) -> tuple[np.ndarray, np.ndarray]:
    shape = draw(st.tuples(*[st.integers(1, 8)] * 3))
    shape = shape + (1,) if draw(st.integers(0, 9)) == 0 else shape
    dtype = draw(st.sampled_from([np.uint8, np.int16, np.float32]))
    labels = draw(st.sampled_from([[0, 1, 2, 4], [0, 2, 3], [0, 7], [0, 1.5], [0]]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    data = rng.choice(np.asarray(labels, dtype=np.float64), size=shape).astype(dtype)
    zoom = draw(st.sampled_from([1.0, 2.0, 1e-4]))
    return data, np.diag([zoom, zoom, zoom, 1.0])


@st.composite
def bundle(draw) -> dict[str, object]:
    files: dict[str, object] = {}
    m = draw(manifest)
    if draw(st.integers(0, 19)):  # a few cases have no manifest at all
        files["case.json"] = m if isinstance(m, bytes) else json.dumps(m).encode()
    if draw(st.booleans()):
        files["pathology/findings.json"] = json.dumps(draw(findings)).encode()
    for name, columns in [("expression", ("gene", "value")), ("mutations", ("gene", "variant", "vaf")), ("cnv", ("gene", "value"))]:
        if draw(st.booleans()):
            files[f"genomics/{name}.tsv"] = draw(tsv(columns)).encode()
    if draw(st.booleans()):
        files["genomics/meta.json"] = json.dumps(draw(st.one_of(st.fixed_dictionaries({"expression_scale": st.sampled_from(["zscore", "log2_tpm", "", 5])}), junk_json))).encode()
    if draw(st.booleans()):
        files["imaging/T0/lesion_mask.nii.gz"] = draw(st.one_of(volume(), st.binary(max_size=60)))
        if draw(st.booleans()):
            files["imaging/T0/t1c.nii.gz"] = draw(volume())
    if draw(st.booleans()):
        files["pathology/S1.h5"] = draw(
            st.fixed_dictionaries(
                {
                    "n": st.integers(0, 6),
                    "dim": st.sampled_from(["encoder", 7]),
                    "dtype": st.sampled_from(["float32", "float16", "int32", "S3"]),
                    "coords": st.sampled_from([2, 3]),
                    "encoder": st.sampled_from(["hed_texture", "uni", ""]),
                    "patch_size": st.sampled_from([256, -1, 2.5, "x"]),
                }
            )
        )
    if draw(st.integers(0, 9)) == 0:
        files["pathology/S2.tif"] = draw(st.binary(max_size=200))
    return files


def write_bundle(case: Path, files: dict[str, object], encoder_dim: int) -> None:
    for rel, content in files.items():
        path = case / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, tuple):
            nib.save(nib.Nifti1Image(*content), path)
        else:
            write_h5(path, content, encoder_dim)


def write_h5(path: Path, spec: dict, encoder_dim: int) -> None:
    n, dim = spec["n"], encoder_dim if spec["dim"] == "encoder" else spec["dim"]
    with h5py.File(path, "w") as f:
        f["features"] = np.arange(n * dim).reshape(n, dim).astype(spec["dtype"])
        f["coords"] = np.arange(n * spec["coords"]).reshape(n, spec["coords"]) * 256
        f.attrs["encoder"] = spec["encoder"]
        f.attrs["patch_size"] = spec["patch_size"]


@pytest.fixture(scope="module")
def workspace():
    root = Path(tempfile.mkdtemp(prefix="runs_property_"))
    yield root
    shutil.rmtree(root)


@pytest.fixture()
def one_thread():
    """Cases this small run fastest on one torch thread (as each batch worker does); restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_every_generated_bundle_gives_a_valid_report_or_a_one_line_error(settings, workspace, one_thread, request):
    from agents import resources

    encoder_dim = resources.encoder(settings).dim
    settings_fp = settings_fingerprint(settings)
    counts = {"ok": 0, "bad_input": 0}

    @seed(20261130)
    @hsettings(
        max_examples=request.config.getoption("--property-cases"),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(bundle())
    def check(files):
        case, out = workspace / "case", workspace / "out"
        shutil.rmtree(case, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        case.mkdir()
        write_bundle(case, files, encoder_dim)
        before = folder_fingerprint(case)
        jobs, rejected = plan_jobs([case], out, settings_fp, force=True, timeout_s=CASE_TIMEOUT_S)
        (result,) = rejected or [process_case(jobs[0], settings)]
        assert result.status in counts, f"{result.error}\n{Path(result.log).read_text() if result.log else ''}"
        counts[result.status] += 1
        if result.status == "bad_input":
            assert "\n" not in result.error and result.error.startswith("case.json: ")
        else:
            report = json.loads((out / result.case_id / "report.json").read_text())
            validate_report(report)
            assert report["case_id"] == result.case_id
        assert folder_fingerprint(case) == before, "the case folder was written to"
        assert sorted(p.name for p in workspace.iterdir()) == ["case", "out"][: 1 + out.exists()]

    check()
    assert sum(counts.values()) >= request.config.getoption("--property-cases"), counts
    # Both outcomes must be exercised, or the generator has drifted into testing one path.
    assert counts["ok"] > 0 and counts["bad_input"] > 0, counts
