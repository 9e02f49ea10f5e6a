"""write_report: verified narrative sentences and figures, then report.json, Markdown (en, zh), HTML, PNGs, atomically.

The narrative is the template's, with any sections a drafting backend wrote (`draft_narrative`) in
their place; the claim verifier keeps what its cited evidence shows, falls back to the deterministic
sentence (`fallback_narrative`, else the template) or removes it, and flags each failure. The report
is re-validated (pydantic, then the generated JSON Schema with jsonschema) before anything touches the disk.
"""

from __future__ import annotations

import json
from pathlib import Path

from langgraph.runtime import Runtime

from agents import resources
from agents.consistency.verifier import verify_narrative
from agents.context import Settings
from agents.figures import render_figures
from agents.narrative import build_narrative, place_sections
from agents.output import FINGERPRINT_FILE, validate_report, write_case_folder
from agents.render import render_html, render_markdown
from agents.review import workflow as review_workflow
from agents.state import CaseState
from schemas.imaging import IMAGING_FEATURES_FILE


def node(state: CaseState, runtime: Runtime[Settings]) -> dict:
    report = state["report"]
    kb = resources.knowledge(runtime.context)
    programme_of = {p.id: p.programme for p in kb.pathways if p.programme}
    template = build_narrative(report, state.get("flag_texts"), state.get("basis_texts"), programme_of)
    verified = verify_narrative(
        report, place_sections(template, state.get("draft_narrative", [])),
        fallback=place_sections(template, state.get("fallback_narrative", [])),
        programme_of=programme_of, genes=kb.gene_universe,
    )
    report = report.model_validate(report.model_dump() | {
        "narrative": [s.model_dump() for s in verified.sections],
        "consistency_flags": [f.model_dump() for f in (*report.consistency_flags, *verified.flags)],
        "grounding": verified.summary.model_dump(),
    })
    report = review_workflow.for_write(report, state, runtime.context)
    # Figures after the reviewer's sentences and review block: captions cite the report as written.
    inputs = resources.case_inputs(state, runtime.context) if runtime.context.figures else None
    figures, images = render_figures(inputs, report, state.get("fusion"), runtime.context)
    report = report.model_copy(update={"figures": figures})
    data = report.model_dump(mode="json")
    validate_report(data)
    files = {
        "report.json": json.dumps(data, indent=2, ensure_ascii=False) + "\n",
        "report.en.md": render_markdown(report, "en"),
        "report.zh.md": render_markdown(report, "zh"),
        "report.html": render_html(report, runtime.context.lang, images),
        **images,
    }
    if "imaging_features" in state:
        files[IMAGING_FEATURES_FILE] = state["imaging_features"].model_dump_json(indent=2) + "\n"
    files.update(state.get("closed_versions", {}))  # approved versions a reopened report replaces
    if "fingerprint" in state:
        # In the same atomic step as the report, so a resumed batch never trusts a report it did not finish.
        files[FINGERPRINT_FILE] = json.dumps(state["fingerprint"], indent=2) + "\n"
    outputs = write_case_folder(Path(state["out_dir"]), report.case_id, files)
    return {"report": report, "outputs": outputs}
