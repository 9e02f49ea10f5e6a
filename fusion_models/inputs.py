"""One case folder, loaded and checked: the inputs of the fusion model and of the evidence chain.

Only a bad `case.json` is fatal. Every other broken file becomes an `UnusableModality`
whose reason names file and field, and that part of the case is left out. The
per-modality records live beside their loaders and are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pydantic

from fusion_models.encoders.registry import PatchEncoder
from fusion_models.gates import InputNeeds, apply_gates
from fusion_models.genomics.io import GenomicsInput, load_genomics
from fusion_models.imaging.io import ImagingTimepoint, load_imaging, to_isotropic
from fusion_models.pathology.h5 import SlideFeatures, read_patch_features, relative_name
from fusion_models.pathology.slides import SLIDE_SUFFIXES, tile_slide
from schemas.case import CaseManifest, PathologyFindings
from schemas.common import MODALITIES, Modality
from schemas.errors import InputError
from schemas.fusion import ModalityOOD
from schemas.report import UnusableModality
from toolkit.case_files import CaseFolder

MANIFEST_FILE = "case.json"
PATHOLOGY_DIR = "pathology"
FINDINGS_FILE = "findings.json"
FEATURES_SUFFIX = ".h5"

__all__ = [
    "CaseInputs",
    "GenomicsInput",
    "ImagingTimepoint",
    "SlideFeatures",
    "load_case_inputs",
    "load_findings",
    "load_manifest",
    "load_pathology",
]


@dataclass
class CaseInputs:
    """Everything usable in one case folder, plus what could not be used and why."""

    case_dir: Path
    manifest: CaseManifest
    imaging: list[ImagingTimepoint]  # oldest first, as manifest.timepoints orders them
    slides: list[SlideFeatures]
    findings: PathologyFindings | None
    genomics: GenomicsInput | None
    unusable: list[UnusableModality] = field(default_factory=list)
    files_read: list[str] = field(default_factory=list)
    # Input gates: implausible-but-usable inputs, and conversions applied (both end up in the report).
    ood: list[ModalityOOD] = field(default_factory=list)
    conversions: list[str] = field(default_factory=list)

    def present_modalities(self) -> list[Modality]:
        """Modalities with usable input, in MODALITIES order."""
        present = {
            "imaging": bool(self.imaging),
            "pathology": bool(self.slides) or self.findings is not None,
            "genomics": self.genomics is not None,
            "clinical": self.manifest.age_band is not None or self.manifest.sex is not None,
        }
        return [m for m in MODALITIES if present[m]]

    def missing_modalities(self) -> list[Modality]:
        """Modalities with no input at all; those whose files exist but are unusable are not missing."""
        present = set(self.present_modalities())
        unusable = {u.modality for u in self.unusable}
        return [m for m in MODALITIES if m not in present and m not in unusable]


def _validation_error(file: str, exc: pydantic.ValidationError) -> InputError:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(root)"
    return InputError(file, where, first["msg"])


def load_manifest(case_dir: Path) -> CaseManifest:
    """`case.json` validated against CaseManifest; any problem is an InputError naming the field."""
    data = CaseFolder(case_dir).read_json(MANIFEST_FILE, "manifest")
    try:
        return CaseManifest.model_validate(data)
    except pydantic.ValidationError as exc:
        raise _validation_error(MANIFEST_FILE, exc) from None


def load_findings(case_dir: Path) -> PathologyFindings | None:
    """`pathology/findings.json`, or None when the case has none."""
    rel = f"{PATHOLOGY_DIR}/{FINDINGS_FILE}"
    folder = CaseFolder(case_dir)
    if not folder.exists(rel):
        return None
    try:
        return PathologyFindings.model_validate(folder.read_json(rel))
    except pydantic.ValidationError as exc:
        raise _validation_error(rel, exc) from None


def _embed_slide(path: Path, case_dir: Path, encoder: PatchEncoder, patch_size: int, max_patches: int) -> SlideFeatures:
    tiles, coords, magnification = tile_slide(path, patch_size=patch_size, max_tiles=max_patches, case_dir=case_dir)
    rel = relative_name(path, case_dir)
    if len(tiles) == 0:
        raise InputError(rel, "slide", f"no {patch_size}-px tile with enough tissue to embed")
    return SlideFeatures(path.stem, encoder.embed(tiles), coords, patch_size, magnification, encoder.name, rel)


def load_pathology(
    case_dir: Path, *, encoder: PatchEncoder, patch_size: int = 256, max_patches: int = 512
) -> tuple[list[SlideFeatures], PathologyFindings | None, list[UnusableModality]]:
    """Patch features per slide (an .h5 wins over re-embedding the slide of the same stem) and findings.

    When a feature file is unusable (e.g. computed with another encoder) and its slide
    is present, the slide is embedded instead; the feature file is still reported.
    """
    case_dir = Path(case_dir)
    unusable: list[UnusableModality] = []

    def record(exc: InputError) -> None:
        unusable.append(UnusableModality(modality="pathology", reason=str(exc), file=exc.file))

    folder = CaseFolder(case_dir)
    try:
        names = folder.list_dir(PATHOLOGY_DIR) if folder.is_dir(PATHOLOGY_DIR) else []
    except InputError as exc:
        record(exc)
        names = []
    # Not filtered by is_file: a FIFO or a link out named like a slide is reported, not skipped.
    files = [case_dir / PATHOLOGY_DIR / name for name in names if name != FINDINGS_FILE]
    features = {p.stem: p for p in files if p.suffix.lower() == FEATURES_SUFFIX}
    slides: dict[str, Path] = {}
    for p in files:
        if p.suffix.lower() in SLIDE_SUFFIXES:
            slides.setdefault(p.stem, p)
    loaded: list[SlideFeatures] = []
    for stem in sorted(features.keys() | slides.keys()):
        if stem in features:
            try:
                loaded.append(read_patch_features(features[stem], case_dir, encoder.dim, expected_encoder=encoder.name))
                continue
            except InputError as exc:
                record(exc)
        if stem in slides:
            try:
                loaded.append(_embed_slide(slides[stem], case_dir, encoder, patch_size, max_patches))
            except InputError as exc:
                record(exc)
    findings = None
    try:
        findings = load_findings(case_dir)
    except InputError as exc:
        record(exc)
    return loaded, findings, unusable


def bundle_modalities(case_dir: Path) -> set[Modality]:
    """Imaging, pathology and genomics that a case folder has files for, without reading them.

    A cheap look before a batch: whether the files are usable is for `load_case_inputs` to say.
    Clinical fields live in case.json and are not looked at here.
    """
    return {
        modality for modality in ("imaging", PATHOLOGY_DIR, "genomics")
        if (Path(case_dir) / modality).is_dir() and any(p.is_file() for p in (Path(case_dir) / modality).rglob("*"))
    }


def load_case_inputs(
    case_dir: Path,
    *,
    encoder: PatchEncoder,
    patch_size: int = 256,
    max_patches: int = 512,
    known_genes: set[str] | None = None,
    needs: InputNeeds = InputNeeds(),
) -> CaseInputs:
    """Load every modality of a case and pass it through the input gates checked against `needs`.

    Imaging time points come back on an isotropic grid (imaging.io.to_isotropic), so habitats, margin
    bands and features are measured alike in every direction. Only a bad case.json, or a cancer type
    the model was not trained for, raises (InputError).
    """
    case_dir = Path(case_dir)
    manifest = load_manifest(case_dir)
    imaging, imaging_unusable = load_imaging(case_dir, manifest)
    slides, findings, pathology_unusable = load_pathology(
        case_dir, encoder=encoder, patch_size=patch_size, max_patches=max_patches
    )
    genomics, genomics_unusable = load_genomics(case_dir, known_genes=known_genes)
    inputs = apply_gates(
        CaseInputs(
            case_dir=case_dir,
            manifest=manifest,
            imaging=imaging,
            slides=slides,
            findings=findings,
            genomics=genomics,
            unusable=imaging_unusable + pathology_unusable + genomics_unusable,
        ),
        needs,
    )
    # Resampled after the gates: an implausible voxel size must be refused, not interpolated onto a huge grid.
    inputs = replace(inputs, imaging=[to_isotropic(t) for t in inputs.imaging])
    files_read = [MANIFEST_FILE]
    files_read += [f for t in inputs.imaging for f in t.files.values()]
    files_read += [s.file for s in inputs.slides]
    files_read += [f"{PATHOLOGY_DIR}/{FINDINGS_FILE}"] if inputs.findings is not None else []
    files_read += list(inputs.genomics.files.values()) if inputs.genomics is not None else []
    return replace(inputs, files_read=files_read)
