"""`timm/<arch>`: any timm image model as a patch encoder, weights from a local file.

UNI-, Virchow- and Prov-GigaPath-style pathology foundation models are timm
architectures; their weights are downloaded by the user under their licence and
passed as a local path (safetensors or a torch state dict). Without weights the
model is randomly initialised, which only tests may rely on: `info()` then says
`trained: False` and `weights_sha256: None`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fusion_models.encoders.registry import PatchEncoder, TorchTileEncoder, file_sha256, register_encoder
from fusion_models.encoders.torchvision_compat import ensure_torchvision

UNTRAINED_LICENCE = "n/a (random initialisation, untrained: tests only)"
UNKNOWN_LICENCE = "unknown: see the weights' model card"


@register_encoder("timm", family=True)
def timm_encoder(
    weights: Path | None = None,
    *,
    arch: str,
    licence: str | None = None,
    batch_size: int = 32,
    **model_kw: Any,
) -> PatchEncoder:
    """`timm.create_model(arch, pretrained=False, num_classes=0, **model_kw)` with local weights."""
    ensure_torchvision()
    import timm  # deferred: heavy, and it must come after ensure_torchvision()

    model = timm.create_model(arch, pretrained=False, num_classes=0, **model_kw)
    if weights is not None:
        timm.models.load_checkpoint(model, str(weights), strict=True)
    model.eval()
    # A model built with another img_size keeps the default pretrained_cfg input size; the built one wins.
    override = {"input_size": (3, *timm.layers.to_2tuple(model_kw["img_size"]))} if "img_size" in model_kw else {}
    data_config = timm.data.resolve_data_config(override, model=model)
    transform = timm.data.create_transform(**data_config, is_training=False)
    name = f"timm/{arch}"
    meta = {
        "name": name,
        "version": f"timm {timm.__version__}",
        "weights_sha256": file_sha256(Path(weights)) if weights is not None else None,
        "licence": (licence or UNKNOWN_LICENCE) if weights is not None else UNTRAINED_LICENCE,
        "input_size": list(data_config["input_size"][1:]),
        "mean": list(data_config["mean"]),
        "std": list(data_config["std"]),
        "trained": weights is not None,
    }
    return TorchTileEncoder(name, int(model.num_features), model, transform, meta, batch_size)
