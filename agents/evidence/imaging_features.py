"""The imaging features file: per time point its grid, habitats with radiomic features, and margin bands.

Radiomics (pyradiomics, fusion_models/imaging/radiomics.py) run on each sequence z-scored inside
the brain, per habitat, at one fixed bin width; shape features once per habitat. Spatial evidence
cites its entry by `features_ref`, so a reader of the report can look a habitat's numbers up.
"""

from __future__ import annotations

from collections.abc import Sequence

import SimpleITK as sitk
from tqdm import tqdm

from agents.evidence.spatial import MARGIN_WIDTH_MM, unit_id
from fusion_models.imaging.grid import NORMALISE_PERCENTILES, is_isotropic
from fusion_models.imaging.habitats import voxel_spacing_mm
from fusion_models.imaging.margins import MARGIN_BANDS_MM, margin_bands
from fusion_models.imaging.radiomics import (
    BIN_WIDTH_Z,
    FEATURE_CLASSES,
    INTENSITY_CLASSES,
    MIN_VOXELS,
    SHAPE,
    extract,
    pyradiomics_version,
)
from fusion_models.inputs import ImagingTimepoint
from schemas.imaging import (
    IMAGING_FEATURES_FILE,
    ImagingFeatures,
    MarginBandFeatures,
    RegionFeatures,
    TimepointFeatures,
)
from schemas.report import SpatialEvidence

NORMALISATION = (
    f"z-score inside the non-zero (brain) voxels after clipping at the {NORMALISE_PERCENTILES[0]:g}th and "
    f"{NORMALISE_PERCENTILES[1]:g}th percentiles, per sequence"
)


def region_features(tp: ImagingTimepoint, phenotype: str, region, bin_width: float) -> RegionFeatures:
    voxels = int(region.sum())
    about = dict(unit_id=unit_id(tp.name, phenotype), phenotype=phenotype, voxels=voxels)
    if voxels < MIN_VOXELS:
        return RegionFeatures(**about, note=f"{voxels} voxels: too few for radiomic features (< {MIN_VOXELS})")
    any_image = next(iter(tp.normalised.values()), region.astype("float32"))
    return RegionFeatures(
        **about,
        shape=extract(any_image, region, tp.affine, (SHAPE,), bin_width),
        intensity={
            sequence: extract(image, region, tp.affine, INTENSITY_CLASSES, bin_width)
            for sequence, image in sorted(tp.normalised.items())
        },
    )


def timepoint_features(
    tp: ImagingTimepoint, bands: Sequence[tuple[float, float]] = MARGIN_BANDS_MM, bin_width: float = BIN_WIDTH_Z
) -> TimepointFeatures:
    regions = [region_features(tp, phenotype, region, bin_width) for phenotype, region in tp.regions().items()]
    measured = margin_bands(tp.lesion, tp.affine, tp.normalised, bands, within=tp.brain)
    return TimepointFeatures(
        timepoint=tp.name,
        habitat_method=tp.habitat_method,
        lesion_file=tp.lesion_file,
        spacing_mm=float(voxel_spacing_mm(tp.affine)[0]) if is_isotropic(tp.affine) else None,
        native_spacing_mm=tp.native_spacing_mm,
        normalisation=NORMALISATION,
        bin_width=bin_width,
        regions=regions,
        margin_bands=[
            MarginBandFeatures(
                unit_id=unit_id(tp.name, band.name), inner_mm=band.inner_mm, outer_mm=band.outer_mm,
                volume_ml=band.volume_ml, mean_z=band.mean_intensity,
            )
            for band in measured
        ],
    )


def imaging_features(
    case_id: str, timepoints: Sequence[ImagingTimepoint], *, progress: bool = False, bin_width: float = BIN_WIDTH_Z
) -> ImagingFeatures:
    """Features of every time point with a lesion mask (raises RadiomicsUnavailable without pyradiomics)."""
    with_lesion = [tp for tp in timepoints if tp.lesion is not None]
    return ImagingFeatures(
        case_id=case_id,
        software={"pyradiomics": pyradiomics_version(), "SimpleITK": sitk.Version.VersionString()},
        feature_classes=list(FEATURE_CLASSES),
        timepoints=[
            timepoint_features(tp, bin_width=bin_width)
            for tp in tqdm(with_lesion, desc=f"{case_id} radiomics", unit="scan", disable=not progress)
        ],
    )


def cite_features(spatial: list[SpatialEvidence], features: ImagingFeatures) -> list[SpatialEvidence]:
    """Each evidence item with an entry in the features file points at it; the margin ring at its band."""
    units = {r.unit_id for t in features.timepoints for r in t.regions}
    ring_band = {
        unit_id(t.timepoint, "margin_ring"): b.unit_id
        for t in features.timepoints for b in t.margin_bands if b.inner_mm == 0 and b.outer_mm == MARGIN_WIDTH_MM
    }
    cited = []
    for item in spatial:
        key = item.unit_id if item.unit_id in units else ring_band.get(item.unit_id)
        ref = None if key is None or item.unit_level == "longitudinal" else f"{IMAGING_FEATURES_FILE}#{key}"
        cited.append(item.model_copy(update={"features_ref": ref}) if ref else item)
    return cited
