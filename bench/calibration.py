"""Calibration, conformal coverage and OOD detection of both models, on data not used to fit them (issue 6).

    .venv/bin/python bench/calibration.py [--demo-cases 300] [--data ../shared/data/tcga_glioma] [--json out.json]

glioma_demo: trains on simulated cases with four disjoint splits (fit / early stopping /
calibration / evaluation; fusion_models/train.py) and reports the evaluation split. The
fuzzed families (fusion_models/perturbations.py) are applied to the evaluation cases and
the 16-case demo cohort (fresh tiles, written to disk and read back) counts as clean too.
tcga_glioma: one patient-level stratified fold (20%) is the test set; of the rest, one fold
calibrates (fusion_models/tcga/calibration.py) and the others fit the model; repeated with
each of the 5 folds as the test set (mean and range printed).

Detection rate: share of perturbed cases whose perturbed modality is flagged out of
distribution. False-alarm rate: share of clean cases with that modality flagged.
Takes about two minutes on 2 cores (minus --no-tcga / --no-demo).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from fusion_models.encoders import create_encoder
from fusion_models.inputs import CaseInputs, load_case_inputs, load_manifest
from fusion_models.perturbations import families
from toolkit.atomic import atomic_write_text

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tcga_glioma"
SEED = 0
TCGA_FOLDS = 5


def _rate(flags: list[bool]) -> dict[str, Any]:
    return {"rate": float(np.mean(flags)) if flags else None, "n": len(flags)}


def _flagged(output, modality: str) -> bool:
    return any(o.modality == modality and o.out_of_distribution for o in output.ood)


def fuzz(predict, clean: list[CaseInputs], perturbations: dict, rng: np.random.Generator) -> dict[str, Any]:
    """Per family: detection rate on perturbed cases; per modality: false alarms on the clean ones."""
    outputs = [predict(c) for c in clean]
    modalities = sorted({p.modality for p in perturbations.values()})
    report: dict[str, Any] = {
        "clean_false_alarm": {
            m: _rate([_flagged(o, m) for o in outputs if any(e.modality == m for e in o.ood)]) for m in modalities
        },
        "clean_any_flag": _rate([any(e.out_of_distribution for e in o.ood) for o in outputs]),
    }
    for name, perturbation in perturbations.items():
        flags = [_flagged(predict(perturbation.apply(c, rng)), perturbation.modality)
                 for c in clean if perturbation.applies_to(c)]
        report[name] = {"description": perturbation.description, **_rate(flags)}
    return report


def demo_bench(n_cases: int, epochs: int) -> dict[str, Any]:
    from demo.cohort import build_demo_cohort
    from demo.training import iter_training_cases
    from fusion_models.inference import load_fusion_model, predict
    from fusion_models.neural_family import fusion_model_config
    from fusion_models.train import train_fusion_model
    from fusion_models.training_common import HELDOUT_FRACTIONS, split_indices
    from knowledge.sources import load_knowledge

    encoder = create_encoder("hed_texture")
    kb = load_knowledge("bundled")
    cases = list(iter_training_cases(n_cases, seed=SEED, encoder=encoder))
    with tempfile.TemporaryDirectory(prefix="calib_bench_") as tmp:
        result = train_fusion_model(
            fusion_model_config("glioma_demo"), cases, Path(tmp) / "glioma_demo.pt", kb=kb, epochs=epochs, seed=SEED,
            progress=False,
        )
        card = json.loads(result.card.read_text())
        loaded = load_fusion_model(result.checkpoint)
        build_demo_cohort(Path(tmp) / "demo", n_cases=16, seed=SEED, progress=False)
        demo_cases = [load_case_inputs(d, encoder=encoder) for d in sorted((Path(tmp) / "demo" / "cases").iterdir())]

    def run(inputs: CaseInputs):
        return predict(loaded, inputs, kb, top_patches=1)

    evaluation = [cases[i][0] for i in split_indices(n_cases, HELDOUT_FRACTIONS, SEED)["evaluation"]]
    rng = np.random.default_rng(SEED)
    demo_outputs = [run(c) for c in demo_cases]
    return {
        "splits": card["training_data"]["splits"],
        "evaluation": card["metrics"]["evaluation"],
        "calibration": card["metrics"]["calibration"],
        "ood_thresholds": card["metrics"]["ood"],
        "fuzz_evaluation_split": fuzz(run, evaluation, families(encoder), rng),
        "demo_cohort": {
            "cases_with_an_ood_flag": sum(any(e.out_of_distribution for e in o.ood) for o in demo_outputs),
            "flags": {
                c.manifest.case_id: [e.modality for e in o.ood if e.out_of_distribution]
                for c, o in zip(demo_cases, demo_outputs)
                if any(e.out_of_distribution for e in o.ood)
            },
            "top_probability_over_0.99": sum(
                any(p.top()[1] > 0.99 for p in o.predictions if p.task != "risk") for o in demo_outputs
            ),
            "n": len(demo_outputs),
        },
    }


def tcga_fold(data: Path, fold: int) -> dict[str, Any]:
    from fusion_models.genomics.io import load_genomics
    from fusion_models.tcga.calibration import evaluate_post_hoc, fit_post_hoc
    from fusion_models.tcga.checkpoint import LoadedLinearModel, calibration_split
    from fusion_models.tcga.cohort import load_cohort, stratified_folds
    from fusion_models.tcga.inference import predict_case
    from fusion_models.tcga.family import linear_model_config
    from fusion_models.tcga.model import fit_linear_model

    config = linear_model_config("tcga_glioma")
    cohort = load_cohort(data)
    rest, test = stratified_folds(cohort, TCGA_FOLDS, SEED + 1)[fold]
    remaining = cohort.subset(rest)
    fit_index, calibration_index = calibration_split(remaining, config.seed)
    fitted_on = remaining.subset(fit_index)
    model = fit_linear_model(config, fitted_on)
    post = fit_post_hoc(model, fitted_on, remaining.subset(calibration_index))
    test_cohort = cohort.subset(test)
    figures = evaluate_post_hoc(model, post, test_cohort)
    loaded = LoadedLinearModel(model, hashlib.sha256(b"bench").hexdigest(), data, post)
    clean = []
    for i in range(len(test_cohort)):
        case_dir = test_cohort.case_dir(i)
        genomics, _ = load_genomics(case_dir)
        clean.append(CaseInputs(case_dir, load_manifest(case_dir), [], [], None, genomics))
    genomic = {name: p for name, p in families().items() if p.modality == "genomics"}
    return {
        "sizes": {"fit": len(fit_index), "calibration": len(calibration_index), "test": len(test)},
        "test": figures,
        "fuzz_test_split": fuzz(lambda c: predict_case(loaded, c), clean, genomic, np.random.default_rng(SEED)),
    }


def _leaves(report: Any, prefix: str = "") -> dict[str, float]:
    if isinstance(report, dict):
        return {k: v for key, value in report.items() for k, v in _leaves(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: float(report)} if isinstance(report, (int, float)) and report is not None else {}


def tcga_bench(data: Path, folds: int) -> dict[str, Any]:
    """Every figure of `tcga_fold` over `folds` test folds: per fold, and mean with range."""
    per_fold = [tcga_fold(data, k) for k in range(folds)]
    leaves = [_leaves(f) for f in per_fold]
    summary = {
        key: {"mean": float(np.mean([f[key] for f in leaves])), "min": min(f[key] for f in leaves),
              "max": max(f[key] for f in leaves)}
        for key in leaves[0]
        if all(key in f for f in leaves)
    }
    return {"per_fold": per_fold, "summary": summary}


def _print_tcga(report: dict[str, Any]) -> None:
    print(f"\n== tcga_glioma ({len(report['per_fold'])} test folds: mean [min, max]) ==")
    for key, value in report["summary"].items():
        if key.endswith(".n") or "sizes" in key or "threshold" in key or "bound" in key:
            continue
        print(f"  {key:55s} {value['mean']:.3f} [{value['min']:.3f}, {value['max']:.3f}]")


def _print(name: str, report: dict[str, Any]) -> None:
    print(f"\n== {name} ==")
    evaluation = report["evaluation"]
    for task, m in evaluation.items():
        if task in ("ood", "patch_pattern"):
            continue
        shown = [f"{k} {m[k]:.3f}" for k in ("accuracy", "ece_uncalibrated", "ece", "temperature",
                                             "set_coverage", "set_mean_set_size", "c_index") if m.get(k) is not None]
        print(f"  {task:18s} n={m.get('n')}: " + ", ".join(shown))
    fuzzed = report["fuzz_evaluation_split"]
    for key, value in fuzzed.items():
        if key == "clean_false_alarm":
            for modality, rate in value.items():
                print(f"  clean false alarms {modality:10s} {rate['rate']:.3f} (n={rate['n']})")
        elif key == "clean_any_flag":
            print(f"  clean cases with any OOD flag {value['rate']:.3f} (n={value['n']})")
        else:
            print(f"  detection {key:28s} {value['rate']:.3f} (n={value['n']})  {value['description']}")
    if "demo_cohort" in report:
        print(f"  demo cohort: {report['demo_cohort']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-cases", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--tcga-folds", type=int, default=TCGA_FOLDS, help="test folds to repeat the TCGA bench on")
    parser.add_argument("--no-demo", action="store_true")
    parser.add_argument("--no-tcga", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    report: dict[str, Any] = {}
    for name, enabled, run in (
        ("glioma_demo", not args.no_demo, lambda: demo_bench(args.demo_cases, args.epochs)),
        ("tcga_glioma", not args.no_tcga and (args.data / "labels.csv").is_file(),
         lambda: tcga_bench(args.data, args.tcga_folds)),
    ):
        if enabled:
            started = time.perf_counter()
            report[name] = run()
            (_print_tcga if name == "tcga_glioma" else lambda r: _print(name, r))(report[name])
            print(f"  ({time.perf_counter() - started:.0f} s)")
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
