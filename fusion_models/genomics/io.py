"""Genomics inputs of a case bundle: expression, mutation and copy-number TSVs plus meta.json.

Each file is optional and checked on its own; a broken file becomes an unusable
entry naming file and column, and the others are still used. The files are small
(~1,500 genes), so they are parsed with plain Python: pandas' per-call overhead
would be most of the load time.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from schemas.errors import InputError
from schemas.report import UnusableModality
from toolkit.case_files import CaseFolder, excerpt

GENOMICS_DIR = "genomics"
FILES = {"expression": "expression.tsv", "mutations": "mutations.tsv", "cnv": "cnv.tsv", "meta": "meta.json"}
DEFAULT_EXPRESSION_SCALE = "zscore"
GISTIC_RANGE = (-2.0, 2.0)
EXAMPLES = 5
T = TypeVar("T")


@dataclass
class GenomicsInput:
    """Checked genomics of one case; a part is None when its file is absent or unusable."""

    expression: pd.Series | None  # index = HGNC symbol (upper-case, unique), float values
    expression_scale: str  # from meta.json, default "zscore"
    mutations: pd.DataFrame | None  # columns gene, variant, vaf (vaf float or NaN)
    cnv: pd.Series | None  # index gene, GISTIC values in -2..2
    files: dict[str, str]  # role -> path relative to the case folder
    unknown_genes: list[str] = field(default_factory=list)  # expression symbols dropped as unknown


@dataclass
class Table:
    """Columns of a TSV as stripped strings, with the file line number of each row."""

    rel: str
    columns: dict[str, list[str]]
    lines: list[int]

    def line(self, row: int) -> int:
        return self.lines[row]


def read_table(folder: CaseFolder, rel: str, required: tuple[str, ...]) -> Table:
    """Tab-separated file with the required columns (header names compared case-insensitively)."""
    text = folder.read_text(rel, "tsv", encoding="utf-8-sig")
    numbered = [(n, line.split("\t")) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not numbered:
        raise InputError(rel, "tsv", "empty file")
    header = [name.strip().lower() for name in numbered[0][1]]
    for name in required:
        if name not in header:
            raise InputError(rel, name, f"missing column; found {excerpt(', '.join(header))}")
    body = numbered[1:]
    for n, row in body:
        if len(row) > len(header):
            raise InputError(rel, "tsv", f"line {n} has {len(row)} fields, the header {len(header)}")
    # Editors often drop trailing empty fields (an empty vaf); read them as empty.
    index = {name: header.index(name) for name in required}
    columns = {name: [row[j].strip() if j < len(row) else "" for _, row in body] for name, j in index.items()}
    return Table(rel, columns, [n for n, _ in body])


def gene_symbols(table: Table) -> list[str]:
    """Upper-cased symbols; an empty one is an error naming its line."""
    genes = [g.upper() for g in table.columns["gene"]]
    if "" in genes:
        raise InputError(table.rel, "gene", f"empty gene symbol on line {table.line(genes.index(''))}")
    return genes


def numbers(table: Table, column: str, genes: list[str], *, allow_empty: bool) -> np.ndarray:
    """Column as floats; empty cells become NaN where allowed, anything else non-numeric is an error."""
    values = np.empty(len(genes), dtype=np.float64)
    for i, text in enumerate(table.columns[column]):
        if text == "" and allow_empty:
            values[i] = np.nan
            continue
        try:
            values[i] = float(text)
        except ValueError:
            values[i] = np.nan
        if not math.isfinite(values[i]):
            raise InputError(
                table.rel, column, f"non-numeric value '{excerpt(text)}' for gene {excerpt(genes[i])} (line {table.line(i)})"
            )
    return values


def by_gene(table: Table, genes: list[str], values: np.ndarray) -> pd.Series:
    dupes = sorted(g for g, n in Counter(genes).items() if n > 1)
    if dupes:
        raise InputError(table.rel, "gene", f"duplicate gene symbols: {', '.join(dupes[:EXAMPLES])}")
    return pd.Series(values, index=pd.Index(genes, name="gene"), dtype=np.float64)


def split_unknown(expression: pd.Series, known_genes: set[str], rel: str) -> tuple[pd.Series, list[str]]:
    """Drop symbols the knowledge base does not know; a majority of them means the wrong identifiers."""
    # Set lookups per symbol: Index.isin would copy the whole (~20k-symbol) set into an array for every case.
    known = np.fromiter((g in known_genes for g in expression.index), dtype=bool, count=len(expression))
    unknown = expression.index[~known].tolist()
    if len(unknown) * 2 > len(expression):
        raise InputError(
            rel,
            "gene",
            f"{len(unknown)} of {len(expression)} symbols are not HGNC symbols known to the knowledge base, "
            f"e.g. {', '.join(unknown[:EXAMPLES])}",
        )
    return expression[known], unknown


def read_expression(
    folder: CaseFolder, rel: str, known_genes: set[str] | None = None
) -> tuple[pd.Series, list[str]]:
    """Expression by gene, and the symbols dropped because the knowledge base does not know them."""
    table = read_table(folder, rel, ("gene", "value"))
    genes = gene_symbols(table)
    expression = by_gene(table, genes, numbers(table, "value", genes, allow_empty=False))
    if known_genes is None:
        return expression, []
    return split_unknown(expression, known_genes, rel)


def read_cnv(folder: CaseFolder, rel: str) -> pd.Series:
    table = read_table(folder, rel, ("gene", "value"))
    genes = gene_symbols(table)
    cnv = by_gene(table, genes, numbers(table, "value", genes, allow_empty=False))
    lo, hi = GISTIC_RANGE
    outside = cnv[(cnv < lo) | (cnv > hi)]
    if len(outside):
        example = f"{outside.index[0]}={outside.iloc[0]:g}"
        raise InputError(rel, "value", f"{len(outside)} values outside the GISTIC range -2..2, e.g. {example}")
    return cnv


def read_mutations(folder: CaseFolder, rel: str) -> pd.DataFrame:
    table = read_table(folder, rel, ("gene", "variant", "vaf"))
    genes = gene_symbols(table)
    variants = table.columns["variant"]
    if "" in variants:
        i = variants.index("")
        raise InputError(rel, "variant", f"empty variant for gene {genes[i]} (line {table.line(i)})")
    vaf = numbers(table, "vaf", genes, allow_empty=True)
    outside = np.flatnonzero((vaf < 0) | (vaf > 1))
    if len(outside):
        i = int(outside[0])
        where = f"for gene {genes[i]} outside 0..1 (line {table.line(i)})"
        raise InputError(rel, "vaf", f"allele fraction {vaf[i]:g} {where}")
    return pd.DataFrame({"gene": genes, "variant": variants, "vaf": vaf})


def read_expression_scale(folder: CaseFolder, rel: str) -> str:
    meta = folder.read_json(rel)
    if not isinstance(meta, dict):
        raise InputError(rel, "json", "expected a JSON object")
    scale = meta.get("expression_scale", DEFAULT_EXPRESSION_SCALE)
    if not isinstance(scale, str) or not scale.strip():
        raise InputError(rel, "expression_scale", f"expected a non-empty string, got {excerpt(scale)}")
    return scale.strip()


def load_genomics(
    case_dir: Path, *, known_genes: set[str] | None = None
) -> tuple[GenomicsInput | None, list[UnusableModality]]:
    """Read `genomics/`; None when no expression, mutation or copy-number file could be used."""
    folder = CaseFolder(case_dir)
    unusable: list[UnusableModality] = []
    try:
        # Not filtered by is_file: a FIFO or a link out named like an input is reported, not skipped.
        names = set(folder.list_dir(GENOMICS_DIR)) if folder.is_dir(GENOMICS_DIR) else set()
        present = {role: f"{GENOMICS_DIR}/{name}" for role, name in FILES.items() if name in names}
    except InputError as exc:
        return None, [UnusableModality(modality="genomics", reason=str(exc), file=exc.file)]

    def attempt(role: str, reader: Callable[[CaseFolder, str], T]) -> T | None:
        if role not in present:
            return None
        try:
            return reader(folder, present[role])
        except InputError as exc:
            unusable.append(UnusableModality(modality="genomics", reason=str(exc), file=exc.file))
            return None

    scale = attempt("meta", read_expression_scale) if "meta" in present else DEFAULT_EXPRESSION_SCALE
    expression = None
    if scale is None and "expression" in present:
        # Values on a scale that meta.json failed to state cannot be interpreted.
        reason = InputError(present["expression"], "value", f"scale unknown because {present['meta']} is unusable")
        unusable.append(UnusableModality(modality="genomics", reason=str(reason), file=present["expression"]))
    elif scale is not None:
        expression = attempt("expression", lambda folder, rel: read_expression(folder, rel, known_genes))
    mutations = attempt("mutations", read_mutations)
    cnv = attempt("cnv", read_cnv)
    if expression is None and mutations is None and cnv is None:
        return None, unusable
    used = {"expression": expression, "mutations": mutations, "cnv": cnv, "meta": scale if "meta" in present else None}
    return (
        GenomicsInput(
            expression=expression[0] if expression else None,
            expression_scale=scale or DEFAULT_EXPRESSION_SCALE,
            mutations=mutations,
            cnv=cnv,
            files={role: present[role] for role, value in used.items() if value is not None},
            unknown_genes=expression[1] if expression else [],
        ),
        unusable,
    )
