"""Cross-modal consistency rules: small pure functions over a draft report, chosen by name.

Each rule is `(ConsistencyContext) -> list[FlagDraft]` and is registered with
`@register_rule(name)`; `run_rules` runs them in registration order and numbers the
flags F1, F2, ... Messages and actions are phrase-table entries, so every flag exists
in English (the contract's text) and Chinese (for the narrative).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import get_args

from agents.consistency.grounding import VOLUME_DECIMALS, fmt, fmt_probability
from agents.consistency.signals import (
    IDH_WILD_TYPE_ID,
    event,
    grade4_markers,
    histology_high_grade,
    histology_low_grade,
    histology_read,
    histology_under_grades,
    idh_mutations,
    idh_status,
    imaging_grade_hint,
    largest_unit,
    latest_units,
    subtype_idh,
)
from agents.clinical.profile import HISTOLOGY_TEST, MOLECULAR_GRADE_RULES
from prompts import Listing, Phrase, Term, localise
from schemas.case import PathologyFindings
from schemas.common import MODALITIES, Modality
from schemas.fusion import ModalityOOD, Task
from schemas.report import (
    Conclusion,
    ConsistencyFlag,
    EvidenceChainReport,
    FlagKind,
    HistologyEvidence,
    LocalisedText,
    Marker,
    MechanismEvidence,
    Modalities,
    Severity,
    SpatialEvidence,
)
from toolkit.registry import Registry

ALL_TASKS: tuple[str, ...] = get_args(Task)
GRADE_TASKS = ("grade", "diagnosis")
# Specimen sites that can miss the most anaplastic tissue of an enhancing tumour.
UNDER_SAMPLING_SITES = ("oedema", "non_enhancing_core", "necrotic_core")
GRADE_FINDINGS = ("who_grade", "necrosis", "microvascular_proliferation")


@dataclass(frozen=True)
class ConsistencyContext:
    """What the rules read: the draft's evidence, conclusions and modalities, and the pathologist's read."""

    spatial: tuple[SpatialEvidence, ...]
    histology: tuple[HistologyEvidence, ...]
    mechanism: tuple[MechanismEvidence, ...]
    conclusions: tuple[Conclusion, ...]
    modalities: Modalities
    findings: PathologyFindings | None = None
    markers: tuple[Marker, ...] = ()
    ood: tuple[ModalityOOD, ...] = ()  # input gates and the model's detector (FusionOutput.ood)

    @classmethod
    def from_report(
        cls, report: EvidenceChainReport, findings: PathologyFindings | None, ood: Sequence[ModalityOOD] = ()
    ) -> ConsistencyContext:
        return cls(
            spatial=tuple(report.spatial_evidence),
            histology=tuple(report.histology_evidence),
            mechanism=tuple(report.mechanism_evidence),
            conclusions=tuple(report.conclusions),
            modalities=report.modalities,
            findings=findings,
            markers=tuple(report.markers),
            ood=tuple(ood),
        )

    def compromised_modalities(self) -> set[str]:
        """Modalities that are unusable or out of distribution: no conclusion resting on them is high."""
        return {u.modality for u in self.modalities.unusable} | {o.modality for o in self.ood if o.out_of_distribution}

    def conclusion(self, task: str) -> Conclusion | None:
        return next((c for c in self.conclusions if c.task == task), None)

    def evidence_ids(self) -> set[str]:
        return {e.id for e in (*self.spatial, *self.histology, *self.mechanism)}

    def findings_ids(self, *patterns: str) -> tuple[str, ...]:
        """Ids of the pathologist's-read evidence items for these findings fields."""
        return tuple(h.id for h in self.histology if h.origin == "pathologist_findings" and h.pattern in patterns)

    def tasks_citing(self, ids: Iterable[str]) -> tuple[str, ...]:
        wanted = set(ids)
        return tuple(
            c.task for c in self.conclusions if wanted & {*c.supporting_evidence, *c.contradicting_evidence}
        )


@dataclass(frozen=True)
class FlagDraft:
    """A flag before numbering; `affects` names the tasks whose confidence it lowers."""

    kind: FlagKind
    severity: Severity
    modalities: tuple[Modality, ...]
    evidence: tuple[str, ...]
    message: Phrase
    recommended_action: Phrase
    affects: tuple[str, ...] = ()


@dataclass(frozen=True)
class FlagText:
    """A flag's message and action in every language."""

    message: LocalisedText
    action: LocalisedText


@dataclass(frozen=True)
class RaisedFlag:
    """A numbered flag with the tasks it affects, its localised text and the rule that raised it."""

    flag: ConsistencyFlag
    affects: tuple[str, ...]
    text: FlagText
    rule: str


Rule = Callable[[ConsistencyContext], list[FlagDraft]]
_RULES: Registry[Rule] = Registry("consistency rule")


def register_rule(name: str) -> Callable[[Rule], Rule]:
    return _RULES.register(name)


def list_rules() -> list[str]:
    """Registered rule names, in the order they run."""
    return list(_RULES)


def run_rules(ctx: ConsistencyContext, names: Sequence[str] | None = None) -> list[RaisedFlag]:
    """Run the named rules (default: all, in order) and number their flags F1, F2, ..."""
    selected = list(_RULES) if names is None else list(names)
    unknown = [n for n in selected if n not in _RULES]
    if unknown:
        raise KeyError(f"unknown consistency rule(s) {unknown}; registered: {', '.join(_RULES)}")
    drafts = [(name, draft) for name in selected for draft in _RULES.get(name)(ctx)]
    return [_raise(f"F{i}", name, draft) for i, (name, draft) in enumerate(drafts, start=1)]


def _raise(flag_id: str, rule: str, draft: FlagDraft) -> RaisedFlag:
    text = FlagText(message=localise(draft.message), action=localise(draft.recommended_action))
    flag = ConsistencyFlag(
        id=flag_id,
        kind=draft.kind,
        severity=draft.severity,
        modalities=[m for m in MODALITIES if m in draft.modalities],
        evidence=list(dict.fromkeys(draft.evidence)),
        message=text.message.en,
        recommended_action=text.action.en,
    )
    return RaisedFlag(flag=flag, affects=draft.affects, text=text, rule=rule)


def _ml(unit: SpatialEvidence) -> str:
    # Rules only quote units from latest_units, which are all measured.
    return f"{fmt(unit.volume_ml or 0.0, VOLUME_DECIMALS)} mL"


def _histology_high_features(findings: PathologyFindings) -> list[Term | Phrase]:
    features: list[Term | Phrase] = []
    if findings.necrosis is True:
        features.append(Term("pattern", "necrosis"))
    if findings.microvascular_proliferation is True:
        features.append(Term("pattern", "microvascular_proliferation"))
    if findings.who_grade == 4:
        features.append(Phrase("feature.who_grade", {"grade": "4"}))
    return features


@register_rule("imaging_vs_histology")
def imaging_vs_histology(ctx: ConsistencyContext) -> list[FlagDraft]:
    """A necrotic enhancing lesion read as low grade, or necrosis/MVP/grade 4 with no enhancement."""
    hint, findings = imaging_grade_hint(ctx.spatial), ctx.findings
    if findings is None or hint is None:
        return []
    read_ids = ctx.findings_ids(*GRADE_FINDINGS)
    enhancing, necrotic = largest_unit(ctx.spatial, "enhancing"), largest_unit(ctx.spatial, "necrotic_core")
    if enhancing is not None and necrotic is not None and histology_low_grade(findings):
        fields = {
            "enhancing_unit": enhancing.unit_id, "enhancing_ml": _ml(enhancing),
            "necrotic_unit": necrotic.unit_id, "necrotic_ml": _ml(necrotic),
            "grade": str(findings.who_grade),
        }
        markers = grade4_markers(ctx.mechanism)
        if markers:  # genomics sides with imaging: it is part of the disagreement
            message = Phrase("flag.imaging_genomics_high_histology_low", {
                **fields, "markers": Listing(tuple(m.phrase for m in markers)),
            })
            evidence = (enhancing.id, necrotic.id, *(e for m in markers for e in m.evidence), *read_ids)
            modalities: tuple[Modality, ...] = ("imaging", "pathology", "genomics")
        else:
            message = Phrase("flag.imaging_high_histology_low", fields)
            evidence, modalities = (enhancing.id, necrotic.id, *read_ids), ("imaging", "pathology")
        settled = molecular_grade(ctx)
        if settled:  # the integrated diagnosis stands on molecular criteria; only the model's grade is in question
            action, affects = Phrase("action.review_specimen_grade_settled", {"grade": str(settled)}), ("grade",)
        else:
            action, affects = Phrase("action.review_against_imaging", {"unit": enhancing.unit_id}), GRADE_TASKS
        return [FlagDraft("cross_modal_disagreement", "warning", modalities, evidence, message, action, affects)]
    if hint == 2 and histology_high_grade(findings):
        features = Listing(tuple(_histology_high_features(findings)))
        message = Phrase("flag.histology_high_imaging_low", {"features": features})
        return [FlagDraft(
            "cross_modal_disagreement", "warning", ("imaging", "pathology"),
            (*read_ids, *(s.id for s in latest_units(ctx.spatial))),
            message, Phrase("action.check_enhancement"), GRADE_TASKS,
        )]
    return []


@register_rule("sampling_site")
def sampling_site(ctx: ConsistencyContext) -> list[FlagDraft]:
    """A specimen from outside the enhancing tumour that reads lower grade than the imaging suggests."""
    findings = ctx.findings
    enhancing = largest_unit(ctx.spatial, "enhancing")
    if (
        findings is None
        or findings.sampled_region not in UNDER_SAMPLING_SITES
        or enhancing is None
        or not histology_under_grades(ctx.spatial, findings)
    ):
        return []
    message = Phrase("flag.sampling_mismatch", {
        "region": Term("phenotype", findings.sampled_region), "grade": str(findings.who_grade),
        "unit": enhancing.unit_id, "ml": _ml(enhancing),
    })
    evidence = (enhancing.id, *ctx.findings_ids("sampled_region", "who_grade"))
    settled = molecular_grade(ctx)
    if settled:  # molecular criteria already fix the grade: no re-biopsy for grading (WHO CNS5)
        return [FlagDraft(
            "sampling_mismatch", "info", ("imaging", "pathology", "genomics"), evidence, message,
            Phrase("action.no_rebiopsy_grade_settled", {"grade": str(settled)}),
        )]
    return [FlagDraft(
        "sampling_mismatch", "critical", ("imaging", "pathology"), evidence,
        message, Phrase("action.resample_enhancing", {"unit": enhancing.unit_id}), GRADE_TASKS,
    )]


@register_rule("genomics_vs_morphology")
def genomics_vs_morphology(ctx: ConsistencyContext) -> list[FlagDraft]:
    """Grade-4 molecular markers while every morphological read available is low grade."""
    markers = grade4_markers(ctx.mechanism)
    hint, findings = imaging_grade_hint(ctx.spatial), ctx.findings
    imaging_low, histology_low = hint == 2, histology_low_grade(findings)
    morphology_not_low = (hint is not None and not imaging_low) or (histology_read(findings) and not histology_low)
    if not markers or not (imaging_low or histology_low) or morphology_not_low:
        return []
    reads: list[Phrase] = []
    modalities: list[Modality] = ["genomics"]
    evidence = [e for m in markers for e in m.evidence]
    if imaging_low:
        reads.append(Phrase("morphology.imaging_low"))
        modalities.append("imaging")
        evidence += [s.id for s in latest_units(ctx.spatial)]
    if histology_low:
        reads.append(Phrase("morphology.histology_low", {"grade": str(findings.who_grade)}))
        modalities.append("pathology")
        evidence += ctx.findings_ids(*GRADE_FINDINGS)
    message = Phrase("flag.molecular_high_morphology_low", {
        "markers": Listing(tuple(m.phrase for m in markers)), "morphology": Listing(tuple(reads), "clause"),
    })
    # When a molecular rule already fixed the integrated diagnosis, this disagreement is what the rule resolves.
    affects = ("grade",) if molecular_grade(ctx) else GRADE_TASKS
    return [FlagDraft(
        "cross_modal_disagreement", "warning", tuple(modalities), tuple(evidence),
        message, Phrase("action.molecular_review"), affects,
    )]


@register_rule("idh_vs_subtype")
def idh_vs_subtype(ctx: ConsistencyContext) -> list[FlagDraft]:
    """The mutation calls and the predicted molecular subtype disagree on IDH status."""
    subtype = next((c for c in ctx.conclusions if c.task == "molecular_subtype"), None)
    called = idh_status(ctx.mechanism)
    if subtype is None or called is None or subtype_idh(subtype.label) in (None, called):
        return []
    fields = {"label": Term("label", subtype.label), "p": fmt_probability(subtype.probability)}
    if called == "mutant":
        mutations = idh_mutations(ctx.mechanism)
        genes = Listing(tuple(g for m in mutations for g in m.driver_genes))
        message = Phrase("flag.idh_mutant_label_wildtype", {**fields, "genes": genes})
        action, evidence = Phrase("action.confirm_idh_mutant"), [m.id for m in mutations]
    else:
        message = Phrase("flag.idh_wildtype_label_mutant", fields)
        wild_type = event(ctx.mechanism, IDH_WILD_TYPE_ID)
        action, evidence = Phrase("action.confirm_idh_wildtype"), [wild_type.id] if wild_type else []
    return [FlagDraft(
        "cross_modal_disagreement", "warning", ("genomics", *subtype.modalities_used),
        (*evidence, *subtype.supporting_evidence), message, action, ("molecular_subtype", "diagnosis"),
    )]


@register_rule("grade_vs_pathology")
def grade_vs_pathology(ctx: ConsistencyContext) -> list[FlagDraft]:
    """A grade conclusion that differs from the pathologist's WHO grade, whatever else agrees with it."""
    grade, findings = ctx.conclusion("grade"), ctx.findings
    if grade is None or findings is None or findings.who_grade is None or grade.label == f"G{findings.who_grade}":
        return []
    if grade.label not in grade.class_probabilities:
        return []  # an abstention states no grade to disagree with
    high = grade4_markers(ctx.mechanism)
    modalities = ("pathology", *(m for m in grade.modalities_used if m != "clinical"), *(("genomics",) if high else ()))
    message = Phrase("flag.grade_differs_from_pathology", {
        "label": Term("label", grade.label), "p": fmt_probability(grade.probability),
        "grade": str(findings.who_grade),
    })
    settled = molecular_grade(ctx)
    action = (
        Phrase("action.review_grade_settled", {"grade": str(findings.who_grade), "settled": str(settled)}) if settled
        else Phrase("action.review_grade", {"grade": str(findings.who_grade)})
    )
    return [FlagDraft(
        "cross_modal_disagreement", "warning", modalities,
        (*ctx.findings_ids("who_grade"), *grade.supporting_evidence), message, action, ("grade",),
    )]


PATHOLOGIST_READ_PATTERNS = ("necrosis", "microvascular_proliferation")


@register_rule("patch_vs_read")
def patch_vs_read(ctx: ConsistencyContext) -> list[FlagDraft]:
    """A cited patch whose pattern the pathologist's read says is absent (e.g. necrosis: false)."""
    findings = ctx.findings
    if findings is None:
        return []
    drafts = []
    for pattern in PATHOLOGIST_READ_PATTERNS:
        if getattr(findings, pattern) is not False:
            continue
        patches = tuple(h.id for h in ctx.histology if h.origin == "patch_attention" and h.pattern == pattern)
        if patches:
            message = Phrase("flag.patch_contradicts_read", {
                "pattern": Term("pattern", pattern), "ids": Listing(patches, "comma"),
            })
            drafts.append(FlagDraft(
                "cross_modal_disagreement", "warning", ("pathology",), (*patches, *ctx.findings_ids(pattern)),
                message, Phrase("action.review_patches", {"pattern": Term("pattern", pattern)}), ("grade",),
            ))
    return drafts


@register_rule("missing_test")
def missing_test(ctx: ConsistencyContext) -> list[FlagDraft]:
    """The integrated diagnosis stays open (NOS) or changeable until a named test is done."""
    dx = ctx.conclusion("diagnosis")
    if dx is None or dx.diagnosis_layers is None or not dx.diagnosis_layers.missing_tests:
        return []
    tests = dx.diagnosis_layers.missing_tests
    modalities = ("genomics", *(("pathology",) if HISTOLOGY_TEST in tests else ()))
    items = tuple(Phrase("action.test_item", {"test": Term("test", t), "change": Term("test_consequence", t)})
                  for t in tests)
    message = Phrase("flag.missing_test", {
        "label": Term("label", dx.label), "tests": Listing(tuple(Term("test", t) for t in tests)),
    })
    return [FlagDraft("missing_test", "warning", modalities, (), message, Phrase("action.order_tests", {"items": Listing(items, "comma")}))]


def molecular_grade(ctx: ConsistencyContext) -> int | None:
    """CNS WHO grade fixed by a molecular rule of the integrated diagnosis (e.g. IDH-wildtype + EGFR: 4)."""
    dx = ctx.conclusion("diagnosis")
    if dx is None or dx.diagnosis_layers is None:
        return None
    fired = {r.split(":", 1)[0] for r in dx.diagnosis_layers.rules_applied}
    return dx.diagnosis_layers.cns_who_grade if fired & set(MOLECULAR_GRADE_RULES) else None


@register_rule("missing_modality")
def missing_modality(ctx: ConsistencyContext) -> list[FlagDraft]:
    """One informational flag per modality the case bundle lacks; confidence caps live in confidence.py."""
    return [
        FlagDraft("missing_modality", "info", (m,), (), Phrase(f"flag.missing.{m}"), Phrase(f"action.obtain.{m}"))
        for m in ctx.modalities.missing
    ]


@register_rule("unusable_input")
def unusable_input(ctx: ConsistencyContext) -> list[FlagDraft]:
    """An input that was present but could not be used: its reason (file and field) is the message."""
    return [
        FlagDraft(
            "unusable_input", "warning", (u.modality,), (),
            Phrase("flag.unusable", {"modality": Term("modality", u.modality), "reason": u.reason}),
            Phrase("action.fix_file", {"file": u.file, "modality": Term("modality", u.modality)}) if u.file
            else Phrase("action.fix_input", {"modality": Term("modality", u.modality)}),
            ALL_TASKS,
        )
        for u in ctx.modalities.unusable
    ]


@register_rule("citations_resolve")
def citations_resolve(ctx: ConsistencyContext) -> list[FlagDraft]:
    """Every evidence id a conclusion cites exists."""
    known = ctx.evidence_ids()
    drafts = []
    for c in ctx.conclusions:
        unknown = [e for e in dict.fromkeys([*c.supporting_evidence, *c.contradicting_evidence]) if e not in known]
        if unknown:
            message = Phrase("flag.unknown_citation", {
                "task": Term("task", c.task), "ids": Listing(tuple(unknown), "comma"),
            })
            drafts.append(FlagDraft(
                "ungrounded_claim", "warning", tuple(c.modalities_used), (), message,
                Phrase("action.fix_citation"), (c.task,),
            ))
    return drafts


@register_rule("evidence_has_source")
def evidence_has_source(ctx: ConsistencyContext) -> list[FlagDraft]:
    """Every evidence item names the input file it came from."""
    drafts = []
    for modality, items in _evidence_by_modality(ctx):
        unsourced = tuple(e.id for e in items if not e.source.file.strip())
        if unsourced:
            message = Phrase("flag.no_source", {"ids": Listing(unsourced, "comma")})
            drafts.append(FlagDraft(
                "ungrounded_claim", "warning", (modality,), unsourced, message, Phrase("action.trace_source"),
                ctx.tasks_citing(unsourced),
            ))
    return drafts


@register_rule("modalities_used_present")
def modalities_used_present(ctx: ConsistencyContext) -> list[FlagDraft]:
    """A conclusion may only rest on modalities the case has."""
    drafts = []
    for c in ctx.conclusions:
        absent = tuple(m for m in c.modalities_used if m not in ctx.modalities.present)
        if absent:
            message = Phrase("flag.absent_modality_used", {
                "task": Term("task", c.task), "modalities": Listing(tuple(Term("modality", m) for m in absent)),
            })
            drafts.append(FlagDraft(
                "ungrounded_claim", "warning", absent, (), message, Phrase("action.drop_absent_modality"), (c.task,),
            ))
    return drafts


@register_rule("evidence_has_modality")
def evidence_has_modality(ctx: ConsistencyContext) -> list[FlagDraft]:
    """No evidence of a modality the case lacks: with genomics only, no spatial claim may appear."""
    drafts = []
    for modality, items in _evidence_by_modality(ctx):
        if items and modality not in ctx.modalities.present:
            ids = tuple(e.id for e in items)
            message = Phrase("flag.evidence_without_modality", {
                "modality": Term("modality", modality), "ids": Listing(ids, "comma"),
            })
            drafts.append(FlagDraft(
                "ungrounded_claim", "critical", (modality,), ids, message,
                Phrase("action.remove_unbacked_evidence", {"modality": Term("modality", modality)}),
                ctx.tasks_citing(ids),
            ))
    return drafts


def _evidence_by_modality(
    ctx: ConsistencyContext,
) -> list[tuple[Modality, Sequence[SpatialEvidence | HistologyEvidence | MechanismEvidence]]]:
    return [("imaging", ctx.spatial), ("pathology", ctx.histology), ("genomics", ctx.mechanism)]
