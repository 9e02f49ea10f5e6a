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

from fusion_models.encoders.torch_family import TorchModel, register_torch_family


@register_torch_family("open_clip")
def open_clip_encoder(arch: str, weights: Path | None, **model_kw: Any) -> TorchModel:
    """`open_clip.create_model_and_transforms(arch, pretrained=<local path or None>, **model_kw)`."""
    import open_clip  # deferred: heavy, and it must come after ensure_torchvision()

    model, _, preprocess = open_clip.create_model_and_transforms(
        arch, pretrained=str(weights) if weights is not None else None, **model_kw
    )
    visual = model.visual.eval()
    size = visual.image_size if isinstance(visual.image_size, tuple) else (visual.image_size,) * 2
    sizes = {"input_size": list(size)}
    return TorchModel(visual, preprocess, int(visual.output_dim), f"open_clip {open_clip.__version__}", sizes)
