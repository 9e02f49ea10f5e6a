"""write_report: narrative sentences with evidence ids, then report.json + Markdown (en, zh) + HTML, atomically.

The report is re-validated (pydantic, then the generated JSON Schema with
jsonschema) before anything touches the disk.
"""

from __future__ import annotations

import json
from pathlib import Path

from langgraph.runtime import Runtime

from agents.context import Settings
from agents.narrative import build_narrative
from agents.output import FINGERPRINT_FILE, validate_report, write_case_folder
from agents.render import render_html, render_markdown
from agents.review import workflow as review_workflow
from agents.state import CaseState


def node(state: CaseState, runtime: Runtime[Settings]) -> dict:
    report = state["report"]
    narrative = build_narrative(report, state.get("flag_texts"), state.get("basis_texts"))
    report = report.model_validate(report.model_dump() | {"narrative": [s.model_dump() for s in narrative]})
    report = review_workflow.for_write(report, state, runtime.context)
    data = report.model_dump(mode="json")
    validate_report(data)
    files = {
        "report.json": json.dumps(data, indent=2, ensure_ascii=False) + "\n",
        "report.en.md": render_markdown(report, "en"),
        "report.zh.md": render_markdown(report, "zh"),
        "report.html": render_html(report, runtime.context.lang),
    }
    files.update(state.get("closed_versions", {}))  # approved versions a reopened report replaces
    if "fingerprint" in state:
        # In the same atomic step as the report, so a resumed batch never trusts a report it did not finish.
        files[FINGERPRINT_FILE] = json.dumps(state["fingerprint"], indent=2) + "\n"
    outputs = write_case_folder(Path(state["out_dir"]), report.case_id, files)
    return {"report": report, "outputs": outputs}
