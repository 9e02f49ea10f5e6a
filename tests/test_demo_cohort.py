"""The demo cohort (real anatomy, real tissue) and the in-memory training set."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from skimage.color import hed2rgb

from demo import biology, cohort, genomics, imaging, reference, tissue, training
from fusion_models.encoders import create_encoder
from fusion_models.features import GenomicsSpec, genomics_values, imaging_values
from fusion_models.genomics.io import load_genomics
from fusion_models.genomics.pathways import singscore
from fusion_models.imaging.io import load_imaging
from knowledge.sources import load_knowledge
from schemas.case import CaseManifest, PathologyFindings
from schemas.reference import ReferenceReport


def _bio(**knobs) -> biology.TumourBiology:
    base = biology.sample_biology(np.random.default_rng(0), grade="G4", subtype="IDHwt")
    return dataclasses.replace(base, **knobs)


# ---- biology ----------------------------------------------------------------------------------


def test_hazard_hand_checked():
    # median 15 months -> ln2 / 15 per month; 10 years older -> x exp(0.3)
    assert biology.hazard_per_month("G4", "IDHwt", 50.0, 0.0) == pytest.approx(math.log(2) / 15)
    assert biology.hazard_per_month("G4", "IDHwt", 60.0, 0.0) == pytest.approx(math.log(2) / 15 * math.exp(0.3))


def test_joint_frequencies_respect_who():
    rng = np.random.default_rng(1)
    pairs = [biology.sample_grade_subtype(rng) for _ in range(2000)]
    assert ("G4", "IDHmut-codel") not in pairs
    g4 = [s for g, s in pairs if g == "G4"]
    assert g4.count("IDHwt") / len(g4) > 0.9
    with pytest.raises(ValueError, match="no glioma"):
        biology.sample_grade_subtype(rng, "G4", "IDHmut-codel")


def test_survival_worse_for_glioblastoma():
    rng = np.random.default_rng(2)
    gbm = [biology.sample_biology(rng, grade="G4", subtype="IDHwt") for _ in range(200)]
    oligo = [biology.sample_biology(rng, grade="G2", subtype="IDHmut-codel") for _ in range(200)]
    assert np.mean([b.event for b in gbm]) > np.mean([b.event for b in oligo]) + 0.3
    assert all(0 < b.survival_months <= biology.FOLLOW_UP_MONTHS[1] for b in gbm + oligo)


# ---- imaging ----------------------------------------------------------------------------------


def test_lesion_volume_hand_checked():
    mask = np.zeros((10, 10, 10), dtype=np.uint8)
    mask[:5, :5, :5] = 1  # 125 voxels of 2 x 2 x 2 mm = 1 mL
    mask[5, 5, 5] = 2
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    assert imaging.lesion_volume_ml(mask, affine) == pytest.approx(1.008)
    assert imaging.lesion_volume_ml(mask, affine, labels=(1,)) == pytest.approx(1.0)


@pytest.mark.parametrize("enhancing, labels", [(True, {0, 1, 2, 4}), (False, {0, 1, 2})])
def test_lesion_labels_and_growth(enhancing, labels):
    template = imaging.load_template()
    rng = np.random.default_rng(3)
    bio = dataclasses.replace(biology.sample_biology(rng, grade="G4"), enhancing=enhancing)
    spec = imaging.lesion_spec(rng, bio, template, max_scale=1.12)
    mask = imaging.lesion_mask(spec, template)
    assert set(np.unique(mask)) == labels
    assert not (mask[~template.brain]).any()
    grown = imaging.lesion_mask(spec, template, scale=1.12)  # 1.12^3 = 1.40 before clipping
    assert imaging.lesion_volume_ml(grown, template.affine) > 1.25 * imaging.lesion_volume_ml(mask, template.affine)
    sequences = imaging.synthesize_sequences(rng, mask, template)
    t1c = sequences["t1c"].astype(float)
    if enhancing:  # rim bright, necrosis dark on post-contrast T1
        assert t1c[mask == 4].mean() > 1.3 * t1c[template.brain & (mask == 0)].mean()
        assert t1c[mask == 1].mean() < t1c[mask == 4].mean() / 3
    flair = sequences["flair"].astype(float)
    assert flair[mask == 2].mean() > 1.5 * flair[template.brain & (mask == 0)].mean()


def test_nifti_bytes_deterministic_and_readable(tmp_path):
    volume = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    data = imaging.nifti_gz_bytes(volume, affine)
    assert data == imaging.nifti_gz_bytes(volume, affine)
    (tmp_path / "v.nii.gz").write_bytes(data)
    image = nib.load(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(np.asarray(image.dataobj), volume)
    np.testing.assert_allclose(image.affine, affine)


# ---- tissue -----------------------------------------------------------------------------------


def test_restain_matches_scikit_image():
    rng = np.random.default_rng(4)
    h, e = rng.uniform(0, 0.15, (8, 8)), rng.uniform(0, 0.08, (8, 8))
    expected = np.round(hed2rgb(np.stack([h, e, np.zeros_like(h)], axis=-1)) * 255)
    assert np.abs(tissue.restain(h, e).astype(int) - expected).max() <= 1


def test_encoder_separates_tissue_patterns():
    """Nearest-centroid on hed_texture features, fitted and scored on different tiles."""
    encoder = create_encoder("hed_texture")
    rng = np.random.default_rng(5)
    n_fit, n_test = 12, 12
    features = {}
    for pattern in tissue.TISSUE_PATTERNS:
        tiles, codes = tissue.make_slide_tiles(rng, {pattern: 1.0}, n_fit + n_test)
        assert tiles.shape == (n_fit + n_test, 256, 256, 3) and (codes == tissue.PATTERN_CODES[pattern]).all()
        features[pattern] = encoder.embed(tiles)
    centroids = np.stack([features[p][:n_fit].mean(axis=0) for p in tissue.TISSUE_PATTERNS])
    held_out = np.concatenate([features[p][n_fit:] for p in tissue.TISSUE_PATTERNS])
    truth = np.repeat(np.arange(len(tissue.TISSUE_PATTERNS)), n_test)
    predicted = ((held_out[:, None, :] - centroids[None]) ** 2).sum(axis=-1).argmin(axis=1)
    assert (predicted == truth).mean() >= 0.8


def test_patch_coords_grid_and_zoning():
    rng = np.random.default_rng(6)
    codes = np.array([tissue.PATTERN_CODES["necrosis"]] * 10 + [tissue.PATTERN_CODES["background"]] * 50)
    coords = tissue.patch_coords(rng, codes)
    assert coords.shape == (60, 2) and (coords % tissue.TILE_SIDE == 0).all() and coords.min() >= tissue.TILE_SIDE
    assert len({tuple(c) for c in coords}) == 60
    centre = coords.mean(axis=0)
    distance = np.linalg.norm(coords - centre, axis=1)
    assert distance[:10].mean() < distance[10:].mean()


def test_findings_follow_specimen():
    rng = np.random.default_rng(7)
    codes = np.array(
        [
            tissue.PATTERN_CODES[p]
            for p in ["necrosis"] * 3 + ["microvascular_proliferation"] * 2 + ["high_cellularity"] * 55
        ]
    )
    g4 = tissue.pathology_findings(rng, "G4", "enhancing", codes)  # 5 % necrosis, 3.3 % MVP: below the 5 % bar
    assert (g4.who_grade, g4.necrosis, g4.microvascular_proliferation, g4.cellularity) == (4, True, False, "high")
    mix = tissue.pattern_mix(rng, "G2", "oedema")
    assert mix["background"] + mix["infiltrating_tumour"] > 0.8
    low = tissue.pathology_findings(rng, "G2", "oedema", tissue.draw_patterns(rng, mix, 60))
    assert (low.who_grade, low.necrosis, low.cellularity, low.sampled_region) == (2, False, "low", "oedema")


# ---- genomics ---------------------------------------------------------------------------------


def test_singscore_recovers_programme_activity():
    kb = load_knowledge("bundled")
    panel = genomics.gene_panel()
    assert 1400 <= len(panel.genes) <= 1600 and {"IDH1", "EGFR", "CDKN2A"} <= set(panel.genes)
    assert set(panel.genes) <= kb.gene_universe  # nothing the genomics loader would drop
    rng = np.random.default_rng(8)
    bios = [biology.sample_biology(rng) for _ in range(40)]
    for key in ("hypoxia", "proliferation"):
        scores = [singscore(genomics.expression_profile(rng, b, panel), kb.by_programme(key).genes)[0] for b in bios]
        assert np.corrcoef([b.programmes[key] for b in bios], scores)[0, 1] > 0.8


def test_copy_number_events():
    rng = np.random.default_rng(9)
    cnv = genomics.copy_number(rng, _bio(egfr_amplified=True, cdkn2a_deleted=True))
    assert list(cnv.index) == list(genomics.CNV_GENES) and len(cnv) == 30
    assert cnv["EGFR"] == 2 and cnv["CDKN2A"] == -2 and cnv["CDKN2B"] == -2
    quiet = genomics.copy_number(
        rng, dataclasses.replace(_bio(), subtype="IDHmut-codel", egfr_amplified=False, cdkn2a_deleted=False)
    )
    assert (quiet == 0).all()


def test_mutations_by_subtype():
    rng = np.random.default_rng(10)
    for _ in range(20):
        codel = set(genomics.mutation_calls(rng, _bio(subtype="IDHmut-codel"))["gene"])
        assert codel & {"IDH1", "IDH2"} and codel & {"CIC", "FUBP1"}
        wild = genomics.mutation_calls(rng, _bio(subtype="IDHwt"))
        assert not set(wild["gene"]) & {"IDH1", "IDH2"}
        assert wild["vaf"].between(0.05, 0.95).all()


# ---- reference --------------------------------------------------------------------------------

ALL = ("imaging", "pathology", "genomics")


@pytest.mark.parametrize(
    "knobs, modalities, kinds, target",
    [
        ({}, ALL, [], None),
        (
            {"sampled_region": "oedema", "histology_grade": "G2"},
            ALL,
            ["cross_modal_disagreement", "sampling_mismatch"],
            None,  # IDH-wild-type with EGFR amplification is grade 4 already: no re-biopsy (WHO CNS5)
        ),
        (
            {"sampled_region": "oedema", "histology_grade": "G2", "egfr_amplified": False, "cdkn2a_deleted": False},
            ALL,
            ["cross_modal_disagreement", "sampling_mismatch"],
            "enhancing",
        ),
        (
            {"enhancing": False, "sampled_region": "non_enhancing_core", "histology_grade": "G2"},
            ALL,
            ["cross_modal_disagreement"],
            None,
        ),
        ({}, ("imaging", "genomics"), ["missing_modality"], "enhancing"),
        ({}, ("imaging",), ["missing_modality"], "enhancing"),
    ],
)
def test_expected_flags(knobs, modalities, kinds, target):
    bio = _bio(**{"egfr_amplified": True, "cdkn2a_deleted": True, **knobs})
    assert [f.kind for f in reference.expected_flags(bio, modalities)] == kinds
    assert reference.first_sampling_target(bio, modalities) == target


# ---- the cohort on disk (conftest's session build: n_cases=16, seed=0) -------------------------


def _truth(root: Path) -> dict:
    return json.loads((root / "ground_truth.json").read_text())["cases"]


def _by_situation(root: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for case_id, entry in _truth(root).items():
        out.setdefault(entry["situation"], []).append(case_id)
    return out


def test_cohort_plan_needs_every_situation():
    with pytest.raises(ValueError, match="at least 16"):
        cohort.plan_cohort(15, seed=0)


def test_stale_demo_cases_removed_and_others_kept(tmp_path):
    for name in ("DEMO-001", "DEMO-017", "my-case"):
        (tmp_path / name).mkdir()
    assert cohort.remove_stale_cases(tmp_path, {"DEMO-001"}) == ["DEMO-017"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DEMO-001", "my-case"]


def test_every_situation_present(demo_cohort):
    situations = _by_situation(demo_cohort)
    for name, count in cohort.REQUIRED.items():
        assert len(situations.get(name, [])) == count, name
    assert sum(len(v) for v in situations.values()) == 16
    assert sorted(_truth(demo_cohort)) == [f"DEMO-{i:03d}" for i in range(1, 17)]


def test_ground_truth_outside_case_folders(demo_cohort):
    assert (demo_cohort / "ground_truth.json").is_file()
    assert not list((demo_cohort / "cases").rglob("ground_truth*"))
    assert sorted(p.name for p in (demo_cohort / "cases").iterdir()) == sorted(_truth(demo_cohort))


def test_manifests_and_references_validate(demo_cohort):
    for case_id, entry in _truth(demo_cohort).items():
        folder = demo_cohort / "cases" / case_id
        manifest = CaseManifest.model_validate_json((folder / "case.json").read_text())
        assert manifest.case_id == case_id
        assert not re.search(r"\b(grade|idh|glioblastoma|codel\w*|high|low|necro\w*)\b", manifest.clinical_notes, re.I)
        ref = ReferenceReport.model_validate_json((folder / "reference_report.json").read_text())
        assert {c.task: c.label for c in ref.conclusions} == {
            "diagnosis": entry["diagnosis"],
            "grade": entry["grade"],
            "molecular_subtype": entry["subtype"],
        }
        assert [f.kind for f in ref.consistency_flags] == entry["expected"]["flag_kinds"]
        present = {m for m in ("imaging", "pathology", "genomics") if (folder / m).is_dir()}
        assert present | {"clinical"} == set(entry["expected"]["modalities_present"])


def test_modalities_follow_situations(demo_cohort):
    situations = _by_situation(demo_cohort)
    cases = demo_cohort / "cases"
    (missing,), (only,), (slide,) = (
        situations["missing_pathology"],
        situations["imaging_only"],
        situations["slide_case"],
    )
    assert not (cases / missing / "pathology").exists() and (cases / missing / "genomics").is_dir()
    assert sorted(p.name for p in (cases / only).iterdir()) == ["case.json", "imaging", "reference_report.json"]
    assert not list((cases / slide / "pathology").glob("*.h5"))


def test_h5_layout(demo_cohort):
    files = sorted((demo_cohort / "cases").glob("*/pathology/*.h5"))
    assert len(files) == 13  # every case with pathology (16 - 2 without) but the slide case
    for path in files:
        with h5py.File(path) as h5:
            features, coords = h5["features"][()], h5["coords"][()]
            assert h5.attrs["encoder"] == "hed_texture" and h5.attrs["patch_size"] == 256
            assert h5.attrs["magnification"] == 20.0 and h5.attrs["slide_id"] == path.stem
        assert features.dtype == np.float32 and features.shape[1] == 32 and 48 <= len(features) <= 96
        assert coords.shape == (len(features), 2) and (coords % 256 == 0).all()
        assert np.isfinite(features).all()


def test_slide_is_pyramidal_tiff(demo_cohort):
    import tiffslide

    (slide_case,) = _by_situation(demo_cohort)["slide_case"]
    (path,) = (demo_cohort / "cases" / slide_case / "pathology").glob("*.tif")
    with tiffslide.TiffSlide(path) as slide:
        assert slide.level_count > 1
        assert min(slide.dimensions) >= 2048
        assert float(slide.properties[tiffslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.5)


def _mask(root: Path, case_id: str, tp: str = "T0") -> np.ndarray:
    return np.asarray(nib.load(root / "cases" / case_id / "imaging" / tp / "lesion_mask.nii.gz").dataobj)


def test_lesions_follow_situations(demo_cohort):
    situations = _by_situation(demo_cohort)
    for case_id in situations["consistent_high_grade"] + situations["biopsy_from_oedema"]:
        assert {1, 2, 4} <= set(np.unique(_mask(demo_cohort, case_id)))
    for case_id in situations["consistent_low_grade"] + situations["genomics_discordant"]:
        labels = set(np.unique(_mask(demo_cohort, case_id)))
        assert 1 in labels and 4 not in labels and 3 not in labels
    (growth,) = situations["longitudinal_growth"]
    manifest = json.loads((demo_cohort / "cases" / growth / "case.json").read_text())
    t0, t1 = (dt["date"] for dt in manifest["timepoints"])
    assert 80 <= (np.datetime64(t1) - np.datetime64(t0)).astype(int) <= 100
    assert (_mask(demo_cohort, growth, "T1") > 0).sum() > 1.25 * (_mask(demo_cohort, growth, "T0") > 0).sum()


def test_pathology_and_genomics_follow_situations(demo_cohort):
    situations = _by_situation(demo_cohort)
    cases = demo_cohort / "cases"

    def findings(case_id: str) -> PathologyFindings:
        return PathologyFindings.model_validate_json((cases / case_id / "pathology" / "findings.json").read_text())

    def table(case_id: str, name: str) -> pd.DataFrame:
        return pd.read_csv(cases / case_id / "genomics" / name, sep="\t")

    for case_id in situations["consistent_high_grade"]:
        f = findings(case_id)
        assert (f.who_grade, f.necrosis, f.microvascular_proliferation, f.cellularity, f.sampled_region) == (
            4,
            True,
            True,
            "high",
            "enhancing",
        )
        cnv = table(case_id, "cnv.tsv").set_index("gene")["value"]
        assert cnv["EGFR"] == 2 and cnv["CDKN2A"] == -2 and len(cnv) == 30
        assert "IDH1" not in set(table(case_id, "mutations.tsv")["gene"])
    (oedema,) = situations["biopsy_from_oedema"]
    assert (findings(oedema).who_grade, findings(oedema).sampled_region, findings(oedema).necrosis) == (
        2,
        "oedema",
        False,
    )
    subtypes = {c: _truth(demo_cohort)[c]["subtype"] for c in situations["consistent_low_grade"]}
    assert sorted(subtypes.values()) == ["IDHmut-codel", "IDHmut-non-codel"]
    for case_id, subtype in subtypes.items():
        assert findings(case_id).who_grade == 2 and not findings(case_id).necrosis
        genes = set(table(case_id, "mutations.tsv")["gene"])
        partners = {"CIC", "FUBP1"} if subtype == "IDHmut-codel" else {"ATRX", "TP53"}
        assert genes & {"IDH1", "IDH2"} and genes & partners
    (discordant,) = situations["genomics_discordant"]
    assert findings(discordant).who_grade == 2
    assert table(discordant, "cnv.tsv").set_index("gene")["value"]["EGFR"] == 2
    for case_id in situations["consistent_high_grade"] + situations["consistent_low_grade"]:
        meta = json.loads((cases / case_id / "genomics" / "meta.json").read_text())
        assert meta["expression_scale"] == "zscore"


def _digest(path: Path) -> str:
    if path.suffix == ".h5":
        with h5py.File(path) as h5:
            return hashlib.sha256(h5["features"][()].tobytes() + h5["coords"][()].tobytes()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_rebuild_is_identical(demo_cohort, tmp_path):
    cohort.build_demo_cohort(tmp_path, n_cases=16, seed=0, progress=False)
    assert (tmp_path / "ground_truth.json").read_bytes() == (demo_cohort / "ground_truth.json").read_bytes()
    patterns = ("case.json", "genomics/expression.tsv", "pathology/*.h5", "imaging/*/*.nii.gz", "reference_report.json")
    for pattern in patterns:
        first = sorted((demo_cohort / "cases").glob(f"*/{pattern}"))
        assert first, pattern
        for path in first:
            again = tmp_path / path.relative_to(demo_cohort)
            assert _digest(again) == _digest(path), path.relative_to(demo_cohort)


# ---- in-memory training set -------------------------------------------------------------------


def test_dropout_never_drops_everything():
    rng = np.random.default_rng(11)
    draws = [training.drop_parts(rng, ALL) for _ in range(2000)]
    assert all(draws)
    for part in ("imaging", "patches", "findings", "genomics"):
        assert 0.2 < np.mean([part not in d for d in draws]) < 0.3
    assert all(training.drop_parts(rng, ("imaging",)) == {"imaging"} for _ in range(50))


def test_training_cases_match_what_the_loader_reads(demo_cohort):
    """An in-memory case equals the same case written to disk and read back by the pipeline's loader."""
    case_id = _by_situation(demo_cohort)["consistent_high_grade"][0]
    index = sorted(_truth(demo_cohort)).index(case_id)
    situation = cohort.SITUATIONS["consistent_high_grade"]
    variant = next(v for cid, _, v in cohort.plan_cohort(16, 0) if cid == case_id)
    case = cohort.simulate_case(case_id, situation, variant, 0, (cohort.COHORT_STREAM, index + 1))
    bank = training.TileBank(create_encoder("hed_texture"), np.random.default_rng(0), per_pattern=2)
    inputs, patterns = training.to_case_inputs(
        case, {"imaging", "patches", "findings", "genomics"}, bank, "hed_texture"
    )
    folder = demo_cohort / "cases" / case_id
    manifest = CaseManifest.model_validate_json((folder / "case.json").read_text())
    assert inputs.manifest == manifest
    loaded_imaging, problems = load_imaging(folder, manifest)
    assert not problems
    assert imaging_values(inputs.imaging) == pytest.approx(imaging_values(loaded_imaging))
    loaded_genomics, problems = load_genomics(folder)
    assert not problems
    kb = load_knowledge("bundled")
    assert genomics_values(inputs.genomics, GenomicsSpec(), kb) == pytest.approx(
        genomics_values(loaded_genomics, GenomicsSpec(), kb), abs=1e-3
    )
    assert [len(p) for p in patterns] == [len(s.features) for s in inputs.slides]
    assert inputs.findings == PathologyFindings.model_validate_json(
        (folder / "pathology" / "findings.json").read_text()
    )


def test_iter_training_cases(demo_cohort):
    encoder = create_encoder("hed_texture")
    cases = list(training.iter_training_cases(12, seed=0, encoder=encoder, bank_tiles_per_pattern=4))
    assert len(cases) == 12
    demo_expression = {
        (demo_cohort / "cases" / c / "genomics" / "expression.tsv").read_bytes()
        for c in _truth(demo_cohort)
        if (demo_cohort / "cases" / c / "genomics").is_dir()
    }
    for inputs, labels in cases:
        assert inputs.present_modalities() != ["clinical"]
        assert labels.grade in biology.GRADES and labels.subtype in biology.SUBTYPES
        assert labels.survival_months > 0 and isinstance(labels.event, bool)
        assert [len(p) for p in labels.patch_patterns] == [len(s.features) for s in inputs.slides]
        for slide in inputs.slides:
            assert slide.features.shape[1] == encoder.dim and slide.encoder == "hed_texture"
        if inputs.genomics is not None:  # training streams never reuse the demo cohort's draws
            g = inputs.genomics
            text = genomics.genomics_files(g.expression, g.mutations, g.cnv)["expression.tsv"]
            assert text not in demo_expression
