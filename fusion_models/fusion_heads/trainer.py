"""One trainer for every fusion head: seeded, modality dropout, early stopping on an inner split;
a deep ensemble of such heads, calibrated per task by its task_heads head type on a calibration split.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fusion_models.fusion_heads.base import FusionHead, HeadConfig, HeadOutput, create_fusion_head
from fusion_models.fusion_heads.inputs import HeadInputs, Targets
from fusion_models.task_heads import TaskCalibration, TaskSpec, task_head
from fusion_models.task_heads.fitting import calibrate_tasks
from fusion_models.training_common import drop_modalities, single_thread
from schemas.common import MODALITIES


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 40
    lr: float = 3e-3
    weight_decay: float = 1e-3
    batch_size: int = 32
    patience: int = 6  # epochs without a better held-out loss before stopping
    modality_dropout: float = 0.3  # chance to hide each present modality of a training case
    aux_weight: float = 0.1  # weight of a head's own regulariser (orthogonality)
    pattern_weight: float = 0.5  # weight of the patch tissue-pattern loss, where patches are labelled


def normalisation_stats(x: HeadInputs) -> dict[str, tuple[Tensor, Tensor]]:
    """Mean and std of every standardised block over the measured entries of the training cases."""

    def masked(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        values, mask = values.reshape(-1, values.shape[-1]), mask.reshape(-1, mask.shape[-1]).float()
        count = mask.sum(0).clamp_min(1)
        mean = (values * mask).sum(0) / count
        return mean, (((values - mean) * mask) ** 2).sum(0).div(count).sqrt()

    region_rows = x.region_mask.unsqueeze(-1).expand_as(x.regions)
    return {
        "regions": masked(x.regions, region_rows),
        "patches": masked(x.patches, x.patch_mask.unsqueeze(-1).expand_as(x.patches)),
        "pathways": masked(x.pathways, x.pathway_known),
        "age": masked(x.age, x.age_known),
    }


def task_losses(outputs: dict[str, Tensor], y: Targets, tasks: tuple[TaskSpec, ...]) -> dict[str, Tensor]:
    """Each task's loss by its head type (cross-entropy, cumulative link, Cox); unknown targets skipped."""
    return {t.name: task_head(t.kind).loss(outputs[t.name], y.tasks[t.name], t) for t in tasks}


def pattern_loss(pattern_logits: Tensor | None, patterns: Tensor) -> Tensor | None:
    """Mean cross-entropy over the labelled patches of the batch; None when there is nothing to learn from."""
    if pattern_logits is None or not bool((patterns >= 0).any()):
        return None
    return F.cross_entropy(pattern_logits.flatten(0, 1), patterns.flatten(), ignore_index=-1)


def _loss(out: HeadOutput, y: Targets, tasks: tuple[TaskSpec, ...], settings: TrainSettings) -> Tensor:
    loss = sum(task_losses(out.outputs, y, tasks).values())
    if out.aux_loss is not None:
        loss = loss + settings.aux_weight * out.aux_loss
    patterns = pattern_loss(out.interpretation.pattern_logits, y.patterns)
    return loss + settings.pattern_weight * patterns if patterns is not None else loss


@torch.no_grad()
def predict(head: FusionHead, x: HeadInputs, batch_size: int = 64) -> dict[str, Tensor]:
    """Eval-mode outputs over many cases, in batches."""
    head.eval()
    chunks = [head(x.select(range(s, min(s + batch_size, len(x))))).outputs for s in range(0, len(x), batch_size)]
    return {task: torch.cat([c[task] for c in chunks]) for task in chunks[0]}


@dataclass(frozen=True)
class FitResult:
    epochs_run: int
    best_epoch: int
    seconds: float


def fit(
    head: FusionHead, train: tuple[HeadInputs, Targets], val: tuple[HeadInputs, Targets], settings: TrainSettings,
    seed: int,
) -> FitResult:
    """AdamW with modality dropout; keeps the weights of the epoch with the lowest held-out task loss."""
    started = time.perf_counter()
    (x, y), (vx, vy) = train, val
    tasks = head.config.tasks
    optimiser = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    best, best_state, best_epoch, epoch = math.inf, copy.deepcopy(head.state_dict()), 0, 0
    with single_thread():
        for epoch in range(1, settings.epochs + 1):
            head.train()
            for chunk in torch.randperm(len(x), generator=generator).split(settings.batch_size):
                bx, by = x.select(chunk), y.select(chunk)
                present = {m: bx.present[:, i] for i, m in enumerate(MODALITIES)}
                dropped = drop_modalities(present, settings.modality_dropout, generator)
                bx = bx.with_present(torch.stack([dropped[m] for m in MODALITIES], dim=1))
                loss = _loss(head(bx), by, tasks, settings)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            val_loss = float(sum(task_losses(predict(head, vx), vy, tasks).values()))
            if val_loss < best:
                best, best_state, best_epoch = val_loss, copy.deepcopy(head.state_dict()), epoch
            elif epoch - best_epoch >= settings.patience:
                break
    head.load_state_dict(best_state)
    return FitResult(epoch, best_epoch, time.perf_counter() - started)


def train_head(
    config: HeadConfig, train: tuple[HeadInputs, Targets], val: tuple[HeadInputs, Targets], settings: TrainSettings,
    seed: int,
) -> tuple[FusionHead, FitResult]:
    """A fresh head of `config`, standardised on `train`, fitted with early stopping on `val`."""
    torch.manual_seed(seed)
    head = create_fusion_head(config)
    head.encoders.set_normalisation(normalisation_stats(train[0]))
    return head, fit(head, train, val, settings, seed)


def _numpy(outputs: dict[str, Tensor], y: Targets) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {task: (out.numpy(), y.tasks[task].numpy().astype(np.float64)) for task, out in outputs.items()}


@dataclass
class Ensemble:
    """k heads from different seeds (Lakshminarayanan et al., NeurIPS 2017). Members' outputs are combined per
    task by its head type (`TaskHead.ensemble`: mean probability for classes), then calibrated by that head
    type on a calibration split (temperature; Breslow baseline for risk); `calibration` maps task -> it."""

    members: list[FusionHead]
    calibration: dict[str, TaskCalibration]
    fits: list[FitResult]

    @property
    def config(self) -> HeadConfig:
        return self.members[0].config

    @classmethod
    def train(
        cls,
        config: HeadConfig,
        splits: dict[str, tuple[HeadInputs, Targets]],
        *,
        members: int,
        settings: TrainSettings,
        seed: int,
    ) -> tuple[Ensemble, dict[str, Any]]:
        """`splits`: 'training', 'stopping', 'calibration' and optionally 'evaluation' (which only measures).

        -> the ensemble and its calibration report (records, conformal sets, evaluation metrics).
        """
        fitting, stopping = splits["training"], splits["stopping"]
        trained = [train_head(config, fitting, stopping, settings, seed * 1000 + k) for k in range(members)]
        ensemble = cls([h for h, _ in trained], {}, [f for _, f in trained])
        data = {
            name: _numpy(ensemble.outputs(x), y) for name, (x, y) in splits.items() if name != "stopping"
        }
        ensemble.calibration, conformal, records, metrics = calibrate_tasks(config.tasks, data)
        return ensemble, {"conformal": conformal, "records": records, "metrics": metrics}

    def member_outputs(self, x: HeadInputs) -> list[HeadOutput]:
        """Every member's eval-mode output on one batch (interpretation included)."""
        with torch.no_grad():
            return [m.eval()(x) for m in self.members]

    def outputs(self, x: HeadInputs) -> dict[str, Tensor]:
        """The combined raw output per task over many cases."""
        per_member = [predict(m, x) for m in self.members]
        return {
            t.name: task_head(t.kind).ensemble(t, [o[t.name] for o in per_member]) for t in self.config.tasks
        }

    def probabilities(self, x: HeadInputs) -> dict[str, np.ndarray]:
        """Calibrated (N, len(labels)) probabilities per task."""
        return {
            t.name: task_head(t.kind).probabilities(t, out.numpy(), self.calibration[t.name])
            for t, out in zip(self.config.tasks, self.outputs(x).values(), strict=True)
        }
