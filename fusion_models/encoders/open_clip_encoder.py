"""`open_clip/<arch>`: the image tower of an open_clip model, weights from a local file.

CONCH/PLIP-style vision-language pathology models ship open_clip checkpoints; the
user passes the downloaded file as a local path. The text tower is dropped after
loading: patch embedding needs only `model.visual`, whose output is the projected
image embedding. Without weights the model is randomly initialised (tests only;
`info()` then says `trained: False`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fusion_models.encoders.registry import PatchEncoder, TorchTileEncoder, file_sha256, register_encoder
from fusion_models.encoders.timm_encoder import UNKNOWN_LICENCE, UNTRAINED_LICENCE
from fusion_models.encoders.torchvision_compat import ensure_torchvision


@register_encoder("open_clip", family=True)
def open_clip_encoder(
    weights: Path | None = None,
    *,
    arch: str,
    licence: str | None = None,
    batch_size: int = 32,
    **model_kw: Any,
) -> PatchEncoder:
    """`open_clip.create_model_and_transforms(arch, pretrained=<local path or None>, **model_kw)`."""
    ensure_torchvision()
    import open_clip  # deferred: heavy, and it must come after ensure_torchvision()

    model, _, preprocess = open_clip.create_model_and_transforms(
        arch, pretrained=str(weights) if weights is not None else None, **model_kw
    )
    visual = model.visual.eval()
    size = visual.image_size if isinstance(visual.image_size, tuple) else (visual.image_size,) * 2
    name = f"open_clip/{arch}"
    meta = {
        "name": name,
        "version": f"open_clip {open_clip.__version__}",
        "weights_sha256": file_sha256(Path(weights)) if weights is not None else None,
        "licence": (licence or UNKNOWN_LICENCE) if weights is not None else UNTRAINED_LICENCE,
        "input_size": list(size),
        "trained": weights is not None,
    }
    return TorchTileEncoder(name, int(visual.output_dim), visual, preprocess, meta, batch_size)
