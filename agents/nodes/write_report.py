"""write_report: narrative sentences with evidence ids, figures, then report.json + Markdown (en, zh) + HTML + PNGs,
atomically.

The report is re-validated (pydantic, then the generated JSON Schema with
jsonschema) before anything touches the disk.
"""

from __future__ import annotations

import json
from pathlib import Path

from langgraph.runtime import Runtime

from agents.context import Settings
from agents.figures import render_figures
from agents.narrative import build_narrative
from agents.output import FINGERPRINT_FILE, validate_report, write_case_folder
from agents.render import render_html, render_markdown
from agents.state import CaseState


def node(state: CaseState, runtime: Runtime[Settings]) -> dict:
    report = state["report"]
    narrative = build_narrative(report, state.get("flag_texts"), state.get("basis_texts"))
    figures, images = render_figures(state.get("inputs"), report, state.get("fusion"), runtime.context)
    report = report.model_validate(
        report.model_dump() | {"narrative": [s.model_dump() for s in narrative], "figures": [f.model_dump() for f in figures]}
    )
    data = report.model_dump(mode="json")
    validate_report(data)
    files = {
        "report.json": json.dumps(data, indent=2, ensure_ascii=False) + "\n",
        "report.en.md": render_markdown(report, "en"),
        "report.zh.md": render_markdown(report, "zh"),
        "report.html": render_html(report, runtime.context.lang, images),
        **images,
    }
    if "fingerprint" in state:
        # In the same atomic step as the report, so a resumed batch never trusts a report it did not finish.
        files[FINGERPRINT_FILE] = json.dumps(state["fingerprint"], indent=2) + "\n"
    outputs = write_case_folder(Path(state["out_dir"]), report.case_id, files)
    return {"report": report, "outputs": outputs}
