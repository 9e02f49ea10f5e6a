"""Output contract: the evidence-chain report (`report.json`).

Key names follow DESIGN.md and are part of the contract. The validators enforce the
rules a tumour board relies on: ids are unique, every citation resolves, every
probability is a probability.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Literal

from pydantic import Field, model_validator

from schemas.common import Confidence, ContractModel, HabitatMethod, Modality, Phenotype, SourceRef
from schemas.fusion import Task

SCHEMA_VERSION = "1.0.0"

UnitLevel = Literal["lesion", "habitat", "margin_ring", "cell_neighbourhood", "longitudinal"]
FlagKind = Literal[
    "cross_modal_disagreement",
    "missing_modality",
    "unusable_input",
    "out_of_distribution",
    "ungrounded_claim",
    "sampling_mismatch",
    "significant_growth",
    "missing_test",
]
Severity = Literal["info", "warning", "critical"]
ReviewStatus = Literal["draft", "awaiting_review", "approved", "rejected"]
JSONValue = str | int | float | bool | list | dict | None


class ModelInfo(ContractModel):
    name: str = Field(description="Model or component name (registered name where there is a registry).")
    version: str = Field(description="Version string.")
    weights_sha256: str | None = Field(default=None, description="SHA-256 of the weights file, if any.")
    details: dict[str, str] = Field(
        default_factory=dict,
        description="How the model produced what the report reads: fusion head, ensemble size, attribution methods.",
    )


class LLMCall(ContractModel):
    """One structured call to a language model: what was asked of which model, and how it went."""

    agent: str = Field(description="Agent that made the call, e.g. 'drafting'.")
    backend: str = Field(description="Registered backend name: 'transformers', 'openai', ...")
    model: str = Field(description="Model folder name or served model name.")
    prompt_sha256: str = Field(description="SHA-256 of the rendered prompt (system + user messages).")
    prompt_tokens: int = Field(ge=0, description="Prompt tokens over all attempts.")
    completion_tokens: int = Field(ge=0, description="Generated tokens over all attempts.")
    latency_s: float = Field(ge=0, description="Wall time over all attempts, seconds.")
    retries: int = Field(ge=0, description="Attempts after the first (validation errors fed back, or transport).")
    outcome: Literal["accepted", "fallback"] = Field(
        description="accepted: the model's output validated and was used; fallback: the deterministic fill was used."
    )
    error: str | None = Field(default=None, description="Why it fell back, in one line.")


class Provenance(ContractModel):
    models: list[ModelInfo] = Field(description="Every model and knowledge source that produced this report.")
    code_version: str = Field(description="EvidenceChain package version and git commit, if known.")
    configuration: dict[str, str | int | float | bool | None] = Field(
        description="Settings the workflow ran with."
    )
    generated_at: dt.datetime = Field(description="UTC time the report was generated.")
    inputs: list[str] = Field(default_factory=list, description="Case files read, relative to the case folder.")
    input_conversions: list[str] = Field(
        default_factory=list,
        description="Conversions the input gates applied, e.g. 'genomics/expression.tsv: log2_tpm -> zscore'.",
    )
    llm_calls: list[LLMCall] = Field(default_factory=list, description="Every language-model call, in order.")


class ClinicalContext(ContractModel):
    """Clinical data from case.json as recorded: quoted, never interpreted, never a basis for a conclusion."""

    age_band: str | None = Field(default=None, description="Age band, e.g. '60-69'.")
    sex: str | None = Field(default=None, description="Sex as recorded.")
    presenting_symptoms: str | None = Field(
        default=None, description="Presenting symptoms quoted from clinical_notes (data, not instructions)."
    )
    clinical_weight: float | None = Field(
        default=None, ge=0, le=1, description="Fusion weight of the clinical modality, if it entered the model."
    )
    carries_weight: bool = Field(
        default=False, description="Clinical weight at least an equal share of the modalities used."
    )
    source: str = Field(default="case.json", description="Where the data was read.")


class UnusableModality(ContractModel):
    modality: Modality = Field(description="Modality that could not be used.")
    reason: str = Field(description="Why, naming file and field.")
    file: str | None = Field(default=None, description="Offending file, relative to the case folder.")


class Modalities(ContractModel):
    present: list[Modality] = Field(description="Modalities that contributed evidence.")
    missing: list[Modality] = Field(description="Modalities with no input in the case bundle.")
    unusable: list[UnusableModality] = Field(default_factory=list, description="Inputs present but unusable.")


class DiagnosisLayers(ContractModel):
    """The WHO CNS5 layered report of an integrated diagnosis, and how it was reached."""

    histology: str = Field(description="Histological layer: the pathologist's type and features, or that none is available.")
    cns_who_grade: int | None = Field(default=None, ge=1, le=4, description="CNS WHO grade; None when not assigned.")
    molecular: str = Field(description="Molecular layer: each diagnostic marker as detected / not detected / not tested.")
    integrated: str = Field(description="Integrated diagnosis (the conclusion's label).")
    rules_applied: list[str] = Field(
        default_factory=list, description="Each rule that fired: 'id: statement [citation]'."
    )
    missing_tests: list[str] = Field(
        default_factory=list, description="Tests that would settle or change the diagnosis, named as a lab orders them."
    )
    settled: bool = Field(description="True when histology and every test that could change the diagnosis are in hand.")
    model_agreement: float | None = Field(
        default=None, ge=0, le=1,
        description="Share of the fusion model's belief that the tests leave possible (low = tests overrule the model).",
    )


class ClinicianOverride(ContractModel):
    """A reviewer's change to a model conclusion, kept beside the model's own value in every rendering."""

    field: Literal["label", "confidence"] = Field(description="Which field the reviewer changed.")
    model_value: str = Field(description="What the model and rules concluded.")
    value: str = Field(description="What the reviewer set.")
    reviewer: str = Field(description="Who.")
    reason: str = Field(min_length=1, description="Why, in the reviewer's words.")
    time: dt.datetime = Field(description="UTC time.")


class Conclusion(ContractModel):
    task: Task = Field(description="Clinical question.")
    label: str = Field(description="Most probable label, or 'insufficient_evidence'.")
    probability: float = Field(ge=0, le=1, description="Calibrated probability of `label`.")
    class_probabilities: dict[str, float] = Field(description="Every candidate label -> calibrated probability.")
    score: float | None = Field(default=None, description="For risk: higher = worse prognosis.")
    risk_group: str | None = Field(default=None, description="For risk: low / intermediate / high.")
    confidence: Confidence = Field(description="Confidence after cross-modal checks.")
    confidence_basis: str = Field(description="Why this confidence: probability band and flags that lowered it.")
    modalities_used: list[Modality] = Field(description="Modalities the conclusion rests on.")
    supporting_evidence: list[str] = Field(default_factory=list, description="Evidence ids that support the label.")
    contradicting_evidence: list[str] = Field(default_factory=list, description="Evidence ids that argue against it.")
    prediction_set: list[str] = Field(
        default_factory=list, description="Split-conformal prediction set at `prediction_set_coverage`."
    )
    prediction_set_coverage: float | None = Field(
        default=None, ge=0, le=1, description="Target coverage of `prediction_set` (e.g. 0.9)."
    )
    diagnosis_layers: DiagnosisLayers | None = Field(
        default=None, description="For task 'diagnosis': histology, CNS WHO grade, molecular and integrated layers."
    )
    overrides: list[ClinicianOverride] = Field(
        default_factory=list, description="Reviewer changes to this conclusion, oldest first (empty = as concluded)."
    )

    @model_validator(mode="after")
    def _consistent_probabilities(self) -> "Conclusion":
        if any(not (0.0 <= p <= 1.0) for p in self.class_probabilities.values()):
            raise ValueError("class_probabilities must lie in [0, 1]")
        if self.class_probabilities and not math.isclose(sum(self.class_probabilities.values()), 1.0, abs_tol=1e-3):
            raise ValueError("class_probabilities must sum to 1")
        if self.label in self.class_probabilities and not math.isclose(
            self.class_probabilities[self.label], self.probability, abs_tol=1e-6
        ):
            raise ValueError("probability must equal class_probabilities[label]")
        return self


MarkerStatus = Literal["detected", "not_detected", "not_tested", "predicted", "not_assessed"]


class Marker(ContractModel):
    """One diagnostic marker of the cancer type, as tested (or not) in this case."""

    marker: str = Field(description="Marker, e.g. 'IDH1/2', '1p/19q codeletion', 'CDKN2A/B homozygous deletion'.")
    status: MarkerStatus = Field(description="detected / not_detected / not_tested / predicted (model) / not_assessed.")
    value: str | None = Field(default=None, description="Variant, copy-number value or stain result as reported.")
    source: Literal["mutation_call", "copy_number", "immunohistochemistry", "findings", "model", "none"] = Field(
        description="Where the status comes from; 'model' only with status 'predicted'."
    )
    evidence: list[str] = Field(default_factory=list, description="Evidence ids behind the status.")
    note: str = Field(default="", description="Caveat, e.g. 'a negative R132H stain does not exclude other IDH mutations'.")


Hemisphere = Literal["left", "right", "midline"]
Lobe = Literal["frontal", "temporal", "parietal", "occipital", "insular", "deep_grey_matter"]
RanoVolumetricRange = Literal["progression_range", "stable_range", "response_range"]


class SpatialEvidence(ContractModel):
    id: str = Field(description="Evidence id, unique in the report (S1, S2, ...).")
    unit_level: UnitLevel = Field(description="Spatial unit level (paper Table 2).")
    unit_id: str = Field(description="Stable id of the spatial unit, e.g. 'T1:enhancing'.")
    phenotype: Phenotype = Field(description="Imaging phenotype of the unit.")
    timepoint: str | None = Field(default=None, description="Imaging time point.")
    timepoint_date: dt.date | None = Field(default=None, description="Acquisition date of `timepoint`, from case.json.")
    volume_ml: float | None = Field(default=None, ge=0, description="Volume in mL from the mask and voxel spacing.")
    fraction_of_lesion: float | None = Field(
        default=None, ge=0, le=1, description="Share of the whole lesion volume; only for parts of the lesion."
    )
    ratio_to_lesion: float | None = Field(
        default=None, ge=0,
        description="Margin ring: ring volume / lesion volume. The ring lies outside the lesion, so this is a "
        "size ratio, not a share, and may exceed 1.",
    )
    centroid_mm: tuple[float, float, float] | None = Field(default=None, description="Centroid in scanner mm (RAS).")
    hemisphere: Hemisphere | None = Field(
        default=None, description="Side of the centroid (RAS x), stated only for images in MNI152 space."
    )
    lobe: Lobe | None = Field(default=None, description="Lobe of the centroid, stated only for images in MNI152 space.")
    location_basis: str | None = Field(default=None, description="How hemisphere and lobe were assigned.")
    change_ml: float | None = Field(default=None, description="Longitudinal: volume change since the previous time point.")
    change_percent: float | None = Field(default=None, description="Longitudinal: relative change, percent.")
    baseline_timepoint: str | None = Field(default=None, description="Longitudinal: the earlier time point compared.")
    baseline_date: dt.date | None = Field(default=None, description="Longitudinal: acquisition date of the earlier scan.")
    baseline_volume_ml: float | None = Field(default=None, ge=0, description="Longitudinal: lesion volume on the earlier scan.")
    interval_days: int | None = Field(default=None, ge=0, description="Longitudinal: days between the two scans (dated only).")
    change_ml_per_month: float | None = Field(
        default=None, description="Longitudinal: volume change per month (30.44 days), dated scans only."
    )
    rano_volumetric_range: RanoVolumetricRange | None = Field(
        default=None,
        description="Longitudinal: volumetric analogue of RANO's bidimensional thresholds (>= +40% volume ~ +25% "
        "product: progression range; <= -65% volume ~ -50% product: response range). An approximation, not a "
        "RANO assessment: RANO also needs clinical status, steroid dose and new lesions.",
    )
    attribution: float | None = Field(
        default=None, ge=0, le=1,
        description="Share of imaging-branch attribution (longitudinal: the model's attention to the scan it ends at).",
    )
    habitat_method: HabitatMethod | None = Field(
        default=None,
        description="Habitats: how the unit was delineated, 'brats_labels' (the label map) or 'kmeans_intensity' "
        "(k-means of z-scored sequence intensities inside a whole-tumour mask, clusters ranked by mean T1c, then FLAIR).",
    )
    features_ref: str | None = Field(
        default=None,
        description="Where this unit's radiomic features are: 'imaging_features.json#<unit>' beside report.json "
        "(written when the run computes imaging features).",
    )
    source: SourceRef = Field(description="Mask file and labels.")


class HistologyEvidence(ContractModel):
    id: str = Field(description="Evidence id, unique in the report (H1, H2, ...).")
    slide_id: str | None = Field(default=None, description="Slide or feature-file id; None for a findings.json read.")
    bbox_level0: tuple[int, int, int, int] | None = Field(
        default=None, description="x, y, width, height of the region, level-0 pixels."
    )
    attention: float | None = Field(default=None, ge=0, le=1, description="Attention-MIL weight of the region.")
    attention_vs_uniform: float | None = Field(
        default=None, ge=0, description="Attention x number of patches on the slide: 1 = uniform attention."
    )
    slide_patches: int | None = Field(default=None, ge=1, description="Number of patches on the slide (N of uniform 1/N).")
    pattern: str = Field(description="Histological pattern: necrosis, microvascular_proliferation, ...")
    value: str | bool | int | float | None = Field(default=None, description="Reported value (e.g. Ki-67 percent, grade).")
    origin: Literal["patch_attention", "pathologist_findings", "pattern_summary"] = Field(
        description="Model attention, a pathologist's structured read, or a slide-level pattern summary."
    )
    linked_spatial_unit: str | None = Field(default=None, description="unit_id of the imaging unit it was sampled from.")
    attended_by_pathways: list[str] = Field(
        default_factory=list,
        description="Pathways whose genomic token attended to this patch most (co-attention fusion heads).",
    )
    source: SourceRef = Field(description="Slide/feature file and patch, or findings.json field.")


class MechanismEvidence(ContractModel):
    id: str = Field(description="Evidence id, unique in the report (M1, M2, ...).")
    kind: Literal["pathway_activity", "driver_mutation", "copy_number"] = Field(description="Type of mechanism evidence.")
    pathway_id: str = Field(description="Knowledge-base pathway id, or MUT:/CNV: gene event id.")
    pathway_name: str = Field(description="Human-readable pathway or event name.")
    activity: float | None = Field(default=None, description="Single-sample rank score in [-0.5, 0.5], or event value.")
    direction: Literal["up", "down", "neutral", "altered"] = Field(description="Direction of activity.")
    driver_genes: list[str] = Field(default_factory=list, description="Genes driving the score.")
    knowledge_refs: list[str] = Field(default_factory=list, description="Knowledge-base entries retrieved for it.")
    source: SourceRef = Field(description="Genomics file and genes.")


class FlagDismissal(ContractModel):
    reviewer: str = Field(description="Who dismissed the flag.")
    reason: str = Field(min_length=1, description="Why it does not apply.")
    time: dt.datetime = Field(description="UTC time.")


class ConsistencyFlag(ContractModel):
    id: str = Field(description="Flag id, unique in the report (F1, F2, ...).")
    kind: FlagKind = Field(description="What kind of problem.")
    severity: Severity = Field(description="info, warning or critical.")
    modalities: list[Modality] = Field(description="Modalities involved.")
    evidence: list[str] = Field(default_factory=list, description="Evidence ids involved.")
    message: str = Field(description="Plain statement of the problem.")
    recommended_action: str = Field(description="What to do about it.")
    dismissal: FlagDismissal | None = Field(default=None, description="Set when a reviewer dismissed the flag.")


class SamplingTarget(ContractModel):
    rank: int = Field(ge=1, description="1 = sample first.")
    unit_id: str = Field(description="Spatial unit to sample.")
    phenotype: Phenotype = Field(description="Its imaging phenotype.")
    reason: str = Field(description="Why this region.")
    expected_information_gain: float = Field(
        ge=0, description="Expected reduction in the entropy of the integrated-diagnosis posterior, bits."
    )
    evidence: list[str] = Field(default_factory=list, description="Evidence ids behind the choice.")


class Uncertainty(ContractModel):
    level: Confidence = Field(description="Overall confidence of the report.")
    statement: str = Field(description="Plain statement of what is uncertain and why, naming missing modalities.")
    missing_modalities: list[Modality] = Field(default_factory=list, description="Modalities that were not available.")


class LocalisedText(ContractModel):
    en: str = Field(description="English.")
    zh: str = Field(description="Chinese (Simplified).")


class Sentence(ContractModel):
    text: LocalisedText = Field(description="The sentence in each language.")
    evidence: list[str] = Field(description="Evidence ids the sentence rests on.")
    grounded: bool = Field(default=True, description="True only when every claim passed the verifier against its cited evidence.")
    source: Literal["template", "language_model", "clinician"] = Field(
        default="template", description="Who wrote it: fixed templates, a language model, or a reviewer."
    )
    phrase: str | None = Field(
        default=None,
        description="Phrase-table key a template sentence was rendered from (None when a model or reviewer wrote it).",
    )


class NarrativeSection(ContractModel):
    key: str = Field(description="Section key: summary, spatial, histology, mechanism, consistency, plan, uncertainty.")
    title: LocalisedText = Field(description="Section title.")
    sentences: list[Sentence] = Field(description="Sentences in order.")


class AuditEntry(ContractModel):
    time: dt.datetime = Field(description="UTC time.")
    actor: str = Field(description="Who: 'system' or the reviewer.")
    action: Literal["drafted", "submitted", "edited", "approved", "rejected", "reopened", "commented"] = Field(
        description="What happened."
    )
    detail: str = Field(default="", description="Changed fields or comment.")
    field: str | None = Field(default=None, description="JSON path of the changed field, e.g. 'conclusions[grade].label'.")
    before: JSONValue = Field(default=None, description="Value before the change (JSON).")
    after: JSONValue = Field(default=None, description="Value after the change (JSON).")
    reason: str | None = Field(default=None, description="The reviewer's reason.")
    version: int = Field(default=1, ge=1, description="Report version the entry belongs to.")


class Review(ContractModel):
    status: ReviewStatus = Field(description="draft, awaiting_review, approved or rejected.")
    reviewer: str | None = Field(default=None, description="Reviewer, once reviewed.")
    version: int = Field(default=1, ge=1, description="Report version; an approved version is never changed.")
    supersedes_sha256: str | None = Field(
        default=None, description="SHA-256 of the approved report.json this version replaces, if any."
    )
    audit_trail: list[AuditEntry] = Field(default_factory=list, description="Every review action, oldest first.")


class GroundingSummary(ContractModel):
    """What the claim verifier checked in this report's narrative (every language)."""

    sentences_checked: int = Field(ge=0, description="Narrative sentences checked.")
    claims_checked: int = Field(ge=0, description="Claims extracted and checked against cited evidence.")
    claims_passed: int = Field(ge=0, description="Claims that passed.")
    sentences_stripped: int = Field(ge=0, description="Sentences removed or replaced because a claim failed.")


FigureKind = Literal[
    "mri_slices", "mri_longitudinal", "volume_over_time", "slide_heatmap", "molecular_panel",
    "pathway_activity", "calibration",
]


class Figure(ContractModel):
    """A picture rendered once per case into the case folder and embedded in report.html."""

    id: str = Field(pattern=r"^FIG[0-9]+$", description="Figure id, unique in the report (FIG1, FIG2, ...).")
    kind: FigureKind = Field(description="What it shows.")
    path: str = Field(description="PNG file relative to the case folder, e.g. 'figures/mri_slices.png'.")
    evidence: list[str] = Field(default_factory=list, description="Evidence ids the figure shows.")
    caption: LocalisedText = Field(description="Caption citing its evidence ids.")
    alt: LocalisedText = Field(description="Alt text describing the picture for a screen reader.")


class EvidenceChainReport(ContractModel):
    """The per-case evidence chain a tumour board reads line by line."""

    case_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Case id from case.json.")
    schema_version: Literal["1.0.0"] = Field(default=SCHEMA_VERSION, description="Report schema version.")
    cancer_type: str = Field(description="Cancer type from case.json.")
    provenance: Provenance = Field(description="What produced this report.")
    modalities: Modalities = Field(description="Present, missing and unusable modalities.")
    conclusions: list[Conclusion] = Field(description="One per clinical question answered.")
    spatial_evidence: list[SpatialEvidence] = Field(default_factory=list, description="Where: imaging units.")
    histology_evidence: list[HistologyEvidence] = Field(default_factory=list, description="What: tissue evidence.")
    mechanism_evidence: list[MechanismEvidence] = Field(default_factory=list, description="Why: pathways and drivers.")
    markers: list[Marker] = Field(default_factory=list, description="Diagnostic markers: tested, not tested or predicted.")
    modality_contributions: dict[str, float] = Field(description="Fusion weight per modality present.")
    clinical_context: ClinicalContext | None = Field(
        default=None, description="Age, sex and presenting symptoms as recorded in case.json."
    )
    consistency_flags: list[ConsistencyFlag] = Field(default_factory=list, description="Cross-modal checks that failed.")
    sampling_plan: list[SamplingTarget] = Field(default_factory=list, description="Sub-regions to sample, ranked.")
    sampling_statement: LocalisedText | None = Field(
        default=None, description="Why there is a plan or none (e.g. 'No further sampling is needed for diagnosis')."
    )
    uncertainty: Uncertainty = Field(description="Overall uncertainty statement.")
    narrative: list[NarrativeSection] = Field(default_factory=list, description="Sentences, each citing evidence ids.")
    grounding: GroundingSummary | None = Field(default=None, description="Claim verifier counts for the narrative.")
    figures: list[Figure] = Field(default_factory=list, description="Pictures of the evidence (MRI, slide, panel).")
    review: Review = Field(description="Review status and audit trail.")

    def evidence_ids(self) -> set[str]:
        return {
            e.id for e in [*self.spatial_evidence, *self.histology_evidence, *self.mechanism_evidence]
        }

    def citable_ids(self) -> set[str]:
        """What a sentence may cite: evidence items and consistency flags."""
        return self.evidence_ids() | {f.id for f in self.consistency_flags}

    @model_validator(mode="after")
    def _ids_and_citations(self) -> "EvidenceChainReport":
        ids = [e.id for e in [*self.spatial_evidence, *self.histology_evidence, *self.mechanism_evidence]]
        ids += [f.id for f in self.consistency_flags]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate evidence/flag ids: {dupes}")
        known = set(ids)
        cited: list[tuple[str, str]] = []
        for c in self.conclusions:
            cited += [(f"conclusions[{c.task}]", e) for e in [*c.supporting_evidence, *c.contradicting_evidence]]
        cited += [(f"consistency_flags[{f.id}]", e) for f in self.consistency_flags for e in f.evidence]
        cited += [(f"sampling_plan[{t.rank}]", e) for t in self.sampling_plan for e in t.evidence]
        cited += [(f"markers[{m.marker}]", e) for m in self.markers for e in m.evidence]
        cited += [(f"figures[{f.id}]", e) for f in self.figures for e in f.evidence]
        cited += [(f"narrative[{s.key}]", e) for s in self.narrative for sent in s.sentences for e in sent.evidence]
        missing = [f"{where} -> {e}" for where, e in cited if e not in known]
        if missing:
            raise ValueError(f"cited evidence ids that do not exist: {missing}")
        units = {s.unit_id for s in self.spatial_evidence}
        bad_links = [h.id for h in self.histology_evidence if h.linked_spatial_unit and h.linked_spatial_unit not in units]
        if bad_links:
            raise ValueError(f"histology evidence linked to unknown spatial units: {bad_links}")
        ranks = [t.rank for t in self.sampling_plan]
        if ranks != list(range(1, len(ranks) + 1)):
            raise ValueError("sampling_plan ranks must be 1..n in order")
        return self
