"""Cross-validated figures on the TCGA glioma cohort: our model beside its baselines (issue 3).

    .venv/bin/python bench/tcga_cv.py [--data ../shared/data/tcga_glioma] [--repeats 3] [--json out/tcga_cv.json]

5-fold patient-level CV stratified on subtype x grade, the same folds for every method,
bootstrap 95% intervals over cases. Columns: the registered linear model, the IDH1-alone
rule, a logistic regression on expression, a Cox model on age + IDH1, and the neural
fusion model (fusion_models/train.py) on the same genomics + clinical inputs. With
--repeats R the whole CV is re-run on R fold assignments and the model's figures per
assignment are listed, since one split moves accuracy by about 0.01. Takes minutes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fusion_models.tcga.cohort import TASK_LABELS, Cohort, load_cohort
from fusion_models.tcga.cv import METRICS, format_table, run_cv, to_json
from fusion_models.tcga.features import CNV, EXPR, MUT
from fusion_models.tcga.methods import Predictions, register_method
from toolkit.atomic import atomic_write_text

BASELINES = ["idh1_rule", "expression_logistic", "cox_age_idh1"]
NEURAL = "neural_fusion"
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tcga_glioma"


@dataclass
class NeuralLabels:
    """The attributes fusion_models.train reads, named by GLIOMA_TASKS' targets."""

    grade: str | None
    subtype: str | None
    survival_months: float
    event: bool
    patch_patterns: list = field(default_factory=list)


def register_neural(full: Cohort) -> None:
    """The neural fusion model on the cohort's genes, as a CV method: train, then predict each held-out case."""
    from fusion_models.features import ClinicalSpec, CnvEvent, GenomicsSpec, InputSpec
    from fusion_models.genomics.io import load_genomics
    from fusion_models.inference import load_fusion_model, predict
    from fusion_models.inputs import CaseInputs, load_manifest
    from fusion_models.model import FusionModelConfig
    from fusion_models.registry import GLIOMA_TASKS, register_fusion_model
    from fusion_models.train import train_fusion_model
    from knowledge.sources import load_knowledge

    def genes(prefix: str) -> tuple[str, ...]:
        return tuple(n[len(prefix):] for n in full.feature_names if n.startswith(prefix))

    @register_fusion_model(NEURAL)
    def config() -> FusionModelConfig:
        return FusionModelConfig(
            name=NEURAL, version="bench", description="neural fusion on TCGA genomics + age", tasks=GLIOMA_TASKS,
            inputs=InputSpec(
                genomics=GenomicsSpec(
                    mutations=genes(MUT),
                    cnv_events=tuple(
                        CnvEvent(gene=g, kind=kind, threshold=t)
                        for g in genes(CNV)
                        for kind, t in (("amplification", 1.0), ("deletion", -1.0))
                    ),
                    expression_genes=genes(EXPR),
                ),
                clinical=ClinicalSpec(),
            ),
        )

    kb = load_knowledge("bundled")
    inputs: dict[str, CaseInputs] = {}

    def case_inputs(cohort: Cohort, i: int) -> CaseInputs:
        case_id = cohort.case_ids[i]
        if case_id not in inputs:
            case_dir = cohort.case_dir(i)
            g, unusable = load_genomics(case_dir)
            inputs[case_id] = CaseInputs(case_dir, load_manifest(case_dir), [], [], None, g, unusable)
        return inputs[case_id]

    @dataclass(frozen=True)
    class Fitted:
        checkpoint: Path

        def predict(self, cohort: Cohort) -> Predictions:
            loaded = load_fusion_model(self.checkpoint)
            outputs = [predict(loaded, case_inputs(cohort, i), kb) for i in range(len(cohort))]
            probabilities = {
                task: np.array([[o.prediction(task).probabilities[label] for label in labels] for o in outputs])
                for task, labels in TASK_LABELS.items()
            }
            return Predictions(probabilities, np.array([o.prediction("risk").score for o in outputs]))

    folder = Path(tempfile.mkdtemp(prefix="tcga_neural_"))

    @register_method(NEURAL)
    def fit(cohort: Cohort) -> Fitted:
        labels = [
            NeuralLabels(cohort.grade[i], cohort.subtype[i], cohort.survival_months[i], cohort.event[i])
            for i in range(len(cohort))
        ]
        cases = [(case_inputs(cohort, i), labels[i]) for i in range(len(cohort))]
        path = folder / f"{NEURAL}_{len(list(folder.glob('*.pt')))}.pt"
        train_fusion_model(NEURAL, cases, path, kb=kb, epochs=100, progress=False)
        return Fitted(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with labels.csv and cases/")
    parser.add_argument("--model", default="tcga_glioma", help="registered linear model")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="fold assignment of the main table")
    parser.add_argument("--repeats", type=int, default=1, help="extra fold assignments (seed+1, ...) for the model")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--no-neural", action="store_true", help="leave out the neural fusion model (about 1 min)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()

    started = time.perf_counter()
    cohort = load_cohort(args.data)
    loaded = time.perf_counter()
    methods = [args.model, *BASELINES]
    if not args.no_neural:
        register_neural(cohort)
        methods.append(NEURAL)
    result = run_cv(cohort, methods, n_folds=args.folds, seed=args.seed, n_boot=args.n_boot)
    print(f"TCGA glioma, {len(cohort)} cases, {args.folds}-fold patient-level CV (seed {args.seed}), "
          f"bootstrap 95% intervals ({args.n_boot} resamples)\n")
    print(format_table(result, args.model))
    print("\nwall time (s): load " + f"{loaded - started:.0f}, "
          + ", ".join(f"{m} {h.seconds:.0f}" for m, h in result.held_out.items()))
    report = {"main": to_json(result)}
    if args.repeats > 1:
        print(f"\n{args.model} on other fold assignments (point estimates):")
        report["repeats"] = {}
        for seed in range(args.seed, args.seed + args.repeats):
            other = (
                result if seed == args.seed else run_cv(cohort, [args.model], n_folds=args.folds, seed=seed, n_boot=0)
            )
            figures = {m.name: other.figures[args.model][m.name].value for m in METRICS}
            report["repeats"][seed] = figures
            print(f"  seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
