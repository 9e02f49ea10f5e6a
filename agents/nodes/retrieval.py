"""retrieval: score the knowledge base's programme pathways on the sample and fetch pathway knowledge (FAISS)."""

from __future__ import annotations

from langgraph.runtime import Runtime

from agents import resources
from agents.context import Settings
from agents.evidence.mechanism import mechanism_evidence
from agents.state import CaseState
from fusion_models.genomics.pathways import score_pathways
from knowledge.sources import PROGRAMMES


def node(state: CaseState, runtime: Runtime[Settings]) -> dict:
    settings = runtime.context
    genomics = resources.case_inputs(state, settings).genomics
    if genomics is None:
        return {"mechanism_evidence": []}
    kb = resources.knowledge(settings)
    pathways = [p for p in (kb.by_programme(key) for key in PROGRAMMES) if p is not None]
    scores = score_pathways(genomics.expression, pathways) if genomics.expression is not None else []

    def retrieve(query: str) -> list[str]:
        return resources.knowledge_hits(settings, query)

    return {"mechanism_evidence": mechanism_evidence(genomics, scores, retrieve)}
