"""The checkpoint format (written by training, read here) and inference: one case -> `FusionOutput`."""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fusion_models.conformal import ConformalSets
from fusion_models.features import HABITATS, IMAGING_PHENOTYPE, CaseTensors, PatchBag, build_features, collate
from fusion_models.inputs import CaseInputs
from fusion_models.model import FusionForward, FusionModel, FusionModelConfig, TaskSpec
from fusion_models.ood import MahalanobisDetector
from fusion_models.task_heads import TaskCalibration, task_head
from knowledge.sources import KnowledgeBase
from schemas.common import Modality
from schemas.errors import InputError
from schemas.fusion import FusionOutput, ModalityOOD, PatchAttention, SlideAttention, TaskPrediction

MANIFEST = "case.json"
ATTENTION_MIL = "attention_mil"  # the fusion this family's network has built in
ATTRIBUTION_METHODS = {
    "modality_contributions": "modality attention weights of the fusion layer",
    "patch_attention": "gated attention-MIL weights over the patch bag",
    "habitat_attribution": "gradient x input on the imaging features of the first task, shares per habitat",
}
CHECKPOINT_FORMAT = "evidencechain.fusion_checkpoint/2"
# Version 1 stored temperatures and risk calibration in two kind-specific tables and no family name.
LEGACY_FORMAT = "evidencechain.fusion_checkpoint/1"
# Vector blocks scored for OOD; pathology is scored on its patches. Findings and clinical values
# are a few typed fields that the input gates check against plausible ranges instead.
OOD_BLOCKS: tuple[Modality, ...] = ("imaging", "genomics")
OOD_DETAIL = (
    "mean Mahalanobis distance of the standardised {what} from the training cases (Ledoit-Wolf covariance); "
    "threshold from clean held-out cases"
)


@dataclass
class Calibration:
    """What turns the network's outputs into honest numbers; fitted on data the network never trained on.

    `tasks`: each task's calibration, of its head type. Checkpoints written before conformal sets
    and OOD detectors existed load with both empty.
    """

    tasks: dict[str, TaskCalibration]
    conformal: dict[str, ConformalSets] = field(default_factory=dict)
    ood: dict[str, MahalanobisDetector] = field(default_factory=dict)

    def of(self, task: TaskSpec) -> TaskCalibration:
        calibration = self.tasks.get(task.name) or task_head(task.kind).default_calibration(task)
        if calibration is None:
            raise ValueError(f"task {task.name!r} ({task.kind}) has no calibration")
        return calibration


@dataclass
class LoadedFusionModel:
    """A trained model with its calibration, ready for `predict`."""

    config: FusionModelConfig
    model: FusionModel
    calibration: Calibration
    pathway_ids: dict[str, str]
    knowledge_sha256: str
    weights_sha256: str
    path: Path
    family: str = ""


def checkpoint_bytes(model: FusionModel, calibration: Calibration, knowledge: dict[str, Any], *, family: str) -> bytes:
    """Everything inference needs, in types `torch.load(weights_only=True)` accepts."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "family": family,
        "config": model.config.model_dump_json(),
        "state_dict": model.state_dict(),
        "task_calibration": {name: c.to_dict() for name, c in calibration.tasks.items()},
        "conformal": {task: c.to_dict() for task, c in calibration.conformal.items()},
        "ood": {modality: d.to_dict() for modality, d in calibration.ood.items()},
        "knowledge": knowledge,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def read_torch_payload(
    path: Path, formats: tuple[str, ...] | None = (CHECKPOINT_FORMAT, LEGACY_FORMAT)
) -> tuple[dict[str, Any], bytes]:
    """The checkpoint's payload (tensors and plain types only) and its bytes; `formats`: those accepted (None: any)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "checkpoint", "file not found; train one with `evchain train`")
    raw = path.read_bytes()
    try:
        payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise InputError(str(path), "checkpoint", f"not a readable checkpoint: {error}") from error
    if not isinstance(payload, dict) or (formats is not None and payload.get("format") not in formats):
        raise InputError(str(path), "format", f"expected {' or '.join(formats or ('a torch checkpoint',))}")
    return payload, raw


def _legacy_task_calibration(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Version 1's temperature and risk tables as per-task calibration records."""
    temperatures = {name: {"temperature": t} for name, t in payload["temperatures"].items()}
    return {**temperatures, **payload["risk"]}


def fusion_model_from_payload(payload: dict[str, Any], raw: bytes, path: Path, family: str) -> LoadedFusionModel:
    if payload.get("format") not in (CHECKPOINT_FORMAT, LEGACY_FORMAT):
        raise InputError(str(path), "format", f"{family} reads {CHECKPOINT_FORMAT}, not {payload.get('format')!r}")
    config = FusionModelConfig.model_validate_json(payload["config"])
    model = FusionModel(config)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    stored = payload["task_calibration"] if "task_calibration" in payload else _legacy_task_calibration(payload)
    try:
        tasks = {t.name: task_head(t.kind).calibration_from_dict(stored[t.name]) for t in config.tasks if t.name in stored}
        conformal = {task: ConformalSets.from_dict(c) for task, c in payload.get("conformal", {}).items()}
        ood = {modality: MahalanobisDetector.from_dict(d) for modality, d in payload.get("ood", {}).items()}
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(str(path), "checkpoint", f"malformed calibration: {error!r}") from None
    return LoadedFusionModel(
        config=config,
        model=model,
        calibration=Calibration(tasks, conformal, ood),
        pathway_ids=dict(payload["knowledge"]["pathway_ids"]),
        knowledge_sha256=payload["knowledge"]["sha256"],
        weights_sha256=hashlib.sha256(raw).hexdigest(),
        path=Path(path),
        family=family,
    )


def load_fusion_model(path: Path) -> LoadedFusionModel:
    """Read a checkpoint written by `train_fusion_model`; a version-1 file is its config's name's family."""
    payload, raw = read_torch_payload(path)
    config_name = FusionModelConfig.model_validate_json(payload["config"]).name
    return fusion_model_from_payload(payload, raw, Path(path), payload.get("family", config_name))


def check_knowledge(pathway_ids: dict[str, str], kb: KnowledgeBase) -> None:
    """Pathway scores are only comparable when the same gene set stands for each programme (`pathway_ids`:
    programme -> the pathway the model was trained with)."""
    for programme, pathway_id in pathway_ids.items():
        pathway = kb.by_programme(programme)
        if (pathway.id if pathway else "") != pathway_id:
            raise InputError(
                f"knowledge:{kb.name}", f"programme {programme}",
                f"model was trained with pathway {pathway_id!r}, this knowledge base has "
                f"{pathway.id if pathway else 'none'!r}",
            )


def task_probabilities(task: TaskSpec, output: np.ndarray, calibration: Calibration) -> np.ndarray:
    """(N, K) calibrated probabilities from the (N, ...) raw outputs of the task's head."""
    return task_head(task.kind).probabilities(task, output, calibration.of(task))


def task_prediction(task: TaskSpec, output: Tensor, calibration: Calibration) -> TaskPrediction:
    return task_head(task.kind).to_prediction(
        task, output.detach().numpy(), calibration.of(task), calibration.conformal.get(task.name)
    )


def ood_rows(model: FusionModel, tensors: CaseTensors) -> dict[Modality, np.ndarray]:
    """What the network sees of each scored modality the case has, standardised with its training statistics.

    Vector blocks give one row (unmeasured entries at 0, the training mean); pathology one row per patch.
    """
    rows: dict[Modality, np.ndarray] = {}
    with torch.no_grad():
        for block in OOD_BLOCKS:
            if block in tensors.known and bool(tensors.known[block].any()):
                standardised = model.standardisers[block](tensors.values[block]) * tensors.known[block]
                rows[block] = standardised.double().numpy()[None]
        if len(tensors.bag):
            rows["pathology"] = model.patch_standardiser(tensors.bag.features).double().numpy()
    return rows


def without(tensors: CaseTensors, modality: Modality) -> CaseTensors:
    """The case as if `modality`'s scored input were missing (pathology: its patches; findings stay)."""
    if modality == "pathology":
        return replace(tensors, bag=PatchBag.empty(tensors.bag.features.shape[1]))
    values, known = dict(tensors.values), dict(tensors.known)
    values[modality], known[modality] = torch.zeros_like(values[modality]), torch.zeros_like(known[modality])
    return replace(tensors, values=values, known=known)


def screen_ood(loaded: LoadedFusionModel, tensors: CaseTensors) -> tuple[CaseTensors, list[ModalityOOD]]:
    """Score every modality the checkpoint has a detector for; mask the ones above threshold.

    Masking re-predicts without the modality, as the model does for a missing one. When every
    modality the case has would go, nothing is masked (action 'none'): the report still answers,
    and the OOD entries lower its confidence downstream.
    """
    scores = {
        modality: (loaded.calibration.ood[modality], loaded.calibration.ood[modality].score(rows))
        for modality, rows in ood_rows(loaded.model, tensors).items()
        if modality in loaded.calibration.ood
    }
    flagged = [m for m, (detector, score) in scores.items() if score > detector.threshold]
    masked = tensors
    for modality in flagged:
        masked = without(masked, modality)
    keep_some = any(masked.present()[m] for m in loaded.model.modalities)
    action = "masked" if keep_some else "none"
    entries = [
        ModalityOOD(
            modality=modality,
            method=detector.method,
            score=score,
            threshold=detector.threshold,
            false_alarm_rate=detector.false_alarm_rate,
            out_of_distribution=modality in flagged,
            action=action if modality in flagged else "none",
            detail=OOD_DETAIL.format(what="patch features" if modality == "pathology" else f"{modality} features"),
        )
        for modality, (detector, score) in scores.items()
    ]
    return (masked if keep_some else tensors), entries


def habitat_attribution(
    forward: FusionForward, task: TaskSpec, names: list[str], raw: Tensor
) -> dict[str, float]:
    """Gradient x input on the standardised imaging vector, |.| summed per habitat, shares summing to 1.

    Shares go to the habitats this lesion has: an absent habitat's features (volume 0)
    do inform the model, but there is no region to point a clinician or a biopsy at.
    Whole-lesion features (volume, growth) are shared among the habitats by volume
    fraction, since the lesion is the sum of its habitats.
    """
    standardised = forward.standardised["imaging"]
    target = task_head(task.kind).attribution_target(task, forward.outputs[task.name][0])
    (gradient,) = torch.autograd.grad(target, standardised)
    contribution = (gradient * standardised).abs()[0].detach().numpy()
    shares: dict[str, float] = {}
    for name, value in zip(names, contribution):
        phenotype = IMAGING_PHENOTYPE[name]
        shares[phenotype] = shares.get(phenotype, 0.0) + float(value)
    fractions = {h: float(raw[names.index(f"{h}_fraction")]) for h in HABITATS if f"{h}_fraction" in names}
    present = {h: f for h, f in fractions.items() if f > 0}
    if present:
        lesion_share = shares.pop("lesion", 0.0)
        total_fraction = sum(present.values())
        shares = {h: shares.get(h, 0.0) + lesion_share * f / total_fraction for h, f in present.items()}
    total = sum(shares.values())
    return {k: v / total for k, v in sorted(shares.items())} if total > 0 else {}


def _within_slide(attention: np.ndarray) -> np.ndarray:
    total = attention.sum()
    return attention / total if total > 0 else np.full(len(attention), 1.0 / max(len(attention), 1))


def slide_attention(attention: np.ndarray, bag: PatchBag) -> list[SlideAttention]:
    """Every patch's attention (N,), renormalised within its slide, in feature-matrix row order (for heatmaps)."""
    maps = []
    for s, slide in enumerate(bag.slides):
        rows = np.flatnonzero(bag.slide == s)
        within = np.empty(len(rows))
        within[bag.row[rows]] = _within_slide(attention[rows])
        maps.append(SlideAttention(slide_id=slide.slide_id, attention=[round(float(a), 6) for a in within]))
    return maps


def most_attended_patches(
    attention: np.ndarray, pattern_probs: np.ndarray, bag: PatchBag, patterns: tuple[str, ...], k: int
) -> list[PatchAttention]:
    """The k most attended patches of every slide, attention (N,) renormalised within the slide; pattern (N, P)."""
    result = []
    for s, slide in enumerate(bag.slides):
        rows = np.flatnonzero(bag.slide == s)
        within = _within_slide(attention[rows])
        for j in np.argsort(-within, kind="stable")[:k]:
            i = rows[j]
            x, y = (int(c) for c in bag.coords[i])
            result.append(
                PatchAttention(
                    slide_id=slide.slide_id,
                    patch_index=int(bag.row[i]),
                    coord_level0=(x, y),
                    patch_size_level0=slide.patch_size_level0,
                    attention=float(min(within[j], 1.0)),
                    pattern=patterns[int(pattern_probs[i].argmax())],
                    pattern_probability=float(pattern_probs[i].max()),
                    slide_patches=len(rows),
                )
            )
    return result


def pattern_fractions(pattern_probs: np.ndarray, patterns: tuple[str, ...]) -> dict[str, float]:
    """Share of patches (rows of (N, P)) whose most likely pattern is each one."""
    if len(pattern_probs) == 0:
        return {}
    counts = np.bincount(pattern_probs.argmax(-1), minlength=len(patterns))
    return {p: float(c / len(pattern_probs)) for p, c in zip(patterns, counts)}


def predict(loaded: LoadedFusionModel, inputs: CaseInputs, kb: KnowledgeBase, *, top_patches: int = 8) -> FusionOutput:
    """Calibrated predictions and attributions for one case; `top_patches` per slide."""
    check_knowledge(loaded.pathway_ids, kb)
    config = loaded.config
    tensors, ood = screen_ood(loaded, build_features(inputs, kb, config.inputs))
    present = tensors.present()
    used = [m for m in loaded.model.modalities if present[m]]
    if not used:
        reads = ", ".join(loaded.model.modalities)
        raise InputError(MANIFEST, "modalities", f"no usable modality (the model reads {reads})")
    loaded.model.eval()
    batch = collate([tensors])
    with torch.enable_grad():  # the imaging attribution needs gradients even when the caller is in no_grad
        if "imaging" in batch.values:
            batch.values["imaging"].requires_grad_(True)
        forward = loaded.model(batch)
        attribution = {}
        if "imaging" in used:
            names = list(config.inputs.imaging.features)
            attribution = habitat_attribution(forward, config.tasks[0], names, tensors.values["imaging"])
    weights = forward.modality_weights[0].detach()
    n = len(tensors.bag)
    attention = forward.patch_attention[0, :n].detach().numpy()
    pattern_probs = torch.softmax(forward.pattern_logits[0, :n], dim=-1).detach().numpy()
    return FusionOutput(
        model_name=config.name,
        model_version=config.version,
        weights_sha256=loaded.weights_sha256,
        predictions=[task_prediction(t, forward.outputs[t.name][0], loaded.calibration) for t in config.tasks],
        modalities_used=used,
        modality_contributions={m: float(weights[i]) for i, m in enumerate(loaded.model.modalities) if m in used},
        patch_attention=most_attended_patches(attention, pattern_probs, tensors.bag, config.patterns, top_patches),
        slide_attention=slide_attention(attention, tensors.bag),
        habitat_attribution=attribution,
        pattern_fractions=pattern_fractions(pattern_probs, config.patterns),
        fusion_head=ATTENTION_MIL,
        attribution_methods=ATTRIBUTION_METHODS,
        ood=ood,
    )
