"""Per-node time for one case and batch throughput on the demo cohort.

    .venv/bin/python bench/bench_pipeline.py [--cohort demo_cohort] [--checkpoint checkpoints/glioma_demo.pt]

Prints ratios measured side by side in this one run (the machines are noisy):
each node's share of a warm case, cold (first case: components load) vs warm,
and the batch throughput. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from agents.context import DEFAULT_CHECKPOINT, Settings
from agents.graph import build_graph
from agents.runner import list_case_dirs, run_batch, run_case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cohort", type=Path, default=Path("demo_cohort"))
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--repeats", type=int, default=3, help="warm runs of the single case")
    args = parser.parse_args()
    if not (args.cohort / "cases").is_dir():
        from demo.cohort import build_demo_cohort

        build_demo_cohort(args.cohort)
    settings = Settings(checkpoint=args.checkpoint)
    graph = build_graph()
    # The single-case timing should exercise every node: take the first case with all three data modalities.
    case = next(
        (c for c in list_case_dirs(args.cohort) if all((c / m).is_dir() for m in ("imaging", "pathology", "genomics"))),
        list_case_dirs(args.cohort)[0],
    )
    with tempfile.TemporaryDirectory() as out:
        cold = run_case(case, Path(out), settings, graph)
        warm = [run_case(case, Path(out), settings, graph) for _ in range(args.repeats)]
        nodes = list(cold.timings_s)
        median = {n: statistics.median(r.timings_s[n] for r in warm) for n in nodes}
        total = sum(median.values())
        print(f"one case ({cold.case_id}), median of {args.repeats} warm runs")
        print(f"{'node':<20} {'cold s':>8} {'warm s':>8} {'share':>7}")
        for n in nodes:
            print(f"{n:<20} {cold.timings_s[n]:>8.3f} {median[n]:>8.3f} {median[n] / total:>7.1%}")
        print(f"{'total':<20} {sum(cold.timings_s.values()):>8.3f} {total:>8.3f}   cold/warm = "
              f"{sum(cold.timings_s.values()) / total:.1f}x")
        started = time.perf_counter()
        results = run_batch(args.cohort, Path(out) / "batch", settings, progress=False)
        wall = time.perf_counter() - started
        ok = sum(r.status == "ok" for r in results)
        print(f"batch: {ok}/{len(results)} cases in {wall:.1f} s = {len(results) / wall * 60:.1f} cases/min; "
              f"batch per-case / single warm case = {wall / len(results) / total:.2f}x")


if __name__ == "__main__":
    main()
