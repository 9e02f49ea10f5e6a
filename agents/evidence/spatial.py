"""Spatial evidence (where): lesion, habitats, margin ring and longitudinal change per time point.

Volumes and centroids come from the mask and the voxel spacing (nibabel affine),
never from the model; only `attribution` is the model's. Habitats come from the BraTS
label map, or, for a whole-tumour mask, from k-means clusters (`habitat_method` says which).
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from pydantic import BaseModel

from fusion_models.imaging.habitats import (
    LOCATION_BASIS,
    HabitatStat,
    hemisphere,
    margin_ring,
    mni_lobe,
    voxel_spacing_mm,
)
from fusion_models.inputs import ImagingTimepoint
from schemas.common import SourceRef
from schemas.report import RanoVolumetricRange, SpatialEvidence

MARGIN_WIDTH_MM = 5.0
DAYS_PER_MONTH = 365.25 / 12


class RanoVolumetric(BaseModel):
    """Volumetric analogues of the RANO thresholds (Wen et al., J Clin Oncol 2010).

    RANO measures the product of two perpendicular diameters; for a sphere the volume
    scales as that product to the power 3/2, so +25% product ~ +40% volume
    (1.25 ** 1.5 = 1.40) and -50% product ~ -65% volume (0.5 ** 1.5 = 0.35). Irregular
    lesions break the sphere assumption, and RANO also weighs clinical status, steroid
    dose and new lesions: the range is an approximation, never a RANO assessment.
    """

    progression_volume_percent: float = 40.0
    progression_product_percent: float = 25.0
    response_volume_percent: float = -65.0
    response_product_percent: float = -50.0


RANO_VOLUMETRIC = RanoVolumetric()


def rano_volumetric_range(change_percent: float, rano: RanoVolumetric = RANO_VOLUMETRIC) -> RanoVolumetricRange:
    if change_percent >= rano.progression_volume_percent:
        return "progression_range"
    if change_percent <= rano.response_volume_percent:
        return "response_range"
    return "stable_range"


def unit_id(timepoint: str, phenotype: str) -> str:
    return f"{timepoint}:{phenotype}"


def _locator(stat: HabitatStat, tp: ImagingTimepoint) -> str:
    """Which voxels: mask labels, the k-means cluster, or the lesion shell; and the grid they were counted on."""
    if not stat.labels:
        where = "dilated lesion shell"
    elif tp.clusters is not None and stat.phenotype != "lesion":
        where = tp.clusters.describe(stat.labels[0])
    elif tp.mask is None:
        where = "whole-tumour mask"
    else:
        where = "labels " + ",".join(str(label) for label in stat.labels)
    if tp.native_spacing_mm is None:
        return where
    native = "x".join(f"{e:g}" for e in np.round(tp.native_spacing_mm, 2))
    return f"{where}; resampled to {voxel_spacing_mm(tp.affine)[0]:g} mm isotropic from {native} mm"


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def location(stat: HabitatStat, tp: ImagingTimepoint) -> dict:
    """Hemisphere and lobe of the unit's centroid, only where the image says it is in MNI152 space."""
    if not tp.mni152 or stat.centroid_mm is None:
        return {}
    x, y, z = stat.centroid_mm
    return dict(hemisphere=hemisphere(x), lobe=mni_lobe(x, y, z), location_basis=LOCATION_BASIS)


def _evidence(stat: HabitatStat, tp: ImagingTimepoint, level: str, attribution: float | None) -> dict:
    return dict(
        unit_level=level,
        unit_id=unit_id(tp.name, stat.phenotype),
        phenotype=stat.phenotype,
        timepoint=tp.name,
        timepoint_date=tp.date,
        volume_ml=round(stat.volume_ml, 2),
        fraction_of_lesion=_rounded(stat.fraction_of_lesion, 3),
        ratio_to_lesion=_rounded(stat.ratio_to_lesion, 3),
        centroid_mm=tuple(round(c, 1) for c in stat.centroid_mm) if stat.centroid_mm else None,
        attribution=attribution,
        habitat_method=tp.habitat_method if level == "habitat" else None,
        source=SourceRef(file=tp.lesion_file, locator=_locator(stat, tp)),
        **location(stat, tp),
    )


def spatial_evidence(
    timepoints: list[ImagingTimepoint],
    habitat_attribution: dict[str, float],
    timepoint_attention: dict[str, float] | None = None,
) -> list[SpatialEvidence]:
    """Evidence items for every time point with a mask; model attribution on the latest one's units, and on
    each longitudinal change the model's attention to the scan it ends at (where a head attends over scans)."""
    with_mask = [tp for tp in timepoints if tp.lesion is not None]
    items: list[dict] = []
    lesion_by_tp: dict[str, tuple[HabitatStat, ImagingTimepoint]] = {}
    for i, tp in enumerate(with_mask):
        latest = i == len(with_mask) - 1
        stats = tp.habitats
        for stat in stats:
            if stat.voxels == 0:
                continue
            level = "lesion" if stat.phenotype == "lesion" else "habitat"
            attribution = habitat_attribution.get(stat.phenotype) if latest and level == "habitat" else None
            items.append(_evidence(stat, tp, level, None if attribution is None else round(attribution, 3)))
        if stats and stats[0].voxels:
            lesion_by_tp[tp.name] = (stats[0], tp)
            ring = margin_ring(tp.lesion, tp.affine, width_mm=MARGIN_WIDTH_MM)
            attribution = habitat_attribution.get("margin_ring") if latest else None
            items.append(_evidence(ring, tp, "margin_ring", None if attribution is None else round(attribution, 3)))
    names = [tp.name for tp in with_mask if tp.name in lesion_by_tp]
    for before, after in zip(names, names[1:]):
        change = longitudinal(*lesion_by_tp[before], *lesion_by_tp[after])
        attention = (timepoint_attention or {}).get(after)
        items.append({**change, "attribution": None if attention is None else round(attention, 3)})
    return [SpatialEvidence(id=f"S{i}", **item) for i, item in enumerate(items, start=1)]


def growth_rate(before_ml: float, after_ml: float, before: dt.date | None, after: dt.date | None) -> dict:
    """Change absolute, percent and per month (dated scans only), and its RANO-style volumetric range."""
    change = after_ml - before_ml
    percent = 100.0 * change / before_ml if before_ml else None
    days = (after - before).days if before is not None and after is not None else None
    return dict(
        change_ml=round(change, 2),
        change_percent=_rounded(percent, 1),
        interval_days=days,
        change_ml_per_month=round(change / (days / DAYS_PER_MONTH), 2) if days else None,
        rano_volumetric_range=None if percent is None else rano_volumetric_range(percent),
    )


def longitudinal(before: HabitatStat, tp0: ImagingTimepoint, after: HabitatStat, tp1: ImagingTimepoint) -> dict:
    return dict(
        unit_level="longitudinal",
        unit_id=f"{tp0.name}->{tp1.name}:lesion",
        phenotype="lesion",
        timepoint=tp1.name,
        timepoint_date=tp1.date,
        volume_ml=round(after.volume_ml, 2),
        baseline_timepoint=tp0.name,
        baseline_date=tp0.date,
        baseline_volume_ml=round(before.volume_ml, 2),
        source=SourceRef(file=tp1.lesion_file, locator=f"lesion volume vs {tp0.lesion_file}"),
        **growth_rate(before.volume_ml, after.volume_ml, tp0.date, tp1.date),
    )
