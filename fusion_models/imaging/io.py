"""Imaging inputs of a case bundle: NIfTI sequences and the lesion label map per time point (nibabel)."""

from __future__ import annotations

import datetime as dt
import gzip
import zlib
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError

from fusion_models.imaging.clustering import Clusters, cluster_habitats, cluster_stats
from fusion_models.imaging.grid import MIN_ISOTROPIC_MM, isotropic_target_mm, normalise_intensity, resample_to_spacing
from fusion_models.imaging.habitats import (
    LESION_LABELS,
    HabitatStat,
    habitat_masks,
    habitat_stats,
    region_stats,
    voxel_spacing_mm,
)
from schemas.case import CaseManifest
from schemas.common import HabitatMethod
from schemas.errors import InputError
from schemas.report import UnusableModality
from toolkit.case_files import CaseFolder, checked_file

IMAGING_DIR = "imaging"
MASK_FILE = "lesion_mask.nii.gz"
# A binary whole-tumour mask (0 / 1): read only where a time point has no label map; its habitats are clustered.
WHOLE_TUMOUR_FILE = "whole_tumour_mask.nii.gz"
NIFTI_SUFFIXES = (".nii.gz", ".nii")
ALLOWED_LABELS = (0, *LESION_LABELS)
# Sequences on the mask's grid may differ in the affine by header rounding, not by a voxel.
AFFINE_TOLERANCE_MM = 1e-3
MNI152_XFORM_CODE = 4  # NIfTI sform/qform code for MNI152 template space
_NIFTI_ERRORS = (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile, ImageFileError)


@dataclass
class ImagingTimepoint:
    """One imaging time point on one voxel grid. `mask` is None when the folder has no usable label map."""

    name: str
    date: dt.date | None
    mask: np.ndarray | None  # int16 label map, BraTS labels (1 necrotic/non-enhancing core, 2 oedema, 3 or 4 enhancing)
    affine: np.ndarray  # 4x4 voxel->mm (RAS) from the NIfTI
    sequences: dict[str, np.ndarray]  # e.g. {"t1c": float32 array, "flair": ...}, same grid as mask
    files: dict[str, str]  # role ("mask", "whole_tumour", "t1c", ...) -> path relative to the case folder
    mni152: bool = False  # the mask's header says MNI152 space, so atlas coordinates apply
    whole_tumour: np.ndarray | None = None  # bool lesion mask, only where there is no label map
    native_spacing_mm: tuple[float, float, float] | None = None  # voxel edges before isotropic resampling, if any

    @property
    def lesion(self) -> np.ndarray | None:
        """The whole lesion: every labelled voxel of the label map, else the whole-tumour mask."""
        return self.mask > 0 if self.mask is not None else self.whole_tumour

    @property
    def habitat_method(self) -> HabitatMethod | None:
        if self.mask is not None:
            return "brats_labels"
        return "kmeans_intensity" if self.whole_tumour is not None else None

    @property
    def lesion_file(self) -> str | None:
        return self.files.get("mask") or self.files.get("whole_tumour")

    @cached_property
    def normalised(self) -> dict[str, np.ndarray]:
        """Each sequence z-scored inside its non-zero (skull-stripped brain) voxels after percentile clipping."""
        return {role: normalise_intensity(volume) for role, volume in self.sequences.items()}

    @cached_property
    def clusters(self) -> Clusters | None:
        """Intensity habitats of a whole-tumour mask; None with a label map, or when fewer than 2 clusters fit."""
        if self.habitat_method != "kmeans_intensity":
            return None
        return cluster_habitats(self.normalised, self.whole_tumour)

    @property
    def brain(self) -> np.ndarray | None:
        """Voxels with signal in any sequence: skull-stripped scans are 0 outside the brain."""
        if not self.sequences:
            return None
        return np.logical_or.reduce([volume != 0 for volume in self.sequences.values()])

    def regions(self) -> dict[str, np.ndarray]:
        """The lesion, then each habitat present, as boolean masks keyed by phenotype (the order of `habitats`)."""
        if self.mask is not None:
            masks = habitat_masks(self.mask)
        elif self.whole_tumour is not None:
            masks = {"lesion": self.whole_tumour}
            if self.clusters is not None:
                masks |= {name: self.clusters.labels == rank for name, (rank,) in self.clusters.units()}
        else:
            return {}
        return {stat.phenotype: masks[stat.phenotype] for stat in self.habitats if stat.voxels}

    @cached_property
    def habitats(self) -> list[HabitatStat]:
        """The lesion, then its habitats (BraTS labels, else k-means clusters): computed once, read by all."""
        if self.mask is not None:
            return habitat_stats(self.mask, self.affine)
        if self.whole_tumour is None:
            return []
        if self.clusters is None:
            return region_stats(self.whole_tumour.astype(np.int16), (), self.affine)
        return cluster_stats(self.clusters, self.affine)


def to_isotropic(timepoint: ImagingTimepoint, floor_mm: float = MIN_ISOTROPIC_MM) -> ImagingTimepoint:
    """The time point on an isotropic grid (linear for sequences, nearest for masks); isotropic grids as they are.

    Habitat volumes, distance bands and radiomic texture then mean the same in every direction.
    """
    spacing = isotropic_target_mm(timepoint.affine, floor_mm)
    if spacing is None:
        return timepoint
    affine = timepoint.affine
    sequences = {}
    for role, volume in timepoint.sequences.items():
        sequences[role], affine = resample_to_spacing(volume, timepoint.affine, spacing, label=False)
    masks = {}
    for key, volume in (("mask", timepoint.mask), ("whole_tumour", timepoint.whole_tumour)):
        if volume is not None:
            masks[key], affine = resample_to_spacing(volume.astype(np.int16), timepoint.affine, spacing, label=True)
    return replace(
        timepoint,
        affine=affine,
        sequences=sequences,
        mask=masks.get("mask"),
        whole_tumour=masks["whole_tumour"] > 0 if "whole_tumour" in masks else None,
        native_spacing_mm=tuple(float(e) for e in voxel_spacing_mm(timepoint.affine)),
    )


def load_nifti(path: Path, case_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """3-D array (scaling applied) and 4x4 affine; unreadable or non-3-D files raise InputError."""
    real, rel = checked_file(path, case_dir, "nifti")
    try:
        image = nib.load(real)
        data = np.asanyarray(image.dataobj)
    except _NIFTI_ERRORS as exc:
        raise InputError(rel, "nifti", f"cannot read NIfTI: {exc}") from None
    # A trailing singleton axis (x, y, z, 1) is a common way to store a single volume.
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(rel, "shape", f"expected a 3-D volume, got shape {data.shape}")
    affine = np.asarray(image.affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputError(rel, "affine", "voxel-to-mm matrix is singular or not finite")
    return data, affine


def in_mni152(path: Path) -> bool:
    """The NIfTI header's sform or qform code says MNI152 template space."""
    header = nib.load(path).header
    return MNI152_XFORM_CODE in (int(header.get("sform_code", 0)), int(header.get("qform_code", 0)))


def check_labels(data: np.ndarray, rel: str) -> np.ndarray:
    """BraTS label map as int16; non-integer or unknown labels raise InputError(rel, 'labels')."""
    if not np.issubdtype(data.dtype, np.integer):
        fractional = ~np.isfinite(data) | (data != np.round(data))
        if fractional.any():
            raise InputError(rel, "labels", f"label map holds non-integer values, e.g. {data[fractional][0]!r}")
    labels = data.astype(np.int64)
    outside = (labels < 0) | (labels > max(LESION_LABELS))
    if outside.any():
        found = np.unique(labels[outside])[:5].tolist()
        raise InputError(rel, "labels", f"labels must be BraTS labels {list(ALLOWED_LABELS)}; found {found}")
    return labels.astype(np.int16)


def check_binary(data: np.ndarray, rel: str) -> np.ndarray:
    """A whole-tumour mask as bool; anything but 0 and 1 raises InputError(rel, 'labels')."""
    values = np.unique(data)
    if not np.isin(values, (0, 1)).all():
        found = values[~np.isin(values, (0, 1))][:5].tolist()
        raise InputError(rel, "labels", f"a whole-tumour mask holds only 0 and 1; found {found}")
    return np.asarray(data) == 1


def nifti_role(path: Path) -> str | None:
    """'t1c' for t1c.nii.gz; None for files that are not NIfTI."""
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def _unusable(exc: InputError) -> UnusableModality:
    return UnusableModality(modality="imaging", reason=str(exc), file=exc.file)


def load_timepoint(
    folder: Path, case_dir: Path, date: dt.date | None
) -> tuple[ImagingTimepoint | None, list[UnusableModality]]:
    """Mask and sequences of one time-point folder; each broken file is reported and left out."""
    unusable: list[UnusableModality] = []
    files: dict[str, str] = {}
    mask: np.ndarray | None = None
    mni152 = False
    grid: tuple[tuple[int, ...], np.ndarray] | None = None  # shape and affine every file must share
    files_of = CaseFolder(case_dir)
    mask_rel = (folder / MASK_FILE).relative_to(case_dir).as_posix()
    try:
        names = files_of.list_dir(folder.relative_to(case_dir).as_posix())
    except InputError as exc:
        return None, [_unusable(exc)]
    whole_tumour: np.ndarray | None = None
    if MASK_FILE in names:
        try:
            data, affine = load_nifti(folder / MASK_FILE, case_dir)
            mask = check_labels(data, mask_rel)
            mni152 = in_mni152(folder / MASK_FILE)
            grid, files["mask"] = (mask.shape, affine), mask_rel
        except InputError as exc:
            unusable.append(_unusable(exc))
    elif WHOLE_TUMOUR_FILE in names:
        rel = (folder / WHOLE_TUMOUR_FILE).relative_to(case_dir).as_posix()
        try:
            data, affine = load_nifti(folder / WHOLE_TUMOUR_FILE, case_dir)
            whole_tumour = check_binary(data, rel)
            mni152 = in_mni152(folder / WHOLE_TUMOUR_FILE)
            grid, files["whole_tumour"] = (whole_tumour.shape, affine), rel
        except InputError as exc:
            unusable.append(_unusable(exc))
    else:
        unusable.append(_unusable(InputError(mask_rel, "file", "no lesion mask; habitat evidence needs one")))
    sequences: dict[str, np.ndarray] = {}
    # Not filtered by is_file: a FIFO or a link out named like a sequence is reported, not skipped.
    for path in (folder / name for name in names if name not in (MASK_FILE, WHOLE_TUMOUR_FILE)):
        role = nifti_role(path)
        if role is None:
            continue
        rel = path.relative_to(case_dir).as_posix()
        try:
            data, affine = load_nifti(path, case_dir)
            if grid is not None:
                check_grid(rel, data.shape, affine, *grid)
        except InputError as exc:
            unusable.append(_unusable(exc))
            continue
        grid = grid or (data.shape, affine)
        sequences[role], files[role] = data.astype(np.float32, copy=False), rel
    if grid is None:
        return None, unusable
    return ImagingTimepoint(folder.name, date, mask, grid[1], sequences, files, mni152, whole_tumour), unusable


def check_grid(
    rel: str, shape: tuple[int, ...], affine: np.ndarray, ref_shape: tuple[int, ...], ref_affine: np.ndarray
) -> None:
    """A sequence must share the time point's voxel grid, or voxel-wise habitat statistics are wrong."""
    if tuple(shape) != tuple(ref_shape):
        raise InputError(rel, "shape", f"grid {tuple(shape)} does not match the time point's grid {tuple(ref_shape)}")
    if not np.allclose(affine, ref_affine, atol=AFFINE_TOLERANCE_MM):
        raise InputError(rel, "affine", "voxel-to-mm matrix differs from the time point's grid")


def timepoint_folders(case_dir: Path, manifest: CaseManifest) -> list[tuple[str, dt.date | None]]:
    """Time points in manifest order (oldest first); without any listed, the sorted sub-folders of imaging/."""
    if manifest.timepoints:
        return [(t, None) if isinstance(t, str) else (t.name, t.date) for t in manifest.timepoints]
    files = CaseFolder(case_dir)
    if not files.is_dir(IMAGING_DIR):
        return []
    names = files.list_dir(IMAGING_DIR)
    return [(name, None) for name in names if files.is_dir(f"{IMAGING_DIR}/{name}")]


def load_imaging(case_dir: Path, manifest: CaseManifest) -> tuple[list[ImagingTimepoint], list[UnusableModality]]:
    """Every time point of the case; a listed folder that is missing, or a broken file, becomes unusable."""
    case_dir = Path(case_dir)
    timepoints: list[ImagingTimepoint] = []
    unusable: list[UnusableModality] = []
    files = CaseFolder(case_dir)
    try:
        listed = timepoint_folders(case_dir, manifest)
    except InputError as exc:
        return [], [_unusable(exc)]
    for name, date in listed:
        folder = case_dir / IMAGING_DIR / name
        try:
            is_folder = files.is_dir(f"{IMAGING_DIR}/{name}")
        except InputError as exc:
            unusable.append(_unusable(exc))
            continue
        if not is_folder:
            missing = InputError(f"{IMAGING_DIR}/{name}", "folder", "time point listed in case.json is not there")
            unusable.append(_unusable(missing))
            continue
        timepoint, problems = load_timepoint(folder, case_dir, date)
        unusable += problems
        if timepoint is not None:
            timepoints.append(timepoint)
    return timepoints, unusable
