"""Drafting backends side by side on the demo cohort: speed, grounding, retries and fallbacks.

    .venv/bin/python bench/llm_backend.py [--n-cases 3] [--backends deterministic,transformers,openai]
        [--cohort demo_cohort] [--checkpoint checkpoints/glioma_demo.pt] [--base-url URL --served-model NAME]

Each backend writes a report for the same first N demo cases, one at a time in this
process. `openai` talks to the vLLM server given by --base-url/--served-model, or, without
them, to one this script starts from .venv-vllm (bash .ci/setup.d/40-vllm.sh) serving the
SmolLM2 folder; its start-up is timed on its own line and left out of the per-report times.
Per backend: report latency (first report, holding model loading, and the median of the rest),
the drafting node's median, language-model calls, completion tokens per second of model time,
retries and fallbacks (from provenance.llm_calls), and the claims the verifier checked, passed
and stripped (report.grounding; n/a where a report has none). Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from agents.context import DEFAULT_CHECKPOINT, Settings
from agents.runner import list_case_dirs, run_case
from schemas.report import EvidenceChainReport

SERVED = "smollm2-135m-instruct"


def run_backend(cases: list[Path], out: Path, settings: Settings) -> dict[str, object]:
    wall: list[float] = []
    drafting: list[float] = []
    reports: list[EvidenceChainReport] = []
    for case in cases:
        started = time.perf_counter()
        result = run_case(case, out, settings)
        wall.append(time.perf_counter() - started)
        if result.status != "ok":
            raise SystemExit(f"{settings.drafting_backend}: {result.case_id}: {result.status}: {result.error}")
        drafting.append(result.timings_s.get("drafting", float("nan")))
        report_json = out / result.case_id / "report.json"
        reports.append(EvidenceChainReport.model_validate(json.loads(report_json.read_text())))
    calls = [c for r in reports for c in r.provenance.llm_calls]
    grounding = [r.grounding for r in reports]
    model_s = sum(c.latency_s for c in calls)
    return {
        "cases": len(cases),
        "first_s": wall[0],
        "p50_s": statistics.median(wall[1:] or wall),
        "drafting_s": statistics.median(drafting),
        "calls": len(calls),
        "tokens": sum(c.completion_tokens for c in calls),
        "tokens_per_s": sum(c.completion_tokens for c in calls) / model_s if model_s else None,
        "retries": sum(c.retries for c in calls),
        "fallbacks": sum(c.outcome == "fallback" for c in calls),
        "claims": None if any(g is None for g in grounding) else tuple(
            sum(getattr(g, k) for g in grounding) for k in ("claims_checked", "claims_passed", "sentences_stripped")
        ),
    }


def backend_settings(name: str, base: Settings, stack: ExitStack, args: argparse.Namespace, log_dir: Path) -> Settings:
    if name == "deterministic":
        return base.model_copy(update={"drafting_backend": name})
    from agents.llm.models import prepare_model

    if name == "transformers":
        return base.model_copy(update={"drafting_backend": name, "llm_model": str(prepare_model("smollm2"))})
    url, served = args.base_url, args.served_model
    if url is None:
        from agents.llm.vllm_server import vllm_server

        started = time.perf_counter()
        url = stack.enter_context(vllm_server(prepare_model("smollm2"), SERVED, log_dir / "vllm.log"))
        served = SERVED
        print(f"openai: vLLM server started in {time.perf_counter() - started:.1f} s at {url}")
    return base.model_copy(update={"drafting_backend": name, "llm_base_url": url, "llm_model": served})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cohort", type=Path, default=Path(tempfile.gettempdir()) / "evchain_bench_cohort")
    parser.add_argument("--n-cases", type=int, default=3, help="first N demo cases per backend")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--backends", default="deterministic,transformers,openai")
    parser.add_argument("--base-url", help="an already running OpenAI-compatible server for 'openai'")
    parser.add_argument("--served-model", default=SERVED, help="its served model name")
    parser.add_argument("--llm-timeout", type=float, default=600.0, help="seconds per model request (CPU is slow)")
    args = parser.parse_args()
    if not (args.cohort / "cases").is_dir():
        from demo.cohort import build_demo_cohort

        build_demo_cohort(args.cohort, n_cases=max(args.n_cases, 4), progress=False)
    cases = list_case_dirs(args.cohort)[: args.n_cases]
    base = Settings(checkpoint=args.checkpoint, figures=False, llm_timeout_s=args.llm_timeout)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        for name in args.backends.split(","):
            settings = backend_settings(name, base, stack, args, Path(tmp))
            rows.append((name, run_backend(cases, Path(tmp) / name, settings)))
    print(f"\n{len(cases)} demo cases per backend, one at a time ({os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f})")
    print(f"{'backend':<14} {'first s':>8} {'p50 s':>7} {'draft s':>8} {'calls':>6} {'tokens':>7} {'tok/s':>7} "
          f"{'retries':>8} {'fallbacks':>10} {'claims checked/passed, sentences stripped':>42}")
    for name, r in rows:
        tps = "n/a" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:.1f}"
        claims = "n/a" if r["claims"] is None else "/".join(map(str, r["claims"]))
        print(f"{name:<14} {r['first_s']:>8.2f} {r['p50_s']:>7.2f} {r['drafting_s']:>8.2f} {r['calls']:>6} "
              f"{r['tokens']:>7} {tps:>7} {r['retries']:>8} {r['fallbacks']:>10} {claims:>42}")


if __name__ == "__main__":
    main()
