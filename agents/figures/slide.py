"""Slide figure: the attention heatmap over the slide thumbnail, cited patches boxed at their `bbox_level0`.

For a case that arrives as HDF5 patch features only, there is no image: the heatmap is drawn
from the patches' `coords` on a blank level-0 canvas and the figure says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tiffslide
from matplotlib.patches import Rectangle

from agents.figures.common import BOX_COLOUR, FigureContext, Rendered, cites, new_figure, png_bytes
from fusion_models.inputs import PATHOLOGY_DIR, SLIDE_SUFFIXES, SlideFeatures
from prompts import Phrase
from schemas.errors import InputError
from schemas.report import HistologyEvidence
from toolkit.case_files import CaseFolder, checked_file

THUMBNAIL_SIDE = 1024
HEATMAP = "inferno"  # black-red-yellow: no cyan, so the patch boxes stand out


def slide_image(case_dir: Path, slide: SlideFeatures) -> tuple[np.ndarray, tuple[int, int]] | None:
    """Thumbnail (RGB) and level-0 size of the slide behind `slide`'s features, if the case has the image."""
    folder = CaseFolder(case_dir)
    stem = Path(slide.file).stem
    for name in [slide.file] + [f"{PATHOLOGY_DIR}/{stem}{suffix}" for suffix in SLIDE_SUFFIXES]:
        if name.lower().endswith(SLIDE_SUFFIXES) and folder.exists(name):
            real, _ = checked_file(case_dir / name, case_dir, "slide")
            with tiffslide.TiffSlide(real) as handle:
                thumbnail = np.asarray(handle.get_thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE)).convert("RGB"))
                return thumbnail, tuple(int(v) for v in handle.dimensions)
    return None


def attention_grid(coords: np.ndarray, attention: np.ndarray, patch_size: int) -> np.ndarray:
    """(rows, cols) grid of attention x N (1 = uniform) on the level-0 patch grid; NaN where no patch was read."""
    n = len(attention)
    cells = np.asarray(coords, dtype=np.int64) // patch_size
    grid = np.full((int(cells[:, 1].max()) + 1, int(cells[:, 0].max()) + 1), np.nan)
    grid[cells[:, 1], cells[:, 0]] = np.asarray(attention, dtype=float) * n
    return grid


def _cited(ctx: FigureContext, slide_id: str) -> list[HistologyEvidence]:
    return [h for h in ctx.report.histology_evidence
            if h.origin == "patch_attention" and h.slide_id == slide_id and h.bbox_level0]


def draw_slide(ctx: FigureContext, slide: SlideFeatures, attention: np.ndarray):
    """The figure (before PNG), its axes, the cited patches and whether the slide image was there.

    Tests read the boxes' pixels through `ax.transData`.
    """
    image = slide_image(ctx.inputs.case_dir, slide)
    grid = attention_grid(slide.coords, attention, slide.patch_size_level0)
    extent_size = (grid.shape[1] * slide.patch_size_level0, grid.shape[0] * slide.patch_size_level0)
    width, height = image[1] if image is not None else extent_size
    fig = new_figure(7.2, 6.2)
    ax = fig.subplots()
    if image is not None:
        ax.imshow(image[0], extent=(0, width, height, 0), interpolation="bilinear")
    else:
        ax.set_facecolor("#e6e6e6")
    heat = ax.imshow(
        np.ma.masked_invalid(grid), cmap=HEATMAP, alpha=0.55 if image is not None else 1.0,
        extent=(0, extent_size[0], extent_size[1], 0), interpolation="nearest", vmin=0,
        vmax=max(float(np.nanmax(grid)), 1.0),
    )
    cited = _cited(ctx, slide.slide_id)
    for h in cited:
        x, y, w, hgt = h.bbox_level0
        ax.add_patch(Rectangle((x, y), w, hgt, fill=False, edgecolor=BOX_COLOUR, linewidth=3, antialiased=False))
        ax.annotate(h.id, (x + w, y), xytext=(4, -2), textcoords="offset points", color=BOX_COLOUR,
                    fontsize=9, fontweight="bold", va="top",
                    bbox=dict(boxstyle="round,pad=0.15", facecolor="black", edgecolor="none", alpha=0.7))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_aspect("equal")
    ax.set_xlabel(ctx.phrase("figure.slide.xlabel"))
    ax.tick_params(labelsize=7)
    bar = fig.colorbar(heat, ax=ax, shrink=0.8)
    bar.set_label(ctx.phrase("figure.slide.colourbar"))
    key = "figure.slide.title" if image is not None else "figure.slide.title_coords"
    ax.set_title(ctx.phrase(key, slide=slide.slide_id, n=str(len(attention))))
    return fig, ax, cited, image is not None


def slide_heatmap(ctx: FigureContext) -> list[Rendered]:
    """One figure per slide whose patches the model attended to."""
    if ctx.inputs is None or ctx.fusion is None:
        return []
    maps = {m.slide_id: np.asarray(m.attention) for m in ctx.fusion.slide_attention}
    rendered = []
    for number, slide in enumerate(ctx.inputs.slides, start=1):
        attention = maps.get(slide.slide_id)
        if attention is None or len(attention) != len(slide.coords) or not len(attention):
            continue
        try:
            fig, _, cited, has_image = draw_slide(ctx, slide, attention)
        except InputError:
            continue  # the slide image went unreadable after loading; its features were used, the picture is skipped
        summaries = [h.id for h in ctx.report.histology_evidence
                     if h.origin == "pattern_summary" and slide.file in h.source.file]
        evidence = ctx.existing([h.id for h in cited] + summaries)
        fields = {"slide": slide.slide_id, "n": str(len(attention)), "boxed": str(len(cited)), "ids": cites(evidence)}
        drawn_on = "image" if has_image else "coords"
        rendered.append(
            Rendered(
                "slide_heatmap", f"slide_heatmap_{number}", evidence,
                Phrase(f"figure.slide.caption_{drawn_on}", fields), Phrase(f"figure.slide.alt_{drawn_on}", fields),
                png_bytes(fig),
            )
        )
    return rendered
