"""IBSI radiomic features of one region with pyradiomics: first order, shape and GLCM at a fixed bin width.

pyradiomics is an optional extra (`pip install --no-build-isolation pyradiomics==3.0.1`,
.ci/setup.d/15-pyradiomics.sh): 3.0.1 builds against numpy 2 only without build isolation,
and 3.1.0 does not build here. It is imported when features are asked for, so the rest of
the imaging path runs without it.

Images reach pyradiomics through grid.to_sitk, on the grid they were measured on (already
isotropic after case loading), so pyradiomics does no resampling and no normalisation of
its own: intensities are the caller's (the report uses z-scored sequences, where a fixed
bin width means the same grey-level resolution in every case, as IBSI advises for MRI).
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Sequence
from types import ModuleType

import numpy as np

from fusion_models.imaging.grid import to_sitk

SHAPE = "shape"
INTENSITY_CLASSES: tuple[str, ...] = ("firstorder", "glcm")
FEATURE_CLASSES: tuple[str, ...] = (*INTENSITY_CLASSES, SHAPE)
# On z-scored intensities: a quarter of a standard deviation per grey level, about 30 levels over a lesion.
BIN_WIDTH_Z = 0.25
# pyradiomics cannot measure a single voxel, and texture over a handful of voxels is noise: smaller regions are skipped.
MIN_VOXELS = 10
INSTALL_HINT = "pip install --no-build-isolation pyradiomics==3.0.1 (.ci/setup.d/15-pyradiomics.sh)"


class RadiomicsUnavailable(RuntimeError):
    """pyradiomics is not installed: radiomic features were asked for and cannot be computed."""


def _featureextractor() -> ModuleType:
    try:
        import radiomics
        from radiomics import featureextractor
    except ImportError as exc:
        message = f"radiomic features need pyradiomics, which is not installed: {INSTALL_HINT}"
        raise RadiomicsUnavailable(message) from exc
    # pyradiomics' own switch for its stderr handler: at WARNING it prints a GLCM note for every region.
    radiomics.setVerbosity(logging.ERROR)
    return featureextractor


def pyradiomics_version() -> str:
    return importlib.metadata.version("pyradiomics")


def extract(
    image: np.ndarray,
    region: np.ndarray,
    affine: np.ndarray,
    classes: Sequence[str] = FEATURE_CLASSES,
    bin_width: float = BIN_WIDTH_Z,
) -> dict[str, float]:
    """`class_Feature` -> value (e.g. 'firstorder_Mean', 'shape_VoxelVolume' in mm^3) for the region's voxels.

    Raises ValueError for a region of fewer than MIN_VOXELS voxels.
    """
    unknown = set(classes) - set(FEATURE_CLASSES)
    if unknown:
        raise ValueError(f"unknown feature classes {sorted(unknown)}; known: {list(FEATURE_CLASSES)}")
    if bin_width <= 0:
        raise ValueError(f"bin_width must be positive, got {bin_width}")
    region = np.asarray(region, dtype=bool)
    voxels = int(region.sum())
    if voxels < MIN_VOXELS:
        raise ValueError(f"the region has {voxels} voxels; radiomic features need at least {MIN_VOXELS}")
    extractor = _featureextractor().RadiomicsFeatureExtractor(
        binWidth=bin_width, additionalInfo=False, minimumROIDimensions=1, minimumROISize=1
    )
    extractor.disableAllFeatures()
    for name in classes:
        extractor.enableFeatureClassByName(name)
    image_sitk = to_sitk(np.asarray(image, dtype=np.float32), affine)
    mask_sitk = to_sitk(region.astype(np.uint8), affine)
    result = extractor.execute(image_sitk, mask_sitk, label=1)
    # Keys are 'original_<class>_<Feature>': no filtered image types are enabled.
    return {key.removeprefix("original_"): float(value) for key, value in result.items() if key.startswith("original_")}
