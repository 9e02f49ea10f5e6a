"""In-memory training set: demo cases from the cohort's own generators, with modality dropout.

Nothing is written to disk. Random streams are tagged apart from the demo cohort's, so
no training case shares a draw with a demo case, whatever the two seeds are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from demo import genomics, imaging, tissue
from demo.cohort import MAGNIFICATION, PATCH_SIZE, SimulatedCase, simulate_case, stream
from demo.situations import SITUATIONS
from fusion_models.encoders import PatchEncoder
from fusion_models.inputs import CaseInputs, GenomicsInput, ImagingTimepoint, SlideFeatures
from fusion_models.registry import TrainingData

TRAINING_STREAM, DROPOUT_STREAM, BANK_STREAM, PLAN_STREAM = 2, 3, 4, 5
# Situation frequencies of the training set; the slide situation differs only on disk.
SITUATION_MIX: dict[str, float] = {
    "typical": 0.55,
    "consistent_high_grade": 0.1,
    "consistent_low_grade": 0.1,
    "biopsy_from_oedema": 0.07,
    "genomics_discordant": 0.07,
    "longitudinal_growth": 0.05,
    "missing_pathology": 0.03,
    "imaging_only": 0.03,
}
DROPOUT = 0.25  # each of imaging, patches, findings, genomics is missing this often
# 256 rather than 96: the OOD detector's patch statistics come from these tiles, and with few of them
# the fresh tiles of a real (demo-cohort) slide read as a shift (pathology false alarms 0.08 -> 0.03).
BANK_TILES_PER_PATTERN = 256
IN_MEMORY = Path("<in-memory>")


@dataclass
class CaseLabels:
    """Training targets of one case: the hidden truth and the pattern code of every patch."""

    grade: str
    subtype: str
    survival_months: float
    event: bool
    patch_patterns: list[np.ndarray]  # per slide, int codes into TISSUE_PATTERNS


class TileBank:
    """Embedded demo tiles per pattern; a case's patches are drawn from it with replacement.

    Embedding fresh tiles for every patch of every case would take minutes, so each
    pattern's tiles are generated and embedded once per training set.
    """

    def __init__(self, encoder: PatchEncoder, rng: np.random.Generator, per_pattern: int = BANK_TILES_PER_PATTERN):
        self.features = [
            encoder.embed(tissue.make_tiles(rng, np.full(per_pattern, code)))
            for code in range(len(tissue.TISSUE_PATTERNS))
        ]

    def draw(self, rng: np.random.Generator, codes: np.ndarray) -> np.ndarray:
        """One banked feature row per pattern code."""
        rows = [self.features[c][rng.integers(len(self.features[c]))] for c in codes]
        return np.stack(rows).astype(np.float32)


# Dropout acts on these parts; pathology has two that go missing independently.
MODALITY_PARTS: dict[str, tuple[str, ...]] = {
    "imaging": ("imaging",),
    "pathology": ("patches", "findings"),
    "genomics": ("genomics",),
}


def drop_parts(rng: np.random.Generator, modalities: tuple[str, ...]) -> set[str]:
    """Parts of the given modalities to keep: each dropped with probability DROPOUT, never all."""
    parts = [p for m in modalities for p in MODALITY_PARTS[m]]
    kept = {p for p in parts if rng.random() >= DROPOUT}
    return kept or {parts[int(rng.integers(len(parts)))]}


def _imaging_inputs(case: SimulatedCase) -> list[ImagingTimepoint]:
    affine = imaging.load_template().affine
    out = []
    for tp in case.timepoints:
        folder = f"imaging/{tp.name}"
        files = {"mask": f"{folder}/lesion_mask.nii.gz", **{s: f"{folder}/{s}.nii.gz" for s in tp.sequences}}
        sequences = {s: v.astype(np.float32) for s, v in tp.sequences.items()}
        out.append(ImagingTimepoint(tp.name, tp.date, tp.mask.astype(np.int16), affine, sequences, files))
    return out


def _genomics_input(case: SimulatedCase) -> GenomicsInput | None:
    if case.genomics is None:
        return None
    g = case.genomics
    files = {role: f"genomics/{name}" for role, name in genomics.FILE_NAMES.items()}
    return GenomicsInput(g.expression, "zscore", g.mutations, g.cnv.astype(float), files)


def to_case_inputs(
    case: SimulatedCase, kept: set[str], bank: TileBank, encoder_name: str
) -> tuple[CaseInputs, list[np.ndarray]]:
    """The CaseInputs a loader would build from the written case, and the patch pattern codes."""
    slides, patterns = [], []
    specimen = case.specimen
    if specimen is not None and "patches" in kept:
        features = bank.draw(case.tiles_rng(), specimen.codes)
        file = f"pathology/{specimen.slide_id}.h5"
        slides.append(
            SlideFeatures(specimen.slide_id, features, specimen.coords, PATCH_SIZE, MAGNIFICATION, encoder_name, file)
        )
        patterns.append(specimen.codes)
    findings = specimen.findings if specimen is not None and "findings" in kept else None
    imaging_inputs = _imaging_inputs(case)
    genomics_input = _genomics_input(case)
    files = ["case.json", *(f for t in imaging_inputs for f in t.files.values()), *(s.file for s in slides)]
    files += ["pathology/findings.json"] if findings is not None else []
    files += list(genomics_input.files.values()) if genomics_input is not None else []
    inputs = CaseInputs(
        IN_MEMORY / case.case_id, case.manifest, imaging_inputs, slides, findings, genomics_input, [], files
    )
    return inputs, patterns


def iter_training_cases(
    n: int, *, seed: int, encoder: PatchEncoder, bank_tiles_per_pattern: int = BANK_TILES_PER_PATTERN
) -> Iterator[tuple[CaseInputs, CaseLabels]]:
    """`n` simulated cases with the demo cohort's situations and random modality dropout."""
    bank = TileBank(encoder, stream(seed, BANK_STREAM), bank_tiles_per_pattern)
    names = list(SITUATION_MIX)
    weights = np.array([SITUATION_MIX[s] for s in names])
    chosen = stream(seed, PLAN_STREAM).choice(len(names), size=n, p=weights / weights.sum())
    for i, pick in enumerate(chosen):
        situation = SITUATIONS[names[pick]]
        kept = drop_parts(stream(seed, DROPOUT_STREAM, i), situation.modalities)
        modalities = tuple(m for m in situation.modalities if kept.intersection(MODALITY_PARTS[m]))
        case = simulate_case(
            f"TRAIN-{i + 1:04d}", replace(situation, modalities=modalities), None, seed, (TRAINING_STREAM, i)
        )
        inputs, patterns = to_case_inputs(case, kept, bank, encoder.name)
        bio = case.bio
        yield inputs, CaseLabels(bio.grade, bio.subtype, bio.survival_months, bio.event, patterns)


def demo_training_data(n_cases: int = 300, seed: int = 0) -> TrainingData:
    """The in-memory demo cohort as training data (patches embedded with hed_texture)."""
    from fusion_models.encoders import create_encoder

    return TrainingData(
        description=(
            f"{n_cases} simulated demo glioma cases (seed {seed}): MRI on the MNI152 template, H&E-like tiles "
            "from scikit-image's real IHC image, genomics and survival from TCGA pan-glioma frequencies; "
            "random modality dropout."
        ),
        cases=iter_training_cases(n_cases, seed=seed, encoder=create_encoder("hed_texture")),
    )


def demo_training(
    out: Path, n_cases: int = 300, epochs: int = 60, seed: int = 0, progress: bool = True, model: str = "glioma_demo"
):
    """Train the registered model `model` (default the demo fusion model) on the in-memory demo cohort."""
    from fusion_models.registry import model_family

    data = demo_training_data(n_cases, seed)
    return model_family(model).train(out, data, epochs=epochs, seed=seed, progress=progress)
