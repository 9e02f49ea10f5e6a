"""Pictures of a case's evidence, rendered once per case into `figures/` and embedded in report.html.

One module per kind of figure; `render_figures` runs them in reading order (MRI, growth, slide,
markers, pathways, calibration), numbers what they drew FIG1, FIG2, ... and localises each
caption and alt text in every report language. A figure whose data the case lacks is skipped.
"""

from __future__ import annotations

from collections.abc import Callable

from agents.context import Settings
from agents.figures.calibration import calibration
from agents.figures.common import FigureContext, Rendered, cites, picture_language, style
from agents.figures.molecular import molecular_panel, pathway_activity
from agents.figures.mri import mri_longitudinal, mri_slices, volume_over_time
from agents.figures.slide import slide_heatmap
from fusion_models.inputs import CaseInputs
from prompts import Phrase, localise
from schemas.fusion import FusionOutput
from schemas.report import EvidenceChainReport, Figure

FIGURES_DIR = "figures"
RENDERERS: tuple[Callable[[FigureContext], list[Rendered]], ...] = (
    mri_slices, mri_longitudinal, volume_over_time, slide_heatmap, molecular_panel, pathway_activity, calibration,
)

__all__ = ["FIGURES_DIR", "render_figures"]


def render_figures(
    inputs: CaseInputs | None, report: EvidenceChainReport, fusion: FusionOutput | None, settings: Settings
) -> tuple[list[Figure], dict[str, bytes]]:
    """The case's figures and their PNGs (path relative to the case folder -> bytes); none when switched off."""
    if not settings.figures:
        return [], {}
    ctx = FigureContext(inputs, report, fusion, settings, picture_language(settings.lang))
    with style(ctx.lang):
        drawn = [figure for renderer in RENDERERS for figure in renderer(ctx)]
    figures, images = [], {}
    for number, item in enumerate(drawn, start=1):
        path = f"{FIGURES_DIR}/{item.name}.png"
        figures.append(
            Figure(id=f"FIG{number}", kind=item.kind, path=path, evidence=item.evidence,
                   caption=localise(_with_evidence(item)), alt=localise(item.alt))
        )
        images[path] = item.png
    return figures, images


def _with_evidence(item: Rendered) -> Phrase:
    return Phrase("figure.with_evidence", {"text": item.caption, "ids": cites(item.evidence)}) if item.evidence else item.caption
