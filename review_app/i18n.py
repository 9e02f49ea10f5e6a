"""The app's own UI strings (ui.<lang>.json) beside the report's phrase tables, whose terms it reuses."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from prompts import LANGUAGES, phrase_table, term

_HERE = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def ui_table(lang: str) -> dict[str, str]:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; available: {', '.join(LANGUAGES)}")
    return json.loads((_HERE / f"ui.{lang}.json").read_text(encoding="utf-8"))


def translator(lang: str) -> Callable[..., str]:
    """t(key, **fields): an app string, else a report phrase (section titles, ui.* of the report)."""
    own, report = ui_table(lang), phrase_table(lang)

    def t(key: str, **fields: object) -> str:
        text = own[key] if key in own else report[key]
        return text.format(**fields) if fields else text

    return t


def term_of(lang: str) -> Callable[[str, str], str]:
    return lambda namespace, value: term(lang, namespace, str(value))
