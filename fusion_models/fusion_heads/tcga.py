"""A labelled cohort folder (labels.csv + cases/, the TCGA layout) as fusion-head inputs and targets.

Cases are read with the report's own loaders (`load_manifest`, `load_genomics`) and scored
into pathways with the knowledge base, exactly as a report would; each task's target comes
from the cohort's checked `labels.csv` through its head type. The layout carries genomics and
age only: imaging and pathology are absent, hence masked, in every case.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from fusion_models.fusion_heads.inputs import HeadCase, Targets, labelled_examples
from fusion_models.genomics.io import load_genomics
from fusion_models.inputs import CaseInputs, load_manifest
from fusion_models.task_heads import TaskSpec
from fusion_models.tcga.cohort import CASES_DIR, LABELS_FILE, read_labels
from knowledge.sources import KnowledgeBase
from schemas.errors import InputError

MODALITIES = ("genomics", "clinical")


def _labelled_cases(root: Path):
    labels = read_labels(root / LABELS_FILE)
    for row in labels.itertuples():
        case_dir = root / CASES_DIR / row.Index
        genomics, unusable = load_genomics(case_dir)
        if unusable:  # training data must be whole: a broken file is an error here, not a missing modality
            raise InputError(f"{CASES_DIR}/{row.Index}/{unusable[0].file}", "file", unusable[0].reason)
        yield CaseInputs(case_dir, load_manifest(case_dir), [], [], None, genomics), row


def tcga_head_data(
    root: Path, tasks: Sequence[TaskSpec], kb: KnowledgeBase, patch_dim: int = 32, *, progress: bool = False
) -> tuple[list[HeadCase], Targets]:
    """All cases of `root/labels.csv` in its order, with their targets (labels columns grade, subtype,
    survival_months, event: what the tasks' `target` fields name)."""
    items = tqdm(_labelled_cases(Path(root)), desc="cases", disable=not progress)
    return labelled_examples(items, tasks, kb, patch_dim)
