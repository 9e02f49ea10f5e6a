"""Knowledge sources, the build script's readers, the MiniLM embedder and the FAISS index."""

from __future__ import annotations

import bz2
import copy
import gzip
import json
import sqlite3
import struct
from dataclasses import replace
from math import sqrt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from knowledge.build import go_pathways, read_go_gene_sets, read_lazyload_object
from knowledge.embedders import create_embedder, list_embedders
from knowledge.index import KnowledgeIndex, pathway_document
from knowledge.sources import (
    PROGRAMMES,
    KnowledgeBase,
    Pathway,
    list_knowledge_sources,
    load_knowledge,
    parse_knowledge,
    read_hallmark_gmt,
    read_progeny_csv,
    register_knowledge_source,
    write_knowledge_file,
)
from schemas.errors import InputError

BUNDLED_FILE = Path(__file__).resolve().parents[1] / "knowledge" / "data" / "pathways.json.gz"
PROGRAMME_TERMS = {
    "hypoxia": "GO:0001666",
    "angiogenesis": "GO:0001525",
    "proliferation": "GO:0000278",
    "dna_repair": "GO:0006281",
    "emt": "GO:0001837",
    "immune": "GO:0006955",
}


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge()


@pytest.fixture(scope="module")
def embedder():
    return create_embedder("minilm")


@pytest.fixture(scope="module")
def index(kb, embedder) -> KnowledgeIndex:
    return KnowledgeIndex.build(kb, embedder)


@pytest.fixture(scope="module")
def small_payload(kb) -> dict:
    """A real but small knowledge-file payload: three GO sets, one PROGENy set, part of the universe."""
    payload = kb.to_json()
    payload["pathways"] = [*payload["pathways"][:3], payload["pathways"][-1]]
    payload["gene_universe"] = payload["gene_universe"][:1000]
    return payload


def _knowledge_bytes(payload: dict) -> bytes:
    return gzip.compress(json.dumps(payload).encode())


# --- the bundled knowledge file ---------------------------------------------------------


def test_bundled_base_maps_every_programme_to_its_go_term(kb):
    assert kb.name == "bundled" and "GO" in kb.attribution and "CC BY 4.0" in kb.attribution
    assert {key: kb.by_programme(key).id for key in PROGRAMMES} == PROGRAMME_TERMS
    assert kb.by_programme("not_a_programme") is None
    assert kb.get("GO:0001666").name == "response to hypoxia"
    with pytest.raises(KeyError):
        kb.get("GO:9999999")


def test_bundled_gene_sets_have_the_promised_shape(kb):
    go = [p for p in kb.pathways if p.source == "GO"]
    progeny = [p for p in kb.pathways if p.source == "PROGENy"]
    assert len(go) >= 12 and len(progeny) == 14
    for pathway in go:
        assert 10 <= len(pathway.genes) <= 2000 and pathway.weights is None
        assert set(pathway.genes) <= kb.gene_universe  # symbols come from the same gene_info table
        assert pathway.description and pathway.url.endswith(pathway.id)
    for pathway in progeny:
        assert len(pathway.genes) == 100 and len(pathway.weights) == 100
    assert {"TP53", "EGFR", "IDH1", "MGMT", "CDKN2A"} <= kb.gene_universe
    assert "TP53X" not in kb.gene_universe and len(kb.gene_universe) > 50_000


def test_bundled_file_is_reproducible_byte_for_byte(kb, tmp_path):
    out = tmp_path / "pathways.json.gz"
    write_knowledge_file(kb, out)
    assert out.read_bytes() == BUNDLED_FILE.read_bytes()
    assert parse_knowledge(out.read_bytes(), "copy").sha256 == kb.sha256


def test_bundled_progeny_matches_the_published_top100(kb, shared_data):
    table = pd.read_csv(shared_data / "knowledge" / "progeny_human_top100.csv")
    for label, group in table.groupby("pathway"):
        pathway = kb.get(f"PROGENY:{label}")
        expected = group.sort_values("gene")
        assert pathway.genes == tuple(expected["gene"])
        np.testing.assert_allclose(pathway.weights, expected["weight"], rtol=1e-9)


def test_loaded_bases_are_cached(kb):
    assert load_knowledge() is kb
    assert load_knowledge("file", path=BUNDLED_FILE).sha256 == kb.sha256


# --- knowledge files that are wrong ------------------------------------------------------


def test_not_gzip_names_the_file():
    with pytest.raises(InputError, match=r"^kb\.json\.gz: \(file\): not gzip JSON"):
        parse_knowledge(b"plain text", "kb.json.gz")


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["pathways"][1].update(genes="TP53"), "pathways.1.genes"),
        (lambda d: d["pathways"][0].update(programme="hypoxic"), "pathways.0.programme"),
        (lambda d: d["pathways"][0].update(genes=["B", "A"]), "pathways.0"),
        (lambda d: d["pathways"][3].update(weights=[1.0]), "pathways.3"),
        (lambda d: d.pop("gene_universe"), "gene_universe"),
        (lambda d: d.update(format="other/2"), "format"),
    ],
)
def test_bad_fields_are_named(small_payload, edit, field):
    payload = copy.deepcopy(small_payload)
    edit(payload)
    with pytest.raises(InputError) as error:
        parse_knowledge(_knowledge_bytes(payload), "kb.json.gz")
    assert (error.value.file, error.value.field) == ("kb.json.gz", field)


def test_two_pathways_for_one_programme_are_rejected(small_payload):
    payload = copy.deepcopy(small_payload)
    payload["pathways"][1]["programme"] = "hypoxia"
    with pytest.raises(InputError, match="one pathway only"):
        parse_knowledge(_knowledge_bytes(payload), "kb.json.gz")


# --- the MSigDB Hallmark + PROGENy source ------------------------------------------------


def test_msigdb_progeny_source_reads_the_real_files(kb, shared_data):
    folder = shared_data / "knowledge"
    hallmark = load_knowledge(
        "msigdb_progeny", gmt=folder / "h.all.v7.5.1.symbols.gmt", progeny_csv=folder / "progeny_human_top100.csv"
    )
    assert len([p for p in hallmark.pathways if p.source == "MSigDB Hallmark"]) == 50
    assert hallmark.by_programme("hypoxia").id == "MSIGDB:HALLMARK_HYPOXIA"
    assert hallmark.by_programme("proliferation").id == "MSIGDB:HALLMARK_E2F_TARGETS"
    assert hallmark.by_programme("immune").id == "MSIGDB:HALLMARK_INFLAMMATORY_RESPONSE"
    assert len(hallmark.get("MSIGDB:HALLMARK_HYPOXIA").genes) == 200 and "VEGFA" in hallmark.gene_universe
    # The same PROGENy selection whether it comes from the R package or from the CSV.
    from_csv, from_r = hallmark.get("PROGENY:VEGF"), kb.get("PROGENY:VEGF")
    assert from_csv.genes == from_r.genes
    np.testing.assert_allclose(from_csv.weights, from_r.weights, rtol=1e-9)  # the CSV keeps 10 decimals


def test_gmt_errors_name_the_line(tmp_path):
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("HALLMARK_A\thttp://x\tTP53\tEGFR\nHALLMARK_B\thttp://y\n")
    with pytest.raises(InputError, match=r"sets\.gmt: line 2: gene set 'HALLMARK_B' has no genes"):
        read_hallmark_gmt(gmt)
    gmt.write_text("HALLMARK_A\thttp://x\tTP53\nHALLMARK_A\thttp://x\tEGFR\n")
    with pytest.raises(InputError, match="line 2: gene set 'HALLMARK_A' appears twice"):
        read_hallmark_gmt(gmt)


def test_progeny_csv_errors_name_the_column(tmp_path):
    csv = tmp_path / "progeny.csv"
    csv.write_text("gene,pathway,weight\nA,VEGF,1.0\n")
    with pytest.raises(InputError, match=r"progeny\.csv: p\.value: missing column"):
        read_progeny_csv(csv)
    csv.write_text("gene,pathway,weight,p.value\nA,VEGF,1.0,0.1\nB,VEGF,high,0.2\n")
    with pytest.raises(InputError, match="weight: line 3: not a number: 'high'"):
        read_progeny_csv(csv)


def test_registry_lists_sources_and_refuses_unknown_or_twice():
    assert {"bundled", "file", "msigdb_progeny"} <= set(list_knowledge_sources())
    with pytest.raises(ValueError, match="unknown knowledge source 'kegg'"):
        load_knowledge("kegg")
    with pytest.raises(ValueError, match="already registered"):
        register_knowledge_source("bundled")(lambda: None)


# --- the build script's readers ----------------------------------------------------------


def test_go_gene_sets_come_from_go_bp_all(tmp_path):
    db_path = tmp_path / "org.sqlite"
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE gene_info (_id INTEGER, symbol TEXT)")
        db.execute("CREATE TABLE go_bp_all (_id INTEGER, go_id TEXT, evidence TEXT)")
        db.executemany("INSERT INTO gene_info VALUES (?, ?)", [(1, "HIF1A"), (2, "EPAS1"), (3, "TP53")])
        # HIF1A twice (two evidence codes) must count once.
        db.executemany(
            "INSERT INTO go_bp_all VALUES (?, ?, ?)",
            [(1, "GO:0001666", "IDA"), (1, "GO:0001666", "IEA"), (2, "GO:0001666", "IMP"), (3, "GO:0006281", "TAS")],
        )
    sets = read_go_gene_sets(db_path, ["GO:0001666", "GO:0006281", "GO:0000278"])
    assert {k: sorted(v) for k, v in sets.items()} == {
        "GO:0001666": ["EPAS1", "HIF1A"],
        "GO:0006281": ["TP53"],
        "GO:0000278": [],
    }


def test_go_pathways_keep_sets_of_10_to_2000_genes():
    terms = {"GO:1": ("small", "def"), "GO:2": ("fine", "def"), "GO:3": ("huge", "def")}
    sets = {"GO:1": [f"G{i}" for i in range(9)], "GO:2": [f"G{i}" for i in range(10)], "GO:3": [f"G{i}" for i in range(2001)]}
    kept = go_pathways(terms, sets, [("GO:1", None), ("GO:2", "hypoxia"), ("GO:3", None)])
    assert [(p.id, p.programme, len(p.genes)) for p in kept] == [("GO:2", "hypoxia", 10)]
    with pytest.raises(KeyError, match="GO:4"):
        go_pathways(terms, sets, [("GO:4", None)])


def test_lazyload_reader_decodes_an_r_package_data_blob(tmp_path):
    rdata = pytest.importorskip("rdata", reason="optional extra knowledge-build (rdata) is not installed")
    table = pd.DataFrame({"gene": ["A", "B"], "pathway": ["VEGF", "VEGF"], "weight": [1.5, -2.0], "p.value": [0.01, 0.02]})
    rdata.write_rds(tmp_path / "object.rds", table, compression=None)
    serialized = (tmp_path / "object.rds").read_bytes()
    # R's format for compress = 2: 4-byte big-endian length, codec byte '2', bzip2 stream.
    blob = struct.pack(">I", len(serialized)) + b"2" + bz2.compress(serialized)
    (tmp_path / "Rdata.rdb").write_bytes(b"padding" + blob)
    index = {"variables": {"model": np.array([7, len(blob)], dtype=np.int32)}, "references": {}, "compressed": np.array([2])}
    rdata.write_rds(tmp_path / "Rdata.rdx", index)
    decoded = read_lazyload_object(tmp_path / "Rdata.rdx", "model")
    pd.testing.assert_frame_equal(decoded.reset_index(drop=True), table, check_dtype=False, check_categorical=False)


# --- embedder and index ------------------------------------------------------------------


def test_minilm_gives_unit_384d_vectors_that_mean_something(embedder):
    assert "minilm" in list_embedders() and embedder.dim == 384
    vectors = embedder.embed(["response to low oxygen", "hypoxia", "mitotic cell cycle"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    with pytest.raises(ValueError, match="unknown embedder"):
        create_embedder("word2vec")


def test_low_oxygen_query_finds_hypoxia_first(kb, index):
    hits = index.search("response to low oxygen", k=5)
    assert hits[0].pathway_id == kb.by_programme("hypoxia").id
    assert len(hits) == 5 and hits[0].score >= hits[-1].score
    assert index.search("new blood vessel formation", k=1)[0].pathway_id == kb.by_programme("angiogenesis").id
    assert [h[0].pathway_id for h in index.search_many(["DNA damage repair", "EGFR amplification"], k=1)] == [
        kb.by_programme("dna_repair").id,
        "PROGENY:EGFR",
    ]


class _CountingEmbedder:
    """Counts calls through to the real embedder, to see whether the cache skipped embedding."""

    def __init__(self, inner):
        self.inner, self.name, self.dim, self.calls = inner, inner.name, inner.dim, 0

    def embed(self, texts):
        self.calls += 1
        return self.inner.embed(texts)


def test_index_cache_round_trip_skips_embedding(kb, index, embedder, tmp_path):
    index.save(tmp_path)
    counting = _CountingEmbedder(embedder)
    loaded = KnowledgeIndex.cached(kb, counting, tmp_path)
    assert counting.calls == 0
    np.testing.assert_array_equal(loaded.vectors, index.vectors)
    assert loaded.search("response to low oxygen", k=3) == index.search("response to low oxygen", k=3)
    assert KnowledgeIndex.load(tmp_path / "empty", kb, embedder) is None


def test_index_cache_for_another_base_is_refused(kb, index, embedder, tmp_path):
    meta_path = index.save(tmp_path)
    meta = json.loads(meta_path.read_text())
    meta["pathway_ids"] = meta["pathway_ids"][::-1]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(InputError, match="pathway_ids"):
        KnowledgeIndex.load(tmp_path, kb, embedder)


def test_gene_search_ranks_by_ochiai_overlap(kb, embedder):
    small = KnowledgeBase(
        name="t",
        version="1",
        pathways=[
            Pathway(id="A", name="a", source="GO", description="", genes=("G1", "G2", "G3", "G4")),
            Pathway(id="B", name="b", source="GO", description="", genes=("G1", "G9")),
        ],
        gene_universe=frozenset({"G1", "G2", "G3", "G4", "G9"}),
        attribution="",
    )
    index = KnowledgeIndex(small, embedder, np.zeros((2, embedder.dim), np.float32))
    hits = index.search_genes(["G1", "G2", "G3"], k=5)
    # A: 3 / sqrt(3 * 4) = 0.866; B: 1 / sqrt(3 * 2) = 0.408.
    assert [(h.pathway_id, round(h.score, 3)) for h in hits] == [("A", round(3 / sqrt(12), 3)), ("B", round(1 / sqrt(6), 3))]
    assert index.search_genes(["NONE"]) == [] and index.search_genes([]) == []


def test_weighted_documents_list_their_strongest_genes(kb):
    vegf = kb.get("PROGENY:VEGF")
    strongest = vegf.genes[int(np.argmax(np.abs(vegf.weights)))]
    document = pathway_document(vegf)
    assert document.startswith(vegf.name) and f"Genes: {strongest}," in document
    assert pathway_document(replace(vegf, weights=None)).endswith(f"{', '.join(vegf.genes[:10])}.")
