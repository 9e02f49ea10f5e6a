"""Nested cross-validated figures on the TCGA glioma cohort: our model beside its baselines (issues 3 and 6).

    .venv/bin/python bench/tcga_cv.py [--data ../shared/data/tcga_glioma] [--seeds 3] [--quick] [--neural]
                                      [--json out/tcga_cv.json]

5-fold patient-level CV stratified on subtype x grade, the same folds for every method,
repeated over fold seeds 0..S-1 and reported as mean ± SD over seeds; bootstrap 95%
intervals over cases on seed 0. The linear models choose their settings (features k and
penalty C per task) and fit their temperatures by inner CV inside each training fold, so
the outer figures are nested CV. Columns: the shipped model; the same model without
expression (immune to TCGA's per-study z-scoring, which puts grade 4 in its own batch);
the plain L2 logistic regression on every genomic feature and on expression alone;
the IDH1-alone rule; a Cox model on age + IDH1; with --neural, the neural fusion model
(fusion_models/train.py) on the same inputs. About 10 minutes on 2 cores; --quick runs
one seed with 200 bootstrap resamples (about 3 minutes).
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
from evals.tcga_cv import format_spread_table, format_table, run_repeated_cv, spread, to_json
from fusion_models.tcga.features import CNV, EXPR, MUT
from fusion_models.tcga.methods import Predictions, register_method
from toolkit.atomic import atomic_write_text

STUDY_IMMUNE = "tcga_glioma_no_expression"
# The plain models the shipped one must match or beat; the IDH1 rule is a reference column only
# (its frequency table is calibrated by construction and says nothing beyond one mutation).
PLAIN_BASELINES = ["genomic_logistic", "expression_logistic", "cox_age_idh1"]
REFERENCE = ["idh1_rule"]
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
    from fusion_models.neural_family import GLIOMA_TASKS, AttentionMILFamily
    from fusion_models.registry import register_model_family
    from fusion_models.train import train_fusion_model
    from knowledge.sources import load_knowledge

    def genes(prefix: str) -> tuple[str, ...]:
        return tuple(n[len(prefix):] for n in full.feature_names if n.startswith(prefix))

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

    register_model_family(NEURAL)(lambda: AttentionMILFamily(config()))  # its checkpoints load by family name

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
        train_fusion_model(config(), cases, path, kb=kb, epochs=100, progress=False)
        return Fitted(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with labels.csv and cases/")
    parser.add_argument("--model", default="tcga_glioma", help="registered linear model")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3, help="fold assignments 0..S-1")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples on seed 0")
    parser.add_argument("--quick", action="store_true", help="one fold seed, 200 resamples")
    parser.add_argument("--neural", action="store_true", help="add the neural fusion model (about 1 min per fold)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    seeds = range(1 if args.quick else args.seeds)
    n_boot = min(args.n_boot, 200) if args.quick else args.n_boot

    started = time.perf_counter()
    cohort = load_cohort(args.data)
    loaded = time.perf_counter()
    methods = [args.model, STUDY_IMMUNE, *PLAIN_BASELINES, *REFERENCE]
    if args.neural:
        register_neural(cohort)
        methods.append(NEURAL)
    results = run_repeated_cv(cohort, methods, n_folds=args.folds, seeds=seeds, n_boot=n_boot)
    print(f"TCGA glioma, {len(cohort)} cases, {args.folds}-fold patient-level nested CV, fold seeds "
          f"{list(seeds)}: mean ± SD over seeds; '>= baselines' compares means with {', '.join(PLAIN_BASELINES)}\n")
    print(format_spread_table(results, args.model, PLAIN_BASELINES))
    print(f"\nseed {results[0].seed} alone, bootstrap 95% intervals ({n_boot} resamples):\n")
    print(format_table(results[0], args.model))
    seconds = {m: sum(r.held_out[m].seconds for r in results) for m in methods}
    print(f"\nwall time (s): load {loaded - started:.0f}, " + ", ".join(f"{m} {t:.0f}" for m, t in seconds.items()))
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        report = {
            "seeds": list(seeds),
            "spread": {
                m: {k: None if v is None else vars(v) for k, v in figures.items()}
                for m, figures in spread(results).items()
            },
            "runs": [to_json(r) for r in results],
        }
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
