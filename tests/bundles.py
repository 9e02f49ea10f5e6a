"""Rewriting a copied case bundle's files in place: the perturbations of the input-gate tests."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np


def rewrite_h5(path: Path, features=None, coords=None) -> None:
    with h5py.File(path, "r") as f:
        old_features, old_coords, attrs = f["features"][:], f["coords"][:], dict(f.attrs)
    path.unlink()
    with h5py.File(path, "w") as f:
        f["features"] = old_features if features is None else features(old_features)
        f["coords"] = old_coords if coords is None else coords(old_coords)
        f.attrs.update(attrs)


def rewrite_nifti(path: Path, data=None, affine=None) -> None:
    image = nib.load(path)
    array = np.asanyarray(image.dataobj)
    new = np.asarray(array if data is None else data(array))
    header = image.header.copy()
    header.set_data_dtype(new.dtype)  # NaN written into an integer file would silently become a number
    nib.save(nib.Nifti1Image(new, image.affine if affine is None else affine, header), path)


def update_json(path: Path, **changes) -> None:
    """Set top-level fields of a JSON file (case.json, findings.json, meta.json)."""
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))
