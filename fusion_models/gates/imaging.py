"""Imaging gate: plausible voxel size, finite voxels, a non-empty lesion mask of plausible volume
(the label map, or the whole-tumour mask where there is none).

Shape and affine agreement between the mask and each sequence is checked where the
files are read (fusion_models/imaging/io.py: check_grid), since a file on another
grid cannot be held on the time point's grid at all.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from fusion_models.gates import InputNeeds, register_gate, with_unusable
from fusion_models.imaging.io import ImagingTimepoint
from schemas.errors import InputError

if TYPE_CHECKING:
    from fusion_models.inputs import CaseInputs

# Clinical MRI: in-plane 0.2-2 mm, slices up to about 7 mm; outside this the affine is wrong.
VOXEL_MM = (0.1, 10.0)
# An adult cerebral hemisphere is about 600 mL: a larger lesion (oedema included) is a mask error.
MAX_LESION_ML = 600.0
MM3_PER_ML = 1000.0


def voxel_sizes_mm(affine: np.ndarray) -> np.ndarray:
    """Edge lengths of one voxel: the column norms of the affine's 3x3 part."""
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)


def voxel_size_problem(affine: np.ndarray) -> str | None:
    sizes = voxel_sizes_mm(affine)
    lo, hi = VOXEL_MM
    if ((sizes >= lo) & (sizes <= hi)).all():
        return None
    shown = " x ".join(f"{s:g}" for s in sizes)
    return f"voxel size {shown} mm is outside the {lo:g}-{hi:g} mm of MRI"


def lesion_volume_ml(mask: np.ndarray, affine: np.ndarray) -> float:
    return float(np.count_nonzero(mask) * np.prod(voxel_sizes_mm(affine)) / MM3_PER_ML)


def mask_problem(mask: np.ndarray, affine: np.ndarray) -> str | None:
    """An empty mask or one larger than a hemisphere; None when plausible."""
    if not np.any(mask):
        return "the lesion mask holds no lesion voxel"
    volume = lesion_volume_ml(mask, affine)
    if volume > MAX_LESION_ML:
        return f"lesion volume {volume:,.0f} mL exceeds the {MAX_LESION_ML:,.0f} mL of a cerebral hemisphere"
    return None


def non_finite_voxels(volume: np.ndarray) -> int:
    return int(volume.size - np.count_nonzero(np.isfinite(volume)))


def _gate_timepoint(timepoint: ImagingTimepoint) -> tuple[ImagingTimepoint | None, list[InputError]]:
    """The time point with its implausible parts removed (None when nothing is left), and why."""
    problem = voxel_size_problem(timepoint.affine)
    if problem is not None:
        # Every file of a time point shares the grid, so all of them carry the wrong geometry.
        first = timepoint.files.get("mask") or next(iter(timepoint.files.values()))
        return None, [InputError(first, "affine", problem)]
    errors: list[InputError] = []
    files = dict(timepoint.files)
    sequences = {}
    for role, volume in timepoint.sequences.items():
        bad = non_finite_voxels(volume)
        if bad:
            message = f"{bad:,} of {volume.size:,} voxels are NaN or infinite"
            errors.append(InputError(files.pop(role), "voxels", message))
        else:
            sequences[role] = volume
    masks = {"mask": timepoint.mask, "whole_tumour": timepoint.whole_tumour}
    for role, mask in masks.items():
        problem = mask_problem(mask, timepoint.affine) if mask is not None else None
        if problem is not None:
            errors.append(InputError(files.pop(role), "labels", problem))
            masks[role] = None
    if not errors:
        return timepoint, []
    if all(mask is None for mask in masks.values()) and not sequences:
        return None, errors
    return replace(timepoint, **masks, sequences=sequences, files=files), errors


@register_gate("imaging")
def imaging(inputs: CaseInputs, needs: InputNeeds) -> CaseInputs:
    kept: list[ImagingTimepoint] = []
    errors: list[InputError] = []
    for timepoint in inputs.imaging:
        gated, problems = _gate_timepoint(timepoint)
        errors += problems
        if gated is not None:
            kept.append(gated)
    if not errors:
        return inputs
    inputs = replace(inputs, imaging=kept)
    for error in errors:
        inputs = with_unusable(inputs, "imaging", error)
    return inputs
