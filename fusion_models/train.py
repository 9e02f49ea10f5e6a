"""Training: deterministic, held-out early stopping, temperature and risk calibration, checkpoint + card."""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from fusion_models.calibration import RiskCalibration, breslow_cumulative_hazard, fit_temperature
from fusion_models.card import classification_metrics, model_card, survival_metrics, write_card
from fusion_models.encoders import create_encoder
from fusion_models.features import CaseTensors, build_features, collate
from fusion_models.heads import cox_partial_likelihood_loss
from fusion_models.inference import checkpoint_bytes
from fusion_models.inputs import CaseInputs
from fusion_models.model import FusionModel, FusionModelConfig, TaskSpec
from fusion_models.registry import fusion_model_config
from knowledge.sources import KnowledgeBase, load_knowledge
from schemas.errors import InputError
from toolkit.atomic import atomic_write_bytes

MIN_CASES = 10
# Fewer labelled held-out cases than this cannot pin a temperature down; keep T = 1.
MIN_CALIBRATION_CASES = 10
TERTILES = (1 / 3, 2 / 3)
# Temperature may soften the model but never sharpen it: with a few dozen held-out cases an
# apparent under-confidence cannot be told from luck, and over-confidence is the costlier
# error at a tumour board.
TEMPERATURE_BOUNDS = (1.0, 20.0)


class CaseLabels(Protocol):
    """What training reads from a case's labels; attribute names come from each TaskSpec."""

    patch_patterns: list[np.ndarray]


@dataclass
class Example:
    """One training case: its model inputs and its targets as tensors."""

    tensors: CaseTensors
    classes: dict[str, int]  # classification task -> label index, -1 unknown
    survival: dict[str, tuple[float, float]]  # survival task -> (time, event); NaN time = unknown
    patterns: Tensor  # (N,) pattern code per patch, -1 unknown


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    card: Path
    metrics: dict[str, Any]
    n_train: int
    n_heldout: int
    epochs_run: int
    best_epoch: int
    seconds: float

    def summary(self) -> str:
        """A few lines for the terminal: where the files are and the held-out metrics."""
        lines = [
            f"checkpoint {self.checkpoint} (card {self.card.name})",
            f"{self.n_train} training / {self.n_heldout} held-out cases, best epoch {self.best_epoch} "
            f"of {self.epochs_run}, {self.seconds:.0f} s",
        ]
        for task, m in self.metrics.items():
            shown = {k: m[k] for k in ("accuracy", "macro_f1", "macro_auc", "ece", "c_index") if m.get(k) is not None}
            lines.append(f"  held-out {task}: " + ", ".join(f"{k} {v:.3f}" for k, v in shown.items()))
        return "\n".join(lines)


def make_example(inputs: CaseInputs, labels: CaseLabels, kb: KnowledgeBase, config: FusionModelConfig) -> Example:
    tensors = build_features(inputs, kb, config.inputs)
    where = str(inputs.case_dir)
    classes, survival = {}, {}
    for task in config.tasks:
        value = getattr(labels, task.target)
        if task.kind == "survival":
            event = getattr(labels, task.event_target)
            known = value is not None and event is not None
            survival[task.name] = (float(value), float(event)) if known else (math.nan, 0.0)
        elif value is None:
            classes[task.name] = -1
        elif value not in task.labels:
            raise InputError(where, f"labels.{task.target}", f"{value!r} is not one of {list(task.labels)}")
        else:
            classes[task.name] = task.labels.index(value)
    return Example(tensors, classes, survival, _pattern_targets(tensors, labels, config, where))


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


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split; the held-out part gets round(n * val_fraction) cases, at least 1."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(n * val_fraction))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


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


def drop_modalities(present: dict[str, Tensor], p: float, generator: torch.Generator) -> dict[str, Tensor]:
    """Hide each present modality with chance p, never all of a case's modalities at once."""
    names = list(present)
    stacked = torch.stack([present[m] for m in names], dim=1)
    dropped = stacked & (torch.rand(stacked.shape, generator=generator) >= p)
    kept = torch.where(dropped.any(dim=1, keepdim=True), dropped, stacked)
    return {m: kept[:, i] for i, m in enumerate(names)}


def task_losses(
    outputs: dict[str, Tensor], examples: Sequence[Example], tasks: Sequence[TaskSpec]
) -> dict[str, Tensor]:
    losses = {}
    for task in tasks:
        out = outputs[task.name]
        if task.kind == "classification":
            target = torch.tensor([e.classes[task.name] for e in examples])
            losses[task.name] = F.cross_entropy(out, target, ignore_index=-1) if (target >= 0).any() else out.sum() * 0
        else:
            pairs = [e.survival[task.name] for e in examples]
            times, events = (torch.tensor(v, dtype=torch.float32) for v in zip(*pairs))
            known = ~torch.isnan(times)
            losses[task.name] = cox_partial_likelihood_loss(out[known], times[known], events[known])
    return losses


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


def _temperature_and_metrics(task: TaskSpec, val_out: _Outputs, val: Sequence[Example]) -> tuple[float, dict | None]:
    """Held-out temperature of a classification task and its held-out metrics (None without labels)."""
    labels = np.array([e.classes[task.name] for e in val])
    logits = val_out.outputs[task.name].numpy()[labels >= 0]
    labels = labels[labels >= 0]
    temperature = fit_temperature(logits, labels, TEMPERATURE_BOUNDS) if len(labels) >= MIN_CALIBRATION_CASES else 1.0
    return temperature, classification_metrics(logits, labels, temperature) if len(labels) else None


def _survival_arrays(task: TaskSpec, out: _Outputs, examples: Sequence[Example]) -> tuple[np.ndarray, ...]:
    """Risk scores, times and events of the cases whose survival is known."""
    times, events = (np.array(v, dtype=float) for v in zip(*(e.survival[task.name] for e in examples)))
    known = ~np.isnan(times)
    return out.outputs[task.name].numpy()[known], times[known], events[known].astype(bool)


def _risk_calibration(task: TaskSpec, train_out: _Outputs, train: Sequence[Example]) -> RiskCalibration:
    """Breslow baseline hazard at the horizon and tertile cut points, both from the training cohort."""
    scores, times, events = _survival_arrays(task, train_out, train)
    return RiskCalibration(
        horizon_months=task.horizon_months,
        baseline_cumulative_hazard=breslow_cumulative_hazard(times, events, scores, task.horizon_months),
        cut_points=tuple(float(q) for q in np.quantile(train_out.outputs[task.name].numpy(), TERTILES)),
    )


def calibrate(
    config: FusionModelConfig, model: FusionModel, train: Sequence[Example], val: Sequence[Example]
) -> tuple[dict[str, float], dict[str, RiskCalibration], dict[str, Any]]:
    """Temperatures (held-out), risk calibration (training cohort) and held-out metrics per task."""
    train_out = evaluate(model, train, config.training.batch_size)
    val_out = evaluate(model, val, config.training.batch_size)
    temperatures, risk, metrics = {}, {}, {}
    for task in config.tasks:
        if task.kind == "classification":
            temperatures[task.name], task_metrics = _temperature_and_metrics(task, val_out, val)
        else:
            risk[task.name] = _risk_calibration(task, train_out, train)
            task_metrics = survival_metrics(*_survival_arrays(task, val_out, val))
        if task_metrics is not None:
            metrics[task.name] = task_metrics
    if val_out.n_patches:
        accuracy = val_out.pattern_correct / val_out.n_patches
        metrics["patch_pattern"] = {"n_patches": val_out.n_patches, "accuracy": accuracy}
    return temperatures, risk, metrics


def _modality_rates(examples: Sequence[Example]) -> dict[str, float]:
    presents = [e.tensors.present() for e in examples]
    return {m: float(np.mean([p[m] for p in presents])) for m in presents[0]}


def knowledge_record(kb: KnowledgeBase, config: FusionModelConfig) -> dict[str, Any]:
    """Which knowledge base and which pathway per programme the genomics features were scored with."""
    programmes = config.inputs.genomics.programmes if config.inputs.genomics else ()
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
    name: str,
    cases: Iterable[tuple[CaseInputs, CaseLabels]],
    out: Path,
    *,
    kb: KnowledgeBase,
    epochs: int = 60,
    seed: int = 0,
    val_fraction: float = 0.2,
    progress: bool = True,
    data_description: str = "",
) -> TrainResult:
    """Train the registered model `name`, write checkpoint `out` and its card beside it."""
    started = time.perf_counter()
    out = Path(out)
    config = fusion_model_config(name)
    with single_thread():
        torch.manual_seed(seed)
        examples = [make_example(i, l, kb, config) for i, l in tqdm(cases, desc="features", disable=not progress)]
        if len(examples) < MIN_CASES:
            raise ValueError(f"need at least {MIN_CASES} training cases, got {len(examples)}")
        train_idx, val_idx = split_indices(len(examples), val_fraction, seed)
        train, val = [examples[i] for i in train_idx], [examples[i] for i in val_idx]
        model = FusionModel(config)
        model.set_normalisation(normalisation_stats(train))
        epochs_run, best_epoch = fit(model, train, val, epochs=epochs, seed=seed, progress=progress)
        temperatures, risk, metrics = calibrate(config, model, train, val)
    knowledge = knowledge_record(kb, config)
    payload = checkpoint_bytes(model, temperatures, risk, knowledge)
    atomic_write_bytes(out, payload)
    training = {
        "description": data_description,
        "n_cases": len(examples),
        "n_train": len(train),
        "n_heldout": len(val),
        "seed": seed,
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "modality_rate_train": _modality_rates(train),
        "modality_rate_heldout": _modality_rates(val),
    }
    sha256 = hashlib.sha256(payload).hexdigest()
    card = model_card(config, weights_sha256=sha256, metrics=metrics, training=training, knowledge=knowledge)
    return TrainResult(
        out, write_card(out, card), metrics, len(train), len(val), epochs_run, best_epoch, time.perf_counter() - started
    )


def demo_training(
    out: Path, n_cases: int = 300, epochs: int = 60, seed: int = 0, progress: bool = True
) -> TrainResult:
    """Train `glioma_demo` on the in-memory demo cohort (patches embedded with hed_texture)."""
    from demo.training import iter_training_cases  # the demo generator (and nilearn) only load here

    cases = iter_training_cases(n_cases, seed=seed, encoder=create_encoder("hed_texture"))
    return train_fusion_model(
        "glioma_demo", cases, out, kb=load_knowledge("bundled"), epochs=epochs, seed=seed, progress=progress,
        data_description=(
            f"{n_cases} simulated demo glioma cases (seed {seed}): MRI on the MNI152 template, H&E-like tiles "
            "from scikit-image's real IHC image, genomics and survival from TCGA pan-glioma frequencies; "
            "random modality dropout."
        ),
    )
