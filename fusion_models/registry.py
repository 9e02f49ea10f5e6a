"""Fusion models by name: `@register_fusion_model` over a config function, `create_fusion_model(name)`.

Like timm's `@register_model`: each registered function returns the full config of one
variant, so a new model (another cancer, another encoder, genomics only) is a new
function of a few lines here, never a change to the model class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fusion_models.features import ClinicalSpec, GenomicsSpec, ImagingSpec, InputSpec, PathologySpec
from fusion_models.model import FusionModel, FusionModelConfig, TaskSpec
from toolkit.registry import Registry

ConfigFunction = Callable[[], FusionModelConfig]
_REGISTRY: Registry[ConfigFunction] = Registry("fusion model", missing=ValueError)


def register_fusion_model(name: str) -> Callable[[ConfigFunction], ConfigFunction]:
    """Register a function returning the config of the model called `name`."""
    return _REGISTRY.register(name)


def list_fusion_models() -> list[str]:
    """Registered fusion model names, sorted."""
    return _REGISTRY.names()


def fusion_model_config(name: str, **overrides: Any) -> FusionModelConfig:
    """The registered config of `name`, with top-level fields replaced by `overrides` (validated)."""
    config = _REGISTRY.get(name)()
    if config.name != name:
        raise ValueError(f"fusion model registered as {name!r} calls itself {config.name!r}")
    return FusionModelConfig.model_validate({**config.model_dump(), **overrides})


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


@register_fusion_model("glioma_demo")
def glioma_demo() -> FusionModelConfig:
    return FusionModelConfig(
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
