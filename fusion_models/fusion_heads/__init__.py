"""The literature's fusion methods as registered heads over one common input and one interpretation record.

`create_fusion_head(HeadConfig(head=NAME, ...))` builds any of them; `fusion_head_names()`
lists them in registration order. Importing this package registers every head.
"""

from fusion_models.fusion_heads import (  # noqa: F401  (each module registers its head)
    dyam,
    early,
    evidential,
    graph,
    late,
    longitudinal,
    mcat,
    orthogonal,
    pathomic,
    survpath,
)
from fusion_models.fusion_heads.base import (
    FusionHead,
    HeadConfig,
    HeadOutput,
    HeadTask,
    Interpretation,
    create_fusion_head,
    fusion_head_names,
    register_fusion_head,
)
from fusion_models.fusion_heads.inputs import HeadCase, HeadInputs, Targets, collate, head_case, targets

__all__ = [
    "FusionHead",
    "HeadCase",
    "HeadConfig",
    "HeadInputs",
    "HeadOutput",
    "HeadTask",
    "Interpretation",
    "Targets",
    "collate",
    "create_fusion_head",
    "fusion_head_names",
    "head_case",
    "register_fusion_head",
    "targets",
]
