"""MRI figures: orthogonal slices through the lesion with habitat outlines, biopsy site and sampling targets;
the same slice at every time point; lesion and habitat volumes over time.

Volumes are turned to RAS (nibabel) and shown in radiological convention (the patient's right
on the viewer's left), with orientation letters and a 20 mm scale bar on every panel.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from matplotlib.lines import Line2D
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from agents.figures.common import (
    BIOPSY_COLOUR,
    HABITAT_STYLE,
    TARGET_COLOUR,
    FigureContext,
    Rendered,
    cites,
    new_figure,
    png_bytes,
)
from fusion_models.imaging.habitats import PHENOTYPE_LABELS, voxel_spacing_mm
from fusion_models.inputs import ImagingTimepoint
from prompts import Listing, Phrase, Term
from schemas.report import SpatialEvidence

SEQUENCES = ("flair", "t1c")  # the tumour board's pair: oedema/infiltration and enhancement
SCALE_BAR_MM = 20
# Plane -> (array axis fixed, axes shown (horizontal, vertical), letters (left, right, top, bottom)):
# radiological convention, the patient's right on the viewer's left; sagittal with anterior on the left.
PLANES = {
    "axial": (2, (0, 1), ("R", "L", "A", "P")),
    "coronal": (1, (0, 2), ("R", "L", "S", "I")),
    "sagittal": (0, (1, 2), ("A", "P", "S", "I")),
}


@dataclass(frozen=True)
class Volume:
    """One time point turned to RAS: arrays and the voxel -> mm map that goes with them."""

    name: str
    sequences: dict[str, np.ndarray]
    mask: np.ndarray
    affine: np.ndarray

    @classmethod
    def of(cls, timepoint: ImagingTimepoint) -> Volume:
        ornt = nib.orientations.io_orientation(timepoint.affine)
        turn = lambda a: nib.orientations.apply_orientation(a, ornt)  # noqa: E731
        affine = timepoint.affine @ nib.orientations.inv_ornt_aff(ornt, timepoint.mask.shape)
        return cls(timepoint.name, {k: turn(v) for k, v in timepoint.sequences.items()}, turn(timepoint.mask), affine)

    @property
    def spacing(self) -> np.ndarray:
        return voxel_spacing_mm(self.affine)

    def voxel(self, point_mm: tuple[float, float, float]) -> np.ndarray:
        """Continuous voxel index of a scanner-mm point."""
        return (np.linalg.inv(self.affine) @ np.append(point_mm, 1.0))[:3]

    def slice_index(self, point_mm: tuple[float, float, float], axis: int) -> int:
        return int(np.clip(round(float(self.voxel(point_mm)[axis])), 0, self.mask.shape[axis] - 1))


@dataclass(frozen=True)
class Mark:
    """A point drawn on every plane: the biopsy site or a sampling target (projected onto the slice)."""

    point_mm: tuple[float, float, float]
    label: str
    colour: str
    symbol: str
    tag: str  # written beside the mark: 'B' or the target's rank


def _timepoints(ctx: FigureContext) -> list[ImagingTimepoint]:
    """Time points that have a lesion mask and at least one sequence, oldest first."""
    if ctx.inputs is None:
        return []
    return [t for t in ctx.inputs.imaging if t.mask is not None and t.sequences and (t.mask > 0).any()]


def _sequences(timepoint: ImagingTimepoint) -> list[str]:
    shown = [s for s in SEQUENCES if s in timepoint.sequences]
    return shown or sorted(timepoint.sequences)[:2]


def _units(report, timepoint: str, levels: tuple[str, ...]) -> list[SpatialEvidence]:
    return [s for s in report.spatial_evidence if s.timepoint == timepoint and s.unit_level in levels]


def _lesion(report, timepoint: str) -> SpatialEvidence | None:
    return next(iter(_units(report, timepoint, ("lesion",))), None)


def _marks(ctx: FigureContext) -> tuple[list[Mark], list[str]]:
    """Biopsy site (centroid of the habitat the specimen came from) and ranked sampling targets, with their ids."""
    by_unit = {s.unit_id: s for s in ctx.report.spatial_evidence}
    marks, ids = [], []
    biopsy = next((h for h in ctx.report.histology_evidence if h.pattern == "sampled_region"), None)
    if biopsy is not None and biopsy.linked_spatial_unit in by_unit and by_unit[biopsy.linked_spatial_unit].centroid_mm:
        unit = by_unit[biopsy.linked_spatial_unit]
        marks.append(Mark(unit.centroid_mm, ctx.phrase("figure.mri.biopsy"), BIOPSY_COLOUR, "o", "B"))
        ids += [biopsy.id, unit.id]
    for target in ctx.report.sampling_plan:
        unit = by_unit.get(target.unit_id)
        if unit is not None and unit.centroid_mm:
            marks.append(Mark(unit.centroid_mm, ctx.phrase("figure.mri.target", rank=str(target.rank)), TARGET_COLOUR, "*",
                              str(target.rank)))
            ids += [unit.id, *target.evidence]
    return marks, ids


def _window(image: np.ndarray) -> tuple[float, float]:
    """Display window from the 1st-99.5th percentiles of the non-zero voxels (robust to bright outliers)."""
    values = image[image > 0] if (image > 0).any() else image.ravel()
    low, high = np.percentile(values, [1.0, 99.5])
    return float(low), float(high if high > low else low + 1.0)


def _panel(ax, volume: Volume, sequence: str, plane: str, index: int, marks: list[Mark]) -> None:
    """One slice: grey image, habitat outlines, projected marks, orientation letters, scale bar."""
    axis, (h, v), letters = PLANES[plane]
    image = np.take(volume.sequences[sequence], index, axis=axis)
    labels = np.take(volume.mask, index, axis=axis)
    spacing = volume.spacing
    extent = (0.0, image.shape[0] * spacing[h], 0.0, image.shape[1] * spacing[v])
    low, high = _window(volume.sequences[sequence])
    ax.imshow(image.T, cmap="gray", origin="lower", extent=extent, vmin=low, vmax=high, interpolation="nearest")
    drawn: set[tuple[int, ...]] = set()
    for phenotype, (colour, line) in HABITAT_STYLE.items():
        codes = PHENOTYPE_LABELS[phenotype]
        if codes in drawn:
            continue
        region = np.isin(labels, codes)
        # An outline needs a slice at least 2 voxels each way (a volume 1 voxel thick has none in two planes).
        if region.any() and min(region.shape) >= 2:
            ax.contour(region.T.astype(float), levels=[0.5], colors=[colour], linestyles=[line], linewidths=1.4,
                       origin="lower", extent=extent)
            drawn.add(codes)
    for n, mark in enumerate(marks):
        point = volume.voxel(mark.point_mm)
        x, y = (point[h] + 0.5) * spacing[h], (point[v] + 0.5) * spacing[v]
        ax.plot(x, y, mark.symbol, color=mark.colour, markeredgecolor="black",
                markersize=11 if mark.symbol == "*" else 8, markeredgewidth=1.0)
        # Habitat centres of a round lesion nearly coincide: tags fan out so each stays readable.
        ax.annotate(mark.tag, (x, y), xytext=(8, 10 - 9 * n), textcoords="offset points", color=mark.colour,
                    fontsize=8, fontweight="bold",
                    bbox=dict(boxstyle="round,pad=0.1", facecolor="black", edgecolor="none", alpha=0.6))
    # RAS: the high end of every horizontal axis (patient's right; anterior on sagittal) goes on the left.
    ax.set_xlim(extent[1], extent[0])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    style = dict(color="white", fontsize=9, fontweight="bold", transform=ax.transAxes)
    ax.text(0.02, 0.5, letters[0], ha="left", va="center", **style)
    ax.text(0.98, 0.5, letters[1], ha="right", va="center", **style)
    ax.text(0.5, 0.98, letters[2], ha="center", va="top", **style)
    ax.text(0.5, 0.02, letters[3], ha="center", va="bottom", **style)
    ax.add_artist(
        AnchoredSizeBar(ax.transData, SCALE_BAR_MM, f"{SCALE_BAR_MM} mm", "lower right", pad=0.3, color="white",
                        frameon=False, size_vertical=1.0, fontproperties={"size": 7})
    )


def _legend(fig, ctx: FigureContext, phenotypes: list[str], marks: list[Mark]) -> None:
    handles = [
        Line2D([], [], color=HABITAT_STYLE[p][0], linestyle=HABITAT_STYLE[p][1], linewidth=2,
               label=ctx.text(Term("phenotype", p)))
        for p in phenotypes
    ]
    handles += [
        Line2D([], [], linestyle="none", marker=m.symbol, color=m.colour, markeredgecolor="black", markersize=9,
               label=m.label)
        for m in marks
    ]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5), frameon=False)


def _phenotypes(report, timepoint: str) -> list[str]:
    return [s.phenotype for s in _units(report, timepoint, ("habitat",)) if s.phenotype in HABITAT_STYLE]


def mri_slices(ctx: FigureContext) -> list[Rendered]:
    """Axial, coronal and sagittal slices through the latest lesion, FLAIR and T1c rows."""
    timepoints = _timepoints(ctx)
    if not timepoints:
        return []
    timepoint = timepoints[-1]
    lesion = _lesion(ctx.report, timepoint.name)
    if lesion is None or lesion.centroid_mm is None:
        return []
    volume = Volume.of(timepoint)
    sequences = _sequences(timepoint)
    marks, mark_ids = _marks(ctx)
    fig = new_figure(9.0, 3.1 * len(sequences) + 0.7)
    axes = fig.subplots(len(sequences), 3, squeeze=False)
    for row, sequence in enumerate(sequences):
        for col, plane in enumerate(PLANES):
            ax = axes[row][col]
            _panel(ax, volume, sequence, plane, volume.slice_index(lesion.centroid_mm, PLANES[plane][0]), marks)
            ax.set_title(f"{sequence.upper()} · {ctx.phrase(f'figure.plane.{plane}')}")
    phenotypes = _phenotypes(ctx.report, timepoint.name)
    _legend(fig, ctx, phenotypes, marks)
    fig.suptitle(ctx.phrase("figure.mri.title", case=ctx.report.case_id, timepoint=timepoint.name))
    units = [s.id for s in _units(ctx.report, timepoint.name, ("lesion", "habitat"))]
    evidence = ctx.existing(units + mark_ids)
    fields = {"timepoint": timepoint.name, "sequences": ", ".join(s.upper() for s in sequences), "ids": cites(evidence)}
    return [
        Rendered(
            "mri_slices", "mri_slices", evidence,
            Phrase("figure.mri.caption", fields),
            Phrase("figure.mri.alt", fields | {
                "habitats": Listing(tuple(Term("phenotype", p) for p in phenotypes), "list"),
                "marks": str(len(marks)),
            }),
            png_bytes(fig),
        )
    ]


def mri_longitudinal(ctx: FigureContext) -> list[Rendered]:
    """The same axial slice (through the latest lesion's centre, in scanner mm) at every time point."""
    timepoints = _timepoints(ctx)
    if len(timepoints) < 2:
        return []
    lesion = _lesion(ctx.report, timepoints[-1].name)
    if lesion is None or lesion.centroid_mm is None:
        return []
    common = [s for s in SEQUENCES if all(s in t.sequences for t in timepoints)]
    sequence = common[0] if common else None
    if sequence is None:
        return []
    fig = new_figure(3.2 * len(timepoints), 3.9)
    axes = fig.subplots(1, len(timepoints), squeeze=False)[0]
    ids: list[str] = []
    for ax, timepoint in zip(axes, timepoints):
        volume = Volume.of(timepoint)
        _panel(ax, volume, sequence, "axial", volume.slice_index(lesion.centroid_mm, PLANES["axial"][0]), [])
        unit = _lesion(ctx.report, timepoint.name)
        volume_text = f" · {unit.volume_ml:.1f} mL" if unit is not None and unit.volume_ml is not None else ""
        date = f" ({timepoint.date.isoformat()})" if timepoint.date else ""
        ax.set_title(f"{timepoint.name}{date}{volume_text}")
        ids += [s.id for s in _units(ctx.report, timepoint.name, ("lesion", "habitat"))]
    ids += [s.id for s in ctx.report.spatial_evidence if s.unit_level == "longitudinal"]
    phenotypes = list(dict.fromkeys(p for t in timepoints for p in _phenotypes(ctx.report, t.name)))
    _legend(fig, ctx, phenotypes, [])
    fig.suptitle(ctx.phrase("figure.longitudinal.title", case=ctx.report.case_id, sequence=sequence.upper()))
    evidence = ctx.existing(ids)
    fields = {"sequence": sequence.upper(), "timepoints": cites([t.name for t in timepoints]), "ids": cites(evidence)}
    return [
        Rendered(
            "mri_longitudinal", "mri_longitudinal", evidence,
            Phrase("figure.longitudinal.caption", fields), Phrase("figure.longitudinal.alt", fields), png_bytes(fig),
        )
    ]


def volume_over_time(ctx: FigureContext) -> list[Rendered]:
    """Lesion and habitat volumes per time point (from the spatial evidence), dated where case.json dates them."""
    lesions = [s for s in ctx.report.spatial_evidence if s.unit_level == "lesion" and s.volume_ml is not None]
    if len({s.timepoint for s in lesions}) < 2:
        return []
    names = list(dict.fromkeys(s.timepoint for s in lesions))
    dated = all(s.timepoint_date for s in lesions)
    position = {n: i for i, n in enumerate(names)}
    fig = new_figure(6.4, 3.8)
    ax = fig.subplots()
    series = {"lesion": lesions}
    for s in ctx.report.spatial_evidence:
        if s.unit_level == "habitat" and s.volume_ml is not None and s.timepoint in position:
            series.setdefault(s.phenotype, []).append(s)
    for phenotype, units in series.items():
        colour, line = HABITAT_STYLE.get(phenotype, ("#1f2328", "solid"))
        xs = [u.timepoint_date if dated else position[u.timepoint] for u in units]
        ax.plot(xs, [u.volume_ml for u in units], marker="o", color=colour if phenotype != "lesion" else "#1f2328",
                linestyle=line, linewidth=2.4 if phenotype == "lesion" else 1.6,
                label=ctx.text(Term("phenotype", phenotype)))
        for x, u in zip(xs, units):
            ax.annotate(u.id, (x, u.volume_ml), textcoords="offset points", xytext=(4, 4), fontsize=7)
    longitudinal = [s for s in ctx.report.spatial_evidence if s.unit_level == "longitudinal" and s.change_percent is not None]
    for s in longitudinal:
        ax.text(0.02, 0.96, ctx.phrase("figure.volume.change", id=s.id, change=f"{s.change_percent:+.0f}%"),
                transform=ax.transAxes, va="top", fontsize=8)
    if not dated:
        ax.set_xticks(range(len(names)), names)
    else:
        fig.autofmt_xdate()
    ax.set_ylabel(ctx.phrase("figure.volume.ylabel"))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(ctx.phrase("figure.volume.title", case=ctx.report.case_id))
    ids = [u.id for units in series.values() for u in units] + [s.id for s in longitudinal]
    evidence = ctx.existing(ids)
    fields = {"timepoints": cites(names), "ids": cites(evidence)}
    return [
        Rendered(
            "volume_over_time", "volume_over_time", evidence,
            Phrase("figure.volume.caption", fields), Phrase("figure.volume.alt", fields), png_bytes(fig),
        )
    ]
