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
from agents.consistency.verifier import combined, verify_narrative
from agents.context import Settings
from agents.figures import render_figures
from agents.llm.sections import without_relabelled
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

    def verify(draft, sections, fallback):
        return verify_narrative(draft, sections, fallback=fallback, programme_of=programme_of, genes=kb.gene_universe)

    # The drafted sections first: a sentence stripped from them becomes a flag, and the board's
    # decisions (a template section) then list that flag like any other.
    drafted = verify(report, without_relabelled(state.get("draft_narrative", []), report),
                     without_relabelled(state.get("fallback_narrative", []), report))
    report = report.model_copy(update={"consistency_flags": [*report.consistency_flags, *drafted.flags]})
    written = {s.key for s in drafted.sections}
    template = [s for s in build_narrative(report, state.get("flag_texts"), state.get("basis_texts"), programme_of)
                if s.key not in written]
    checked = verify(report, template, template)
    report = report.model_validate(report.model_dump() | {
        "narrative": [s.model_dump() for s in place_sections(checked.sections, drafted.sections)],
        "consistency_flags": [f.model_dump() for f in (*report.consistency_flags, *checked.flags)],
        "grounding": combined(drafted.summary, checked.summary).model_dump(),
    })
    inputs = resources.case_inputs(state, runtime.context) if runtime.context.figures else None
    figures, images = render_figures(inputs, report, state.get("fusion"), runtime.context)
    # The review block last: what followed a reviewer's step (flags, narrative, figures) is in its audit trail.
    report = review_workflow.for_write(report.model_copy(update={"figures": figures}), state, runtime.context)
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
