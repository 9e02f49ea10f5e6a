"""The real TCGA glioma cohort (genomics + age only) as fusion-head inputs and targets.

Cases are read with the report's own loaders (`load_manifest`, `load_genomics`) and scored
into pathways with the bundled knowledge base, exactly as a report would; labels come from
the cohort's checked `labels.csv`. Imaging and pathology are absent, hence masked, in every case.
"""

from __future__ import annotations

from pathlib import Path

from fusion_models.fusion_heads.inputs import HeadCase, Targets, head_case, targets
from fusion_models.genomics.io import load_genomics
from fusion_models.inputs import CaseInputs, load_manifest
from fusion_models.tcga.cohort import CASES_DIR, LABELS_FILE, read_labels
from knowledge.sources import KnowledgeBase
from schemas.errors import InputError

MODALITIES = ("genomics", "clinical")


def tcga_head_data(root: Path, kb: KnowledgeBase, patch_dim: int = 32) -> tuple[list[HeadCase], Targets]:
    """All cases of `root/labels.csv` in its order, with their targets."""
    root = Path(root)
    labels = read_labels(root / LABELS_FILE)
    cases = []
    for case_id in labels.index:
        case_dir = root / CASES_DIR / case_id
        genomics, unusable = load_genomics(case_dir)
        if unusable:  # training data must be whole: a broken file is an error here, not a missing modality
            raise InputError(f"{CASES_DIR}/{case_id}/{unusable[0].file}", "file", unusable[0].reason)
        inputs = CaseInputs(case_dir, load_manifest(case_dir), [], [], None, genomics)
        cases.append(head_case(inputs, kb, patch_dim))
    y = targets(
        {"grade": labels["grade"].tolist(), "molecular_subtype": labels["subtype"].tolist()},
        labels["survival_months"].to_numpy(), labels["event"].to_numpy(),
    )
    return cases, y
