"""The deterministic demo cohort: situations a tumour board meets, simulated and written as case bundles.

`build_demo_cohort(out)` writes `out/cases/<case_id>/` (DESIGN.md case bundle) and
`out/ground_truth.json` beside `cases/`, never inside a case folder. Each case draws
from its own random stream (seed, case index, part), so a case's files depend only on
the seed and its index.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from demo import genomics, imaging, reference, tissue
from demo.situations import MIN_CASES, REQUIRED, SITUATIONS, Situation
from demo.biology import TumourBiology
from fusion_models.encoders import PatchEncoder, create_encoder
from fusion_models.pathology.h5 import write_patch_features
from fusion_models.pathology.slides import write_pyramidal_tiff
from schemas.case import CaseManifest, PathologyFindings, TimepointSpec
from toolkit.atomic import atomic_write_bytes

COHORT_STREAM = 1  # random-stream tags: the training set uses another, so the two never overlap
PARTS = ("biology", "manifest", "imaging", "pathology", "tiles", "genomics")
PATCHES_PER_SLIDE = (48, 72)
SLIDE_PATCHES = (48, 64)
PATCH_SIZE = tissue.TILE_SIDE
MAGNIFICATION = 20.0
SLIDE_MPP = 0.5
GROWTH_SCALE = (1.12, 1.2)  # radius factor between scans: +40..70 % volume
SCAN_INTERVAL_DAYS = 91
FIRST_SCAN = dt.date(2024, 1, 1)
ENCODER = "hed_texture"
DEMO_ID_FORMAT = "DEMO-{:03d}"
DEMO_ID = re.compile(r"DEMO-\d{3}")
PRESENTATIONS = (
    "new-onset focal seizure",
    "progressive headache over several weeks",
    "word-finding difficulty",
    "mild left-sided weakness",
    "personality change noticed by family",
)


# ---- simulation (in memory) -------------------------------------------------------------------


def stream(seed: int, *key: int) -> np.random.Generator:
    """Independent generator for one (seed, key) pair; never shares state with another key."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclass(frozen=True)
class SimulatedTimepoint:
    name: str
    date: dt.date
    mask: np.ndarray
    sequences: dict[str, np.ndarray]


@dataclass(frozen=True)
class Specimen:
    """The tissue block: its patch grid (pattern codes, level-0 corners) and the pathologist's read."""

    slide_id: str
    codes: np.ndarray
    coords: np.ndarray
    findings: PathologyFindings


@dataclass(frozen=True)
class SimulatedGenomics:
    expression: pd.Series
    mutations: pd.DataFrame
    cnv: pd.Series


@dataclass(frozen=True)
class SimulatedCase:
    case_id: str
    situation: Situation
    bio: TumourBiology
    manifest: CaseManifest
    timepoints: list[SimulatedTimepoint]
    specimen: Specimen | None
    genomics: SimulatedGenomics | None
    tiles_seed: np.random.SeedSequence  # the specimen's tile images: same seed, same tiles, every time

    def tiles_rng(self) -> np.random.Generator:
        return np.random.default_rng(self.tiles_seed)

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.situation.modalities


def _age_band(age: float) -> str:
    decade = int(age // 10 * 10)
    return "90+" if decade >= 90 else f"{decade}-{decade + 9}"


def _manifest(rng: np.random.Generator, case_id: str, bio: TumourBiology, situation: Situation) -> CaseManifest:
    notes = f"Adult patient presenting with {PRESENTATIONS[rng.integers(len(PRESENTATIONS))]}."
    if situation.timepoints > 1:
        notes += " Follow-up MRI about three months after the first scan."
    first = FIRST_SCAN + dt.timedelta(days=int(rng.integers(0, 365)))
    timepoints = (
        [
            TimepointSpec(name=f"T{i}", date=first + dt.timedelta(days=SCAN_INTERVAL_DAYS * i))
            for i in range(situation.timepoints)
        ]
        if "imaging" in situation.modalities
        else []
    )
    return CaseManifest(
        case_id=case_id,
        cancer_type="glioma",
        age_band=_age_band(bio.age_years),
        sex=bio.sex,  # type: ignore[arg-type]
        clinical_notes=notes,
        timepoints=timepoints,
    )


def _timepoints(rng: np.random.Generator, bio: TumourBiology, manifest: CaseManifest) -> list[SimulatedTimepoint]:
    template = imaging.load_template()
    growth = rng.uniform(*GROWTH_SCALE)
    specs = [t for t in manifest.timepoints if isinstance(t, TimepointSpec)]
    spec = imaging.lesion_spec(rng, bio, template, max_scale=growth ** (len(specs) - 1))
    out = []
    for i, tp in enumerate(specs):
        mask = imaging.lesion_mask(spec, template, scale=growth**i)
        sequences = imaging.synthesize_sequences(rng, mask, template)
        out.append(SimulatedTimepoint(tp.name, tp.date, mask, sequences))  # type: ignore[arg-type]
    return out


def _specimen(rng: np.random.Generator, case_id: str, bio: TumourBiology, whole_slide: bool) -> Specimen:
    mix = tissue.pattern_mix(rng, bio.histology_grade, bio.sampled_region)
    n = int(rng.integers(*(SLIDE_PATCHES if whole_slide else PATCHES_PER_SLIDE), endpoint=True))
    codes = tissue.draw_patterns(rng, mix, n)
    findings = tissue.pathology_findings(rng, bio.histology_grade, bio.sampled_region, codes)
    return Specimen(f"{case_id}-HE1", codes, tissue.patch_coords(rng, codes), findings)


def _genomics(rng: np.random.Generator, bio: TumourBiology) -> SimulatedGenomics:
    return SimulatedGenomics(
        genomics.expression_profile(rng, bio, genomics.gene_panel()),
        genomics.mutation_calls(rng, bio),
        genomics.copy_number(rng, bio),
    )


def simulate_case(
    case_id: str, situation: Situation, variant: int | None, seed: int, key: tuple[int, ...]
) -> SimulatedCase:
    """Every observation of one case, in memory; `key` selects its random streams."""
    seeds = {part: np.random.SeedSequence(seed, spawn_key=(*key, i)) for i, part in enumerate(PARTS)}
    rngs = {part: np.random.default_rng(s) for part, s in seeds.items()}
    bio = situation.biology(rngs["biology"], variant)
    manifest = _manifest(rngs["manifest"], case_id, bio, situation)
    return SimulatedCase(
        case_id=case_id,
        situation=situation,
        bio=bio,
        manifest=manifest,
        timepoints=_timepoints(rngs["imaging"], bio, manifest) if "imaging" in situation.modalities else [],
        specimen=_specimen(rngs["pathology"], case_id, bio, situation.whole_slide)
        if "pathology" in situation.modalities
        else None,
        genomics=_genomics(rngs["genomics"], bio) if "genomics" in situation.modalities else None,
        tiles_seed=seeds["tiles"],
    )


# ---- the cohort on disk -----------------------------------------------------------------------


def plan_cohort(n_cases: int, seed: int) -> list[tuple[str, str, int]]:
    """(case_id, situation, variant) per case: the required situations, typical cases, shuffled."""
    if n_cases < MIN_CASES:
        raise ValueError(f"n_cases must be at least {MIN_CASES} to hold every situation, got {n_cases}")
    names = [name for name, count in REQUIRED.items() for _ in range(count)]
    names += ["typical"] * (n_cases - len(names))
    variants = [names[:i].count(name) for i, name in enumerate(names)]
    order = stream(seed, COHORT_STREAM).permutation(n_cases)
    return [(DEMO_ID_FORMAT.format(i + 1), names[j], variants[j]) for i, j in enumerate(order)]


def _json_bytes(data: object) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()


def case_files(case: SimulatedCase) -> dict[str, bytes]:
    """Relative path -> bytes of every file but the slide image (written by its own writer)."""
    files = {"case.json": _json_bytes(case.manifest.model_dump(mode="json", exclude_none=True))}
    affine = imaging.load_template().affine
    for tp in case.timepoints:
        for name, data in imaging.timepoint_files(tp.sequences, tp.mask, affine).items():
            files[f"imaging/{tp.name}/{name}"] = data
    if case.specimen is not None:
        files["pathology/findings.json"] = _json_bytes(
            case.specimen.findings.model_dump(mode="json", exclude_none=True)
        )
    if case.genomics is not None:
        g = case.genomics
        for name, data in genomics.genomics_files(g.expression, g.mutations, g.cnv).items():
            files[f"genomics/{name}"] = data
    report = reference.reference_report(case.case_id, case.bio, case.modalities, len(case.timepoints))
    files["reference_report.json"] = _json_bytes(report.model_dump(mode="json"))
    return files


def _write_specimen(folder: Path, case: SimulatedCase, specimen: Specimen, encoder: PatchEncoder) -> None:
    """The slide image (whole-slide situation) or the patch features of the specimen's tiles."""
    tiles = tissue.make_tiles(case.tiles_rng(), specimen.codes)
    if case.situation.whole_slide:
        side = int(specimen.coords.max()) + 2 * PATCH_SIZE
        write_pyramidal_tiff(
            folder / f"{specimen.slide_id}.tif", tissue.slide_mosaic(tiles, specimen.coords, side), mpp=SLIDE_MPP
        )
        return
    write_patch_features(
        folder / f"{specimen.slide_id}.h5",
        specimen.slide_id,
        encoder.embed(tiles),
        specimen.coords,
        encoder=ENCODER,
        patch_size=PATCH_SIZE,
        magnification=MAGNIFICATION,
    )


def write_case(cases_dir: Path, case: SimulatedCase, encoder: PatchEncoder) -> Path:
    """Write one case folder; it replaces any previous folder of that case in one rename."""
    final = cases_dir / case.case_id
    staging = Path(tempfile.mkdtemp(dir=cases_dir, prefix=f".{case.case_id}.", suffix=".tmp"))
    try:
        for rel, data in case_files(case).items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if case.specimen is not None:
            _write_specimen(staging / "pathology", case, case.specimen, encoder)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def remove_stale_cases(cases_dir: Path, keep: set[str]) -> list[str]:
    """Delete demo case folders (DEMO-###) a previous, larger build left behind; others are not touched."""
    stale = [p for p in cases_dir.iterdir() if p.is_dir() and DEMO_ID.fullmatch(p.name) and p.name not in keep]
    for folder in stale:
        shutil.rmtree(folder)
    return sorted(p.name for p in stale)


def ground_truth_entry(case: SimulatedCase) -> dict[str, object]:
    bio = case.bio
    return {
        "diagnosis": reference.diagnosis(bio),
        "grade": bio.grade,
        "subtype": bio.subtype,
        "situation": case.situation.name,
        "survival_months": bio.survival_months,
        "event": bio.event,
        "expected": reference.expected_block(bio, case.modalities, case.situation.notes),
    }


def build_demo_cohort(out_dir: Path, *, n_cases: int = 16, seed: int = 0, progress: bool = True) -> list[str]:
    """Write the demo cohort to `out_dir/cases/` and its truth to `out_dir/ground_truth.json`; returns case ids."""
    plan = plan_cohort(n_cases, seed)
    cases_dir = Path(out_dir) / "cases"
    cases_dir.mkdir(parents=True, exist_ok=True)
    encoder = create_encoder(ENCODER)
    truth: dict[str, object] = {}
    remove_stale_cases(cases_dir, {case_id for case_id, _, _ in plan})
    for index, (case_id, situation, variant) in enumerate(
        tqdm(plan, desc="demo cohort", unit="case", disable=not progress)
    ):
        case = simulate_case(case_id, SITUATIONS[situation], variant, seed, (COHORT_STREAM, index + 1))
        write_case(cases_dir, case, encoder)
        truth[case_id] = ground_truth_entry(case)
    atomic_write_bytes(Path(out_dir) / "ground_truth.json", _json_bytes({"seed": seed, "cases": truth}))
    return [case_id for case_id, _, _ in plan]
