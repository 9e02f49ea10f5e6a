"""The EvidenceChain workflow, wired. Each node lives in agents/nodes/<name>.py.

load_case -> fusion -> vision_analysis -> retrieval -> drafting
          -> consistency_check -> human_review -> write_report
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from agents.context import Settings
from agents.nodes import (
    consistency_check,
    drafting,
    fusion,
    human_review,
    load_case,
    retrieval,
    vision_analysis,
    write_report,
)
from agents.state import CaseState

NODES = {
    "load_case": load_case.node,
    "fusion": fusion.node,
    "vision_analysis": vision_analysis.node,
    "retrieval": retrieval.node,
    "drafting": drafting.node,
    "consistency_check": consistency_check.node,
    "human_review": human_review.node,
    "write_report": write_report.node,
}


def build_graph(checkpointer=None):
    builder = StateGraph(CaseState, context_schema=Settings)
    previous = START
    for name, fn in NODES.items():
        builder.add_node(name, fn)
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, END)
    return builder.compile(checkpointer=checkpointer, name="evidencechain")


def make_graph():
    """Entry point named in langgraph.json; built on demand, never at import time."""
    return build_graph()
