"""What every figure shares: the drawing context, fonts, colours, fixed-size deterministic PNGs.

Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas (no pyplot, so no global
figure state across batch threads). Size and dpi are fixed and the PNG carries no software or
time stamp, so a re-run writes byte-identical files.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import matplotlib
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from agents.context import Settings
from fusion_models.inputs import CaseInputs
from prompts import FieldValue, Listing, Phrase, render
from schemas.fusion import FusionOutput
from schemas.report import EvidenceChainReport

log = logging.getLogger(__name__)

DPI = 100
LATIN_FONT = "DejaVu Sans"  # ships with matplotlib
# Habitat outlines: colour and line style both differ, so they read in greyscale and for colour-blind readers.
HABITAT_STYLE: dict[str, tuple[str, str]] = {
    "enhancing": ("#ff3b30", "solid"),
    "necrotic_core": ("#ffd60a", "dashed"),
    "non_enhancing_core": ("#ffd60a", "dashed"),
    "oedema": ("#32d2ff", "dotted"),
}
BOX_COLOUR = "#00ffff"  # cited patches: cyan is absent from the heatmap's colour map
BIOPSY_COLOUR = "#ffffff"
TARGET_COLOUR = "#ff2dff"


@dataclass(frozen=True)
class Rendered:
    """One drawn figure before it is numbered: `name` is the PNG's stem under figures/."""

    kind: str
    name: str
    evidence: list[str]
    caption: Phrase
    alt: Phrase
    png: bytes


@dataclass(frozen=True)
class FigureContext:
    """What a figure may draw from. `inputs` is None when the case's files were not reloaded."""

    inputs: CaseInputs | None
    report: EvidenceChainReport
    fusion: FusionOutput | None
    settings: Settings
    lang: str  # language of the text inside the pictures

    def text(self, value: FieldValue) -> str:
        return render(value, self.lang)

    def phrase(self, key: str, **fields: FieldValue) -> str:
        return render(Phrase(key, fields), self.lang)

    def existing(self, ids: list[str]) -> list[str]:
        """`ids` that are evidence of this report, first occurrence kept, order kept."""
        known = self.report.evidence_ids()
        return list(dict.fromkeys(i for i in ids if i in known))


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """A CJK sans font matplotlib can use, registering a system one its font cache predates; None if none."""
    names = {f.name for f in font_manager.fontManager.ttflist}
    for name in ("Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei"):
        if name in names:
            return name
    for path in sorted(font_manager.findSystemFonts()):
        if "SansCJK" in path.replace(" ", "") and path.endswith((".ttc", ".otf", ".ttf")):
            font_manager.fontManager.addfont(path)
    names = {f.name for f in font_manager.fontManager.ttflist}
    return "Noto Sans CJK SC" if "Noto Sans CJK SC" in names else None


def picture_language(lang: str) -> str:
    """The language the pictures' own text can be drawn in: Chinese needs a CJK font, else English (warned)."""
    if lang == "zh" and cjk_font() is None:
        log.warning(
            "no CJK font found (install Debian's fonts-noto-cjk: .ci/setup.d/20-fonts.sh); "
            "figure text is drawn in English instead of as empty boxes"
        )
        return "en"
    return lang


@contextmanager
def style(lang: str = "en") -> Iterator[None]:
    """Fonts and sizes for every figure, scoped so the process's other plots are untouched.

    The CJK font joins only for Chinese text: as a fallback it is consulted for every string, which
    makes English figures about a third slower to draw.
    """
    families = [LATIN_FONT] + ([cjk_font()] if lang == "zh" and cjk_font() else [])
    with matplotlib.rc_context(
        {
            # Named families, not the generic 'sans-serif': matplotlib falls back glyph by glyph only across names.
            "font.family": families,
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.unicode_minus": False,
        }
    ):
        yield


def new_figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG at its fixed size, without metadata that would differ between runs."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def cites(ids: list[str]) -> Listing:
    return Listing(tuple(ids), "list")
