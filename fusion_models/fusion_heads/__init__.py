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
    Interpretation,
    create_fusion_head,
    fusion_head_names,
    fusion_head_needs,
    register_fusion_head,
)
from fusion_models.fusion_heads.inputs import HeadCase, HeadInputs, Targets, collate, head_case, labelled_examples

__all__ = [
    "FusionHead",
    "HeadCase",
    "HeadConfig",
    "HeadInputs",
    "HeadOutput",
    "Interpretation",
    "Targets",
    "collate",
    "create_fusion_head",
    "fusion_head_names",
    "fusion_head_needs",
    "head_case",
    "labelled_examples",
    "register_fusion_head",
]
