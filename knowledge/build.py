"""Build the compact knowledge file from Debian's GO.db, org.Hs.eg.db and PROGENy packages, without R.

    python -m knowledge.build --out knowledge/data/pathways.json.gz [--debs DIR]

Needs `apt-get` and `dpkg` (or `--debs` with the three .deb files) and the `knowledge-build`
extra (`rdata`). Writes the gzip JSON read by `load_knowledge("bundled")` and ATTRIBUTION.md
beside it; both are committed, so a clone never downloads anything.
"""

from __future__ import annotations

import argparse
import bz2
import logging
import lzma
import sqlite3
import subprocess
import tempfile
import warnings
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from knowledge.sources import (
    PROGENY_TOP,
    PROGRAMMES,
    KnowledgeBase,
    Pathway,
    Programme,
    progeny_pathways,
    write_knowledge_file,
)
from toolkit.atomic import atomic_write_text

log = logging.getLogger(__name__)

DEBIAN_PACKAGES = ("r-bioc-go.db", "r-bioc-org.hs.eg.db", "r-bioc-progeny")
MIN_GENES, MAX_GENES = 10, 2000

# (GO BP term, programme it represents). Proliferation is GO:0000278 mitotic cell cycle:
# GO:0008283 "cell population proliferation" has 2,062 human genes (over MAX_GENES) and is
# mostly growth regulators, whereas tumour proliferation shows as cell-cycle machinery.
GO_TERMS: tuple[tuple[str, Programme | None], ...] = (
    ("GO:0001666", "hypoxia"),  # response to hypoxia
    ("GO:0001525", "angiogenesis"),
    ("GO:0000278", "proliferation"),  # mitotic cell cycle
    ("GO:0006281", "dna_repair"),
    ("GO:0001837", "emt"),  # epithelial to mesenchymal transition
    ("GO:0006955", "immune"),  # immune response
    ("GO:0071456", None),  # cellular response to hypoxia
    ("GO:0006096", None),  # glycolytic process
    ("GO:0038084", None),  # VEGF signalling
    ("GO:0043542", None),  # endothelial cell migration
    ("GO:0006260", None),  # DNA replication
    ("GO:0000724", None),  # double-strand break repair via homologous recombination
    ("GO:0006306", None),  # DNA methylation (MGMT context)
    ("GO:0007169", None),  # transmembrane receptor tyrosine kinase signalling
    ("GO:0007173", None),  # EGFR signalling
    ("GO:0048008", None),  # PDGFR signalling
    ("GO:0030198", None),  # extracellular matrix organization
    ("GO:0016477", None),  # cell migration
    ("GO:0042063", None),  # gliogenesis
    ("GO:0014009", None),  # glial cell proliferation
    ("GO:0006954", None),  # inflammatory response
    ("GO:0042110", None),  # T cell activation
    ("GO:0050777", None),  # negative regulation of immune response
    ("GO:0006915", None),  # apoptotic process
)

# R lazy-load blobs: 4-byte length, then (compression 2/3) a type byte naming the codec.
_CODECS = {b"Z": zlib.decompress, b"2": bz2.decompress, b"X": lzma.decompress, b"0": bytes}


def fetch_packages(workdir: Path, debs: Path | None = None) -> Path:
    """Extract the Debian packages (downloaded into workdir unless `debs` holds them); returns the root."""
    if debs is None:
        debs = workdir / "debs"
        debs.mkdir()
        download = ["apt-get", "download", *DEBIAN_PACKAGES]
        if subprocess.run(download, cwd=debs, capture_output=True).returncode != 0:
            # A fresh container has no package lists yet.
            subprocess.run(["apt-get", "update"], check=True, capture_output=True)
            subprocess.run(download, cwd=debs, check=True, capture_output=True)
    root = workdir / "root"
    for package in DEBIAN_PACKAGES:
        deb = next(iter(sorted(debs.glob(f"{package}_*.deb"))), None)
        if deb is None:
            raise FileNotFoundError(f"{debs}: no {package}_*.deb")
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return root


def find_file(root: Path, pattern: str) -> Path:
    """The one file under root matching a glob like 'GO.db/extdata/GO.sqlite'."""
    found = sorted(root.rglob(pattern))
    if len(found) != 1:
        raise FileNotFoundError(f"{root}: expected one {pattern}, found {len(found)}")
    return found[0]


def r_package_version(description: Path) -> str:
    """`Version:` of an R package DESCRIPTION file."""
    for line in description.read_text().splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    raise ValueError(f"{description}: no Version field")


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def sqlite_metadata(path: Path) -> dict[str, str]:
    """The AnnotationDbi `metadata(name, value)` table (source dates and URLs)."""
    with _connect(path) as db:
        return dict(db.execute("SELECT name, value FROM metadata"))


def read_go_terms(go_sqlite: Path, go_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """GO id -> (term, definition) for biological-process terms of GO.db."""
    ids = list(go_ids)
    with _connect(go_sqlite) as db:
        rows = db.execute(
            f"SELECT go_id, term, definition FROM go_term WHERE ontology = 'BP' AND go_id IN ({','.join('?' * len(ids))})",
            ids,
        ).fetchall()
    return {go_id: (term, definition) for go_id, term, definition in rows}


def read_go_gene_sets(org_sqlite: Path, go_ids: Iterable[str]) -> dict[str, list[str]]:
    """GO id -> human symbols annotated to it or to any descendant (`go_bp_all`), any evidence."""
    ids = list(go_ids)
    with _connect(org_sqlite) as db:
        rows = db.execute(
            "SELECT DISTINCT a.go_id, g.symbol FROM go_bp_all AS a JOIN gene_info AS g USING (_id) "
            f"WHERE a.go_id IN ({','.join('?' * len(ids))})",
            ids,
        ).fetchall()
    sets: dict[str, list[str]] = {go_id: [] for go_id in ids}
    for go_id, symbol in rows:
        sets[go_id].append(symbol)
    return sets


def read_gene_universe(org_sqlite: Path) -> frozenset[str]:
    """Every human gene symbol org.Hs.eg.db knows (tells real symbols from typos)."""
    with _connect(org_sqlite) as db:
        return frozenset(symbol for (symbol,) in db.execute("SELECT symbol FROM gene_info"))


def read_lazyload_object(rdx: Path, name: str) -> Any:
    """One object of an R lazy-load database (`.rdx` index + `.rdb` blobs), as R keeps package data."""
    import rdata  # optional extra `knowledge-build`

    index = rdata.read_rds(rdx)
    offset, length = (int(v) for v in index["variables"][name])
    with rdx.with_suffix(".rdb").open("rb") as handle:
        handle.seek(offset)
        blob = handle.read(length)
    if int(index["compressed"][0]) == 1:
        raw = zlib.decompress(blob[4:])
    else:
        raw = _CODECS[blob[4:5]](blob[5:])
    with warnings.catch_warnings():
        # The blob is a bare serialization without an RDS file header; rdata says so, rightly.
        warnings.filterwarnings("ignore", message="Unknown file type")
        return rdata.conversion.convert(rdata.parser.parse_data(raw))


def go_pathways(
    terms: dict[str, tuple[str, str]], gene_sets: dict[str, list[str]], wanted: Iterable[tuple[str, Programme | None]]
) -> list[Pathway]:
    """Pathways for the wanted GO terms whose gene sets hold MIN_GENES..MAX_GENES genes."""
    pathways = []
    for go_id, programme in wanted:
        if go_id not in terms:
            raise KeyError(f"{go_id} is not a GO biological-process term in this GO.db")
        genes = sorted(set(gene_sets.get(go_id, ())))
        if not MIN_GENES <= len(genes) <= MAX_GENES:
            log.warning("skipping %s: %d genes outside %d..%d", go_id, len(genes), MIN_GENES, MAX_GENES)
            continue
        term, definition = terms[go_id]
        pathways.append(
            Pathway(
                id=go_id,
                name=term,
                source="GO",
                description=definition,
                genes=tuple(genes),
                programme=programme,
                url=f"https://www.ebi.ac.uk/QuickGO/term/{go_id}",
            )
        )
    return pathways


def build_knowledge(root: Path) -> KnowledgeBase:
    """The bundled knowledge base from the extracted Debian packages under root."""
    go_sqlite = find_file(root, "GO.db/extdata/GO.sqlite")
    org_sqlite = find_file(root, "org.Hs.eg.db/extdata/org.Hs.eg.sqlite")
    progeny_rdx = find_file(root, "progeny/data/Rdata.rdx")
    versions = {pkg: r_package_version(find_file(root, f"{pkg}/DESCRIPTION")) for pkg in ("GO.db", "org.Hs.eg.db", "progeny")}
    go_meta, org_meta = sqlite_metadata(go_sqlite), sqlite_metadata(org_sqlite)

    ids = [go_id for go_id, _ in GO_TERMS]
    pathways = go_pathways(read_go_terms(go_sqlite, ids), read_go_gene_sets(org_sqlite, ids), GO_TERMS)
    model: pd.DataFrame = read_lazyload_object(progeny_rdx, "model_human_full")
    pathways += progeny_pathways(model)
    missing = set(PROGRAMMES) - {p.programme for p in pathways}
    if missing:
        raise ValueError(f"no pathway for programmes {sorted(missing)}")

    return KnowledgeBase(
        name="bundled",
        version=(
            f"GO.db {versions['GO.db']} (GO {go_meta['GOSOURCEDATE']}); "
            f"org.Hs.eg.db {versions['org.Hs.eg.db']} (Entrez Gene {org_meta['EGSOURCEDATE']}); "
            f"progeny {versions['progeny']} (model_human_full, top {PROGENY_TOP} genes by p-value)"
        ),
        pathways=pathways,
        gene_universe=read_gene_universe(org_sqlite),
        attribution=(
            f"Gene Ontology (go-basic.obo, {go_meta['GOSOURCEDATE']}; The Gene Ontology Consortium, "
            "Nucleic Acids Res 2023; Ashburner et al., Nat Genet 2000), CC BY 4.0, via Bioconductor "
            f"GO.db {versions['GO.db']} (Artistic-2.0). Human gene symbols and GO annotations from NCBI "
            f"Entrez Gene ({org_meta['EGSOURCEDATE']}) via Bioconductor org.Hs.eg.db "
            f"{versions['org.Hs.eg.db']} (Artistic-2.0). PROGENy pathway footprints (Schubert et al., "
            f"Nat Commun 2018), Bioconductor progeny {versions['progeny']}, Apache-2.0. "
            "All three as packaged by Debian (r-bioc-go.db, r-bioc-org.hs.eg.db, r-bioc-progeny)."
        ),
    )


def attribution_markdown(kb: KnowledgeBase, out_name: str) -> str:
    """ATTRIBUTION.md: the sources and licences, and what the file holds."""
    rows = "\n".join(
        f"| {p.id} | {p.name} | {p.source} | {len(p.genes)} | {p.programme or ''} |" for p in kb.pathways
    )
    return (
        f"# Attribution for `{out_name}`\n\n"
        "Generated by `python -m knowledge.build`; do not edit by hand.\n\n"
        f"Version: {kb.version}\n\n{kb.attribution}\n\n"
        f"The file holds {len(kb.pathways)} pathways and {len(kb.gene_universe)} human gene symbols "
        "(org.Hs.eg.db `gene_info`). GO gene sets are the human genes annotated to the term or any "
        "descendant term (`go_bp_all`, all evidence codes); PROGENy footprints keep the top 100 genes "
        "by p-value with their weights.\n\n"
        "| id | name | source | genes | programme |\n|---|---|---|---|---|\n"
        f"{rows}\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="knowledge file to write (.json.gz)")
    parser.add_argument("--debs", type=Path, help="folder holding the three .deb files (skips apt-get download)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    with tempfile.TemporaryDirectory() as workdir:
        kb = build_knowledge(fetch_packages(Path(workdir), args.debs))
    write_knowledge_file(kb, args.out)
    atomic_write_text(args.out.with_name("ATTRIBUTION.md"), attribution_markdown(kb, args.out.name))
    log.info("wrote %s: %d pathways, %d symbols, sha256 %s", args.out, len(kb.pathways), len(kb.gene_universe), kb.sha256)


if __name__ == "__main__":
    main()
