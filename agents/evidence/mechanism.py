"""Mechanism evidence (why): programme pathway activity and driver events from the genomics files."""

from __future__ import annotations

import math
from collections.abc import Callable

from fusion_models.genomics.pathways import PathwayScore, direction
from fusion_models.inputs import GenomicsInput
from schemas.common import SourceRef
from schemas.report import MechanismEvidence

# Driver genes of adult diffuse glioma that a tumour board expects to see named.
KEY_MUTATIONS = ("IDH1", "IDH2", "ATRX", "TP53", "CIC", "FUBP1", "EGFR", "PTEN", "NF1", "PIK3CA", "PIK3R1", "TERT", "H3F3A", "BRAF")
# GISTIC 2 = high-level amplification, -2 = deep (homozygous) deletion; shallow changes are not called.
GISTIC_AMPLIFICATION = 2.0
GISTIC_HOMOZYGOUS_DELETION = -2.0
# Emitted when mutation calls were read and neither IDH gene is mutated (absence is evidence too).
IDH_WILD_TYPE_ID = "WT:IDH"
AMPLIFICATION_GENES = ("EGFR",)
DELETION_GENES = ("CDKN2A", "CDKN2B")
IDH_GENES = ("IDH1", "IDH2")


def pathway_items(scores: list[PathwayScore], expression_file: str) -> list[dict]:
    return [
        dict(kind="pathway_activity", pathway_id=s.pathway_id, pathway_name=s.name, activity=round(s.score, 3),
             direction=direction(s.score), driver_genes=list(s.driver_genes),
             source=SourceRef(file=expression_file, locator=f"{s.n_measured} of {s.n_genes} set genes measured"))
        for s in scores
        if s.assessable
    ]


def driver_items(genomics: GenomicsInput) -> list[dict]:
    items: list[dict] = []
    if genomics.mutations is not None:
        mutation_file = genomics.files["mutations"]
        mutated = genomics.mutations[genomics.mutations["gene"].isin(KEY_MUTATIONS)]
        for gene, rows in mutated.groupby("gene", sort=True):
            variants = ", ".join(sorted(set(rows["variant"].astype(str))))
            vaf = rows["vaf"].dropna()
            items.append(
                dict(kind="driver_mutation", pathway_id=f"MUT:{gene}", pathway_name=f"{gene} mutation ({variants})",
                     activity=None if vaf.empty or math.isnan(vaf.max()) else round(float(vaf.max()), 3),
                     direction="altered", driver_genes=[gene],
                     source=SourceRef(file=mutation_file, locator=f"gene={gene}"))
            )
        if not set(IDH_GENES) & set(mutated["gene"]):
            items.append(
                dict(kind="driver_mutation", pathway_id=IDH_WILD_TYPE_ID, pathway_name="IDH1/IDH2 wild-type (no mutation called)",
                     activity=None, direction="neutral", driver_genes=list(IDH_GENES),
                     source=SourceRef(file=mutation_file, locator="no IDH1/IDH2 rows"))
            )
    if genomics.cnv is not None:
        cnv_file = genomics.files["cnv"]
        for gene in AMPLIFICATION_GENES:
            if genomics.cnv.get(gene, 0) >= GISTIC_AMPLIFICATION:
                items.append(_cnv_item(gene, "amplification", float(genomics.cnv[gene]), cnv_file))
        for gene in DELETION_GENES:
            if genomics.cnv.get(gene, 0) <= GISTIC_HOMOZYGOUS_DELETION:
                items.append(_cnv_item(gene, "homozygous deletion", float(genomics.cnv[gene]), cnv_file))
    return items


def _cnv_item(gene: str, event: str, value: float, cnv_file: str) -> dict:
    return dict(kind="copy_number", pathway_id=f"CNV:{gene}", pathway_name=f"{gene} {event}", activity=value,
                direction="altered", driver_genes=[gene], source=SourceRef(file=cnv_file, locator=f"gene={gene}"))


def mechanism_evidence(
    genomics: GenomicsInput | None, scores: list[PathwayScore], retrieve: Callable[[str], list[str]]
) -> list[MechanismEvidence]:
    """Evidence items, each with the knowledge entries `retrieve` finds for it."""
    if genomics is None:
        return []
    items = pathway_items(scores, genomics.files["expression"]) if genomics.expression is not None else []
    items += driver_items(genomics)
    return [
        MechanismEvidence(id=f"M{i}", knowledge_refs=retrieve(retrieval_query(item)), **item)
        for i, item in enumerate(items, start=1)
    ]


def retrieval_query(item: dict) -> str:
    """What we ask the knowledge index about an evidence item, in the words the index was built from."""
    if item["kind"] == "pathway_activity":
        return f"{item['pathway_name']} {' '.join(item['driver_genes'])}"
    return f"{item['pathway_name']} in diffuse glioma"
