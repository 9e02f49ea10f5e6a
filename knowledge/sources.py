"""Pathway knowledge bases, chosen by name: the bundled GO + PROGENy file, or Hallmark + PROGENy files."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cached_property, lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal, get_args

import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from schemas.errors import InputError
from toolkit.atomic import atomic_write_bytes
from toolkit.registry import Registry

Programme = Literal["hypoxia", "angiogenesis", "proliferation", "dna_repair", "emt", "immune"]
PROGRAMMES: tuple[str, ...] = get_args(Programme)
Source = Literal["GO", "PROGENy", "MSigDB Hallmark"]

FILE_FORMAT = "evidencechain.knowledge/1"
BUNDLED_NAME = "knowledge/data/pathways.json.gz"
PROGENY_TOP = 100
PROGENY_URL = "https://saezlab.github.io/progeny/"

# PROGENy's short pathway labels, spelled out so that a text query ("vascular endothelial
# growth factor") can find them; an unknown label keeps its own name.
PROGENY_LABELS: dict[str, str] = {
    "Androgen": "androgen receptor signalling",
    "EGFR": "EGFR (epidermal growth factor receptor) signalling",
    "Estrogen": "oestrogen receptor signalling",
    "Hypoxia": "hypoxia response",
    "JAK-STAT": "JAK-STAT (cytokine) signalling",
    "MAPK": "MAPK (mitogen-activated protein kinase) signalling",
    "NFkB": "NF-kB (nuclear factor kappa B) signalling",
    "PI3K": "PI3K (phosphoinositide 3-kinase) signalling",
    "TGFb": "TGF-beta (transforming growth factor beta) signalling",
    "TNFa": "TNF-alpha (tumour necrosis factor alpha) signalling",
    "Trail": "TRAIL (TNF-related apoptosis-inducing ligand) signalling",
    "VEGF": "VEGF (vascular endothelial growth factor) signalling",
    "WNT": "WNT signalling",
    "p53": "p53 DNA-damage response",
}

HALLMARK_PROGRAMMES: dict[str, Programme] = {
    "HALLMARK_HYPOXIA": "hypoxia",
    "HALLMARK_ANGIOGENESIS": "angiogenesis",
    "HALLMARK_E2F_TARGETS": "proliferation",
    "HALLMARK_DNA_REPAIR": "dna_repair",
    "HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION": "emt",
    "HALLMARK_INFLAMMATORY_RESPONSE": "immune",
}


@dataclass(frozen=True)
class Pathway:
    """One gene set and where it came from; `weights` (PROGENy only) align with `genes`."""

    id: str
    name: str
    source: Source
    description: str
    genes: tuple[str, ...]
    weights: tuple[float, ...] | None = None
    programme: Programme | None = None
    url: str = ""

    def __post_init__(self) -> None:
        if not self.genes:
            raise ValueError(f"{self.id}: empty gene set")
        if list(self.genes) != sorted(set(self.genes)):
            raise ValueError(f"{self.id}: genes must be sorted and unique")
        if self.weights is not None and len(self.weights) != len(self.genes):
            raise ValueError(f"{self.id}: {len(self.weights)} weights for {len(self.genes)} genes")


@dataclass
class KnowledgeBase:
    """A named, versioned set of pathways plus the gene symbols its source knows."""

    name: str
    version: str
    pathways: list[Pathway]
    gene_universe: frozenset[str]
    attribution: str

    def __post_init__(self) -> None:
        ids = [p.id for p in self.pathways]
        if len(set(ids)) != len(ids):
            raise ValueError("pathway ids must be unique")
        programmes = [p.programme for p in self.pathways if p.programme is not None]
        # One pathway per programme, so that by_programme never has to guess.
        if len(set(programmes)) != len(programmes):
            raise ValueError("each programme may be represented by one pathway only")

    def get(self, pathway_id: str) -> Pathway:
        """The pathway with this id (KeyError if absent)."""
        for pathway in self.pathways:
            if pathway.id == pathway_id:
                return pathway
        raise KeyError(pathway_id)

    def by_programme(self, key: str) -> Pathway | None:
        """The pathway that represents a programme key of PROGRAMMES, if this base has one."""
        return next((p for p in self.pathways if p.programme == key), None)

    def to_json(self) -> dict[str, Any]:
        """The knowledge-file payload (lists, sorted universe), the form hashed and written."""
        return {
            "format": FILE_FORMAT,
            "name": self.name,
            "version": self.version,
            "attribution": self.attribution,
            "pathways": [asdict(p) for p in self.pathways],
            "gene_universe": sorted(self.gene_universe),
        }

    @cached_property
    def symbol_lookup(self) -> frozenset[str]:
        """The universe upper-cased, as the genomics loader upper-cases expression symbols; built once."""
        return frozenset(g.upper() for g in self.gene_universe)

    @cached_property
    def sha256(self) -> str:
        """Content hash: keys caches of anything derived from this base (e.g. the FAISS index)."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class _KnowledgeFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["evidencechain.knowledge/1"]
    name: str
    version: str
    attribution: str
    pathways: list[Pathway]
    gene_universe: list[str]


def write_knowledge_file(kb: KnowledgeBase, path: Path) -> None:
    """Gzip JSON with a zero timestamp, so rebuilding from the same sources gives the same bytes."""
    payload = json.dumps(kb.to_json(), separators=(",", ":")).encode()
    atomic_write_bytes(path, gzip.compress(payload, mtime=0))


def parse_knowledge(raw: bytes, file: str) -> KnowledgeBase:
    """Validate gzip-JSON knowledge-file bytes; `file` names the source in errors."""
    try:
        data = json.loads(gzip.decompress(raw))
    except (OSError, EOFError, ValueError) as error:
        raise InputError(file, "(file)", f"not gzip JSON: {error}") from error
    try:
        parsed = _KnowledgeFile.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(file)"
        raise InputError(file, field, first["msg"]) from error
    try:
        return KnowledgeBase(
            name=parsed.name,
            version=parsed.version,
            pathways=parsed.pathways,
            gene_universe=frozenset(parsed.gene_universe),
            attribution=parsed.attribution,
        )
    except ValueError as error:
        raise InputError(file, "pathways", str(error)) from error


def progeny_pathways(table: pd.DataFrame, top: int = PROGENY_TOP) -> list[Pathway]:
    """PROGENy footprints from a (gene, pathway, weight, p.value) table: the `top` genes by p-value.

    The sort is stable, so p-value ties keep the table's order; on PROGENy's
    `model_human_full` this reproduces progeny_human_top100.csv exactly.
    """
    table = table.assign(gene=table["gene"].astype(str), pathway=table["pathway"].astype(str))
    ranked = table.sort_values(["pathway", "p.value"], kind="stable").groupby("pathway", sort=True).head(top)
    pathways = []
    for label, group in ranked.groupby("pathway", sort=True):
        group = group.sort_values("gene")
        long_name = PROGENY_LABELS.get(label, label)
        pathways.append(
            Pathway(
                id=f"PROGENY:{label}",
                name=f"{long_name} (PROGENy)",
                source="PROGENy",
                description=(
                    f"Consensus transcriptional footprint of {long_name}: the {len(group)} genes whose "
                    "expression responds most consistently when the pathway is perturbed (PROGENy, "
                    "Schubert et al., Nat Commun 2018); the sign of a weight is the direction of response."
                ),
                genes=tuple(group["gene"]),
                weights=tuple(float(w) for w in group["weight"]),
                url=PROGENY_URL,
            )
        )
    return pathways


def read_progeny_csv(path: Path) -> pd.DataFrame:
    """A PROGENy model table (gene, pathway, weight, p.value), checked column by column."""
    try:
        # Symbols are text, never missing-value markers ("NA" is not NaN here).
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as error:
        raise InputError(str(path), "(file)", f"unreadable CSV: {error}") from error
    for column in ("gene", "pathway", "weight", "p.value"):
        if column not in table.columns:
            raise InputError(str(path), column, "missing column")
    for column in ("weight", "p.value"):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna()
        if bad.any():
            row = int(bad.to_numpy().argmax()) + 2  # 1-based, after the header line
            raise InputError(str(path), column, f"line {row}: not a number: {table[column].iloc[row - 2]!r}")
        table[column] = values
    for column in ("gene", "pathway"):
        if (table[column].str.strip() == "").any():
            raise InputError(str(path), column, "empty name")
    duplicated = table.duplicated(["gene", "pathway"])
    if duplicated.any():
        row = table[duplicated].iloc[0]
        raise InputError(str(path), "gene", f"{row['gene']} listed twice for {row['pathway']}")
    return table


def read_hallmark_gmt(path: Path) -> list[Pathway]:
    """MSigDB Hallmark sets from a GMT file (name, URL, genes...; tab-separated)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(str(path), "(file)", f"unreadable GMT: {error}") from error
    pathways: dict[str, Pathway] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        name, _, rest = line.partition("\t")
        url, _, gene_text = rest.partition("\t")
        genes = [g.strip() for g in gene_text.split("\t") if g.strip()]
        if not genes:
            raise InputError(str(path), f"line {number}", f"gene set {name!r} has no genes")
        if name in pathways:
            raise InputError(str(path), f"line {number}", f"gene set {name!r} appears twice")
        label = name.removeprefix("HALLMARK_").replace("_", " ").lower()
        pathways[name] = Pathway(
            id=f"MSIGDB:{name}",
            name=f"{label} (MSigDB Hallmark)",
            source="MSigDB Hallmark",
            description=f"MSigDB Hallmark gene set {name}: genes that coherently represent {label}.",
            genes=tuple(sorted(set(genes))),
            programme=HALLMARK_PROGRAMMES.get(name),
            url=url,
        )
    return list(pathways.values())


KnowledgeLoader = Callable[..., KnowledgeBase]
_SOURCES: Registry[KnowledgeLoader] = Registry("knowledge source", missing=ValueError)


def register_knowledge_source(name: str) -> Callable[[KnowledgeLoader], KnowledgeLoader]:
    """Register a loader under `name`; `load_knowledge(name, **kw)` calls it with kw."""
    return _SOURCES.register(name)


def list_knowledge_sources() -> list[str]:
    """Registered knowledge source names."""
    return _SOURCES.names()


def load_knowledge(name: str = "bundled", **kw: Any) -> KnowledgeBase:
    """Load (once per process and arguments) the knowledge base registered as `name`."""
    return _SOURCES.get(name)(**kw)


@register_knowledge_source("bundled")
@lru_cache(maxsize=1)
def _bundled() -> KnowledgeBase:
    """The committed GO + PROGENy file (built by `python -m knowledge.build`)."""
    resource = files("knowledge").joinpath("data", "pathways.json.gz")
    try:
        raw = resource.read_bytes()
    except OSError as error:
        raise InputError(BUNDLED_NAME, "(file)", f"missing; rebuild it with python -m knowledge.build ({error})") from error
    return parse_knowledge(raw, BUNDLED_NAME)


@register_knowledge_source("file")
@lru_cache(maxsize=4)
def _file(path: Path) -> KnowledgeBase:
    """A knowledge file written by `python -m knowledge.build --out PATH` (e.g. a newer GO release)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise InputError(str(path), "(file)", f"unreadable: {error}") from error
    return parse_knowledge(raw, str(path))


@register_knowledge_source("msigdb_progeny")
@lru_cache(maxsize=4)
def _msigdb_progeny(gmt: Path, progeny_csv: Path) -> KnowledgeBase:
    """MSigDB Hallmark sets (programmes from HALLMARK_PROGRAMMES) plus PROGENy footprints."""
    gmt, progeny_csv = Path(gmt), Path(progeny_csv)
    hallmark = read_hallmark_gmt(gmt)
    progeny = progeny_pathways(read_progeny_csv(progeny_csv))
    pathways = [*hallmark, *progeny]
    return KnowledgeBase(
        name="msigdb_progeny",
        version=f"{gmt.name}; {progeny_csv.name}",
        pathways=pathways,
        gene_universe=frozenset(g for p in pathways for g in p.genes),
        attribution=(
            "MSigDB Hallmark gene sets (Liberzon et al., Cell Systems 2015), CC BY 4.0; "
            "PROGENy (Schubert et al., Nat Commun 2018), Apache-2.0."
        ),
    )
