"""Make `import torchvision` work beside a CPU-only torch whose torchvision wheel was built for CUDA.

Why: PyPI's torchvision 0.28.0 for x86-64 links its C extension (`_C.so`) against
CUDA torch. Beside torch 2.13.0+cpu that extension cannot load, so the operator
schemas it would declare (`torchvision::nms`, ...) never exist, and
`torchvision/_meta_registrations.py` fails at import with "operator
torchvision::nms does not exist" when it registers fake kernels for them. timm
and open_clip import torchvision, so they break too.

The fix declares the same schemas from Python (copied from torchvision's C++
`m.def(...)` declarations) before torchvision is first imported. Only schemas
are declared, no kernels: calling a detection operator still fails (torchvision
itself raises "Couldn't load custom C++ ops" first), and timm / open_clip image
models never call them. Where the real extension loads (a matching CUDA build),
nothing is declared, so the real operators are never shadowed.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Schemas as torchvision's csrc/ops/*.cpp declare them (TORCH_LIBRARY_FRAGMENT(torchvision, m)).
TORCHVISION_SCHEMAS: tuple[str, ...] = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "box_iou_rotated(Tensor boxes1, Tensor boxes2) -> Tensor",
    "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
    "int sampling_ratio, bool aligned) -> Tensor",
    "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, "
    "int sampling_ratio, bool aligned) -> Tensor",
    "qroi_align(Tensor input, Tensor rois, float input_scale, int input_zero_point, float rois_scale, "
    "int rois_zero_point, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
    "int sampling_ratio, bool aligned) -> Tensor",
    "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) "
    "-> (Tensor, Tensor)",
    "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "ps_roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
    "int sampling_ratio) -> (Tensor, Tensor)",
    "_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, "
    "SymInt pooled_height, SymInt pooled_width, int sampling_ratio, SymInt batch_size, SymInt channels, "
    "SymInt height, SymInt width) -> Tensor",
    "ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) "
    "-> (Tensor, Tensor)",
    "_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, "
    "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, "
    "SymInt width) -> Tensor",
    "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, SymInt stride_h, "
    "SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, SymInt groups, "
    "SymInt offset_groups, bool use_mask) -> Tensor",
    "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, Tensor mask, "
    "Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, "
    "SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) "
    "-> (Tensor, Tensor, Tensor, Tensor, Tensor)",
)

# The Library object owns the definitions: if it were garbage-collected they would vanish.
_library: torch.library.Library | None = None


def _extension_path() -> Path | None:
    """Path of torchvision's compiled `_C` extension, without importing torchvision."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            candidate = Path(folder) / f"_C{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _extension_loads(path: Path) -> bool:
    import torch

    try:
        torch.ops.load_library(str(path))
    except OSError:
        return False
    return True


def ensure_torchvision() -> None:
    """Declare torchvision's operator schemas when its C extension cannot load; idempotent."""
    global _library
    if _library is not None or "torchvision" in sys.modules:
        return
    extension = _extension_path()
    if extension is None or _extension_loads(extension):
        return
    import torch

    _library = torch.library.Library("torchvision", "DEF")
    for schema in TORCHVISION_SCHEMAS:
        _library.define(schema)
