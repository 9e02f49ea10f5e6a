"""Patch encoders by name: `create_encoder("hed_texture" | "uni" | "conch" | "virchow" | "ctranspath" | "timm/<arch>" | "open_clip/<arch>")`.

Importing this package registers the encoders; torch, timm and open_clip are only
imported when a torch encoder is created.
"""

from fusion_models.encoders import foundation, hed_texture, open_clip_encoder, timm_encoder  # noqa: F401  (registration)
from fusion_models.encoders.registry import (
    PatchEncoder,
    create_encoder,
    is_encoder_family,
    list_encoders,
    register_encoder,
)

__all__ = ["PatchEncoder", "create_encoder", "is_encoder_family", "list_encoders", "register_encoder"]
