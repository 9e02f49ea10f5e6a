"""Pathway knowledge: the bundled GO + PROGENy file, knowledge sources by name, and a FAISS index over them."""

from knowledge.sources import (
    PROGRAMMES,
    KnowledgeBase,
    Pathway,
    list_knowledge_sources,
    load_knowledge,
    register_knowledge_source,
)

__all__ = [
    "PROGRAMMES",
    "KnowledgeBase",
    "Pathway",
    "list_knowledge_sources",
    "load_knowledge",
    "register_knowledge_source",
]
