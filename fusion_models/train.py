"""Training: deterministic; four disjoint splits (fit, early stopping, calibration, evaluation); checkpoint + card.

Each held-out split has one job, so that no number on the card is measured on data that shaped it:
the stopping split picks the epoch, the calibration split fits temperatures, conformal sets and OOD
thresholds, and the evaluation split only measures.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from fusion_models.card import model_card, write_card
from fusion_models.features import CaseTensors, build_features, collate
from fusion_models.inference import Calibration, checkpoint_bytes, ood_rows
from fusion_models.inputs import CaseInputs
from fusion_models.model import FusionModel, FusionModelConfig, TaskSpec
from fusion_models.ood import MahalanobisDetector
from fusion_models.task_heads import task_head
from fusion_models.task_heads.fitting import calibrate_tasks, calibration_record
from fusion_models.training_common import HELDOUT_FRACTIONS, SPLIT_ROLES, drop_modalities, single_thread, split_indices
from knowledge.sources import KnowledgeBase
from schemas.errors import InputError
from toolkit.atomic import atomic_write_bytes

MIN_CASES = 10
# Per modality; a case with three scored modalities is flagged somewhere for at most ~15% of clean cases.
OOD_FALSE_ALARM_RATE = 0.05
MAX_OOD_ROWS = 20_000
MIN_KNOWN_SHARE = 0.5


class CaseLabels(Protocol):
    """What training reads from a case's labels; attribute names come from each TaskSpec."""

    patch_patterns: list[np.ndarray]


@dataclass
class Example:
    """One training case: its model inputs and its targets as tensors."""

    tensors: CaseTensors
    targets: dict[str, tuple[float, ...]]  # task -> its head type's target (NaN / -1 = unknown)
    patterns: Tensor  # (N,) pattern code per patch, -1 unknown


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    card: Path
    metrics: dict[str, Any]  # evaluation split, per task
    split_sizes: dict[str, int]
    epochs_run: int
    best_epoch: int
    seconds: float

    def summary(self) -> str:
        """A few lines for the terminal: where the files are and the held-out metrics."""
        sizes = " / ".join(f"{n} {name}" for name, n in self.split_sizes.items())
        lines = [
            f"checkpoint {self.checkpoint} (card {self.card.name})",
            f"cases: {sizes}; best epoch {self.best_epoch} of {self.epochs_run}, {self.seconds:.0f} s",
        ]
        shown_keys = ("accuracy", "macro_auc", "ece_uncalibrated", "ece", "c_index", "set_coverage", "set_mean_set_size")
        for task, m in self.metrics.items():
            shown = {k: m[k] for k in shown_keys if m.get(k) is not None}
            lines.append(f"  evaluation {task}: " + ", ".join(f"{k} {v:.3f}" for k, v in shown.items()))
        return "\n".join(lines)


def make_example(inputs: CaseInputs, labels: CaseLabels, kb: KnowledgeBase, config: FusionModelConfig) -> Example:
    tensors = build_features(inputs, kb, config.inputs)
    where = str(inputs.case_dir)
    targets = {t.name: task_head(t.kind).encode_target(t, labels, where) for t in config.tasks}
    return Example(tensors, targets, _pattern_targets(tensors, labels, config, where))


def _pattern_targets(tensors: CaseTensors, labels: CaseLabels, config: FusionModelConfig, where: str) -> Tensor:
    n = len(tensors.bag)
    if not config.inputs.pathology or not labels.patch_patterns:
        return torch.full((n,), -1, dtype=torch.long)
    codes = np.concatenate([np.asarray(p, dtype=np.int64).ravel() for p in labels.patch_patterns])
    if len(codes) != n:
        raise InputError(where, "labels.patch_patterns", f"{len(codes)} pattern codes for {n} patches")
    if codes.size and (codes.min() < -1 or codes.max() >= len(config.patterns)):
        raise InputError(where, "labels.patch_patterns", f"codes must lie in [-1, {len(config.patterns) - 1}]")
    return torch.from_numpy(codes)


def normalisation_stats(examples: Sequence[Example]) -> dict[str, tuple[Tensor, Tensor]]:
    """Mean and std per feature over the training cases where it was measured, and over all patches."""
    stats = {}
    for block in examples[0].tensors.values:
        values = torch.stack([e.tensors.values[block] for e in examples])
        known = torch.stack([e.tensors.known[block] for e in examples])
        count = known.sum(0).clamp_min(1)
        mean = (values * known).sum(0) / count
        std = (((values - mean) * known) ** 2).sum(0).div(count).sqrt()
        stats[block] = (mean, std)
    patches = torch.cat([e.tensors.bag.features for e in examples])
    if len(patches):
        stats["patches"] = (patches.mean(0), patches.std(0, correction=0))
    return stats


def targets_of(examples: Sequence[Example], task: TaskSpec) -> Tensor:
    """(N, width) targets of `task` over the examples."""
    return torch.tensor([e.targets[task.name] for e in examples], dtype=torch.float32)


def task_losses(
    outputs: dict[str, Tensor], examples: Sequence[Example], tasks: Sequence[TaskSpec]
) -> dict[str, Tensor]:
    return {t.name: task_head(t.kind).loss(outputs[t.name], targets_of(examples, t), t) for t in tasks}


def _pattern_sum(pattern_logits: Tensor, examples: Sequence[Example]) -> tuple[Tensor, int]:
    """Summed patch-pattern cross-entropy and the number of labelled patches."""
    target = torch.full(pattern_logits.shape[:2], -1, dtype=torch.long)
    for i, e in enumerate(examples):
        target[i, : len(e.patterns)] = e.patterns
    n = int((target >= 0).sum())
    if n == 0:
        return pattern_logits.sum() * 0, 0
    return F.cross_entropy(pattern_logits.flatten(0, 1), target.flatten(), ignore_index=-1, reduction="sum"), n


@dataclass
class _Outputs:
    """Eval-mode outputs over many cases."""

    outputs: dict[str, Tensor]
    pattern_loss: float
    pattern_correct: int
    n_patches: int


@torch.no_grad()
def evaluate(model: FusionModel, examples: Sequence[Example], batch_size: int) -> _Outputs:
    model.eval()
    chunks, loss, correct, n = [], 0.0, 0, 0
    for start in range(0, len(examples), batch_size):
        part = examples[start : start + batch_size]
        forward = model(collate([e.tensors for e in part]))
        chunks.append(forward.outputs)
        chunk_loss, chunk_n = _pattern_sum(forward.pattern_logits, part)
        loss, n = loss + float(chunk_loss), n + chunk_n
        for i, e in enumerate(part):
            labelled = e.patterns >= 0
            predicted = forward.pattern_logits[i, : len(e.patterns)].argmax(-1)
            correct += int((predicted[labelled] == e.patterns[labelled]).sum())
    outputs = {task: torch.cat([c[task] for c in chunks]) for task in chunks[0]}
    return _Outputs(outputs, loss / max(n, 1), correct, n)


def _objective(result: _Outputs, examples: Sequence[Example], config: FusionModelConfig) -> float:
    losses = task_losses(result.outputs, examples, config.tasks)
    return float(sum(losses.values())) + config.training.pattern_loss_weight * result.pattern_loss


def _train_epoch(
    model: FusionModel,
    examples: Sequence[Example],
    config: FusionModelConfig,
    optimiser: torch.optim.Optimizer,
    generator: torch.Generator,
) -> None:
    model.train()
    order = torch.randperm(len(examples), generator=generator)
    for chunk in order.split(config.training.batch_size):
        part = [examples[int(i)] for i in chunk]
        batch = collate([e.tensors for e in part])
        batch.present = drop_modalities(batch.present, config.modality_dropout, generator)
        forward = model(batch)
        pattern_loss, n = _pattern_sum(forward.pattern_logits, part)
        loss = sum(task_losses(forward.outputs, part, config.tasks).values())
        loss = loss + config.training.pattern_loss_weight * pattern_loss / max(n, 1)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def _head_data(task: TaskSpec, out: _Outputs, examples: Sequence[Example]) -> tuple[np.ndarray, np.ndarray]:
    """(outputs, targets) of one task over a split, as the head type's numpy arrays."""
    return out.outputs[task.name].numpy(), targets_of(examples, task).numpy().astype(np.float64)


def _dense_columns(examples: Sequence[Example], modality: str) -> np.ndarray | None:
    """Features measured in at least MIN_KNOWN_SHARE of the training cases that have the modality.

    A rarely measured feature (lesion growth needs two scans) is 0 in most training rows, so its
    variance is tiny and any real value of it would read as far away; the detector leaves it out.
    Patches have no unmeasured entries (None: every column).
    """
    if modality == "pathology":
        return None
    known = torch.stack([e.tensors.known[modality] for e in examples if e.tensors.known[modality].any()])
    return np.flatnonzero(known.mean(dim=0).numpy() >= MIN_KNOWN_SHARE)


def _ood_detectors(
    model: FusionModel, splits: dict[str, Sequence[Example]], false_alarm_rate: float, seed: int
) -> tuple[dict[str, MahalanobisDetector], dict[str, Any]]:
    """Per modality: fitted on training rows, thresholded on the calibration split, checked on evaluation."""
    rows = {name: [ood_rows(model, e.tensors) for e in part] for name, part in splits.items()}
    detectors, report = {}, {}
    for modality in sorted({m for case in rows["training"] for m in case}):
        train_rows = np.concatenate([case[modality] for case in rows["training"] if modality in case])
        if len(train_rows) > MAX_OOD_ROWS:  # patches: a random subset pins the mean and covariance down
            train_rows = train_rows[np.random.default_rng(seed).choice(len(train_rows), MAX_OOD_ROWS, replace=False)]
        heldout = [case[modality] for case in rows["calibration"] if modality in case]
        columns = _dense_columns(splits["training"], modality)
        if not heldout or (columns is not None and not len(columns)):
            continue
        detector = MahalanobisDetector.fit(train_rows, heldout, false_alarm_rate, columns)
        evaluation = [detector.score(case[modality]) for case in rows["evaluation"] if modality in case]
        detectors[modality] = detector
        report[modality] = {
            "method": detector.method,
            "threshold": detector.threshold,
            "target_false_alarm_rate": false_alarm_rate,
            "false_alarm_bound": detector.false_alarm_rate,
            "n_threshold_cases": detector.n_threshold,
            "evaluation_false_alarm_rate": float(np.mean(np.array(evaluation) > detector.threshold))
            if evaluation else None,
            "n_evaluation_cases": len(evaluation),
        }
    return detectors, report


def calibrate(
    config: FusionModelConfig, model: FusionModel, splits: dict[str, Sequence[Example]], *, seed: int = 0
) -> tuple[Calibration, dict[str, Any]]:
    """Temperatures, conformal sets and OOD thresholds on the calibration split; metrics on the evaluation split.

    Risk calibration (baseline hazard, tertiles) and OOD statistics come from the training split,
    whose cases the network has fitted: they describe its distribution, not its errors.
    """
    size = config.training.batch_size
    out = {name: evaluate(model, part, size) for name, part in splits.items() if name != "stopping"}
    data = {name: {t.name: _head_data(t, o, splits[name]) for t in config.tasks} for name, o in out.items()}
    tasks, conformal, records, metrics = calibrate_tasks(config.tasks, data)
    calibration = Calibration(tasks, conformal)
    calibration.ood, ood_report = _ood_detectors(model, splits, OOD_FALSE_ALARM_RATE, seed)
    evaluation = out["evaluation"]
    if evaluation.n_patches:
        accuracy = evaluation.pattern_correct / evaluation.n_patches
        metrics["patch_pattern"] = {"n_patches": evaluation.n_patches, "accuracy": accuracy}
    record = calibration_record(calibration.conformal, records)
    return calibration, {"evaluation": metrics, "ood": ood_report, "calibration": record}


def _modality_rates(examples: Sequence[Example]) -> dict[str, float]:
    presents = [e.tensors.present() for e in examples]
    return {m: float(np.mean([p[m] for p in presents])) for m in presents[0]}


def knowledge_record(kb: KnowledgeBase, programmes: Sequence[str]) -> dict[str, Any]:
    """Which knowledge base and which pathway per programme the genomics features were scored with."""
    pathway_ids = {p: (pw.id if (pw := kb.by_programme(p)) else "") for p in programmes}
    return {"name": kb.name, "version": kb.version, "sha256": kb.sha256, "pathway_ids": pathway_ids}


def fit(
    model: FusionModel, train: Sequence[Example], val: Sequence[Example], *, epochs: int, seed: int, progress: bool
) -> tuple[int, int]:
    """AdamW with early stopping on the held-out loss; leaves the best epoch's weights. -> (epochs run, best)."""
    config = model.config
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.training.lr, weight_decay=config.training.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    best_loss, best_state, best_epoch, epoch = math.inf, copy.deepcopy(model.state_dict()), 0, 0
    bar = tqdm(range(1, epochs + 1), desc="epochs", disable=not progress)
    for epoch in bar:
        _train_epoch(model, train, config, optimiser, generator)
        val_loss = _objective(evaluate(model, val, config.training.batch_size), val, config)
        bar.set_postfix(heldout_loss=f"{val_loss:.3f}")
        if val_loss < best_loss:
            best_loss, best_state, best_epoch = val_loss, copy.deepcopy(model.state_dict()), epoch
        elif epoch - best_epoch >= config.training.patience:
            break
    model.load_state_dict(best_state)
    return epoch, best_epoch


def train_fusion_model(
    config: FusionModelConfig,
    cases: Iterable[tuple[CaseInputs, CaseLabels]],
    out: Path,
    *,
    kb: KnowledgeBase,
    epochs: int = 60,
    seed: int = 0,
    heldout_fractions: dict[str, float] | None = None,
    progress: bool = True,
    data_description: str = "",
) -> TrainResult:
    """Train a model of `config` (its name is its family), write checkpoint `out` and its card beside it."""
    started = time.perf_counter()
    out = Path(out)
    with single_thread():
        torch.manual_seed(seed)
        examples = [make_example(i, l, kb, config) for i, l in tqdm(cases, desc="features", disable=not progress)]
        if len(examples) < MIN_CASES:
            raise ValueError(f"need at least {MIN_CASES} training cases, got {len(examples)}")
        index = split_indices(len(examples), heldout_fractions or HELDOUT_FRACTIONS, seed)
        splits = {name: [examples[i] for i in rows] for name, rows in index.items()}
        model = FusionModel(config)
        model.set_normalisation(normalisation_stats(splits["training"]))
        epochs_run, best_epoch = fit(
            model, splits["training"], splits["stopping"], epochs=epochs, seed=seed, progress=progress
        )
        calibration, report = calibrate(config, model, splits, seed=seed)
    knowledge = knowledge_record(kb, config.inputs.genomics.programmes if config.inputs.genomics else ())
    payload = checkpoint_bytes(model, calibration, knowledge, family=config.name)
    atomic_write_bytes(out, payload)
    sizes = {name: len(part) for name, part in splits.items()}
    training = {
        "description": data_description,
        "n_cases": len(examples),
        "splits": sizes,
        "split_roles": SPLIT_ROLES,
        "seed": seed,
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "modality_rates": {name: _modality_rates(part) for name, part in splits.items()},
    }
    sha256 = hashlib.sha256(payload).hexdigest()
    inputs = config.inputs.model_dump(mode="json", exclude_none=True)
    card = model_card(
        config, inputs=inputs, weights_sha256=sha256, metrics=report, training=training, knowledge=knowledge
    )
    return TrainResult(
        out, write_card(out, card), report["evaluation"], sizes, epochs_run, best_epoch, time.perf_counter() - started
    )
