"""The EvidenceChain workflow, wired. Each node lives in agents/nodes/<name>.py.

load_case -> fusion -> vision_analysis -> retrieval -> drafting
          -> consistency_check -> write_report -> human_review -> END
                 ^                     ^               |
                 +------ edit ---------|---------------+
                                       +-- approve/reject

The draft is written before human_review pauses (interactive review), so the clinician
reads the written report and pictures; an edit re-runs the checks and the writing.
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
    "write_report": write_report.node,
    "human_review": human_review.node,
}


def build_graph(checkpointer=None):
    builder = StateGraph(CaseState, context_schema=Settings)
    previous = START
    for name, fn in NODES.items():
        builder.add_node(name, fn)
        builder.add_edge(previous, name)
        previous = name
    builder.add_conditional_edges(
        "human_review",
        human_review.route,
        {"revise": "consistency_check", "write": "write_report", "end": END},
    )
    return builder.compile(checkpointer=checkpointer, name="evidencechain")


def make_graph():
    """Entry point named in langgraph.json; built on demand, never at import time."""
    return build_graph()
