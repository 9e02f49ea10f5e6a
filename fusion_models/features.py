"""The one place that turns `CaseInputs` into model inputs: named feature vectors and a patch bag.

Every vector modality becomes `values` plus `known` (1 where the value was measured);
an unknown value is 0 and its `known` flag tells the model so, instead of imputing.
Which features a model uses is part of its config (`InputSpec`), so a new model
(e.g. genomics-only) chooses its inputs without touching this module.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor

from fusion_models.genomics.pathways import score_pathways
from fusion_models.imaging.habitats import PHENOTYPE_LABELS, intensity_ratio, normal_appearing
from fusion_models.inputs import CaseInputs, GenomicsInput, ImagingTimepoint
from knowledge.sources import PROGRAMMES, KnowledgeBase
from schemas.case import CaseManifest, PathologyFindings
from schemas.common import MODALITIES, Modality
from schemas.errors import InputError

HABITATS: tuple[str, ...] = ("enhancing", "necrotic_core", "non_enhancing_core", "oedema")
# GISTIC thresholded calls: +2 high-level amplification, -2 homozygous deletion.
AMPLIFIED, DELETED = 2.0, -2.0


@dataclass(frozen=True)
class ImagingFeature:
    """An imaging feature and the phenotype its attribution is credited to ('lesion' = whole lesion)."""

    name: str
    phenotype: str


IMAGING_FEATURES: tuple[ImagingFeature, ...] = (
    ImagingFeature("lesion_log1p_volume_ml", "lesion"),
    *(ImagingFeature(f"{h}_log1p_volume_ml", h) for h in HABITATS),
    *(ImagingFeature(f"{h}_fraction", h) for h in HABITATS),
    ImagingFeature("enhancing_present", "enhancing"),
    ImagingFeature("necrotic_core_present", "necrotic_core"),
    ImagingFeature("t1c_ratio_enhancing_vs_normal", "enhancing"),
    ImagingFeature("flair_ratio_oedema_vs_normal", "oedema"),
    # log(V_last / V_previous) rather than percent: symmetric for shrinkage and growth, no outlier tail.
    ImagingFeature("lesion_growth_log_ratio", "lesion"),
)
IMAGING_PHENOTYPE: dict[str, str] = {f.name: f.phenotype for f in IMAGING_FEATURES}

CELLULARITY_LEVEL = {"low": 0.0, "moderate": 1.0, "high": 2.0}


def _number(value: float | bool | None) -> float | None:
    return None if value is None else float(value)


FINDINGS_FEATURES: dict[str, Callable[[PathologyFindings], float | None]] = {
    "who_grade": lambda f: _number(f.who_grade),
    "necrosis": lambda f: _number(f.necrosis),
    "microvascular_proliferation": lambda f: _number(f.microvascular_proliferation),
    "cellularity": lambda f: _number(CELLULARITY_LEVEL.get(f.cellularity)),
    "ki67_percent": lambda f: _number(f.ki67_percent),
}
CLINICAL_FEATURES: dict[str, Callable[[CaseManifest], float | None]] = {
    "age_years": lambda m: m.age_years(),
}
DRIVER_MUTATIONS: tuple[str, ...] = ("IDH1", "ATRX", "TP53", "CIC", "FUBP1", "EGFR", "PTEN", "NF1")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CnvEvent(_Spec):
    """A copy-number event read from cnv.tsv: amplification (value >= threshold) or deletion (<=)."""

    gene: str
    kind: Literal["amplification", "deletion"]
    threshold: float

    @property
    def name(self) -> str:
        return f"{self.gene}_{self.kind}"

    def present(self, value: float) -> bool:
        return value >= self.threshold if self.kind == "amplification" else value <= self.threshold


class ImagingSpec(_Spec):
    features: tuple[str, ...] = tuple(f.name for f in IMAGING_FEATURES)

    @field_validator("features")
    @classmethod
    def _known(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        return _check_names(names, IMAGING_PHENOTYPE, "imaging feature")


class PathologySpec(_Spec):
    encoder: str = Field(description="Registered patch encoder whose features the model reads.")
    embed_dim: int = Field(gt=0, description="Patch feature size.")
    magnification: float = Field(gt=0, description="Objective magnification of the patches.")
    patch_size: int = Field(gt=0, description="Patch side, level-0 pixels.")
    findings: tuple[str, ...] = tuple(FINDINGS_FEATURES)

    @field_validator("findings")
    @classmethod
    def _known(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        return _check_names(names, FINDINGS_FEATURES, "findings field")


class GenomicsSpec(_Spec):
    programmes: tuple[str, ...] = PROGRAMMES
    mutations: tuple[str, ...] = DRIVER_MUTATIONS
    cnv_events: tuple[CnvEvent, ...] = (
        CnvEvent(gene="EGFR", kind="amplification", threshold=AMPLIFIED),
        CnvEvent(gene="CDKN2A", kind="deletion", threshold=DELETED),
    )
    expression_genes: tuple[str, ...] = Field(default=(), description="Genes whose expression enters directly.")
    min_pathway_genes: int = Field(default=5, gt=0, description="Fewer measured set genes -> score unknown.")

    @field_validator("programmes")
    @classmethod
    def _known(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        return _check_names(names, PROGRAMMES, "programme")

    def feature_names(self) -> list[str]:
        return [
            *(f"pathway_{p}" for p in self.programmes),
            *(f"{g}_mutation" for g in self.mutations),
            *(e.name for e in self.cnv_events),
            *(f"{g}_expression" for g in self.expression_genes),
        ]


class ClinicalSpec(_Spec):
    features: tuple[str, ...] = tuple(CLINICAL_FEATURES)

    @field_validator("features")
    @classmethod
    def _known(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        return _check_names(names, CLINICAL_FEATURES, "clinical feature")


class InputSpec(_Spec):
    """What a model reads per modality; None = the model has no branch for it."""

    imaging: ImagingSpec | None = None
    pathology: PathologySpec | None = None
    genomics: GenomicsSpec | None = None
    clinical: ClinicalSpec | None = None

    def modalities(self) -> tuple[Modality, ...]:
        return tuple(m for m in MODALITIES if getattr(self, m) is not None)

    def vector_names(self) -> dict[str, list[str]]:
        """Feature names per vector block; 'findings' is the pathology modality's vector."""
        blocks: dict[str, list[str]] = {}
        if self.imaging:
            blocks["imaging"] = list(self.imaging.features)
        if self.pathology:
            blocks["findings"] = list(self.pathology.findings)
        if self.genomics:
            blocks["genomics"] = self.genomics.feature_names()
        if self.clinical:
            blocks["clinical"] = list(self.clinical.features)
        return blocks


BLOCK_MODALITY: dict[str, Modality] = {
    "imaging": "imaging",
    "findings": "pathology",
    "genomics": "genomics",
    "clinical": "clinical",
}


def _check_names(names: tuple[str, ...], allowed: Collection[str], what: str) -> tuple[str, ...]:
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; known: {list(allowed)}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate {what} names in {list(names)}")
    return names


# ---- per-modality raw values: name -> value, only for what was measured -------------------------


def imaging_values(timepoints: Sequence[ImagingTimepoint]) -> dict[str, float]:
    """Features of the latest time point with a mask (growth: vs the one before it)."""
    with_mask = [t for t in timepoints if t.mask is not None]
    if not with_mask:
        return {}
    latest = with_mask[-1]
    stats = {s.phenotype: s for s in latest.habitats}
    lesion = stats["lesion"]
    values = {"lesion_log1p_volume_ml": float(np.log1p(lesion.volume_ml))}
    for h in HABITATS:
        stat = stats.get(h)
        values[f"{h}_log1p_volume_ml"] = float(np.log1p(stat.volume_ml)) if stat else 0.0
        values[f"{h}_fraction"] = float(stat.fraction_of_lesion) if stat else 0.0
    values["enhancing_present"] = float(values["enhancing_fraction"] > 0)
    values["necrotic_core_present"] = float(values["necrotic_core_fraction"] > 0)
    normal = normal_appearing(latest.mask, latest.sequences.values())
    ratios = {
        "t1c_ratio_enhancing_vs_normal": ("t1c", "enhancing"),
        "flair_ratio_oedema_vs_normal": ("flair", "oedema"),
    }
    for name, (sequence, habitat) in ratios.items():
        image = latest.sequences.get(sequence)
        if image is not None:
            ratio = intensity_ratio(image, np.isin(latest.mask, PHENOTYPE_LABELS[habitat]), normal)
            if ratio is not None:
                values[name] = ratio
    if len(with_mask) >= 2:
        before = with_mask[-2].habitats[0]
        if before.volume_ml > 0 and lesion.volume_ml > 0:
            values["lesion_growth_log_ratio"] = float(np.log(lesion.volume_ml / before.volume_ml))
    return values


def findings_values(findings: PathologyFindings | None, names: Sequence[str]) -> dict[str, float]:
    if findings is None:
        return {}
    values = {name: FINDINGS_FEATURES[name](findings) for name in names}
    return {k: v for k, v in values.items() if v is not None}


def genomics_values(genomics: GenomicsInput | None, spec: GenomicsSpec, kb: KnowledgeBase) -> dict[str, float]:
    if genomics is None:
        return {}
    values: dict[str, float] = {}
    if genomics.expression is not None and len(genomics.expression):
        pathways = {p: kb.by_programme(p) for p in spec.programmes}
        scored = score_pathways(
            genomics.expression, [pw for pw in pathways.values() if pw is not None], min_genes=spec.min_pathway_genes
        )
        by_id = {s.pathway_id: s for s in scored}
        for programme, pathway in pathways.items():
            score = by_id.get(pathway.id) if pathway else None
            if score is not None and score.assessable:
                values[f"pathway_{programme}"] = score.score
        for gene in spec.expression_genes:
            value = genomics.expression.get(gene)
            if value is not None and np.isfinite(value):
                values[f"{gene}_expression"] = float(value)
    if genomics.mutations is not None:
        mutated = set(genomics.mutations["gene"].astype(str))
        values.update({f"{g}_mutation": float(g in mutated) for g in spec.mutations})
    if genomics.cnv is not None:
        for event in spec.cnv_events:
            value = genomics.cnv.get(event.gene)
            if value is not None and np.isfinite(value):
                values[event.name] = float(event.present(float(value)))
    return values


def clinical_values(manifest: CaseManifest, names: Sequence[str]) -> dict[str, float]:
    values = {name: CLINICAL_FEATURES[name](manifest) for name in names}
    return {k: v for k, v in values.items() if v is not None}


# ---- tensors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlideRef:
    slide_id: str
    file: str
    patch_size_level0: int


@dataclass
class PatchBag:
    """All patches of a case's slides, concatenated; `slide[i]`/`row[i]` say where patch i came from."""

    features: Tensor  # (N, D_patch)
    slides: list[SlideRef]
    slide: np.ndarray  # (N,) index into slides
    row: np.ndarray  # (N,) row in that slide's feature matrix
    coords: np.ndarray  # (N, 2) level-0 px

    @classmethod
    def empty(cls, dim: int) -> PatchBag:
        none = np.zeros(0, dtype=np.int64)
        return cls(torch.zeros(0, dim), [], none, none, np.zeros((0, 2), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.features)


@dataclass
class CaseTensors:
    """One case's model inputs, unstandardised."""

    case_id: str
    values: dict[str, Tensor]  # block -> (D,)
    known: dict[str, Tensor]  # block -> (D,), 1.0 where measured
    bag: PatchBag

    def present(self) -> dict[str, bool]:
        """Modality -> whether anything of it was measured."""
        present = {BLOCK_MODALITY[b]: bool(k.any()) for b, k in self.known.items()}
        if "pathology" in present:
            present["pathology"] = present["pathology"] or len(self.bag) > 0
        return present


def _vector(values: dict[str, float], names: Sequence[str]) -> tuple[Tensor, Tensor]:
    known = torch.tensor([name in values for name in names], dtype=torch.float32)
    return torch.tensor([values.get(name, 0.0) for name in names], dtype=torch.float32), known


def patch_bag(inputs: CaseInputs, spec: PathologySpec) -> PatchBag:
    """Concatenate the slides' patch features; features from another encoder are refused, not mixed in."""
    for slide in inputs.slides:
        if slide.encoder != spec.encoder or slide.features.shape[1] != spec.embed_dim:
            raise InputError(
                slide.file, "features",
                f"{slide.encoder} features of size {slide.features.shape[1]}; the model reads "
                f"{spec.encoder} features of size {spec.embed_dim}",
            )
    if not inputs.slides:
        return PatchBag.empty(spec.embed_dim)
    sizes = [len(slide.features) for slide in inputs.slides]
    return PatchBag(
        features=torch.from_numpy(np.concatenate([np.asarray(s.features, dtype=np.float32) for s in inputs.slides])),
        slides=[SlideRef(s.slide_id, s.file, int(s.patch_size_level0)) for s in inputs.slides],
        slide=np.repeat(np.arange(len(sizes)), sizes),
        row=np.concatenate([np.arange(n) for n in sizes]),
        coords=np.concatenate([np.asarray(s.coords, dtype=np.int64).reshape(-1, 2) for s in inputs.slides]),
    )


def build_features(inputs: CaseInputs, kb: KnowledgeBase, spec: InputSpec) -> CaseTensors:
    """Raw (unstandardised) model inputs of one case; the model standardises with its training stats."""
    extract = {
        "imaging": lambda: imaging_values(inputs.imaging),
        "findings": lambda: findings_values(inputs.findings, spec.pathology.findings),
        "genomics": lambda: genomics_values(inputs.genomics, spec.genomics, kb),
        "clinical": lambda: clinical_values(inputs.manifest, spec.clinical.features),
    }
    values, known = {}, {}
    for block, names in spec.vector_names().items():
        values[block], known[block] = _vector(extract[block](), names)
    bag = patch_bag(inputs, spec.pathology) if spec.pathology else PatchBag.empty(0)
    return CaseTensors(inputs.manifest.case_id, values, known, bag)


@dataclass
class Batch:
    """Padded model inputs of several cases."""

    values: dict[str, Tensor]  # block -> (B, D)
    known: dict[str, Tensor]  # block -> (B, D)
    present: dict[str, Tensor]  # modality -> (B,) bool
    patches: Tensor  # (B, N_max, D_patch), zero-padded
    patch_mask: Tensor  # (B, N_max) bool

    def __len__(self) -> int:
        return len(self.patch_mask)


def collate(cases: Sequence[CaseTensors]) -> Batch:
    """Stack vectors and pad patch bags of different sizes."""
    if not cases:
        raise ValueError("cannot collate an empty list of cases")
    presents = [c.present() for c in cases]
    n_max = max(len(c.bag) for c in cases)
    patches = torch.zeros(len(cases), n_max, cases[0].bag.features.shape[1])
    mask = torch.zeros(len(cases), n_max, dtype=torch.bool)
    for i, case in enumerate(cases):
        patches[i, : len(case.bag)] = case.bag.features
        mask[i, : len(case.bag)] = True
    return Batch(
        values={b: torch.stack([c.values[b] for c in cases]) for b in cases[0].values},
        known={b: torch.stack([c.known[b] for c in cases]) for b in cases[0].known},
        present={m: torch.tensor([p[m] for p in presents]) for m in presents[0]},
        patches=patches,
        patch_mask=mask,
    )
