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

from fusion_models.encoders.torch_family import TorchModel, register_torch_family


@register_torch_family("timm")
def timm_encoder(arch: str, weights: Path | None, **model_kw: Any) -> TorchModel:
    """`timm.create_model(arch, pretrained=False, num_classes=0, **model_kw)` with local weights."""
    import timm  # deferred: heavy, and it must come after ensure_torchvision()

    model = timm.create_model(arch, pretrained=False, num_classes=0, **model_kw)
    if weights is not None:
        timm.models.load_checkpoint(model, str(weights), strict=True)
    model.eval()
    # A model built with another img_size keeps the default pretrained_cfg input size; the built one wins.
    override = {"input_size": (3, *timm.layers.to_2tuple(model_kw["img_size"]))} if "img_size" in model_kw else {}
    data_config = timm.data.resolve_data_config(override, model=model)
    transform = timm.data.create_transform(**data_config, is_training=False)
    sizes = {
        "input_size": list(data_config["input_size"][1:]),
        "mean": list(data_config["mean"]),
        "std": list(data_config["std"]),
    }
    return TorchModel(model, transform, int(model.num_features), f"timm {timm.__version__}", sizes)
