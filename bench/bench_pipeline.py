"""Per-node time for one case, and batch throughput by engine on the demo cohort.

    .venv/bin/python bench/bench_pipeline.py [--cohort /tmp/bench_cohort] [--n-cases 48] [--checkpoint checkpoints/glioma_demo.pt]

Prints ratios measured side by side in this one run (the machines are noisy):
each node's share of a warm case, cold (first case: components load) vs warm,
and cases/min for 1 and 2 local workers and for Ray with 2 local workers (when
Ray is installed), each redoing every case (`--force`). Throughput is given over
the whole run and at steady state (from each engine's first finished case on:
worker start-up and component loading excluded). Nothing here is asserted.

Every worker uses one torch thread (`--torch-threads` for the in-process runs), so
the ratios measure process parallelism: on a shared machine two torch threads
per process spin against each other and against the neighbours. "CPU s/case" is
all CPU of the run (worker start-up included) per case; "in-case CPU s" the median
CPU one warm case costs inside its worker: equal values mean the workers lose
nothing to each other, and the ratio is bounded only by free cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from agents.context import DEFAULT_CHECKPOINT, Settings
from agents.engines import ENGINES
from agents.runner import CaseResult, list_case_dirs, plan_jobs, run_case, settings_fingerprint


def node_table(case: Path, out: Path, settings: Settings, repeats: int) -> None:
    cold = run_case(case, out, settings)
    warm = [run_case(case, out, settings) for _ in range(repeats)]
    nodes = list(cold.timings_s)
    median = {n: statistics.median(r.timings_s[n] for r in warm) for n in nodes}
    total = sum(median.values())
    print(f"one case ({cold.case_id}), median of {repeats} warm runs")
    print(f"{'node':<20} {'cold s':>8} {'warm s':>8} {'share':>7}")
    for n in nodes:
        print(f"{n:<20} {cold.timings_s[n]:>8.3f} {median[n]:>8.3f} {median[n] / total:>7.1%}")
    print(f"{'total':<20} {sum(cold.timings_s.values()):>8.3f} {total:>8.3f}   cold/warm = "
          f"{sum(cold.timings_s.values()) / total:.1f}x")


def throughput(engine: str, workers: int, cohort: Path, out: Path, settings: Settings) -> dict[str, float]:
    """Run every case with `engine`; wall-clock and steady-state cases/min."""
    jobs, rejected = plan_jobs(list_case_dirs(cohort), out, settings_fingerprint(settings), force=True, timeout_s=None)
    assert not rejected, [r.error for r in rejected]
    finished: list[float] = []
    case_cpu: list[float] = []
    failed: list[CaseResult] = []

    def on_result(result: CaseResult) -> None:
        finished.append(time.perf_counter())
        case_cpu.append(result.cpu_s)
        if result.status != "ok":
            failed.append(result)

    cpu_before = _cpu_s()
    started = time.perf_counter()
    ENGINES.get(engine)(jobs, settings, workers=workers, on_result=on_result)
    wall = time.perf_counter() - started
    # Ray's workers are children of its raylet, not of this process: their CPU time is not seen here.
    cpu = _cpu_s() - cpu_before if engine == "local" else float("nan")
    assert not failed, [r.error for r in failed]
    # Steady state: from the first finished case of the last worker to start (start-up is paid once per run).
    warm_from = finished[min(workers, len(finished)) - 1]
    steady_cases = len(finished) - min(workers, len(finished))
    steady = steady_cases / (finished[-1] - warm_from) * 60 if finished[-1] > warm_from else float("nan")
    return {"cases": len(finished), "wall_s": wall, "per_min": len(finished) / wall * 60, "steady_per_min": steady,
            "cpu_per_case": cpu / len(finished), "case_cpu": statistics.median(case_cpu[workers:] or case_cpu)}


def _cpu_s() -> float:
    """CPU seconds of this process and of its finished children (worker pools are joined before reading)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cohort", type=Path, default=Path(tempfile.gettempdir()) / "evchain_bench_cohort")
    parser.add_argument("--n-cases", type=int, default=48, help="demo cases built when --cohort does not exist")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--repeats", type=int, default=3, help="warm runs of the single case")
    parser.add_argument("--engines", default="local:1,local:2,ray:2", help="engine:workers list, run in this order")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch/BLAS/OpenMP threads of the in-process runs")
    args = parser.parse_args()
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.torch_threads)
    threadpool_limits(limits=args.torch_threads)
    print(f"torch threads in process: {torch.get_num_threads()}; each worker process: 1 per worker on "
          f"{os.cpu_count()} cores")
    if not (args.cohort / "cases").is_dir():
        from demo.cohort import build_demo_cohort

        build_demo_cohort(args.cohort, n_cases=args.n_cases, progress=False)
    settings = Settings(checkpoint=args.checkpoint)
    cases = list_case_dirs(args.cohort)
    # The single-case timing should exercise every node: take the first case with all three data modalities.
    case = next((c for c in cases if all((c / m).is_dir() for m in ("imaging", "pathology", "genomics"))), cases[0])
    with tempfile.TemporaryDirectory() as out:
        node_table(case, Path(out) / "one", settings, args.repeats)
        rows = []
        for spec in args.engines.split(","):
            engine, workers = spec.split(":")
            if engine == "ray" and importlib.util.find_spec("ray") is None:
                print("ray: not installed (pip install 'evidencechain[ray]'), skipped")
                continue
            rows.append((spec, throughput(engine, int(workers), args.cohort, Path(out) / spec.replace(":", "_"), settings)))
    base = rows[0][1]
    print(f"\nbatch of {base['cases']} demo cases, every case redone")
    print(f"{'engine:workers':<16} {'wall s':>8} {'cases/min':>10} {'ratio':>7} {'steady/min':>11} {'ratio':>7} "
          f"{'CPU s/case':>11} {'in-case CPU s':>14}")
    for spec, r in rows:
        print(f"{spec:<16} {r['wall_s']:>8.1f} {r['per_min']:>10.1f} {r['per_min'] / base['per_min']:>6.2f}x "
              f"{r['steady_per_min']:>11.1f} {r['steady_per_min'] / base['steady_per_min']:>6.2f}x "
              f"{r['cpu_per_case']:>11.2f} {r['case_cpu']:>14.3f}")
    print(f"(load average while measuring: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
