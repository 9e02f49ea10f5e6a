"""Running the graph over one case or a cohort, with per-node timings and a batch summary."""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from agents.consistency.grounding import fmt_probability
from agents.context import Settings
from agents.graph import build_graph
from agents.output import write_json
from schemas.errors import InputError

BATCH_SUMMARY = "batch_summary.json"


@dataclass
class CaseResult:
    case_id: str
    case_dir: str
    status: str  # "ok" | "bad_input" | "error"
    error: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    headline: dict[str, object] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return {"ok": 0, "bad_input": 2}.get(self.status, 1)


def case_id_of(case_dir: Path) -> str:
    """The id from case.json when readable, else the folder name (so a broken case is still listed)."""
    try:
        return str(json.loads((case_dir / "case.json").read_text(encoding="utf-8"))["case_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return case_dir.name


def list_case_dirs(cohort_dir: Path) -> list[Path]:
    """Case folders: `COHORT/cases/*` when that folder exists (cohort with labels beside), else `COHORT/*`."""
    if not cohort_dir.is_dir():
        raise InputError(str(cohort_dir), "cohort", "not a folder")
    root = cohort_dir / "cases" if (cohort_dir / "cases").is_dir() else cohort_dir
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _headline(report) -> dict[str, object]:
    by_task = {c.task: c for c in report.conclusions}
    out: dict[str, object] = {
        f"{task}": f"{c.label} ({fmt_probability(c.probability)}, {c.confidence})" for task, c in by_task.items()
    }
    out["flags"] = [f.kind for f in report.consistency_flags if f.kind not in ("missing_modality",)]
    out["first_target"] = report.sampling_plan[0].unit_id if report.sampling_plan else None
    out["missing"] = list(report.modalities.missing)
    return out


def run_case(case_dir: Path, out_dir: Path, settings: Settings, graph=None) -> CaseResult:
    graph = graph or build_graph()
    result = CaseResult(case_id=case_id_of(case_dir), case_dir=str(case_dir), status="ok")
    state = {"case_dir": str(case_dir), "out_dir": str(out_dir)}
    report = None
    started = time.perf_counter()
    try:
        for update in graph.stream(state, context=settings, stream_mode="updates"):
            now = time.perf_counter()
            for node_name, partial in update.items():
                result.timings_s[node_name] = round(now - started, 4)
                if partial and "report" in partial:
                    report = partial["report"]
                if partial and "outputs" in partial:
                    result.outputs = partial["outputs"]
            started = now
        if report is not None:
            result.headline = _headline(report)
    except InputError as err:
        result.status, result.error = "bad_input", str(err)
    except Exception as err:  # noqa: BLE001 - recorded in the summary and re-surfaced by the exit code
        result.status = "error"
        result.error = f"{type(err).__name__}: {err}".splitlines()[0]
        tqdm.write(traceback.format_exc())
    return result


def run_batch(cohort_dir: Path, out_dir: Path, settings: Settings, *, progress: bool = True) -> list[CaseResult]:
    graph = build_graph()
    results = []
    for case_dir in tqdm(list_case_dirs(cohort_dir), desc="cases", unit="case", disable=not progress):
        results.append(run_case(case_dir, out_dir, settings, graph))
    write_json(
        out_dir / BATCH_SUMMARY,
        {
            "cohort": str(cohort_dir),
            "n_cases": len(results),
            "n_ok": sum(r.status == "ok" for r in results),
            "n_failed": sum(r.status != "ok" for r in results),
            "cases": [asdict(r) for r in results],
        },
    )
    return results
