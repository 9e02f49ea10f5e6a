"""Every registered fusion head, trained by the one trainer and compared side by side.

Demo cohort (imaging + pathology + genomics + age): per seed, a fresh in-memory training
set (demo.training's generator, modality dropout included) split into fit / early-stopping /
calibration parts, and one fixed held-out test set from another seed; the test set is also
scored with each modality masked out for every case. Real TCGA glioma cohort (genomics + age
only: imaging and pathology are absent, so no drop columns, and no row for a head that needs
them: MCAT, SurvPath, longitudinal): nested CV, outer 5 patient-level
folds stratified on subtype x grade, inside each outer training part an inner split for
early stopping and temperature; repeated over seeds.

Columns: AUC of p(G4) vs G2/G3, 3-class grade accuracy, Harrell's C of the Cox risk, ECE of
the calibrated top grade probability (10 bins); mean +- sd over seeds. `seconds` = mean wall
time of one ensemble fit; `params` = one member.

    python bench/fusion_heads.py            # full run (demo and TCGA; --cohort for one)
    python bench/fusion_heads.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.head_data import demo_head_data  # noqa: E402
from evals.metrics import calibration_error, concordance_index, roc_auc  # noqa: E402
from fusion_models.fusion_heads import (  # noqa: E402
    HeadConfig, HeadInputs, Targets, collate, fusion_head_names, fusion_head_needs,
)
from fusion_models.fusion_heads.tcga import MODALITIES as TCGA_MODALITIES, tcga_head_data  # noqa: E402
from fusion_models.fusion_heads.trainer import Ensemble, TrainSettings  # noqa: E402
from fusion_models.neural_family import GLIOMA_TASKS as TASKS  # noqa: E402
from fusion_models.tcga.cohort import load_cohort, stratified_folds  # noqa: E402
from fusion_models.training_common import split_indices  # noqa: E402
from knowledge.sources import load_knowledge  # noqa: E402
from schemas.common import MODALITIES  # noqa: E402

G4 = 2
INNER = {"stopping": 0.15, "calibration": 0.15}  # the bench measures on its own test set or outer fold
TCGA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "tcga_glioma"
TEST_SEED = 1000


def scores(probabilities: np.ndarray, risk: np.ndarray, y: Targets) -> dict[str, float]:
    grade = y.tasks["grade"][:, 0].long().numpy()
    known = grade >= 0
    p, g = probabilities[known], grade[known]
    months, event = y.tasks["risk"].numpy().T
    return {
        "auc": roc_auc(g == G4, p[:, G4]),
        "accuracy": float((p.argmax(1) == g).mean()),
        "c_index": concordance_index(months, event.astype(bool), risk),
        "ece": calibration_error(p.max(1), p.argmax(1) == g),
    }


@dataclass
class Row:
    seconds: list[float] = field(default_factory=list)
    params: int = 0
    metrics: dict[str, list[float]] = field(default_factory=dict)

    def add(self, values: dict[str, float], prefix: str = "") -> None:
        for k, v in values.items():
            self.metrics.setdefault(prefix + k, []).append(v)


def _fit(name: str, modalities, x: HeadInputs, y: Targets, parts, args, seed: int) -> Ensemble:
    sel = {k: (x.select(v), y.select(v)) for k, v in parts.items()}
    config = HeadConfig(head=name, modalities=modalities, tasks=TASKS)
    settings = TrainSettings(epochs=args.epochs, patience=args.patience)
    return Ensemble.train(config, sel, members=args.members, settings=settings, seed=seed)[0]


def run_demo(args, kb, heads) -> dict[str, Row]:
    test = demo_head_data(args.demo_test, seed=TEST_SEED, kb=kb, tasks=TASKS)
    tx, ty = collate(test.cases), test.targets
    rows = {h: Row() for h in heads}
    for seed in range(args.seeds):
        data = demo_head_data(args.demo_train, seed=seed, kb=kb, tasks=TASKS)
        x, y = collate(data.cases), data.targets
        parts = split_indices(len(y), INNER, seed)
        for name in heads:
            started = time.perf_counter()
            ensemble = _fit(name, MODALITIES, x, y, parts, args, seed)
            rows[name].seconds.append(time.perf_counter() - started)
            rows[name].params = sum(p.numel() for p in ensemble.members[0].parameters())
            rows[name].add(_scores(ensemble, tx, ty))
            for modality in MODALITIES:
                rows[name].add({"auc": _scores(ensemble, tx.without(modality), ty)["auc"]}, prefix=f"-{modality} ")
            print(f"  demo seed {seed} {name}: " + _brief(rows[name]), file=sys.stderr, flush=True)
    return rows


def _scores(ensemble: Ensemble, x: HeadInputs, y: Targets) -> dict[str, float]:
    return scores(ensemble.probabilities(x)["grade"], ensemble.outputs(x)["risk"].numpy(), y)


def run_tcga(args, kb, heads) -> dict[str, Row]:
    cases, y = tcga_head_data(TCGA_ROOT, TASKS, kb)
    x = collate(cases)
    cohort = load_cohort(TCGA_ROOT)
    fitting = [h for h in heads if fusion_head_needs(h) <= set(TCGA_MODALITIES)]
    for name in sorted(set(heads) - set(fitting)):
        lacks = sorted(fusion_head_needs(name) - set(TCGA_MODALITIES))
        print(f"  tcga: {name} needs {', '.join(lacks)}, which the cohort lacks: no row", file=sys.stderr)
    rows = {h: Row() for h in fitting}
    for seed in range(args.seeds):
        folds = stratified_folds(cohort, args.folds, seed)
        for name in fitting:
            probabilities, risk, c_per_fold = np.zeros((len(y), 3)), np.zeros(len(y)), []
            started = time.perf_counter()
            for train, test in folds:
                inner = split_indices(len(train), INNER, seed)
                parts = {k: train[v] for k, v in inner.items()}
                ensemble = _fit(name, TCGA_MODALITIES, x, y, parts, args, seed)
                xt = x.select(test)
                probabilities[test], risk[test] = ensemble.probabilities(xt)["grade"], ensemble.outputs(xt)["risk"]
                months, event = y.select(test).tasks["risk"].numpy().T
                c_per_fold.append(concordance_index(months, event.astype(bool), risk[test]))
            rows[name].seconds.append((time.perf_counter() - started) / len(folds))
            rows[name].params = sum(p.numel() for p in ensemble.members[0].parameters())
            pooled = scores(probabilities, risk, y)
            pooled["c_index"] = float(np.mean(c_per_fold))  # risk scales differ between folds: C within each fold
            rows[name].add(pooled)
            print(f"  tcga seed {seed} {name}: " + _brief(rows[name]), file=sys.stderr, flush=True)
    return rows


def _brief(row: Row) -> str:
    return ", ".join(f"{k} {v[-1]:.3f}" for k, v in row.metrics.items() if not k.startswith("-"))


def _cell(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def table(cohort: str, rows: dict[str, Row]) -> str:
    keys = list(next(iter(rows.values())).metrics)
    header = ["head", *keys, "seconds", "params"]
    lines = [f"| {' | '.join(header)} |", "|" + "---|" * len(header)]
    for name, row in rows.items():
        cells = [name, *(_cell(row.metrics[k]) for k in keys), f"{np.mean(row.seconds):.1f}", str(row.params)]
        lines.append(f"| {' | '.join(cells)} |")
    return f"### {cohort}\n\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 heads, small cohorts, few epochs")
    parser.add_argument("--heads", nargs="*", default=None, help="registered head names (default: all)")
    parser.add_argument("--cohort", choices=("demo", "tcga", "both"), default="both")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    args = parser.parse_args(argv)
    full = dict(seeds=2, members=2, epochs=30, patience=5, folds=5, demo_train=300, demo_test=200)
    quick = dict(seeds=1, members=1, epochs=3, patience=3, folds=2, demo_train=60, demo_test=40)
    for k, v in (quick if args.quick else full).items():
        setattr(args, k, v)
    heads = args.heads or (fusion_head_names()[:2] if args.quick else fusion_head_names())
    torch.set_num_threads(1)
    kb = load_knowledge("bundled")
    started = time.perf_counter()
    results = {"demo": run_demo(args, kb, heads)} if args.cohort in ("demo", "both") else {}
    if args.cohort in ("tcga", "both") and TCGA_ROOT.is_dir():
        results["tcga"] = run_tcga(args, kb, heads)
    elif args.cohort != "demo":
        print(f"TCGA folder {TCGA_ROOT} is absent: no TCGA table", file=sys.stderr)
    print(f"seeds {args.seeds}, ensemble members {args.members}, epochs <= {args.epochs} (patience {args.patience}); "
          f"{time.perf_counter() - started:.0f} s in all\n")
    titles = {"demo": f"Demo cohort ({args.demo_train} training cases per seed, {args.demo_test} test cases)",
              "tcga": f"TCGA glioma, genomics + age only ({args.folds}-fold nested CV)"}
    for cohort, rows in results.items():
        print(table(titles[cohort], rows) + "\n")
    if args.json:
        args.json.write_text(json.dumps({c: {h: vars(r) for h, r in rows.items()} for c, rows in results.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
