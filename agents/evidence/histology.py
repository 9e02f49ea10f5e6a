"""Histology evidence (what): the pathologist's structured read and the model's attended regions."""

from __future__ import annotations

import math
from collections.abc import Sequence

from schemas.case import PathologyFindings
from schemas.common import SourceRef
from schemas.fusion import FusionOutput, PatchAttention
from schemas.report import HistologyEvidence, SpatialEvidence

FINDINGS_FILE = "pathology/findings.json"
FINDING_FIELDS = ("who_grade", "histology", "necrosis", "microvascular_proliferation", "cellularity", "ki67_percent")
# Pattern fractions below this are noise at the patch counts slides give us.
MIN_PATTERN_FRACTION = 0.10
# A patch is cited only where its attention stands clearly above uniform (1/N on a slide
# of N patches): at least CITE_TIMES_UNIFORM / N and within the slide's top
# CITE_TOP_FRACTION of patches (the top one at least). Both scale with N, so a slide of
# 100,000 patches still cites its real peaks and flat attention cites nothing.
# Background is never cited: it says where the model looked, not what the tumour is.
CITE_TIMES_UNIFORM = 3.0
CITE_TOP_FRACTION = 0.01
UNCITED_PATTERNS = ("background",)


def citable_patches(patches: Sequence[PatchAttention]) -> list[tuple[PatchAttention, float]]:
    """The patches worth citing, each with its attention relative to uniform (attention x N).

    A patch without its slide's patch count cannot be compared with uniform and is not cited.
    """
    cited = []
    ranks: dict[str, int] = {}
    for patch in sorted(patches, key=lambda p: (p.slide_id, -p.attention)):
        rank = ranks[patch.slide_id] = ranks.get(patch.slide_id, -1) + 1
        n = patch.slide_patches
        if n is None or patch.pattern in UNCITED_PATTERNS:
            continue
        ratio = patch.attention * n
        if ratio >= CITE_TIMES_UNIFORM and rank < max(1, math.ceil(CITE_TOP_FRACTION * n)):
            cited.append((patch, ratio))
    return cited


def sampled_unit(findings: PathologyFindings | None, spatial: list[SpatialEvidence]) -> str | None:
    """The imaging unit the specimen came from, on the latest time point that has it."""
    if findings is None or findings.sampled_region in (None, "unknown"):
        return None
    units = [s for s in spatial if s.unit_level == "habitat" and s.phenotype == findings.sampled_region]
    return units[-1].unit_id if units else None


def histology_evidence(
    findings: PathologyFindings | None,
    fusion: FusionOutput | None,
    slide_files: dict[str, str],
    spatial: list[SpatialEvidence],
) -> list[HistologyEvidence]:
    linked = sampled_unit(findings, spatial)
    items: list[dict] = []
    if findings is not None:
        for field in FINDING_FIELDS:
            value = getattr(findings, field)
            if value is not None:
                items.append(
                    dict(pattern=field, value=value, origin="pathologist_findings", linked_spatial_unit=linked,
                         source=SourceRef(file=FINDINGS_FILE, locator=field))
                )
        if findings.sampled_region is not None:
            items.append(
                dict(pattern="sampled_region", value=findings.sampled_region, origin="pathologist_findings",
                     linked_spatial_unit=linked, source=SourceRef(file=FINDINGS_FILE, locator="sampled_region"))
            )
    if fusion is not None:
        pathways_at: dict[tuple[str, int], list[str]] = {}
        for link in fusion.pathway_patch_attention:
            pathways_at.setdefault((link.slide_id, link.patch_index), []).append(link.pathway)
        for patch, ratio in citable_patches(fusion.patch_attention):
            x, y = patch.coord_level0
            size = patch.patch_size_level0
            items.append(
                dict(slide_id=patch.slide_id, bbox_level0=(x, y, size, size), attention=round(patch.attention, 6),
                     attention_vs_uniform=round(ratio, 1), slide_patches=patch.slide_patches,
                     pattern=patch.pattern, value=round(patch.pattern_probability, 3), origin="patch_attention",
                     linked_spatial_unit=linked,
                     attended_by_pathways=pathways_at.get((patch.slide_id, patch.patch_index), []),
                     source=SourceRef(file=slide_files.get(patch.slide_id, patch.slide_id),
                                      locator=f"features[{patch.patch_index}]"))
            )
        for pattern, fraction in sorted(fusion.pattern_fractions.items(), key=lambda kv: -kv[1]):
            if fraction >= MIN_PATTERN_FRACTION and pattern != "background":
                items.append(
                    dict(pattern=pattern, value=round(fraction, 3), origin="pattern_summary",
                         linked_spatial_unit=linked,
                         source=SourceRef(file=", ".join(sorted(set(slide_files.values()))),
                                          locator="fraction of patches, patch-level pattern head"))
                )
    return [HistologyEvidence(id=f"H{i}", **item) for i, item in enumerate(items, start=1)]
