"""Spatial evidence (where): lesion, habitats, margin ring and longitudinal change per time point.

Volumes and centroids come from the mask and the voxel spacing (nibabel affine),
never from the model; only `attribution` is the model's.
"""

from __future__ import annotations

from fusion_models.imaging.habitats import HabitatStat, margin_ring
from fusion_models.inputs import ImagingTimepoint
from schemas.common import SourceRef
from schemas.report import SpatialEvidence

MARGIN_WIDTH_MM = 5.0


def unit_id(timepoint: str, phenotype: str) -> str:
    return f"{timepoint}:{phenotype}"


def _labels_locator(stat: HabitatStat) -> str:
    return "labels " + ",".join(str(label) for label in stat.labels)


def _evidence(stat: HabitatStat, tp: ImagingTimepoint, level: str, attribution: float | None) -> dict:
    return dict(
        unit_level=level,
        unit_id=unit_id(tp.name, stat.phenotype),
        phenotype=stat.phenotype,
        timepoint=tp.name,
        volume_ml=round(stat.volume_ml, 2),
        fraction_of_lesion=round(min(stat.fraction_of_lesion, 1.0), 3),
        centroid_mm=tuple(round(c, 1) for c in stat.centroid_mm) if stat.centroid_mm else None,
        attribution=attribution,
        source=SourceRef(file=tp.files["mask"], locator=_labels_locator(stat) if stat.labels else "dilated lesion shell"),
    )


def spatial_evidence(timepoints: list[ImagingTimepoint], habitat_attribution: dict[str, float]) -> list[SpatialEvidence]:
    """Evidence items for every time point with a mask; model attribution only on the latest one."""
    with_mask = [tp for tp in timepoints if tp.mask is not None]
    items: list[dict] = []
    lesion_by_tp: dict[str, HabitatStat] = {}
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
            lesion_by_tp[tp.name] = stats[0]
            ring = margin_ring(tp.mask, tp.affine, width_mm=MARGIN_WIDTH_MM)
            attribution = habitat_attribution.get("margin_ring") if latest else None
            items.append(_evidence(ring, tp, "margin_ring", None if attribution is None else round(attribution, 3)))
    names = [tp.name for tp in with_mask if tp.name in lesion_by_tp]
    for before, after in zip(names, names[1:]):
        items.append(_longitudinal(lesion_by_tp[before], lesion_by_tp[after], before, after, with_mask))
    return [SpatialEvidence(id=f"S{i}", **item) for i, item in enumerate(items, start=1)]


def _longitudinal(before: HabitatStat, after: HabitatStat, t0: str, t1: str, tps: list[ImagingTimepoint]) -> dict:
    change = after.volume_ml - before.volume_ml
    files = {tp.name: tp.files["mask"] for tp in tps}
    return dict(
        unit_level="longitudinal",
        unit_id=f"{t0}->{t1}:lesion",
        phenotype="lesion",
        timepoint=t1,
        volume_ml=round(after.volume_ml, 2),
        change_ml=round(change, 2),
        change_percent=round(100.0 * change / before.volume_ml, 1) if before.volume_ml else None,
        source=SourceRef(file=files[t1], locator=f"lesion volume vs {files[t0]}"),
    )
