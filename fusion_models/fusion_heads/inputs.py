"""The one input every fusion head reads: per-modality tensors of a batch of cases and a modality mask.

Imaging: features per habitat (region) per time point, right-aligned so index -1 is the
latest scan. Pathology: the patch-feature bag with level-0 coordinates. Genomics: pathway
(programme) scores and driver events, each with a measured flag. Clinical: age. A modality
a case lacks is False in `present`; heads mask it out and never read its (zero) values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fusion_models.features import HABITATS, GenomicsSpec, genomics_values
from fusion_models.imaging.habitats import PHENOTYPE_LABELS, intensity_ratio, normal_appearing
from fusion_models.inputs import CaseInputs, ImagingTimepoint
from fusion_models.task_heads import TaskSpec, task_head
from knowledge.sources import KnowledgeBase
from schemas.common import MODALITIES
from schemas.errors import InputError

SEQUENCES: tuple[str, ...] = ("t1c", "t1", "t2", "flair")
# Per habitat: log1p volume (mL), share of the lesion, then per sequence the mean intensity
# relative to normal-appearing brain and whether that ratio could be measured.
REGION_FEATURES: tuple[str, ...] = (
    "log1p_volume_ml",
    "fraction_of_lesion",
    *(f"{s}_{kind}" for s in SEQUENCES for kind in ("ratio", "measured")),
)
GENOMICS = GenomicsSpec()
PATHWAYS: tuple[str, ...] = GENOMICS.programmes
DRIVERS: tuple[str, ...] = tuple(n for n in GENOMICS.feature_names() if not n.startswith("pathway_"))


def region_features(timepoint: ImagingTimepoint) -> tuple[np.ndarray, np.ndarray]:
    """(R, F) features of the HABITATS of one scan and (R,) whether the habitat is in the mask."""
    stats = {s.phenotype: s for s in timepoint.habitats}
    normal = normal_appearing(timepoint.mask, timepoint.sequences.values())
    values = np.zeros((len(HABITATS), len(REGION_FEATURES)), dtype=np.float32)
    present = np.zeros(len(HABITATS), dtype=bool)
    for r, habitat in enumerate(HABITATS):
        stat = stats.get(habitat)
        if stat is None or stat.voxels == 0:
            continue
        present[r] = True
        values[r, :2] = np.log1p(stat.volume_ml), stat.fraction_of_lesion or 0.0
        inside = np.isin(timepoint.mask, PHENOTYPE_LABELS[habitat])
        for s, sequence in enumerate(SEQUENCES):
            image = timepoint.sequences.get(sequence)
            ratio = intensity_ratio(image, inside, normal) if image is not None else None
            if ratio is not None:
                values[r, 2 + 2 * s : 4 + 2 * s] = ratio, 1.0
    return values, present


@dataclass
class HeadCase:
    """One case's head inputs as arrays (unpadded, unstandardised)."""

    case_id: str
    regions: np.ndarray  # (T, R, F), oldest first
    region_mask: np.ndarray  # (T, R) bool
    patches: np.ndarray  # (N, D)
    coords: np.ndarray  # (N, 2) level-0 px
    pathways: np.ndarray  # (P,)
    pathway_known: np.ndarray  # (P,) bool
    drivers: np.ndarray  # (E,)
    driver_known: np.ndarray  # (E,) bool
    age: float | None

    def present(self) -> np.ndarray:
        """(M,) bool in MODALITIES order."""
        return np.array(
            [self.region_mask.any(), len(self.patches) > 0, self.pathway_known.any() or self.driver_known.any(),
             self.age is not None]
        )


def head_case(inputs: CaseInputs, kb: KnowledgeBase, patch_dim: int) -> HeadCase:
    """Extract a case's head inputs with the same loaders and scorers a report uses."""
    scans = [region_features(t) for t in inputs.imaging if t.mask is not None]
    regions = np.stack([v for v, _ in scans]) if scans else np.zeros((0, len(HABITATS), len(REGION_FEATURES)))
    region_mask = np.stack([m for _, m in scans]) if scans else np.zeros((0, len(HABITATS)), dtype=bool)
    slides = inputs.slides
    patches = np.concatenate([np.asarray(s.features, np.float32) for s in slides]) if slides else None
    coords = np.concatenate([np.asarray(s.coords).reshape(-1, 2) for s in slides]) if slides else None
    genomics = genomics_values(inputs.genomics, GENOMICS, kb)
    names = [f"pathway_{p}" for p in PATHWAYS]
    return HeadCase(
        case_id=inputs.manifest.case_id,
        regions=regions.astype(np.float32),
        region_mask=region_mask,
        patches=patches if patches is not None else np.zeros((0, patch_dim), np.float32),
        coords=coords if coords is not None else np.zeros((0, 2), np.int64),
        pathways=np.array([genomics.get(n, 0.0) for n in names], np.float32),
        pathway_known=np.array([n in genomics for n in names]),
        drivers=np.array([genomics.get(n, 0.0) for n in DRIVERS], np.float32),
        driver_known=np.array([n in genomics for n in DRIVERS]),
        age=inputs.manifest.age_years(),
    )


@dataclass
class HeadInputs:
    """A padded batch. Every tensor has the batch first; `select` and `with_present` keep that."""

    regions: Tensor  # (B, T, R, F), right-aligned: [:, -1] is each case's latest scan
    region_mask: Tensor  # (B, T, R) bool
    patches: Tensor  # (B, N, D), zero-padded
    patch_mask: Tensor  # (B, N) bool
    coords: Tensor  # (B, N, 2)
    pathways: Tensor  # (B, P)
    pathway_known: Tensor  # (B, P) bool
    drivers: Tensor  # (B, E)
    driver_known: Tensor  # (B, E) bool
    age: Tensor  # (B, 1)
    age_known: Tensor  # (B, 1) bool
    present: Tensor  # (B, M) bool, MODALITIES order

    def __len__(self) -> int:
        return len(self.present)

    def select(self, index: Tensor | np.ndarray | Sequence[int]) -> HeadInputs:
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return HeadInputs(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def with_present(self, present: Tensor) -> HeadInputs:
        return replace(self, present=present)

    def without(self, modality: str) -> HeadInputs:
        """The batch with one modality masked out for every case."""
        present = self.present.clone()
        present[:, MODALITIES.index(modality)] = False
        return self.with_present(present)


def collate(cases: Sequence[HeadCase]) -> HeadInputs:
    if not cases:
        raise ValueError("cannot collate an empty list of cases")
    b = len(cases)
    t_max = max(1, max(len(c.regions) for c in cases))
    n_max = max(len(c.patches) for c in cases)
    r, f = len(HABITATS), len(REGION_FEATURES)
    regions, region_mask = torch.zeros(b, t_max, r, f), torch.zeros(b, t_max, r, dtype=torch.bool)
    patches = torch.zeros(b, n_max, cases[0].patches.shape[1])
    patch_mask, coords = torch.zeros(b, n_max, dtype=torch.bool), torch.zeros(b, n_max, 2)
    for i, c in enumerate(cases):
        t, n = len(c.regions), len(c.patches)
        if t:
            regions[i, t_max - t :] = torch.from_numpy(c.regions)
            region_mask[i, t_max - t :] = torch.from_numpy(c.region_mask)
        patches[i, :n], patch_mask[i, :n] = torch.from_numpy(c.patches), True
        coords[i, :n] = torch.from_numpy(np.asarray(c.coords, np.float32))

    def stack(name: str, dtype: torch.dtype) -> Tensor:
        return torch.tensor(np.stack([getattr(c, name) for c in cases]), dtype=dtype)

    return HeadInputs(
        regions=regions,
        region_mask=region_mask,
        patches=patches,
        patch_mask=patch_mask,
        coords=coords,
        pathways=stack("pathways", torch.float32),
        pathway_known=stack("pathway_known", torch.bool),
        drivers=stack("drivers", torch.float32),
        driver_known=stack("driver_known", torch.bool),
        age=torch.tensor([[c.age or 0.0] for c in cases]),
        age_known=torch.tensor([[c.age is not None] for c in cases]),
        present=torch.tensor(np.stack([c.present() for c in cases])),
    )


@dataclass
class Targets:
    """Per task its head type's training targets (N, width) (task_heads `encode_target`; NaN / -1 unknown), and
    per case the tissue-pattern code of each patch (-1 unknown), padded like `collate` pads the bag."""

    tasks: dict[str, Tensor]
    patterns: Tensor  # (N, max patches) long

    def select(self, index: Tensor | np.ndarray | Sequence[int]) -> Targets:
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return Targets({k: v[index] for k, v in self.tasks.items()}, self.patterns[index])

    def __len__(self) -> int:
        return len(self.patterns)


def _pattern_codes(case: HeadCase, labels: Any, where: str) -> np.ndarray:
    """The case's patch-pattern codes in bag order (labels.patch_patterns, one array per slide), else -1."""
    per_slide = getattr(labels, "patch_patterns", None)
    if not per_slide:
        return np.full(len(case.patches), -1, dtype=np.int64)
    codes = np.concatenate([np.asarray(c, dtype=np.int64).ravel() for c in per_slide])
    if len(codes) != len(case.patches):
        raise InputError(where, "labels.patch_patterns", f"{len(codes)} pattern codes for {len(case.patches)} patches")
    return codes


def labelled_examples(
    items: Iterable[tuple[CaseInputs, Any]], tasks: Sequence[TaskSpec], kb: KnowledgeBase, patch_dim: int
) -> tuple[list[HeadCase], Targets]:
    """Head inputs and targets of labelled cases; each task's head type reads its target from the labels object."""
    cases, encoded, patterns = [], [], []
    for inputs, labels in items:
        where = str(inputs.case_dir)
        case = head_case(inputs, kb, patch_dim)
        cases.append(case)
        encoded.append([task_head(t.kind).encode_target(t, labels, where) for t in tasks])
        patterns.append(_pattern_codes(case, labels, where))
    if not cases:
        raise ValueError("no labelled cases")
    width = max(len(c.patches) for c in cases)
    padded = torch.full((len(cases), width), -1, dtype=torch.long)
    for i, codes in enumerate(patterns):
        padded[i, : len(codes)] = torch.from_numpy(codes)
    values = {t.name: torch.tensor([row[j] for row in encoded], dtype=torch.float32) for j, t in enumerate(tasks)}
    return cases, Targets(values, padded)
