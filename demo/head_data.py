"""Fusion-head training data from the demo generator: in-memory cases, their targets and patch patterns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from demo.training import BANK_TILES_PER_PATTERN, iter_training_cases
from fusion_models.encoders import create_encoder
from fusion_models.fusion_heads.inputs import HeadCase, Targets, labelled_examples
from fusion_models.task_heads import TaskSpec
from knowledge.sources import KnowledgeBase

ENCODER = "hed_texture"


@dataclass
class DemoHeadData:
    cases: list[HeadCase]
    targets: Targets  # patterns: the generator's tissue pattern per patch
    grades: list[str]


def demo_head_data(
    n: int, *, seed: int, kb: KnowledgeBase, tasks: Sequence[TaskSpec],
    bank_tiles_per_pattern: int = BANK_TILES_PER_PATTERN,
) -> DemoHeadData:
    """`n` simulated cases with the demo cohort's situations and modality dropout (demo.training)."""
    encoder = create_encoder(ENCODER)
    grades: list[str] = []

    def pairs():  # streamed: a case's volumes are dropped once its head inputs are extracted
        generated = iter_training_cases(n, seed=seed, encoder=encoder, bank_tiles_per_pattern=bank_tiles_per_pattern)
        for inputs, labels in generated:
            grades.append(labels.grade)
            yield inputs, labels

    cases, y = labelled_examples(pairs(), tasks, kb, encoder.dim)
    return DemoHeadData(cases, y, grades)
