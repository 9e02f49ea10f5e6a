"""load_case: read the case bundle. A bad case.json stops the case; a bad modality file is recorded.

The loaded arrays stay in a per-process cache (agents.resources.case_inputs), keyed by the
input fingerprint that this node puts in the state; the state itself carries no arrays.
"""

from __future__ import annotations

from pathlib import Path

from langgraph.runtime import Runtime

from agents import resources
from agents.context import Settings
from agents.state import CaseState
from toolkit.case_files import folder_fingerprint


def node(state: CaseState, runtime: Runtime[Settings]) -> dict:
    given = state.get("fingerprint", {}).get("inputs")
    fingerprint = given or folder_fingerprint(Path(state["case_dir"]))
    resources.case_inputs({**state, "input_fingerprint": fingerprint}, runtime.context)  # raises on a bad case.json
    return {"input_fingerprint": fingerprint}
