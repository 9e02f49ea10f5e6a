"""Imaging inputs of a case bundle: NIfTI sequences and the lesion label map per time point (nibabel)."""

from __future__ import annotations

import datetime as dt
import gzip
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError

from fusion_models.imaging.habitats import LESION_LABELS, HabitatStat, habitat_stats
from schemas.case import CaseManifest
from schemas.errors import InputError
from schemas.report import UnusableModality
from toolkit.case_files import CaseFolder, checked_file

IMAGING_DIR = "imaging"
MASK_FILE = "lesion_mask.nii.gz"
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
    files: dict[str, str]  # role ("mask", "t1c", ...) -> path relative to the case folder
    mni152: bool = False  # the mask's header says MNI152 space, so atlas coordinates apply

    @cached_property
    def habitats(self) -> list[HabitatStat]:
        """habitat_stats of the mask, computed once: the fusion features and the spatial evidence both read them."""
        return habitat_stats(self.mask, self.affine) if self.mask is not None else []


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
    if MASK_FILE in names:
        try:
            data, affine = load_nifti(folder / MASK_FILE, case_dir)
            mask = check_labels(data, mask_rel)
            mni152 = in_mni152(folder / MASK_FILE)
            grid, files["mask"] = (mask.shape, affine), mask_rel
        except InputError as exc:
            unusable.append(_unusable(exc))
    else:
        unusable.append(_unusable(InputError(mask_rel, "file", "no lesion mask; habitat evidence needs one")))
    sequences: dict[str, np.ndarray] = {}
    # Not filtered by is_file: a FIFO or a link out named like a sequence is reported, not skipped.
    for path in (folder / name for name in names if name != MASK_FILE):
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
    return ImagingTimepoint(folder.name, date, mask, grid[1], sequences, files, mni152), unusable


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
