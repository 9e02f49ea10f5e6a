"""Phrase tables and Jinja2 templates, English and Chinese.

Every sentence a report shows comes from one phrase per sentence kind and language
(`phrases.<lang>.json`, `str.format` placeholders). Callers describe a sentence as a
`Phrase` whose fields are already-formatted numbers, controlled-vocabulary `Term`s,
`Listing`s or nested phrases; rendering it once per language keeps the numbers
identical across languages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal, Union

import jinja2

from schemas.report import LocalisedText

LANGUAGES: tuple[str, ...] = ("en", "zh")
_PLAIN_WORD = re.compile(r"[a-z][a-z-]*[,:;]?")
PROMPTS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Term:
    """A controlled-vocabulary value, translated by the `term.<namespace>.<value>` entry (else shown as is)."""

    namespace: str
    value: str


@dataclass(frozen=True)
class Listing:
    """Items joined as prose, in the language's punctuation: nouns 'a, b and c' ('and'), clauses
    'a, b and c' ('clause': Chinese joins clauses with a comma, never with 和), an enumeration 'a, b, c'
    ('list': Chinese 、), clauses 'a, b, c' ('comma': Chinese ，) or 'a; b; c' ('semicolon')."""

    items: tuple[FieldValue, ...]
    style: Literal["and", "clause", "list", "comma", "semicolon"] = "and"


@dataclass(frozen=True)
class Phrase:
    """One phrase-table entry with its fields."""

    key: str
    fields: Mapping[str, FieldValue] = field(default_factory=dict)


FieldValue = Union[str, Term, Listing, Phrase, LocalisedText]


def _check_language(lang: str) -> None:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; available: {', '.join(LANGUAGES)}")


@lru_cache(maxsize=None)
def phrase_table(lang: str) -> Mapping[str, str]:
    """The phrase table of one language (read once)."""
    _check_language(lang)
    return json.loads((PROMPTS_DIR / f"phrases.{lang}.json").read_text(encoding="utf-8"))


def term(lang: str, namespace: str, value: str) -> str:
    # Model labels such as 'G4' or 'IDHwt' have no entry and read the same in every language.
    return phrase_table(lang).get(f"term.{namespace}.{value}", value)


def render(value: FieldValue, lang: str) -> str:
    """One field value (or phrase) in one language."""
    if isinstance(value, str):
        return value
    if isinstance(value, LocalisedText):
        return getattr(value, lang)
    if isinstance(value, Term):
        return term(lang, value.namespace, value.value)
    if isinstance(value, Listing):
        return _join([render(v, lang) for v in value.items], lang, value.style)
    table = phrase_table(lang)
    if value.key not in table:
        raise KeyError(f"phrases.{lang}.json has no entry {value.key!r}")
    return table[value.key].format_map({k: render(v, lang) for k, v in value.fields.items()})


def _join(items: list[str], lang: str, style: str) -> str:
    table = phrase_table(lang)
    if style in ("list", "comma", "semicolon"):
        return table[f"join.{style}"].join(items)
    if len(items) < 2:
        return "".join(items)
    return table[f"join.{style}_separator"].join(items[:-1]) + table[f"join.{style}_last"] + items[-1]


def sentence_case(text: str) -> str:
    """Upper-case a leading plain lowercase word; leave names (paths, genes, 'cIMPACT', ids) and Chinese alone."""
    first = text.split(" ", 1)[0]
    return text[:1].upper() + text[1:] if _PLAIN_WORD.fullmatch(first) else text


def localise(value: FieldValue, sentence: bool = True) -> LocalisedText:
    """A sentence in every language; `sentence=False` for a clause that goes inside another sentence."""
    case = sentence_case if sentence else str
    return LocalisedText(**{lang: case(render(value, lang)) for lang in LANGUAGES})


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """Jinja2 environment over this folder; autoescaping is on for `*.html.j2` templates."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(PROMPTS_DIR)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False, default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_template(name: str, **context: object) -> str:
    """Render a template of this folder, e.g. `render_template("drafting.system.j2", ...)`."""
    return environment().get_template(name).render(**context)
