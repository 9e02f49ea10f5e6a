"""Render a report as Markdown or self-contained HTML, in English or Chinese (Jinja2 templates in prompts/).

HTML is autoescaped; Markdown gets every free-text value backslash-escaped, so text from
a case (findings, reviewer comments) shows as text and is never interpreted as markup.
"""

from __future__ import annotations

import re
from typing import Any

from agents.consistency.grounding import fmt, fmt_percent
from prompts import LANGUAGES, phrase_table, render_template, term
from schemas.report import EvidenceChainReport, LocalisedText

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def md_escape(value: object) -> str:
    """Text safe inside a Markdown paragraph or table cell."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def _context(report: EvidenceChainReport, lang: str) -> dict[str, Any]:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; available: {', '.join(LANGUAGES)}")
    table = phrase_table(lang)

    def num(value: float | None, decimals: int = 2, signed: bool = False) -> str:
        return "–" if value is None else fmt(value, decimals, signed)

    def pct(value: float | None) -> str:
        return "–" if value is None else fmt_percent(value)

    def loc(text: LocalisedText) -> str:
        return getattr(text, lang)

    return {
        "report": report,
        "lang": lang,
        "t": table.__getitem__,
        "term": lambda namespace, value: term(lang, namespace, str(value)),
        "loc": loc,
        "num": num,
        "pct": pct,
        "md": md_escape,
    }


def render_markdown(report: EvidenceChainReport, lang: str) -> str:
    return render_template("report.md.j2", **_context(report, lang))


def render_html(report: EvidenceChainReport, lang: str) -> str:
    return render_template("report.html.j2", **_context(report, lang))
