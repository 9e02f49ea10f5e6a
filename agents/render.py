"""Render a report as Markdown or self-contained HTML, in English or Chinese (Jinja2 templates in prompts/).

Both templates lay a report out the same way: the narrative's sections in their order
(`agents.narrative.SECTION_ORDER`: what the board must decide first, then conclusions,
then evidence), each once, with a section's table (conclusions, markers) at its head, then
the sources of the evidence ids and the provenance. Prose comes only from the narrative
(every language) and the phrase tables; free text from a case (the pathologist's words, a
loader's reason, a reviewer's comment) is quoted, never translated.

HTML is autoescaped; Markdown gets every free-text value backslash-escaped, so text from
a case shows as text and is never interpreted as markup.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from agents.consistency.grounding import fmt, fmt_percent, fmt_probability
from agents.narrative import SECTION_ORDER
from prompts import LANGUAGES, Phrase, localise, phrase_table, render_template, term
from schemas.report import EvidenceChainReport, Figure, LocalisedText, Sentence

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def md_escape(value: object) -> str:
    """Text safe inside a Markdown paragraph or table cell."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def md_code(value: object) -> str:
    """An identifier (file, locator, version) as a Markdown code span, on one line, pipes escaped for tables."""
    return "`" + " ".join(str(value).split()).replace("`", "'").replace("|", "\\|") + "`"


@dataclass(frozen=True)
class Item:
    """A narrative sentence as rendered: `anchor` is the evidence id whose link target it is, if any."""

    sentence: Sentence
    anchor: str | None


@dataclass(frozen=True)
class Section:
    key: str
    title: LocalisedText
    items: list[Item]


@dataclass(frozen=True)
class EvidenceSource:
    """Where an evidence id came from; `anchored` when a sentence already carries its link target."""

    id: str
    locator: str | None
    anchored: bool


@dataclass(frozen=True)
class SourceFile:
    """One input file and the evidence read from it: a row per file keeps the list short."""

    file: str
    items: list[EvidenceSource]


# Each figure stands beside the section whose evidence it pictures; one whose section is absent goes last.
FIGURE_SECTION = {
    "mri_slices": "spatial",
    "mri_longitudinal": "growth",
    "volume_over_time": "growth",
    "slide_heatmap": "histology",
    "molecular_panel": "markers",
    "pathway_activity": "mechanism",
    "calibration": "diagnosis",
}


@dataclass(frozen=True)
class FigureView:
    """A figure as a page shows it: `src` is a data: URI when the PNG is at hand, else its path."""

    figure: Figure
    src: str


def _figure_views(
    report: EvidenceChainReport, sections: list[Section], images: dict[str, bytes] | None
) -> tuple[dict[str, list[FigureView]], list[FigureView], dict[str, str]]:
    """Figures by section key, those with no section on the page, and evidence id -> the figure that shows it."""
    present = {s.key for s in sections}
    by_section: dict[str, list[FigureView]] = {}
    rest: list[FigureView] = []
    shows: dict[str, str] = {}
    for f in report.figures:
        png = (images or {}).get(f.path)
        view = FigureView(f, f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}" if png else f.path)
        key = FIGURE_SECTION.get(f.kind)
        (by_section.setdefault(key, []) if key in present else rest).append(view)
        for e in f.evidence:
            shows.setdefault(e, f.id)
    return by_section, rest, shows


def _subjects(report: EvidenceChainReport) -> dict[str, set[str]]:
    """Per section, the ids a sentence is about when it cites them first (its link target)."""
    spatial = {s.id for s in report.spatial_evidence}
    return {
        "decisions": {f.id for f in report.consistency_flags},
        "growth": spatial,
        "spatial": spatial,
        "histology": {h.id for h in report.histology_evidence},
        "mechanism": {m.id for m in report.mechanism_evidence},
    }


def layout(report: EvidenceChainReport) -> tuple[list[Section], list[SourceFile]]:
    """The sections in narrative order, each sentence with its link target, and the sources of all evidence."""
    subjects = _subjects(report)
    anchored: set[str] = set()
    sections = []
    for section in report.narrative:
        items = []
        for s in section.sentences:
            first = s.evidence[0] if s.evidence else None
            anchor = first if first in subjects.get(section.key, ()) and first not in anchored else None
            if anchor:
                anchored.add(anchor)
            items.append(Item(s, anchor))
        sections.append(Section(section.key, section.title, items))
    files: dict[str, list[EvidenceSource]] = {}
    for e in (*report.spatial_evidence, *report.histology_evidence, *report.mechanism_evidence):
        files.setdefault(e.source.file, []).append(EvidenceSource(e.id, e.source.locator, e.id in anchored))
    return sections, [SourceFile(file, items) for file, items in files.items()]


def _with_tables(sections: list[Section], report: EvidenceChainReport) -> list[Section]:
    """The sections in `SECTION_ORDER`, adding those whose table is all they have (markers)."""
    if report.markers and all(s.key != "markers" for s in sections):
        sections = [*sections, Section("markers", localise(Phrase("section.markers")), [])]
    rank = {key: i for i, key in enumerate(SECTION_ORDER)}
    return sorted(sections, key=lambda s: rank.get(s.key, len(rank)))


def _context(report: EvidenceChainReport, lang: str, images: dict[str, bytes] | None = None) -> dict[str, Any]:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; available: {', '.join(LANGUAGES)}")
    table = phrase_table(lang)

    def num(value: float | None, decimals: int = 2, signed: bool = False) -> str:
        return "–" if value is None else fmt(value, decimals, signed)

    def prob(value: float | None) -> str:
        return "–" if value is None else fmt_probability(value)

    def pct(value: float | None) -> str:
        return "–" if value is None else fmt_percent(value)

    def loc(text: LocalisedText) -> str:
        return getattr(text, lang)

    def quote(text: str) -> str:
        return table["quote.source"].format(text=text)

    sections, sources = layout(report)
    sections = _with_tables(sections, report)
    figures, other_figures, shows = _figure_views(report, sections, images)
    return {
        "report": report,
        "lang": lang,
        "t": table.__getitem__,
        "term": lambda namespace, value: term(lang, namespace, str(value)),
        "loc": loc,
        "num": num,
        "prob": prob,
        "pct": pct,
        "quote": quote,
        "md": md_escape,
        "code": md_code,
        "sections": sections,
        "sources": sources,
        "figures": figures,
        "other_figures": other_figures,
        "shows": shows,
        "flags": {f.id: f for f in report.consistency_flags},
    }


def render_markdown(report: EvidenceChainReport, lang: str) -> str:
    return render_template("report.md.j2", **_context(report, lang))


def render_html(report: EvidenceChainReport, lang: str, images: dict[str, bytes] | None = None) -> str:
    """`images` (figure path -> PNG) embeds the figures as data: URIs; without it the page links the files."""
    return render_template("report.html.j2", **_context(report, lang, images))
