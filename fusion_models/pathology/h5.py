"""Patch features in the CLAM / TRIDENT HDF5 layout.

Datasets `features` (N, D) and `coords` (N, 2: level-0 top-left x, y); attributes
`encoder`, `patch_size_level0` (the patch side in level-0 px), `patch_size` (the side at
the patches' own magnification, as TRIDENT writes it; CLAM files hold only this one,
read at level 0, so it stands in for `patch_size_level0` when that is absent),
`magnification` (optional) and `slide_id` (optional, defaults to the file stem).
`evchain embed-slides` adds `mpp`, `slide_mpp`, `weights_sha256` and `encoder_trained`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from schemas.errors import InputError
from toolkit.atomic import atomic_path
from toolkit.case_files import checked_file


@dataclass
class SlideFeatures:
    """Patch embeddings of one slide."""

    slide_id: str
    features: np.ndarray  # (N, D) float32
    coords: np.ndarray  # (N, 2) int64 level-0 top-left x, y
    patch_size_level0: int
    magnification: float | None
    encoder: str
    file: str  # relative path of the .h5 or slide it came from


def relative_name(path: Path, case_dir: Path | None) -> str:
    """Path as an error message should name it: relative to the case folder when inside it."""
    path = Path(path)
    if case_dir is not None:
        try:
            return path.resolve().relative_to(Path(case_dir).resolve()).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def write_patch_features(
    path: Path,
    slide_id: str,
    features: np.ndarray,
    coords: np.ndarray,
    *,
    encoder: str,
    patch_size: int,
    magnification: float | None,
    patch_size_level0: int | None = None,
    attrs: Mapping[str, str | int | float | bool] | None = None,
) -> None:
    """Write atomically (temp file in the same folder, then rename) so a reader never sees half a file.

    `patch_size` is the side at `magnification`; `patch_size_level0` defaults to it (patches read at level 0).
    """
    features = np.asarray(features, dtype=np.float32)
    coords = np.asarray(coords, dtype=np.int64)
    if features.ndim != 2 or coords.shape != (len(features), 2):
        raise ValueError(f"features must be (N, D) and coords (N, 2); got {features.shape} and {coords.shape}")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("features", data=features)
        h5.create_dataset("coords", data=coords)
        h5.attrs["encoder"] = encoder
        h5.attrs["patch_size"] = int(patch_size)
        h5.attrs["patch_size_level0"] = int(patch_size if patch_size_level0 is None else patch_size_level0)
        h5.attrs["slide_id"] = slide_id
        if magnification is not None:
            h5.attrs["magnification"] = float(magnification)
        for key, value in (attrs or {}).items():
            h5.attrs[key] = value


def read_patch_features(
    path: Path,
    case_dir: Path | None,
    expected_dim: int | None,
    *,
    expected_encoder: str | None = None,
) -> SlideFeatures:
    """Read and check one feature file; every problem is an InputError naming the dataset or attribute.

    `expected_encoder` (the encoder the model consumes) names the encoder in the
    size-mismatch message and rejects files written by another encoder: features of
    two encoders are not interchangeable even when their sizes agree.
    """
    real, rel = checked_file(path, case_dir, "hdf5")
    try:
        h5 = h5py.File(real, "r")
    except OSError as exc:
        raise InputError(rel, "hdf5", f"cannot read HDF5: {exc}") from None
    with h5:
        features = _dataset(h5, rel, "features", np.float32)
        # Read as float first: casting NaN straight to int64 gives -9223372036854775808, not an error.
        coords = _pixel_coords(_dataset(h5, rel, "coords", np.float64), rel)
        attrs = dict(h5.attrs)
    if features.ndim != 2 or len(features) == 0:
        raise InputError(rel, "features", f"expected a non-empty (N, D) matrix, got shape {features.shape}")
    if not np.isfinite(features).all():
        bad = np.flatnonzero(~np.isfinite(features).all(axis=1))
        raise InputError(rel, "features", f"non-finite values in {len(bad)} rows, first row {bad[0]}")
    if coords.shape != (len(features), 2):
        raise InputError(rel, "coords", f"expected shape ({len(features)}, 2) to match features, got {coords.shape}")
    encoder = _text_attr(attrs, rel, "encoder")
    if expected_encoder is not None and encoder != expected_encoder:
        raise InputError(
            rel, "attrs.encoder", f"features come from encoder {encoder!r}, the model expects {expected_encoder!r}"
        )
    if expected_dim is not None and features.shape[1] != expected_dim:
        who = f"encoder {expected_encoder!r}" if expected_encoder else "the encoder"
        raise InputError(rel, "features", f"feature size {features.shape[1]} does not match {who} ({expected_dim})")
    return SlideFeatures(
        slide_id=_text_attr(attrs, rel, "slide_id") if "slide_id" in attrs else Path(path).stem,
        features=features,
        coords=coords,
        patch_size_level0=_patch_size(attrs, rel),
        magnification=_positive_attr(attrs, rel, "magnification"),
        encoder=encoder,
        file=rel,
    )


def _dataset(h5: h5py.File, rel: str, name: str, dtype: type) -> np.ndarray:
    item = h5.get(name)
    if not isinstance(item, h5py.Dataset):
        raise InputError(rel, name, "dataset missing")
    try:
        return np.asarray(item[()], dtype=dtype)
    except (TypeError, ValueError, OSError) as exc:
        raise InputError(rel, name, f"cannot read as {np.dtype(dtype).name}: {exc}") from None


def _pixel_coords(coords: np.ndarray, rel: str) -> np.ndarray:
    """Level-0 pixel positions as int64; NaN or infinite positions are an error."""
    bad = ~np.isfinite(coords)
    if bad.any():
        rows = np.unique(np.argwhere(bad)[:, 0])
        raise InputError(rel, "coords", f"NaN or infinite coordinates in {len(rows)} rows, first row {rows[0]}")
    return np.round(coords).astype(np.int64)


def _text_attr(attrs: dict, rel: str, name: str) -> str:
    value = attrs.get(name)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str) or not value:
        raise InputError(rel, f"attrs.{name}", "missing or not a non-empty string")
    return value


def _positive_attr(attrs: dict, rel: str, name: str) -> float | None:
    if name not in attrs:
        return None
    value = attrs[name]
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number) or number <= 0:
        raise InputError(rel, f"attrs.{name}", f"expected a positive number, got {value!r}")
    return number


def _patch_size(attrs: dict, rel: str) -> int:
    """Patch side in level-0 px: `patch_size_level0` (TRIDENT), else `patch_size` (CLAM, read at level 0)."""
    name = "patch_size_level0" if "patch_size_level0" in attrs else "patch_size"
    value = _positive_attr(attrs, rel, name)
    if value is None or not value.is_integer():
        raise InputError(rel, f"attrs.{name}", f"expected a positive integer (level-0 px), got {attrs.get(name)!r}")
    return int(value)
