"""The literature's fusion heads (fusion_models/fusion_heads) as one model family: `glioma_heads`.

`evchain train --head NAME` trains a deep ensemble of the registered head NAME on the glioma
tasks (task_heads types: classification, survival), calibrates each task by its head type on a
calibration split and writes one torch checkpoint carrying the family, the config (which head,
which modalities, which tasks) and the calibration. `evchain report --checkpoint FILE` loads it
by content and `predict` maps it onto the common `FusionOutput`: calibrated predictions, and the
head's interpretation (modality weights, patch and pathway-to-patch attention, node and time-point
attention) averaged over the members, with `attribution_methods` saying where each came from.
"""

from __future__ import annotations

import hashlib
import io
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor
from tqdm import tqdm

from fusion_models.card import LIMITATIONS as CARD_LIMITATIONS
from fusion_models.card import model_card, write_card
from fusion_models.conformal import ConformalSets
from fusion_models.features import HABITATS, PathologySpec, patch_bag
from fusion_models.fusion_heads import HeadConfig, HeadInputs, Interpretation, collate, fusion_head_names, head_case
from fusion_models.fusion_heads.attribution import habitat_occlusion, modality_occlusion
from fusion_models.fusion_heads.base import create_fusion_head
from fusion_models.fusion_heads.inputs import PATHWAYS, labelled_examples
from fusion_models.fusion_heads.tcga import MODALITIES as LABELLED_COHORT_MODALITIES
from fusion_models.fusion_heads.tcga import tcga_head_data
from fusion_models.fusion_heads.trainer import Ensemble, TrainSettings
from fusion_models.gates import InputNeeds, PatchStats
from fusion_models.inference import MANIFEST, check_knowledge, most_attended_patches, pattern_fractions, slide_attention
from fusion_models.inputs import CaseInputs
from fusion_models.model import INTENDED_USE
from fusion_models.neural_family import GLIOMA_TASKS
from fusion_models.registry import ModelFamily, TrainingData, register_model_family
from fusion_models.task_heads import TaskCalibration, TaskSpec, task_head
from fusion_models.task_heads.fitting import calibration_record
from fusion_models.train import MIN_CASES, TrainResult, knowledge_record
from fusion_models.training_common import HELDOUT_FRACTIONS, SPLIT_ROLES, single_thread, split_indices
from knowledge.sources import KnowledgeBase, load_knowledge
from schemas.common import MODALITIES, TISSUE_PATTERNS, Modality
from schemas.errors import InputError
from schemas.fusion import FusionOutput, PathwayPatchAttention
from toolkit.atomic import atomic_write_bytes

CHECKPOINT_FORMAT = "evidencechain.fusion_head_checkpoint/1"
DEFAULT_HEAD = "dyam"
LIMITATIONS = (
    *(line for line in CARD_LIMITATIONS if not line.startswith(("The OOD detector", "Modality contributions"))),
    "No model-side out-of-distribution detector: only the input gates screen a case's inputs.",
    "Modality contributions are the head's modality weights (attention, learned or evidential), or for a head "
    "without them occlusion shares; habitat attribution is occlusion. They show what the fusion relied on, "
    "not causality.",
)


class HeadFamilyConfig(BaseModel):
    """The family's variant: the head to train by default (its modalities, tasks, sizes) and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    description: str
    head: HeadConfig
    pathology: PathologySpec = Field(description="Patch encoder whose features the heads read (checked per case).")
    members: int = Field(default=3, ge=1, description="Deep-ensemble size (seeds).")
    modality_dropout: float = Field(default=0.3, ge=0, lt=1)
    licence: str = "Apache-2.0"
    intended_use: str = INTENDED_USE

    @property
    def tasks(self) -> tuple[TaskSpec, ...]:
        return self.head.tasks


@dataclass
class LoadedHeads:
    config: HeadFamilyConfig
    ensemble: Ensemble
    conformal: dict[str, ConformalSets]
    pathway_ids: dict[str, str]
    weights_sha256: str


def checkpoint_bytes(
    name: str, config: HeadFamilyConfig, ensemble: Ensemble, conformal: dict[str, ConformalSets],
    knowledge: dict[str, Any],
) -> bytes:
    """Family, config (with the trained head), every member's weights and each task's calibration."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "family": name,
        "config": config.model_dump_json(),
        "members": [m.state_dict() for m in ensemble.members],
        "task_calibration": {task: c.to_dict() for task, c in ensemble.calibration.items()},
        "conformal": {task: c.to_dict() for task, c in conformal.items()},
        "knowledge": knowledge,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _mean(values: Iterable[Tensor | None]) -> Tensor | None:
    values = list(values)
    return None if values[0] is None else torch.stack(values).mean(0)


def mean_interpretation(parts: list[Interpretation]) -> Interpretation:
    """The members' interpretations averaged field by field (averages of distributions stay distributions)."""
    first = parts[0]
    fields = ("modality_weights", "region_attention", "patch_attention", "pathway_patch_attention",
              "node_attention", "timepoint_attention")
    averaged = {f: _mean(getattr(p, f) for p in parts) for f in fields}
    # Pattern probabilities are averaged, and kept as log-probabilities (logits whose softmax is the mean).
    probabilities = _mean(None if p.pattern_logits is None else p.pattern_logits.softmax(-1) for p in parts)
    pattern_logits = None if probabilities is None else probabilities.log()
    return Interpretation(first.modalities, node_names=first.node_names, pattern_logits=pattern_logits, **averaged)


def _shares(values: dict[str, float]) -> dict[str, float]:
    """|values| as shares summing to 1 ({} when all are 0)."""
    total = sum(abs(v) for v in values.values())
    return {k: abs(v) / total for k, v in values.items()} if total > 0 else {}


class FusionHeadFamily(ModelFamily):
    suffix = ".pt"

    def __init__(self, config: HeadFamilyConfig):
        self.config = config

    def fusion_heads(self) -> tuple[str, ...]:
        default = self.config.head.head
        return (default, *(h for h in fusion_head_names() if h != default))

    # ---- training --------------------------------------------------------------------------------

    def _head_config(self, head: str | None, modalities: tuple[Modality, ...], where: str) -> HeadConfig:
        head = head or self.config.head.head
        if head not in fusion_head_names():
            known = ", ".join(self.fusion_heads())
            raise InputError("--head", "head", f"{self.name} has fusion heads {known}, not {head!r}")
        try:
            return HeadConfig.model_validate({**self.config.head.model_dump(), "head": head, "modalities": modalities})
        except ValidationError as error:  # a head that needs modalities the data has not
            raise InputError(where, "modalities", error.errors()[0]["msg"]) from None

    def train(
        self, out: Path, data: TrainingData, *, epochs: int, seed: int, head: str | None = None, progress: bool = True
    ) -> TrainResult:
        started = time.perf_counter()
        kb = load_knowledge(data.knowledge)
        if data.cases is not None:
            config = self._head_config(head, self.config.head.modalities, data.description)
            items = tqdm(data.cases, desc="features", disable=not progress)
            cases, y = labelled_examples(items, config.tasks, kb, self.config.pathology.embed_dim)
        else:  # a labelled cohort folder: genomics and age only
            config = self._head_config(head, LABELLED_COHORT_MODALITIES, str(data.folder))
            dim = self.config.pathology.embed_dim
            cases, y = tcga_head_data(data.folder, config.tasks, kb, dim, progress=progress)
        if len(cases) < MIN_CASES:
            raise InputError(data.description, "cases", f"need at least {MIN_CASES} training cases, got {len(cases)}")
        x = collate(cases)
        index = split_indices(len(cases), HELDOUT_FRACTIONS, seed)
        splits = {name: (x.select(rows), y.select(rows)) for name, rows in index.items()}
        settings = TrainSettings(epochs=epochs, modality_dropout=self.config.modality_dropout)
        with single_thread():
            ensemble, report = Ensemble.train(config, splits, members=self.config.members, settings=settings, seed=seed)
        trained = self.config.model_copy(update={"head": config})
        knowledge = knowledge_record(kb, PATHWAYS)
        payload = checkpoint_bytes(self.name, trained, ensemble, report["conformal"], knowledge)
        atomic_write_bytes(Path(out), payload)
        sizes = {name: len(rows) for name, rows in index.items()}
        training = {
            "description": data.description,
            "fusion_head": config.head,
            "modalities": list(config.modalities),
            "ensemble_members": len(ensemble.members),
            "n_cases": len(cases),
            "splits": sizes,
            "split_roles": SPLIT_ROLES,
            "seed": seed,
            "epochs_run": [f.epochs_run for f in ensemble.fits],
            "best_epoch": [f.best_epoch for f in ensemble.fits],
        }
        calibration = calibration_record(report["conformal"], report["records"])
        metrics = {"evaluation": report["metrics"], "calibration": calibration}
        card = model_card(
            trained, inputs={"modalities": list(config.modalities), "pathology": self.config.pathology.model_dump()},
            weights_sha256=hashlib.sha256(payload).hexdigest(), metrics=metrics, training=training, knowledge=knowledge,
            limitations=LIMITATIONS,
        )
        return TrainResult(
            Path(out), write_card(Path(out), card), report["metrics"], sizes,
            max(f.epochs_run for f in ensemble.fits), statistics.median_low(f.best_epoch for f in ensemble.fits),
            time.perf_counter() - started,
        )

    # ---- loading ---------------------------------------------------------------------------------

    def load(self, path: Path, payload: dict[str, Any], raw: bytes) -> LoadedHeads:
        if payload.get("format") != CHECKPOINT_FORMAT:
            found = payload.get("format")
            raise InputError(str(path), "format", f"{self.name} reads {CHECKPOINT_FORMAT}, not {found!r}")
        try:
            config = HeadFamilyConfig.model_validate_json(payload["config"])
            members = []
            for state in payload["members"]:
                member = create_fusion_head(config.head)
                member.load_state_dict(state)
                members.append(member.eval())
            stored = payload["task_calibration"]
            calibration: dict[str, TaskCalibration] = {
                t.name: task_head(t.kind).calibration_from_dict(stored[t.name]) for t in config.tasks
            }
            conformal = {task: ConformalSets.from_dict(c) for task, c in payload["conformal"].items()}
            pathway_ids = dict(payload["knowledge"]["pathway_ids"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise InputError(str(path), "checkpoint", f"malformed fusion-head checkpoint: {error!r}") from None
        return LoadedHeads(config, Ensemble(members, calibration, []), conformal, pathway_ids,
                           hashlib.sha256(raw).hexdigest())

    def input_needs(self, loaded: LoadedHeads) -> InputNeeds:
        """Patch statistics are the members' shared patch standardiser (training split), when they read patches."""
        stats = None
        if "pathology" in loaded.config.head.modalities:
            standardiser = loaded.ensemble.members[0].encoders.standardisers["patches"]
            stats = PatchStats(standardiser.mean.numpy().copy(), standardiser.std.numpy().copy())
        return InputNeeds(model=loaded.config.name, patch_stats=stats)

    def config_of(self, loaded: LoadedHeads) -> HeadFamilyConfig:
        return loaded.config

    def reads(self, config: HeadFamilyConfig | None = None) -> tuple[Modality, ...]:
        return tuple((config or self.config).head.modalities)

    # ---- prediction ------------------------------------------------------------------------------

    def predict(self, loaded: LoadedHeads, inputs: CaseInputs, kb: KnowledgeBase, *, top_patches: int) -> FusionOutput:
        check_knowledge(loaded.pathway_ids, kb)
        config, ensemble = loaded.config, loaded.ensemble
        head = config.head
        # Features of another encoder are refused here, not mixed in (the bag maps attention back to slides).
        bag = patch_bag(inputs, config.pathology) if "pathology" in head.modalities else None
        case = head_case(inputs, kb, config.pathology.embed_dim)
        present = dict(zip(MODALITIES, case.present(), strict=True))
        used = [m for m in head.modalities if present[m]]
        if not used:
            reads = ", ".join(head.modalities)
            raise InputError(MANIFEST, "modalities", f"no usable modality (the model reads {reads})")
        x = collate([case])
        parts = ensemble.member_outputs(x)
        outputs = {t.name: task_head(t.kind).ensemble(t, [p.outputs[t.name] for p in parts]) for t in head.tasks}
        predictions = [
            task_head(t.kind).to_prediction(
                t, outputs[t.name][0].numpy(), ensemble.calibration[t.name], loaded.conformal.get(t.name)
            )
            for t in head.tasks
        ]
        interpretation = mean_interpretation([p.interpretation for p in parts])
        methods: dict[str, str] = {}
        explained = self._explained(head.tasks[0])
        contributions = self._modality_contributions(ensemble, x, interpretation, used, explained, methods)
        return FusionOutput(
            model_name=config.name,
            model_version=config.version,
            weights_sha256=loaded.weights_sha256,
            predictions=predictions,
            modalities_used=used,
            modality_contributions=contributions,
            habitat_attribution=self._habitat_attribution(ensemble, x, explained, methods),
            **self._patches(interpretation, bag, top_patches, methods),
            node_attention=self._nodes(interpretation, methods),
            timepoint_attention=self._timepoints(interpretation, inputs, methods),
            fusion_head=head.head,
            ensemble_members=len(ensemble.members),
            attribution_methods=methods,
        )

    @staticmethod
    def _explained(task: TaskSpec):
        """What occlusion explains: the first task's attribution target (its head type says which scalar)."""
        head = task_head(task.kind)
        return lambda out: torch.stack([head.attribution_target(task, o) for o in out[task.name]])

    def _modality_contributions(self, ensemble, x, interpretation, used, explained, methods) -> dict[str, float]:
        weights = interpretation.modality_weights
        if weights is not None:
            named = dict(zip(interpretation.modalities, weights[0].tolist(), strict=True))
            methods["modality_contributions"] = (
                f"the {ensemble.config.head} head's modality weights, mean of {len(ensemble.members)} members"
            )
        else:  # a head without modality weights (early fusion): ask it by masking each modality
            drops = torch.stack([modality_occlusion(m, x, explained)[0] for m in ensemble.members]).mean(0)
            named = dict(zip(MODALITIES, drops.tolist(), strict=True))
            methods["modality_contributions"] = (
                "occlusion: |change of the first task's attribution target| when the modality is masked, "
                f"mean of {len(ensemble.members)} members, as shares"
            )
        return _shares({m: named.get(m, 0.0) for m in used})

    @staticmethod
    def _habitat_attribution(ensemble, x: HeadInputs, explained, methods) -> dict[str, float]:
        if "imaging" not in ensemble.config.modalities or not bool(x.region_mask[:, -1].any()):
            return {}
        drops = torch.stack([habitat_occlusion(m, x, explained)[0] for m in ensemble.members]).mean(0)
        present = x.region_mask[0, -1]
        methods["habitat_attribution"] = (
            "occlusion: |change of the first task's attribution target| when the habitat of the latest scan is "
            f"masked, mean of {len(ensemble.members)} members, as shares"
        )
        measured = {h: float(d) for h, d, p in zip(HABITATS, drops, present, strict=True) if p}
        return dict(sorted(_shares(measured).items()))

    @staticmethod
    def _patches(interpretation: Interpretation, bag, top_patches: int, methods) -> dict[str, Any]:
        if interpretation.patch_attention is None or bag is None or not len(bag):
            return {}
        n = len(bag)
        attention = interpretation.patch_attention[0, :n].numpy()
        pattern_probs = interpretation.pattern_logits[0, :n].exp().numpy()
        methods["patch_attention"] = "the head's patch attention (MIL, co-attention or pathway-to-patch), member mean"
        result = {
            "patch_attention": most_attended_patches(attention, pattern_probs, bag, TISSUE_PATTERNS, top_patches),
            "slide_attention": slide_attention(attention, bag),
            "pattern_fractions": pattern_fractions(pattern_probs, TISSUE_PATTERNS),
        }
        if interpretation.pathway_patch_attention is not None:
            per_pathway = interpretation.pathway_patch_attention[0, :, :n].numpy()
            entries = []
            for pathway, row in zip(PATHWAYS, per_pathway, strict=True):
                if row.sum() <= 0:  # the case has no score for this pathway: its token attended to nothing
                    continue
                i = int(row.argmax())
                slide = bag.slides[int(bag.slide[i])]
                entries.append(PathwayPatchAttention(
                    pathway=pathway, slide_id=slide.slide_id, patch_index=int(bag.row[i]),
                    coord_level0=tuple(int(c) for c in bag.coords[i]), patch_size_level0=slide.patch_size_level0,
                    attention=float(min(row[i], 1.0)), slide_patches=n,
                ))
            result["pathway_patch_attention"] = entries
            methods["pathway_patch_attention"] = "each pathway token's attention over the patches, member mean"
        return result

    @staticmethod
    def _nodes(interpretation: Interpretation, methods) -> dict[str, float]:
        if interpretation.node_attention is None:
            return {}
        methods["node_attention"] = "graph read-out attention over modality and habitat nodes, member mean"
        named = dict(zip(interpretation.node_names, interpretation.node_attention[0].tolist(), strict=True))
        return {k: v for k, v in named.items() if v > 0}

    @staticmethod
    def _timepoints(interpretation: Interpretation, inputs: CaseInputs, methods) -> dict[str, float]:
        if interpretation.timepoint_attention is None:
            return {}
        scans = [t.name for t in inputs.imaging if t.mask is not None]
        weights = interpretation.timepoint_attention[0].tolist()[-len(scans):] if scans else []
        if sum(weights) <= 0:
            return {}
        methods["timepoint_attention"] = "the latest scan's attention over the scans and their changes, member mean"
        return dict(zip(scans, weights, strict=True))


@register_model_family("glioma_heads")
def glioma_heads() -> FusionHeadFamily:
    return FusionHeadFamily(
        HeadFamilyConfig(
            name="glioma_heads",
            version="1.0.0",
            description=(
                "Adult diffuse glioma: a registered fusion head from the literature (early, late, evidential, "
                "Pathomic, MCAT, SurvPath, DyAM, orthogonal, graph, longitudinal) over MRI habitats, H&E patches, "
                "genomics and age; deep ensemble, temperature-calibrated."
            ),
            head=HeadConfig(head=DEFAULT_HEAD, tasks=GLIOMA_TASKS),
            pathology=PathologySpec(encoder="hed_texture", embed_dim=32, magnification=20.0, patch_size=256),
        )
    )
