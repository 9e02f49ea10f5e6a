"""What every trainer here shares (the attention-MIL family's and the fusion heads'): thread policy, modality dropout."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread, then restore the caller's setting.

    The model is tiny: on 2 shared cores a second thread only adds synchronisation
    (10x slower under load), and one thread makes the float reductions reproducible.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def drop_modalities(present: dict[str, Tensor], p: float, generator: torch.Generator) -> dict[str, Tensor]:
    """Hide each present modality with chance p, never all of a case's modalities at once."""
    names = list(present)
    stacked = torch.stack([present[m] for m in names], dim=1)
    dropped = stacked & (torch.rand(stacked.shape, generator=generator) >= p)
    kept = torch.where(dropped.any(dim=1, keepdim=True), dropped, stacked)
    return {m: kept[:, i] for i, m in enumerate(names)}
