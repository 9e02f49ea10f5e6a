"""Pathology foundation-model encoders by name: `create_encoder("uni" | "conch" | "virchow" | "ctranspath", weights=PATH)`.

Each entry of FOUNDATION_ENCODERS declares, in one place, what its weights need: the
library and architecture with its real configuration, the input size and mean/std
it was trained with, the pixel size (microns per pixel) and tile it sees, its
pooling, licence and paper. Weights are local files only (the user downloads them
under the model's licence): none given, a missing file or a file that does not fit
the architecture is a one-line InputError naming the encoder and the setting
(`--encoder-weights` / `Settings.encoder_weights`).

Tests build the same architectures randomly initialised: `small=True` applies the
entry's reduced depth/width/input size, `random_init=True` allows running without
weights (`info()` then says `trained: False`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusion_models.encoders.registry import PatchEncoder, register_encoder, weights_error
from fusion_models.encoders.torch_family import TorchTileEncoder, weights_info
from toolkit.torchvision_compat import ensure_torchvision

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Model arguments naming a class, given as dotted paths so that declaring them imports no torch.
CLASS_ARGUMENTS = ("mlp_layer", "act_layer", "embed_layer")


@dataclass(frozen=True)
class FoundationConfig:
    """Everything a released pathology encoder's weights need, in one place."""

    name: str
    library: str  # "timm" (timm.create_model) or "open_clip" (open_clip.create_model, image tower kept)
    arch: str
    model_kwargs: dict[str, Any]
    input_size: int  # px the network takes (square)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    mpp: float  # microns per pixel of the tiles it was trained on
    tile_px: int  # tile side at `mpp`, before resizing to input_size
    pool: str  # torch_layers.PooledBackbone: "head" or "class_mean"
    embed_dim: int  # published embedding size of the full model
    licence: str
    paper: str
    # Test variant: the same architecture with depth/width/input reduced (overrides model_kwargs).
    small_kwargs: dict[str, Any] = field(default_factory=dict)
    small_input_size: int = 32
    # timm function that maps a released checkpoint's layout onto the current timm model.
    checkpoint_filter: str | None = None
    # Released checkpoints of the whole model keep the image tower under this prefix.
    checkpoint_prefix: str | None = None

    @property
    def magnification(self) -> float:
        from fusion_models.pathology.slides import MICRONS_AT_1X

        return MICRONS_AT_1X / self.mpp


FOUNDATION_ENCODERS: tuple[FoundationConfig, ...] = (
    FoundationConfig(
        name="uni",
        library="timm",
        arch="vit_large_patch16_224",
        # UNI (v1): DINOv2-trained ViT-L/16 with layer scale, as its model card builds it.
        model_kwargs={"img_size": 224, "patch_size": 16, "init_values": 1e-5, "dynamic_img_size": True},
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        mpp=0.5,
        tile_px=256,  # 256-px tiles at 20x, resized to 224
        pool="head",
        embed_dim=1024,
        licence="CC-BY-NC-ND-4.0 (MahmoodLab/UNI; research use, access on request)",
        paper="Chen et al., Towards a general-purpose foundation model for computational pathology, Nat Med 2024",
        small_kwargs={"img_size": 32, "embed_dim": 64, "depth": 2, "num_heads": 2},
        checkpoint_filter="timm.models.vision_transformer.checkpoint_filter_fn",
    ),
    FoundationConfig(
        name="conch",
        library="open_clip",
        arch="coca_ViT-B-32",
        # CONCH (v1) geometry: a CoCa model whose image tower is a ViT-B/16 at 448 px with attentional pooling
        # (256 queries, 8 heads), 512-d embedding. open_clip's CoCa pools with one pooler and keeps its first
        # query; CONCH's own code has a separate 1-query contrastive pooler (open_clip's "parallel" mode, which
        # does not run in open_clip 3.3), so a checkpoint of the CONCH repository must be converted to
        # open_clip's key names first: loading it as released is refused as not fitting.
        model_kwargs={
            "embed_dim": 512,
            "vision_cfg": {
                "image_size": 448, "patch_size": 16, "width": 768, "layers": 12, "attentional_pool": True,
                "attn_pooler_queries": 256, "attn_pooler_heads": 8, "output_tokens": True,
            },
            "text_cfg": {
                "context_length": 128, "vocab_size": 32007, "width": 768, "heads": 12, "layers": 12,
                "embed_cls": True, "output_tokens": True,
            },
            "multimodal_cfg": {"context_length": 128, "vocab_size": 32007, "width": 512, "heads": 8, "layers": 12},
        },
        input_size=448,
        mean=OPENAI_CLIP_MEAN,
        std=OPENAI_CLIP_STD,
        mpp=0.5,
        tile_px=512,  # 512-px tiles at 20x, resized to 448
        pool="head",
        embed_dim=512,
        licence="CC-BY-NC-ND-4.0 (MahmoodLab/CONCH; research use, access on request)",
        paper="Lu et al., A visual-language foundation model for computational pathology, Nat Med 2024",
        small_kwargs={
            "embed_dim": 32,
            "vision_cfg": {
                "image_size": 32, "patch_size": 16, "width": 64, "head_width": 32, "layers": 2,
                "attentional_pool": True, "attn_pooler_queries": 4, "attn_pooler_heads": 2, "output_tokens": True,
            },
            "text_cfg": {"context_length": 16, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1,
                         "embed_cls": True, "output_tokens": True},
            "multimodal_cfg": {"context_length": 16, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1},
        },
        checkpoint_prefix="visual.",
    ),
    FoundationConfig(
        name="virchow",
        library="timm",
        arch="vit_huge_patch14_224",
        # Virchow (v1): ViT-H/14 with SwiGLU MLPs and layer scale; embedding = class token ++ mean patch token.
        model_kwargs={
            "img_size": 224, "init_values": 1e-5, "mlp_ratio": 5.3375, "global_pool": "", "dynamic_img_size": True,
            "mlp_layer": "timm.layers.SwiGLUPacked", "act_layer": "torch.nn.SiLU",
        },
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        mpp=0.5,
        tile_px=224,
        pool="class_mean",
        embed_dim=2560,
        licence="Apache-2.0 (paige-ai/Virchow; access on request)",
        paper="Vorontsov et al., A foundation model for clinical-grade computational pathology, Nat Med 2024",
        # SwiGLUPacked needs an even hidden size: 96 x 5.3375 -> 512 (1280 x 5.3375 -> 6832 in the real model).
        small_kwargs={"img_size": 28, "embed_dim": 96, "depth": 2, "num_heads": 2},
        small_input_size=28,
        checkpoint_filter="timm.models.vision_transformer.checkpoint_filter_fn",
    ),
    FoundationConfig(
        name="ctranspath",
        library="timm",
        arch="swin_tiny_patch4_window7_224",
        # CTransPath: Swin-T whose patch embedding is a convolutional stem (torch_layers.ConvStem).
        model_kwargs={"img_size": 224, "embed_layer": "fusion_models.encoders.torch_layers.ConvStem"},
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        mpp=0.5,  # 20x, as TRIDENT and HEST-Benchmark run it
        tile_px=224,
        pool="head",
        embed_dim=768,
        licence="GPL-3.0 (Xiyue-Wang/TransPath)",
        paper="Wang et al., Transformer-based unsupervised contrastive learning for histopathological "
        "image classification, Med Image Anal 2022",
        # Window 7 needs a 224-px input (56 -> 28 -> 14 -> 7 tokens per side); the variant is narrow and shallow.
        small_kwargs={"img_size": 224, "embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)},
        small_input_size=224,
        checkpoint_filter="timm.models.swin_transformer.checkpoint_filter_fn",
    ),
)


def _resolve(dotted: str) -> Any:
    module, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _model_kwargs(config: FoundationConfig, small: bool, overrides: dict[str, Any]) -> dict[str, Any]:
    kwargs = {**config.model_kwargs, **(config.small_kwargs if small else {}), **overrides}
    return {k: _resolve(v) if k in CLASS_ARGUMENTS and isinstance(v, str) else v for k, v in kwargs.items()}


def _build_backbone(config: FoundationConfig, kwargs: dict[str, Any]) -> tuple[Any, str, int]:
    """The library's model (image tower only), the library's version and the backbone's feature size."""
    if config.library == "timm":
        import timm

        model = timm.create_model(config.arch, pretrained=False, num_classes=0, **kwargs)
        dim = model.num_features * (2 if config.pool == "class_mean" else 1)
        return model, f"timm {timm.__version__}", int(dim)
    import open_clip

    visual = open_clip.create_model(config.arch, pretrained=None, **kwargs).visual
    return visual, f"open_clip {open_clip.__version__}", int(visual.output_dim)


def _read_state_dict(config: FoundationConfig, weights: Path) -> dict[str, Any]:
    import torch

    try:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(weights)
        else:
            state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # every library's own error for a file that is not a checkpoint: report, do not crash
        raise weights_error(config.name, weights, f"not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    for key in ("state_dict", "model"):  # training scripts wrap the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise weights_error(config.name, weights, "no state dict in the checkpoint")
    prefix = config.checkpoint_prefix
    if prefix and any(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def load_backbone_weights(config: FoundationConfig, backbone: Any, weights: Path) -> None:
    """Load a released checkpoint into the backbone; every key must fit, except a classifier head it drops."""
    state = _read_state_dict(config, weights)
    if config.checkpoint_filter:
        state = _resolve(config.checkpoint_filter)(state, backbone)
    try:
        missing, unexpected = backbone.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch: another architecture's or another variant's weights
        raise weights_error(config.name, weights, f"weights do not fit {config.arch}: {exc}") from None
    unexpected = [k for k in unexpected if not k.startswith("head.")]
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise weights_error(
            config.name, weights, f"weights do not fit {config.arch}: {len(missing)} missing and "
            f"{len(unexpected)} unexpected keys, {detail}"
        )


def build_foundation_encoder(
    config: FoundationConfig,
    weights: Path | None = None,
    *,
    small: bool = False,
    random_init: bool = False,
    licence: str | None = None,
    batch_size: int = 32,
    **overrides: Any,
) -> PatchEncoder:
    """The encoder `config` describes, with local `weights` (or, for tests, `random_init=True`)."""
    if weights is None and not random_init:
        raise weights_error(config.name, None, "needs local weights")
    if weights is not None and random_init:
        raise ValueError(f"encoder {config.name!r}: give weights or random_init=True, not both")
    ensure_torchvision()  # before timm / open_clip import torchvision
    from timm.data import create_transform

    from fusion_models.encoders.torch_layers import PooledBackbone

    backbone, version, dim = _build_backbone(config, _model_kwargs(config, small, overrides))
    if weights is not None:
        load_backbone_weights(config, backbone, Path(weights))
    module = PooledBackbone(backbone, config.pool).eval()
    side = config.small_input_size if small else config.input_size
    # Square tiles, so crop_pct=1 makes the centre crop a no-op: the whole tile is embedded.
    transform = create_transform(
        input_size=(3, side, side), mean=config.mean, std=config.std, crop_pct=1.0, interpolation="bicubic"
    )
    geometry = {
        "input_size": [side, side],
        "mean": list(config.mean),
        "std": list(config.std),
        "mpp": config.mpp,
        "tile_px": config.tile_px,
        "magnification": config.magnification,
        "arch": f"{config.library}/{config.arch}" + (" (small test variant)" if small else ""),
        "paper": config.paper,
    }
    meta = weights_info(config.name, version, weights, licence or config.licence, **geometry)
    return TorchTileEncoder(config.name, dim, module, transform, meta, batch_size)


def _register(config: FoundationConfig) -> None:
    @register_encoder(config.name)
    def factory(weights: Path | None = None, **kw: Any) -> PatchEncoder:
        return build_foundation_encoder(config, weights, **kw)

    factory.__doc__ = f"{config.name}: {config.paper}"


for _config in FOUNDATION_ENCODERS:
    _register(_config)
