"""Demo genomics: expression z-scores, driver mutations and GISTIC copy number per tumour.

The expression panel is fixed for the cohort (like a real assay): the six programme gene
sets of the knowledge base, capped, plus background genes and the glioma drivers. Each
programme shifts its genes by its activity, so a rank score (singscore) recovers it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from demo.biology import PROGRAMME_KEYS, TumourBiology

PANEL_SIZE = 1500
GENES_PER_PROGRAMME = 150
# Share of a programme's genes that really follow it; the rest of the GO set is bystanders.
RESPONSIVE_FRACTION = 0.8
EXPRESSION_LOADING = 1.5
PANEL_SEED = 20161  # fixes gene loadings: they are biology, the same in every case

DRIVER_GENES: tuple[str, ...] = (
    "IDH1",
    "IDH2",
    "EGFR",
    "CDKN2A",
    "CDKN2B",
    "MTAP",
    "PTEN",
    "TP53",
    "ATRX",
    "CIC",
    "FUBP1",
    "PIK3CA",
    "PIK3R1",
    "NF1",
    "TERT",
    "MGMT",
    "PDGFRA",
    "CDK4",
    "MDM2",
)
# The copy-number genes TCGA ships for gliomas with approximate chr9 position (Mb, hg19):
# the chr7p11 EGFR amplicon and the chr9p21 CDKN2A/B region.
EGFR_AMPLICON: tuple[str, ...] = ("VSTM2A", "SEC61G", "EGFR", "LANCL2", "VOPP1")
CHR9P21_MB: dict[str, float] = {
    "FOCAD": 20.66,
    "IFNB1": 21.08,
    "IFNW1": 21.14,
    "IFNA21": 21.17,
    "IFNA4": 21.19,
    "IFNA7": 21.20,
    "IFNA10": 21.21,
    "IFNA16": 21.22,
    "IFNA17": 21.23,
    "IFNA14": 21.24,
    "IFNA5": 21.30,
    "KLHL9": 21.33,
    "IFNA6": 21.35,
    "IFNA13": 21.37,
    "IFNA2": 21.38,
    "IFNA8": 21.41,
    "IFNA1": 21.44,
    "MIR31HG": 21.46,
    "IFNE": 21.48,
    "MTAP": 21.80,
    "RN7SL151P": 21.90,
    "CDKN2A": 21.97,
    "CDKN2B": 22.00,
    "DMRTA1": 22.45,
    "ELAVL2": 23.69,
}
CNV_GENES: tuple[str, ...] = (*EGFR_AMPLICON, *CHR9P21_MB)
CDKN2A_MB = 21.98
FILE_NAMES: dict[str, str] = {
    "expression": "expression.tsv",
    "mutations": "mutations.tsv",
    "cnv": "cnv.tsv",
    "meta": "meta.json",
}


@dataclass(frozen=True)
class GenePanel:
    """Measured genes and each gene's loading on each programme (rows follow `genes`)."""

    genes: tuple[str, ...]
    loadings: np.ndarray  # (n_genes, len(PROGRAMME_KEYS))


def _stable_order(genes: set[str] | frozenset[str]) -> list[str]:
    """A fixed pseudo-random order (not alphabetical, which would favour early letters)."""
    return sorted(genes, key=lambda g: hashlib.sha256(g.encode()).hexdigest())


@lru_cache(maxsize=2)
def gene_panel(knowledge: str = "bundled") -> GenePanel:
    """The cohort's expression panel built from the programme gene sets of a knowledge base."""
    from knowledge.sources import load_knowledge

    kb = load_knowledge(knowledge)
    # Only symbols the knowledge base knows: the genomics loader drops any other as unknown.
    known = kb.gene_universe
    programme_sets = {}
    for key in PROGRAMME_KEYS:
        pathway = kb.by_programme(key)
        if pathway is None:
            raise ValueError(f"knowledge base {knowledge!r} has no pathway for programme {key!r}")
        programme_sets[key] = set(_stable_order(known.intersection(pathway.genes))[:GENES_PER_PROGRAMME])
    chosen = set().union(*programme_sets.values()) | set(DRIVER_GENES)
    pathway_genes = known.intersection(g for p in kb.pathways for g in p.genes) - chosen
    background = _stable_order(pathway_genes)[: max(PANEL_SIZE - len(chosen), 0)]
    genes = tuple(sorted(chosen | set(background)))
    rng = np.random.default_rng(PANEL_SEED)
    loadings = np.zeros((len(genes), len(PROGRAMME_KEYS)))
    for j, key in enumerate(PROGRAMME_KEYS):
        members = np.array([g in programme_sets[key] for g in genes])
        responsive = members & (rng.random(len(genes)) < RESPONSIVE_FRACTION)
        loadings[responsive, j] = rng.uniform(0.5, 1.5, size=int(responsive.sum()))
    return GenePanel(genes=genes, loadings=loadings)


def expression_profile(rng: np.random.Generator, bio: TumourBiology, panel: GenePanel) -> pd.Series:
    """Per-gene z-scores: noise + programme activity x loading + driver dosage effects."""
    activity = np.array([bio.programmes[k] for k in PROGRAMME_KEYS])
    values = rng.normal(0.0, 1.0, size=len(panel.genes)) + EXPRESSION_LOADING * panel.loadings @ activity
    expression = pd.Series(values, index=pd.Index(panel.genes, name="gene"), name="value")
    # Gene dosage: amplified EGFR is over-expressed, deleted CDKN2A/B and MTAP are silent.
    if bio.egfr_amplified:
        expression["EGFR"] += rng.uniform(2.5, 3.5)
    if bio.cdkn2a_deleted:
        for gene in ("CDKN2A", "CDKN2B", "MTAP"):
            expression[gene] -= rng.uniform(1.5, 2.5)
    return expression.round(4)


def _pick(rng: np.random.Generator, options: dict[str, float]) -> list[str]:
    return [gene for gene, p in options.items() if rng.random() < p]


def mutation_calls(rng: np.random.Generator, bio: TumourBiology) -> pd.DataFrame:
    """Non-silent calls (gene, variant, vaf) typical of the subtype; VAF from tumour purity."""
    purity = rng.uniform(0.55, 0.9)
    calls: list[tuple[str, str]] = []
    if bio.idh_mutant:
        # ~5 % of IDH-mutant gliomas carry IDH2 instead, and a few a non-R132H IDH1 variant.
        calls.append(
            ("IDH2", "R172K") if rng.random() < 0.05 else ("IDH1", "R132H" if rng.random() < 0.92 else "R132C")
        )
    if bio.codeleted:
        partners = _pick(rng, {"CIC": 0.7, "FUBP1": 0.35}) or ["CIC"]
        calls += [(g, {"CIC": "R215W", "FUBP1": "Q355*"}[g]) for g in partners]
    elif bio.idh_mutant:
        partners = _pick(rng, {"TP53": 0.9, "ATRX": 0.85}) or ["TP53"]
        calls += [(g, {"TP53": "R273H", "ATRX": "R1426*"}[g]) for g in partners]
    else:
        calls += [
            (g, {"PTEN": "R130Q", "TP53": "R248Q", "NF1": "R1276*", "PIK3CA": "H1047R"}[g])
            for g in _pick(rng, {"PTEN": 0.3, "TP53": 0.3, "NF1": 0.15, "PIK3CA": 0.1})
        ]
        if bio.egfr_amplified and rng.random() < 0.25:
            calls.append(("EGFR", "A289V"))
    if rng.random() < 0.15:
        calls.append(("TTN", "missense"))  # a long gene, hit by passengers
    vafs = np.clip(rng.normal(purity / 2.0, 0.04, size=len(calls)), 0.05, 0.95)
    return pd.DataFrame(
        {"gene": [g for g, _ in calls], "variant": [v for _, v in calls], "vaf": np.round(vafs, 2)},
        columns=["gene", "variant", "vaf"],
    )


def copy_number(rng: np.random.Generator, bio: TumourBiology) -> pd.Series:
    """GISTIC calls (-2..2) on the TCGA glioma CNV genes: EGFR amplicon and 9p21 deletion."""
    cnv = pd.Series(0, index=pd.Index(CNV_GENES, name="gene"), name="value", dtype=np.int64)
    if not bio.idh_mutant and rng.random() < 0.7:
        cnv[list(EGFR_AMPLICON)] = 1  # whole chromosome 7 gain, the IDH-wild-type hallmark
    if bio.egfr_amplified:
        cnv[["SEC61G", "EGFR", "LANCL2"]] = 2
        for gene in ("VSTM2A", "VOPP1"):  # the amplicon's edges vary between tumours
            cnv[gene] = 2 if rng.random() < 0.5 else max(cnv[gene], 1)
    if bio.cdkn2a_deleted:
        left, right = rng.uniform(0.05, 1.3), rng.uniform(0.05, 0.6)
        for gene, mb in CHR9P21_MB.items():
            if CDKN2A_MB - left <= mb <= CDKN2A_MB + right:
                cnv[gene] = -2
            elif CDKN2A_MB - left - 0.8 <= mb <= CDKN2A_MB + right + 0.8:
                cnv[gene] = -1
        cnv[["CDKN2A", "CDKN2B"]] = -2
    return cnv


def genomics_files(expression: pd.Series, mutations: pd.DataFrame, cnv: pd.Series) -> dict[str, bytes]:
    """File name -> bytes of a `genomics/` folder (DESIGN.md case bundle)."""
    contents = {
        "expression": expression.to_csv(sep="\t", float_format="%.4f", lineterminator="\n"),
        "mutations": mutations.to_csv(sep="\t", index=False, float_format="%.2f", lineterminator="\n"),
        "cnv": cnv.to_csv(sep="\t", lineterminator="\n"),
        "meta": json.dumps({"expression_scale": "zscore", "cnv_scale": "gistic"}, indent=2) + "\n",
    }
    return {FILE_NAMES[role]: text.encode() for role, text in contents.items()}
