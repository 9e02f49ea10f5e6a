"""Fusion-head training data from the demo generator: in-memory cases, their targets and patch patterns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from demo.training import BANK_TILES_PER_PATTERN, iter_training_cases
from fusion_models.encoders import create_encoder
from fusion_models.fusion_heads.inputs import HeadCase, Targets, head_case, targets
from knowledge.sources import KnowledgeBase

ENCODER = "hed_texture"


@dataclass
class DemoHeadData:
    cases: list[HeadCase]
    targets: Targets
    grades: list[str]
    patch_patterns: list[np.ndarray]  # per case, pattern code per patch in bag order (empty without patches)


def demo_head_data(
    n: int, *, seed: int, kb: KnowledgeBase, bank_tiles_per_pattern: int = BANK_TILES_PER_PATTERN
) -> DemoHeadData:
    """`n` simulated cases with the demo cohort's situations and modality dropout (demo.training)."""
    encoder = create_encoder(ENCODER)
    cases, grades, subtypes, times, events, patterns = [], [], [], [], [], []
    for inputs, labels in iter_training_cases(n, seed=seed, encoder=encoder, bank_tiles_per_pattern=bank_tiles_per_pattern):
        cases.append(head_case(inputs, kb, encoder.dim))
        grades.append(labels.grade)
        subtypes.append(labels.subtype)
        times.append(labels.survival_months)
        events.append(labels.event)
        codes = labels.patch_patterns
        patterns.append(np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64))
    y = targets({"grade": grades, "molecular_subtype": subtypes}, times, events)
    return DemoHeadData(cases, y, grades, patterns)
