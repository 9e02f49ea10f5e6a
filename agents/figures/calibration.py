"""Calibration figure: where each model conclusion's probability sits on the model's reliability curve.

The curve is the one training stored on the model card (`metrics.evaluation.<task>.reliability`,
top-label probability vs observed accuracy on the evaluation split). A card without it (a model
trained before it was stored, or a model that has no card) gives no figure.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from agents.consistency.grounding import fmt_probability
from agents.figures.common import FigureContext, Rendered, new_figure, png_bytes
from fusion_models.card import card_path
from prompts import Listing, Phrase, Term
from schemas.report import Conclusion

log = logging.getLogger(__name__)


def reliability_curves(checkpoint: Path) -> dict[str, list[dict]]:
    """Task -> reliability bins from the model card beside `checkpoint`; empty when the card has none."""
    path = card_path(Path(checkpoint))
    if not path.is_file():
        return {}
    try:
        evaluation = json.loads(path.read_text(encoding="utf-8"))["metrics"]["evaluation"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("%s: metrics.evaluation: unreadable (%s); no calibration figure", path, error)
        return {}
    return {task: m["reliability"] for task, m in evaluation.items() if isinstance(m, dict) and m.get("reliability")}


def bin_of(bins: list[dict], probability: float) -> dict | None:
    """The bin holding `probability` (bins are (lower, upper], the first one closed at 0)."""
    for b in bins:
        if b["lower"] < probability <= b["upper"] or (b["lower"] == 0 and probability == 0):
            return b
    return None


def _model_conclusions(ctx: FigureContext, curves: dict[str, list[dict]]) -> list[Conclusion]:
    """Conclusions that are the model's own top label (a rule's or a reviewer's label is not on its curve)."""
    chosen = []
    for c in ctx.report.conclusions:
        prediction = ctx.fusion.prediction(c.task) if ctx.fusion else None
        if prediction is not None and c.task in curves and prediction.top()[0] == c.label and not c.overrides:
            chosen.append(c)
    return chosen


def calibration(ctx: FigureContext) -> list[Rendered]:
    curves = reliability_curves(ctx.settings.checkpoint)
    conclusions = _model_conclusions(ctx, curves)
    if not conclusions:
        return []
    fig = new_figure(3.3 * len(conclusions), 3.7)
    axes = fig.subplots(1, len(conclusions), squeeze=False)[0]
    placed = []
    for ax, c in zip(axes, conclusions):
        bins = [b for b in curves[c.task] if b["count"]]
        ax.plot([0, 1], [0, 1], linestyle="--", color="#8c959f", linewidth=1, label=ctx.phrase("figure.calibration.ideal"))
        ax.bar([(b["lower"] + b["upper"]) / 2 for b in bins], [b["accuracy"] for b in bins], width=0.1,
               color="#9ecbff", edgecolor="#0969da", label=ctx.phrase("figure.calibration.observed"))
        for b in bins:
            ax.annotate(f"n={b['count']}", ((b["lower"] + b["upper"]) / 2, b["accuracy"]), ha="center",
                        va="bottom", fontsize=6.5, xytext=(0, 1), textcoords="offset points")
        ax.axvline(c.probability, color="#cf222e", linewidth=2, label=ctx.phrase("figure.calibration.this_case"))
        hit = bin_of(curves[c.task], c.probability)
        # A Phrase, not a string: the caption renders it in every language, the picture in its own.
        observed = (Phrase("figure.calibration.observed_value", {"correct": str(round(hit["accuracy"] * hit["count"])),
                                                                 "n": str(hit["count"])})
                    if hit and hit["count"] else "–")
        placed.append(Phrase("figure.calibration.item", {
            "task": Term("task", c.task), "label": Term("label", c.label), "p": fmt_probability(c.probability),
            "observed": observed,
        }))
        ax.set(xlim=(0, 1), ylim=(0, 1.1))
        ax.set_xlabel(ctx.phrase("figure.calibration.xlabel"))
        ax.set_ylabel(ctx.phrase("figure.calibration.ylabel"))
        ax.set_title(f"{ctx.text(Term('task', c.task))}: {ctx.text(Term('label', c.label))}\n"
                     f"{fmt_probability(c.probability)} → {ctx.text(observed)}", fontsize=9)
    axes[0].legend(fontsize=7, loc="upper left", frameon=False)
    # It shows the model, not the case's evidence: it cites no evidence id; the caption names the model card.
    items = Listing(tuple(placed), "semicolon")
    return [
        Rendered(
            "calibration", "calibration", [],
            Phrase("figure.calibration.caption", {"items": items}),
            Phrase("figure.calibration.alt", {"n": str(len(conclusions)), "items": items}),
            png_bytes(fig),
        )
    ]
