"""One trainer for every fusion head: seeded, modality dropout, early stopping on an inner split;
a deep ensemble of such heads with temperatures fitted on a calibration split; save and load.
"""

from __future__ import annotations

import copy
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fusion_models.calibration import fit_temperature
from fusion_models.fusion_heads.base import FusionHead, HeadConfig, HeadOutput, HeadTask, create_fusion_head
from fusion_models.fusion_heads.inputs import HeadInputs, Targets
from fusion_models.heads import cox_partial_likelihood_loss
from fusion_models.task_heads.classification import MIN_CALIBRATION_CASES, TEMPERATURE_BOUNDS
from fusion_models.training_common import drop_modalities, single_thread
from schemas.common import MODALITIES
from toolkit.atomic import atomic_write_bytes


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 40
    lr: float = 3e-3
    weight_decay: float = 1e-3
    batch_size: int = 32
    patience: int = 6  # epochs without a better held-out loss before stopping
    modality_dropout: float = 0.3  # chance to hide each present modality of a training case
    aux_weight: float = 0.1  # weight of a head's own regulariser (orthogonality)


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


def task_losses(outputs: dict[str, Tensor], y: Targets, tasks: tuple[HeadTask, ...]) -> dict[str, Tensor]:
    """Cross-entropy per classification task, Cox partial likelihood per survival task; unknown labels skipped."""
    losses = {}
    for task in tasks:
        out = outputs[task.name]
        if task.kind == "classification":
            target = y.classes[task.name]
            losses[task.name] = F.cross_entropy(out, target, ignore_index=-1) if (target >= 0).any() else out.sum() * 0
        else:
            known = ~torch.isnan(y.time)
            losses[task.name] = cox_partial_likelihood_loss(out[known], y.time[known], y.event[known])
    return losses


def _loss(out: HeadOutput, y: Targets, tasks: tuple[HeadTask, ...], aux_weight: float) -> Tensor:
    loss = sum(task_losses(out.outputs, y, tasks).values())
    return loss + aux_weight * out.aux_loss if out.aux_loss is not None else loss


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
                loss = _loss(head(bx), by, tasks, settings.aux_weight)
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


@dataclass
class EnsemblePrediction:
    probabilities: dict[str, np.ndarray]  # classification task -> (B, K), calibrated
    risk: dict[str, np.ndarray]  # survival task -> (B,) mean member risk
    spread: dict[str, np.ndarray]  # task -> (B,) std over members (top-class probability / risk)


@dataclass
class Ensemble:
    """k heads from different seeds (Lakshminarayanan et al., NeurIPS 2017); probabilities are the
    temperature-scaled log of the members' mean probability, T fitted on a calibration split."""

    members: list[FusionHead]
    temperatures: dict[str, float]
    fits: list[FitResult]

    @classmethod
    def train(
        cls,
        config: HeadConfig,
        train: tuple[HeadInputs, Targets],
        stopping: tuple[HeadInputs, Targets],
        calibration: tuple[HeadInputs, Targets],
        *,
        members: int,
        settings: TrainSettings,
        seed: int,
    ) -> Ensemble:
        trained = [train_head(config, train, stopping, settings, seed * 1000 + k) for k in range(members)]
        ensemble = cls([h for h, _ in trained], {}, [f for _, f in trained])
        log_probs = ensemble._log_mean_probabilities(calibration[0])
        for task, values in log_probs.items():
            labels = calibration[1].classes[task].numpy()
            known = labels >= 0
            enough = known.sum() >= MIN_CALIBRATION_CASES
            ensemble.temperatures[task] = fit_temperature(values[known], labels[known], TEMPERATURE_BOUNDS) if enough else 1.0
        return ensemble

    def _outputs(self, x: HeadInputs) -> list[dict[str, Tensor]]:
        return [predict(m, x) for m in self.members]

    def _log_mean_probabilities(self, x: HeadInputs, outputs: list[dict[str, Tensor]] | None = None) -> dict[str, np.ndarray]:
        outputs = outputs or self._outputs(x)
        tasks = [t.name for t in self.members[0].config.tasks if t.kind == "classification"]
        return {
            t: torch.log(torch.stack([o[t].softmax(-1) for o in outputs]).mean(0).clamp_min(1e-12)).numpy()
            for t in tasks
        }

    def predict(self, x: HeadInputs) -> EnsemblePrediction:
        outputs = self._outputs(x)
        probabilities, risk, spread = {}, {}, {}
        for task, log_p in self._log_mean_probabilities(x, outputs).items():
            p = torch.softmax(torch.from_numpy(log_p) / self.temperatures.get(task, 1.0), dim=-1).numpy()
            probabilities[task] = p
            top = p.argmax(1)
            members = np.stack([o[task].softmax(-1).numpy()[np.arange(len(top)), top] for o in outputs])
            spread[task] = members.std(0)
        for task in (t.name for t in self.members[0].config.tasks if t.kind == "survival"):
            members = np.stack([o[task].numpy() for o in outputs])
            risk[task], spread[task] = members.mean(0), members.std(0)
        return EnsemblePrediction(probabilities, risk, spread)


def save_head(path: Path, head: FusionHead) -> None:
    """The head's config (which head, which modalities and tasks) travels with its weights."""
    buffer = io.BytesIO()
    torch.save({"config": head.config.model_dump(), "state": head.state_dict()}, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_head(path: Path) -> FusionHead:
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    head = create_fusion_head(HeadConfig.model_validate(payload["config"]))
    head.load_state_dict(payload["state"])
    return head.eval()
