"""The attention-MIL fusion family (fusion_models/model.py) behind the model-family registry; `glioma_demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fusion_models.features import ClinicalSpec, GenomicsSpec, ImagingSpec, InputSpec, PathologySpec
from fusion_models.gates import InputNeeds, PatchStats
from fusion_models.inference import ATTENTION_MIL, LoadedFusionModel, fusion_model_from_payload, predict
from fusion_models.inputs import CaseInputs
from fusion_models.model import FusionModel, FusionModelConfig, TaskSpec
from fusion_models.registry import ModelFamily, TrainingData, list_model_families, model_family, register_model_family
from fusion_models.train import TrainResult, train_fusion_model
from knowledge.sources import KnowledgeBase, load_knowledge
from schemas.common import Modality
from schemas.errors import InputError
from schemas.fusion import FusionOutput

# The fusion this family's network has built in: gated attention-MIL over patches, attention over modalities.
BUILT_IN_HEAD = ATTENTION_MIL


class AttentionMILFamily(ModelFamily):
    suffix = ".pt"

    def __init__(self, config: FusionModelConfig):
        self.config = config

    def build(self) -> FusionModel:
        """A freshly initialised (untrained) network of this config."""
        return FusionModel(self.config)

    def fusion_heads(self) -> tuple[str, ...]:
        return (BUILT_IN_HEAD,)

    def train(
        self, out: Path, data: TrainingData, *, epochs: int, seed: int, head: str | None = None, progress: bool = True
    ) -> TrainResult:
        if head not in (None, BUILT_IN_HEAD):
            raise InputError("--head", "head", f"{self.name} has fusion heads {list(self.fusion_heads())}, not {head!r}")
        if data.cases is None:
            raise InputError(
                str(data.folder), "cases",
                f"{self.name} trains on labelled cases in memory (without --data: the demo generator)",
            )
        return train_fusion_model(
            self.config, data.cases, out, kb=load_knowledge(data.knowledge), epochs=epochs, seed=seed,
            progress=progress, data_description=data.description,
        )

    def load(self, path: Path, payload: dict[str, Any], raw: bytes) -> LoadedFusionModel:
        return fusion_model_from_payload(payload, raw, path, self.name)

    def predict(
        self, loaded: LoadedFusionModel, inputs: CaseInputs, kb: KnowledgeBase, *, top_patches: int
    ) -> FusionOutput:
        return predict(loaded, inputs, kb, top_patches=top_patches)

    def input_needs(self, loaded: LoadedFusionModel) -> InputNeeds:
        """Patch statistics are the standardiser the model was trained with (absent without a patch branch)."""
        standardiser = getattr(loaded.model, "patch_standardiser", None)
        stats = None
        if standardiser is not None:
            stats = PatchStats(standardiser.mean.detach().numpy().copy(), standardiser.std.detach().numpy().copy())
        return InputNeeds(model=loaded.config.name, patch_stats=stats)

    def config_of(self, loaded: LoadedFusionModel) -> FusionModelConfig:
        return loaded.config

    def reads(self, config: FusionModelConfig | None = None) -> tuple[Modality, ...]:
        return tuple((config or self.config).inputs.modalities())


def list_fusion_models() -> list[str]:
    """Registered families of this kind, sorted."""
    return [name for name in list_model_families() if isinstance(model_family(name), AttentionMILFamily)]


def fusion_model_config(name: str, **overrides: Any) -> FusionModelConfig:
    """The registered config of `name`, with top-level fields replaced by `overrides` (validated)."""
    family = model_family(name)
    if not isinstance(family, AttentionMILFamily):
        raise ValueError(f"model family {name!r} is not an attention-MIL fusion model")
    return FusionModelConfig.model_validate({**family.config.model_dump(), **overrides})


def create_fusion_model(name: str, **overrides: Any) -> FusionModel:
    """A freshly initialised (untrained) fusion model; trained ones come from `load_fusion_model`."""
    return FusionModel(fusion_model_config(name, **overrides))


GLIOMA_TASKS = (
    TaskSpec(name="grade", kind="classification", labels=("G2", "G3", "G4"), target="grade"),
    TaskSpec(
        name="molecular_subtype", kind="classification", labels=("IDHwt", "IDHmut-codel", "IDHmut-non-codel"),
        target="subtype",
    ),
    TaskSpec(
        name="risk", kind="survival", labels=("event_by_24m", "event_free_at_24m"), target="survival_months",
        event_target="event", horizon_months=24.0,
    ),
)


@register_model_family("glioma_demo")
def glioma_demo() -> AttentionMILFamily:
    return AttentionMILFamily(
        FusionModelConfig(
            name="glioma_demo",
            version="1.0.0",
            description="Adult diffuse glioma: MRI habitats + H&E patches (attention-MIL) + genomics + age.",
            tasks=GLIOMA_TASKS,
            inputs=InputSpec(
                imaging=ImagingSpec(),
                pathology=PathologySpec(encoder="hed_texture", embed_dim=32, magnification=20.0, patch_size=256),
                genomics=GenomicsSpec(),
                clinical=ClinicalSpec(),
            ),
        )
    )
