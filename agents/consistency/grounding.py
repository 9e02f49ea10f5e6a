"""Numbers in claims: how they are written, and whether each one traces to cited evidence.

Every number the report writes goes through `fmt`, and `number_is_grounded` re-applies
the same rounding to the cited values, so a correctly quoted value always matches and an
invented one never does. The claim verifier (claims.py) reads numbers with `NUMBER`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence

from pydantic import BaseModel


# Decimals per kind of quantity: one writing convention for every language and template.
PROBABILITY_DECIMALS = 2
VOLUME_DECIMALS = 1
PERCENT_DECIMALS = 0
ACTIVITY_DECIMALS = 2
BITS_DECIMALS = 2
MM_DECIMALS = 0
ATTENTION_DECIMALS = 2
VAF_DECIMALS = 2
GISTIC_DECIMALS = 0

DEFAULT_TOLERANCE = 1e-9

# A quantity stands alone: digits glued to letters, ids or paths (IDH1, S2, T0:enhancing,
# GO:0001666, 1p/19q, CNS5) are names, not numbers. Only ASCII counts as glue, so a number
# next to a Chinese character is still read.
NUMBER = re.compile(r"(?<![A-Za-z0-9_.:/\-−])([-−]?)(\d+(?:\.\d+)?)(?![A-Za-z0-9_/]|\.\d)")
# A bound written by fmt_probability ('> 0.99', '< 0.01') holds when some cited value lies beyond it.
BOUND = re.compile(r"([<>])\s?$")


def fmt(value: float, decimals: int, signed: bool = False) -> str:
    """Write a number with fixed decimals; never '-0.0'."""
    text = f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"
    if float(text) == 0.0:
        text = f"{0.0:.{decimals}f}"
    return text


# A probability this close to 0 or 1 is written as a bound: a calibrated model is never certain,
# and "1.00" would read as certainty. Decimals of PROBABILITY_DECIMALS give the bounds 0.01 / 0.99.
_PROBABILITY_FLOOR = 10.0 ** -PROBABILITY_DECIMALS


def fmt_probability(p: float) -> str:
    """A probability for every rendering: '0.42', and never '1.00' or '0.00' but '> 0.99' / '< 0.01'."""
    text = fmt(p, PROBABILITY_DECIMALS)
    if float(text) >= 1.0:
        return f"> {fmt(1.0 - _PROBABILITY_FLOOR, PROBABILITY_DECIMALS)}"
    if float(text) <= 0.0:
        return f"< {fmt(_PROBABILITY_FLOOR, PROBABILITY_DECIMALS)}"
    return text


def fmt_percent(fraction: float) -> str:
    return f"{fmt(100.0 * fraction, PERCENT_DECIMALS)}%"


def numbers_in(text: str) -> list[float]:
    """Every stand-alone number in `text`, signed, in order of appearance."""
    return [
        -float(digits) if sign else float(digits) for sign, digits in NUMBER.findall(text)
    ]


def number_is_grounded(
    written: float, decimals: int, bound: str | None, values: Sequence[float], tol: float = DEFAULT_TOLERANCE
) -> bool:
    """True when some value, rounded as the number is written, equals it (or, for a bound '>'/'<', lies beyond it)."""
    if bound == ">":
        return any(v > written for v in values)
    if bound == "<":
        return any(v < written for v in values)
    return any(abs(float(fmt(v, decimals)) - written) <= tol for v in values)


def values_of(*items: BaseModel) -> list[float]:
    """Every number an item states: numeric fields (a fraction also as percent) and numbers in its text."""
    out: list[float] = []
    for item in items:
        _collect(item.model_dump(), out)
    return out


def _collect(value: object, out: list[float]) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, dt.date):  # a date is quoted as YYYY-MM-DD, whose year reads as a number
        out.extend(numbers_in(value.isoformat()))
        return
    if isinstance(value, (int, float)):
        out.append(float(value))
        if 0.0 <= value <= 1.0:
            out.append(100.0 * value)
    elif isinstance(value, str):
        out.extend(numbers_in(value))
    elif isinstance(value, dict):
        for v in value.values():
            _collect(v, out)
    elif isinstance(value, Iterable):
        for v in value:
            _collect(v, out)
