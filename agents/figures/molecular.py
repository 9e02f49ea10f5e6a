"""Molecular figures: the marker panel (status in colour, symbol and words) and pathway activity bars."""

from __future__ import annotations

from matplotlib.patches import FancyBboxPatch

from agents.figures.common import FigureContext, Rendered, cites, new_figure, png_bytes
from prompts import Phrase, Term

# Status -> (fill, symbol, hatch). Colour is never the only cue: every chip carries a symbol and the
# status in words; a model prediction is hatched, since it is not a test.
STATUS_STYLE: dict[str, tuple[str, str, str]] = {
    "detected": ("#cf222e", "+", ""),
    "not_detected": ("#2da44e", "−", ""),
    "not_tested": ("#ffffff", "?", ""),
    "predicted": ("#d8b9ff", "~", "///"),
    "not_assessed": ("#d0d7de", "·", ""),
}
DIRECTION_STYLE: dict[str, tuple[str, str]] = {"up": ("#cf222e", ""), "down": ("#0969da", ""), "neutral": ("#8c959f", "..")}


def molecular_panel(ctx: FigureContext) -> list[Rendered]:
    """One row per diagnostic marker: name, status chip, value and evidence ids."""
    markers = ctx.report.markers
    if not markers:
        return []
    fig = new_figure(10.0, 0.42 * len(markers) + 1.0)
    ax = fig.subplots()
    ax.set_xlim(0, 1)
    ax.set_ylim(len(markers), -0.9)
    ax.axis("off")
    header = dict(fontweight="bold", va="center", fontsize=9)
    ax.text(0.0, -0.5, ctx.phrase("figure.panel.col_marker"), **header)
    ax.text(0.42, -0.5, ctx.phrase("figure.panel.col_status"), **header)
    ax.text(0.69, -0.5, ctx.phrase("figure.panel.col_value"), **header)
    for row, marker in enumerate(markers):
        y = row + 0.5
        fill, symbol, hatch = STATUS_STYLE[marker.status]
        ax.text(0.0, y, ctx.text(Term("marker", marker.marker)), va="center", fontsize=9)
        ax.add_patch(
            FancyBboxPatch((0.42, y - 0.33), 0.25, 0.66, boxstyle="round,pad=0.0,rounding_size=0.02", facecolor=fill,
                           edgecolor="#57606a", linestyle="dashed" if marker.status == "not_tested" else "solid",
                           hatch=hatch, linewidth=1.0)
        )
        dark = marker.status in ("detected", "not_detected")
        ax.text(0.545, y, f"{symbol} {ctx.text(Term('marker_status', marker.status))}", ha="center", va="center",
                fontsize=8.5, fontweight="bold", color="white" if dark else "#1f2328",
                bbox=None if dark else dict(facecolor=fill, edgecolor="none", pad=0.5, alpha=0.9))
        value = marker.value if marker.value and (ctx.lang == "en" or marker.status == "detected") else "–"
        ids = f"  [{', '.join(marker.evidence)}]" if marker.evidence else ""
        ax.text(0.69, y, f"{value}{ids}", va="center", fontsize=8, color="#57606a", clip_on=True)
        ax.axhline(row + 1, color="#eaeef2", linewidth=0.8)
    ax.set_title(ctx.phrase("figure.panel.title", case=ctx.report.case_id), loc="left")
    evidence = ctx.existing([e for m in markers for e in m.evidence])
    counts = {s: sum(m.status == s for m in markers) for s in STATUS_STYLE}
    fields = {"n": str(len(markers)), "ids": cites(evidence), **{s: str(c) for s, c in counts.items()}}
    return [
        Rendered(
            "molecular_panel", "molecular_panel", evidence,
            Phrase("figure.panel.caption", fields), Phrase("figure.panel.alt", fields), png_bytes(fig),
        )
    ]


def _pathway_name(ctx: FigureContext, m) -> str:
    """The phrase table's name of a knowledge-base pathway; the knowledge base's own name where it has none."""
    name = ctx.text(Term("pathway", m.pathway_id))
    return m.pathway_name if name == m.pathway_id else name


def pathway_activity(ctx: FigureContext) -> list[Rendered]:
    """Single-sample pathway activity per scored pathway, coloured by direction, with its driver genes."""
    pathways = [m for m in ctx.report.mechanism_evidence if m.kind == "pathway_activity" and m.activity is not None]
    if not pathways:
        return []
    fig = new_figure(9.0, 0.45 * len(pathways) + 1.3)
    ax = fig.subplots()
    rows = range(len(pathways))
    for row, m in zip(rows, pathways):
        colour, hatch = DIRECTION_STYLE.get(m.direction, ("#8c959f", ""))
        ax.barh(row, m.activity, color=colour, hatch=hatch, edgecolor="#1f2328", linewidth=0.6, height=0.6)
        genes = ", ".join(m.driver_genes) if m.driver_genes else ""
        label = f"{ctx.text(Term('direction', m.direction))}" + (f" · {genes}" if genes else "")
        ax.text(0.56, row, label, va="center", fontsize=8, fontstyle="italic" if genes else "normal")
    ax.set_yticks(list(rows), [f"{m.id}  {_pathway_name(ctx, m)}" for m in pathways], fontsize=8.5)
    ax.invert_yaxis()
    ax.set_xlim(-0.5, 1.55)  # the right part holds the direction and driver genes
    ax.set_xticks([-0.5, -0.25, 0, 0.25, 0.5])
    ax.axvline(0, color="#1f2328", linewidth=0.8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_xlabel(ctx.phrase("figure.pathway.xlabel"))
    ax.set_title(ctx.phrase("figure.pathway.title", case=ctx.report.case_id), loc="left")
    evidence = ctx.existing([m.id for m in pathways])
    up = [m.id for m in pathways if m.direction == "up"]
    fields = {"n": str(len(pathways)), "up": cites(up) if up else "–", "ids": cites(evidence)}
    return [
        Rendered(
            "pathway_activity", "pathway_activity", evidence,
            Phrase("figure.pathway.caption", fields), Phrase("figure.pathway.alt", fields), png_bytes(fig),
        )
    ]
