"""Checkpoint formats and training recipes, chosen by name.

A trained model is a file; what kind of file decides how it loads and predicts
(the neural fusion model is a torch checkpoint, the TCGA linear model a JSON
one), so the workflow never needs to know which model family it runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion_models.gates import InputNeeds, PatchStats
from fusion_models.inputs import CaseInputs
from knowledge.sources import KnowledgeBase
from schemas.errors import InputError
from schemas.fusion import FusionOutput
from toolkit.registry import Registry

TORCH_FORMAT = "torch"


@dataclass(frozen=True)
class CheckpointFormat:
    load: Callable[[Path], Any]
    predict: Callable[[Any, CaseInputs, KnowledgeBase, int], FusionOutput]
    needs: Callable[[Any], InputNeeds]  # what the input gates check a case against


@dataclass(frozen=True)
class LoadedCheckpoint:
    format: str
    model: Any

    def predict(self, inputs: CaseInputs, kb: KnowledgeBase, *, top_patches: int) -> FusionOutput:
        return FORMATS.get(self.format).predict(self.model, inputs, kb, top_patches)

    def input_needs(self) -> InputNeeds:
        return FORMATS.get(self.format).needs(self.model)


FORMATS: Registry[CheckpointFormat] = Registry("checkpoint format", missing=ValueError)


def _torch_load(path: Path):
    from fusion_models.inference import load_fusion_model

    return load_fusion_model(path)


def _torch_predict(model, inputs: CaseInputs, kb: KnowledgeBase, top_patches: int) -> FusionOutput:
    from fusion_models.inference import predict

    return predict(model, inputs, kb, top_patches=top_patches)


def _linear_load(path: Path):
    from fusion_models.tcga.checkpoint import load_linear_model

    return load_linear_model(path)


def _linear_predict(model, inputs: CaseInputs, kb: KnowledgeBase, top_patches: int) -> FusionOutput:
    from fusion_models.tcga.inference import predict_case

    return predict_case(model, inputs)  # genomics + clinical only: no patches, no knowledge-base features


def _torch_needs(loaded) -> InputNeeds:
    """Patch statistics are the standardiser the model was trained with (absent without a patch branch)."""
    standardiser = getattr(loaded.model, "patch_standardiser", None)
    stats = None
    if standardiser is not None:
        stats = PatchStats(standardiser.mean.detach().numpy().copy(), standardiser.std.detach().numpy().copy())
    return InputNeeds(model=loaded.config.name, patch_stats=stats)


def _linear_needs(loaded) -> InputNeeds:
    from fusion_models.tcga.features import EXPR, EXPRESSION_SCALE
    from fusion_models.tcga.inference import MIN_EXPRESSION_COVERAGE

    model = loaded.model
    genes = frozenset(n.removeprefix(EXPR) for n in model.feature_names if n.startswith(EXPR))
    return InputNeeds(
        model=model.config.name,
        expression_scale=EXPRESSION_SCALE,
        expression_genes=genes,
        min_expression_coverage=MIN_EXPRESSION_COVERAGE,
    )


FORMATS.add(TORCH_FORMAT, CheckpointFormat(_torch_load, _torch_predict, _torch_needs))
FORMATS.add("evidencechain.linear_checkpoint/1", CheckpointFormat(_linear_load, _linear_predict, _linear_needs))


def checkpoint_format(path: Path) -> str:
    """JSON checkpoints say their format in a top-level `format` key; anything else is a torch file."""
    if not path.is_file():
        raise InputError(str(path), "checkpoint", "no trained model here; run `evchain train` (or `evchain demo`) first")
    if path.suffix != ".json":
        return TORCH_FORMAT
    try:
        fmt = json.loads(path.read_bytes()).get("format")
    except (ValueError, AttributeError) as error:
        raise InputError(str(path), "format", f"not a JSON checkpoint: {error}") from None
    if fmt not in FORMATS:
        raise InputError(str(path), "format", f"unknown checkpoint format {fmt!r}; known: {', '.join(FORMATS.names())}")
    return fmt


def load_checkpoint(path: Path) -> LoadedCheckpoint:
    fmt = checkpoint_format(Path(path))
    return LoadedCheckpoint(fmt, FORMATS.get(fmt).load(Path(path)))


# Training recipes: `evchain train --model NAME` runs the recipe registered under NAME.
@dataclass(frozen=True)
class TrainingRecipe:
    train: Callable[..., Any]  # (out, *, data, n_cases, epochs, seed) -> result with .summary()
    suffix: str  # checkpoint file suffix, which also tells FORMATS how to read it back

    def default_checkpoint(self, name: str) -> Path:
        return Path("checkpoints") / f"{name}{self.suffix}"


def _train_glioma_demo(out: Path, *, data: Path | None, n_cases: int, epochs: int, seed: int):
    from demo.training import demo_training

    return demo_training(out, n_cases=n_cases, epochs=epochs, seed=seed)


def _train_tcga_glioma(out: Path, *, data: Path | None, n_cases: int, epochs: int, seed: int):
    from fusion_models.tcga.checkpoint import train_linear_model

    if data is None or not (Path(data) / "labels.csv").is_file():
        raise InputError(str(data), "labels.csv", "tcga_glioma trains on a cohort folder with labels.csv and cases/; pass --data")
    return train_linear_model("tcga_glioma", Path(data), out)


RECIPES: Registry[TrainingRecipe] = Registry("training recipe", missing=ValueError)
RECIPES.add("glioma_demo", TrainingRecipe(_train_glioma_demo, ".pt"))
RECIPES.add("tcga_glioma", TrainingRecipe(_train_tcga_glioma, ".json"))
