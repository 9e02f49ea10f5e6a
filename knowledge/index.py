"""FAISS index over a knowledge base, one document per pathway, with an on-disk cache."""

from __future__ import annotations

import json
from io import BytesIO
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from math import sqrt
from pathlib import Path

import faiss
import numpy as np

from knowledge.embedders import Embedder
from knowledge.sources import KnowledgeBase, Pathway
from schemas.errors import InputError
from toolkit.atomic import atomic_write_bytes

DOCUMENT_GENES = 10


@dataclass(frozen=True)
class KnowledgeHit:
    pathway_id: str
    name: str
    score: float


def pathway_document(pathway: Pathway, n_genes: int = DOCUMENT_GENES) -> str:
    """The text embedded for a pathway: name, description, then its leading genes.

    Weighted footprints list their strongest genes; plain sets have no ranking, so
    their genes come alphabetically and serve only exact symbol matches.
    """
    genes = list(pathway.genes)
    if pathway.weights is not None:
        genes = [g for _, g in sorted(zip(pathway.weights, pathway.genes), key=lambda wg: -abs(wg[0]))]
    return f"{pathway.name}. {pathway.description} Genes: {', '.join(genes[:n_genes])}."


class KnowledgeIndex:
    """Inner-product search over unit vectors (cosine similarity) of pathway documents."""

    def __init__(self, kb: KnowledgeBase, embedder: Embedder, vectors: np.ndarray):
        if vectors.shape != (len(kb.pathways), embedder.dim):
            raise ValueError(f"vectors {vectors.shape} do not match {len(kb.pathways)} pathways x {embedder.dim}")
        self.kb = kb
        self.embedder = embedder
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._index = faiss.IndexFlatIP(embedder.dim)
        self._index.add(self.vectors)

    @classmethod
    def build(cls, kb: KnowledgeBase, embedder: Embedder) -> KnowledgeIndex:
        """Embed one document per pathway."""
        return cls(kb, embedder, embedder.embed([pathway_document(p) for p in kb.pathways]))

    @classmethod
    def cached(cls, kb: KnowledgeBase, embedder: Embedder, cache_dir: Path) -> KnowledgeIndex:
        """Load the index for (kb, embedder) from cache_dir, or build and save it there."""
        index = cls.load(cache_dir, kb, embedder)
        if index is None:
            index = cls.build(kb, embedder)
            index.save(cache_dir)
        return index

    @staticmethod
    def _paths(cache_dir: Path, kb: KnowledgeBase, embedder: Embedder) -> tuple[Path, Path]:
        """(vectors .npy, metadata .json) of the cache entry for this base and embedder."""
        stem = f"knowledge-{kb.sha256[:16]}-{embedder.name}"
        return Path(cache_dir) / f"{stem}.npy", Path(cache_dir) / f"{stem}.json"

    def save(self, cache_dir: Path) -> Path:
        """Write vectors (.npy) then metadata (.json); the .json last marks a complete entry."""
        vectors_path, meta_path = self._paths(cache_dir, self.kb, self.embedder)
        atomic_write_bytes(vectors_path, _npy_bytes(self.vectors))
        meta = {
            "kb_sha256": self.kb.sha256,
            "embedder": self.embedder.name,
            "dim": self.embedder.dim,
            "pathway_ids": [p.id for p in self.kb.pathways],
        }
        atomic_write_bytes(meta_path, json.dumps(meta, indent=1).encode())
        return meta_path

    @classmethod
    def load(cls, cache_dir: Path, kb: KnowledgeBase, embedder: Embedder) -> KnowledgeIndex | None:
        """The cached index for (kb, embedder), or None when there is none yet."""
        vectors_path, meta_path = cls._paths(cache_dir, kb, embedder)
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            vectors = np.load(vectors_path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise InputError(str(meta_path), "(file)", f"unreadable index cache: {error}") from error
        expected = {"kb_sha256": kb.sha256, "embedder": embedder.name, "dim": embedder.dim}
        for field, value in expected.items():
            if meta.get(field) != value:
                raise InputError(str(meta_path), field, f"cache holds {meta.get(field)!r}, expected {value!r}")
        if meta.get("pathway_ids") != [p.id for p in kb.pathways]:
            raise InputError(str(meta_path), "pathway_ids", "cache does not list this knowledge base's pathways")
        if vectors.shape != (len(kb.pathways), embedder.dim):
            expected_shape = (len(kb.pathways), embedder.dim)
            raise InputError(str(vectors_path), "shape", f"{vectors.shape}, expected {expected_shape}")
        return cls(kb, embedder, vectors)

    def search(self, query: str, k: int = 5) -> list[KnowledgeHit]:
        """The k pathways whose documents are closest to the query (cosine similarity)."""
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int = 5) -> list[list[KnowledgeHit]]:
        """`search` for several queries in one embedding pass."""
        if not queries or k < 1:
            return []
        scores, rows = self._index.search(self.embedder.embed(list(queries)), min(k, len(self.kb.pathways)))
        return [
            [self._hit(int(row), float(score)) for score, row in zip(query_scores, query_rows) if row >= 0]
            for query_scores, query_rows in zip(scores, rows)
        ]

    def search_genes(self, genes: Iterable[str], k: int = 5) -> list[KnowledgeHit]:
        """Pathways ranked by gene overlap with `genes` (Ochiai coefficient |A∩B| / sqrt(|A||B|))."""
        query = set(genes)
        if not query:
            return []
        scored = [
            (len(query & set(p.genes)) / sqrt(len(query) * len(p.genes)), row) for row, p in enumerate(self.kb.pathways)
        ]
        ranked = sorted((s for s in scored if s[0] > 0), key=lambda sr: (-sr[0], sr[1]))
        return [self._hit(row, score) for score, row in ranked[:k]]

    def _hit(self, row: int, score: float) -> KnowledgeHit:
        pathway = self.kb.pathways[row]
        return KnowledgeHit(pathway_id=pathway.id, name=pathway.name, score=score)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
