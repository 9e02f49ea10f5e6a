"""The penalised linear TCGA models as model families: `tcga_glioma`, `tcga_glioma_no_expression`.

Each registered linear family is also a cross-validation method of the same name
(fusion_models/tcga/methods.py), so bench/tcga_cv.py compares it with the baselines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fusion_models.gates import InputNeeds
from fusion_models.inputs import CaseInputs
from fusion_models.registry import ModelFamily, TrainingData, list_model_families, model_family, register_model_family
from fusion_models.tcga.checkpoint import LinearTrainResult, LoadedLinearModel, linear_model_from_payload, train_linear_model
from fusion_models.tcga.features import CLIN, CNV, EXPR, EXPRESSION_SCALE, MUT
from fusion_models.tcga.inference import MIN_EXPRESSION_COVERAGE, predict_case
from fusion_models.tcga.methods import register_method
from fusion_models.tcga.model import (
    C_GRID,
    FEATURE_BLOCKS,
    K_GRID,
    RISK_INPUTS,
    ClassifierSpec,
    LinearModelConfig,
    RiskSpec,
    fit_linear_model,
)
from knowledge.sources import KnowledgeBase
from schemas.common import Modality
from schemas.errors import InputError
from schemas.fusion import FusionOutput

READS: tuple[Modality, ...] = ("genomics", "clinical")


class LinearFamily(ModelFamily):
    suffix = ".json"

    def __init__(self, config: LinearModelConfig):
        self.config = config

    def train(
        self, out: Path, data: TrainingData, *, epochs: int, seed: int, head: str | None = None, progress: bool = True
    ) -> LinearTrainResult:
        # Epochs and seed do not apply: the fit is convex and the inner folds use the config's seed.
        if head is not None:
            raise InputError("--head", "head", f"{self.name} is a linear model without fusion heads")
        if data.folder is None or not (Path(data.folder) / "labels.csv").is_file():
            raise InputError(
                str(data.folder) if data.folder is not None else "--data", "labels.csv",
                f"{self.name} trains on a cohort folder with labels.csv and cases/; pass --data",
            )
        return train_linear_model(self.config, Path(data.folder), out)

    def load(self, path: Path, payload: dict[str, Any], raw: bytes) -> LoadedLinearModel:
        return linear_model_from_payload(payload, raw, path)

    def predict(self, loaded: LoadedLinearModel, inputs: CaseInputs, kb: KnowledgeBase, *, top_patches: int) -> FusionOutput:
        return predict_case(loaded, inputs)  # genomics + clinical only: no patches, no knowledge-base features

    def input_needs(self, loaded: LoadedLinearModel) -> InputNeeds:
        model = loaded.model
        genes = frozenset(n.removeprefix(EXPR) for n in model.feature_names if n.startswith(EXPR))
        return InputNeeds(
            model=model.config.name,
            expression_scale=EXPRESSION_SCALE,
            expression_genes=genes,
            min_expression_coverage=MIN_EXPRESSION_COVERAGE,
        )

    def config_of(self, loaded: LoadedLinearModel) -> LinearModelConfig:
        return loaded.model.config

    def reads(self, config: LinearModelConfig | None = None) -> tuple[Modality, ...]:
        return READS


def list_linear_models() -> list[str]:
    return [name for name in list_model_families() if isinstance(model_family(name), LinearFamily)]


def linear_model_config(name: str) -> LinearModelConfig:
    family = model_family(name)
    if not isinstance(family, LinearFamily):
        raise ValueError(f"model family {name!r} is not a linear model")
    return family.config


def _register(name: str, description: str, feature_blocks: tuple[str, ...]) -> None:
    config = LinearModelConfig(
        name=name,
        version="2.0.0",
        description=description,
        classifiers=tuple(
            ClassifierSpec(task=task, k_grid=K_GRID, C_grid=C_GRID) for task in ("grade", "molecular_subtype")
        ),
        risk=RiskSpec(inputs=RISK_INPUTS),
        feature_blocks=feature_blocks,
    )
    register_model_family(name)(lambda: LinearFamily(config))
    register_method(name)(lambda cohort: fit_linear_model(config, cohort))


_register(
    "tcga_glioma",
    "Adult diffuse glioma (TCGA LGG + GBM): tumour RNA z-scores, copy number, mutation calls, age and sex "
    "-> WHO grade, IDH/1p19q subtype, overall-survival risk. Penalised linear heads, settings chosen and "
    "calibrated by inner CV.",
    FEATURE_BLOCKS,
)
# The same model without expression: immune to TCGA's per-study z-scoring (GBM = grade 4 = its own batch).
_register(
    "tcga_glioma_no_expression",
    "Adult diffuse glioma (TCGA LGG + GBM): copy number, mutation calls, age and sex (no expression) "
    "-> WHO grade, IDH/1p19q subtype, overall-survival risk.",
    (CNV, MUT, CLIN),
)
