"""What the figures cost per case: write_report time and report.html size, figures on vs off, side by side.

    .venv/bin/python bench/figures.py [--cohort demo_cohort] [--checkpoint checkpoints/glioma_demo.pt]
                                      [--cases DEMO-004 DEMO-006 DEMO-007] [--repeats 3]

Each case runs `repeats` times with figures off and on, alternating (the machine is shared and
noisy, so both settings see the same load); medians are printed, wall time of write_report and CPU
seconds of the whole case (CPU is the fairer number on a loaded machine). Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from agents.context import DEFAULT_CHECKPOINT, Settings
from agents.runner import list_case_dirs, run_case


def measure(case: Path, settings: Settings, repeats: int, scratch: Path) -> dict[str, dict[str, float]]:
    runs: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}  # (write_report wall s, case CPU s)
    sizes: dict[str, dict[str, float]] = {}
    for _ in range(repeats):
        for label, figures in (("off", False), ("on", True)):
            out = scratch / label
            result = run_case(case, out, settings.model_copy(update={"figures": figures}))
            assert result.status == "ok", result.error
            runs[label].append((result.timings_s["write_report"], result.cpu_s))
            folder = out / result.case_id
            pngs = list((folder / "figures").glob("*.png")) if (folder / "figures").is_dir() else []
            sizes[label] = {
                "html_kb": (folder / "report.html").stat().st_size / 1024,
                "png_kb": sum(p.stat().st_size for p in pngs) / 1024,
                "n": len(pngs),
            }
    return {
        label: {
            "write_s": statistics.median(w for w, _ in values),
            "cpu_s": statistics.median(c for _, c in values),
            **sizes[label],
        }
        for label, values in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, default=Path("demo_cohort"))
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--cases", nargs="*", default=["DEMO-004", "DEMO-006", "DEMO-007"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    settings = Settings(checkpoint=args.checkpoint)
    cases = {c.name: c for c in list_case_dirs(args.cohort)}
    print(f"{'case':<10} {'figs':>4} {'write off s':>11} {'write on s':>10} {'CPU off s':>9} {'CPU on s':>8} "
          f"{'CPU on/off':>10} {'html off KB':>11} {'html on KB':>10} {'PNG KB':>7}")
    with tempfile.TemporaryDirectory(prefix="bench_figures_") as scratch:
        for name in args.cases:
            m = measure(cases[name], settings, args.repeats, Path(scratch) / name)
            off, on = m["off"], m["on"]
            print(f"{name:<10} {on['n']:>4.0f} {off['write_s']:>11.2f} {on['write_s']:>10.2f} {off['cpu_s']:>9.2f} "
                  f"{on['cpu_s']:>8.2f} {on['cpu_s'] / off['cpu_s']:>10.2f} {off['html_kb']:>11.0f} {on['html_kb']:>10.0f} "
                  f"{on['png_kb']:>7.0f}")


if __name__ == "__main__":
    main()
