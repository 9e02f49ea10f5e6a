"""What every trainer here shares (the attention-MIL family's and the fusion heads'): splits, thread policy,
modality dropout."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor

# Held-out shares of the cases; the rest trains. Each split has one job (SPLIT_ROLES), so that no number
# on a model card is measured on data that shaped it.
HELDOUT_FRACTIONS: dict[str, float] = {"stopping": 0.15, "calibration": 0.2, "evaluation": 0.15}
SPLIT_ROLES = {
    "training": "network weights; standardisation, risk baseline hazard and tertiles, OOD mean and covariance",
    "stopping": "early-stopping epoch only",
    "calibration": "temperatures, conformal thresholds, OOD thresholds",
    "evaluation": "the card's metrics only",
}


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


def split_indices(n: int, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Seeded disjoint split: each named held-out part gets round(n * fraction) cases (at least 1), 'training'
    the rest."""
    if any(not 0 < f < 1 for f in fractions.values()) or sum(fractions.values()) >= 1:
        raise ValueError(f"held-out fractions must lie in (0, 1) and leave cases to train on, got {fractions}")
    sizes = {name: max(1, round(n * f)) for name, f in fractions.items()}
    if sum(sizes.values()) >= n:
        raise ValueError(f"{n} cases cannot fill held-out splits of {sizes} and still train")
    order = np.random.default_rng(seed).permutation(n)
    splits, start = {}, 0
    for name, size in sizes.items():
        splits[name] = np.sort(order[start : start + size])
        start += size
    return {"training": np.sort(order[start:]), **splits}
