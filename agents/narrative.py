"""The report's narrative: sections of sentences in English and Chinese, each citing its evidence.

Sentences come from the phrase tables in prompts/ (one phrase per sentence kind and
language), so numbers are formatted once and read the same in both languages. Each
sentence carries its phrase key and the evidence it cites, and leaves here unverified
(`grounded=False`): the claim verifier (agents/consistency/verifier.py) decides.

`SECTION_ORDER` is the one place that orders a report: what the board must decide first,
then the conclusions, then the evidence. A new section is a key there, a builder in
`_BUILDERS` and a `section.<key>` phrase; a section with no sentences is left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from agents.consistency.confidence import uncertainty_phrases
from agents.consistency.growth import growth_phrase
from agents.consistency.grounding import (
    ACTIVITY_DECIMALS,
    ATTENTION_DECIMALS,
    BITS_DECIMALS,
    GISTIC_DECIMALS,
    MM_DECIMALS,
    PROBABILITY_DECIMALS,
    VAF_DECIMALS,
    VOLUME_DECIMALS,
    fmt,
    fmt_percent,
    fmt_probability,
)
from agents.clinical.profile import RULES_BY_ID
from agents.consistency.rules import FlagText
from agents.evidence.risk import RISK_SCALE, SURVIVAL_BANDS, conclusion_survival
from agents.evidence.spatial import RANO_VOLUMETRIC
from agents.evidence.votes import evidence_votes
from agents.sampling import enhancing_tumour, latest_units, rationale_key
from prompts import FieldValue, Listing, Phrase, Term, localise
from schemas.report import (
    Conclusion,
    ConsistencyFlag,
    EvidenceChainReport,
    HistologyEvidence,
    LocalisedText,
    MechanismEvidence,
    NarrativeSection,
    Sentence,
    SpatialEvidence,
)

SECTION_ORDER = ("decisions", "diagnosis", "rationale", "markers", "growth", "spatial", "histology", "mechanism", "plan", "uncertainty")
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
# Marker statuses that leave a test for the board to order.
OPEN_MARKER_STATUSES = ("not_tested", "predicted")


def build_narrative(
    report: EvidenceChainReport,
    flag_texts: Mapping[str, FlagText] | None = None,
    basis_texts: Mapping[str, LocalisedText] | None = None,
    programme_of: Mapping[str, str] | None = None,
) -> list[NarrativeSection]:
    """The sections of `SECTION_ORDER` that have something to say.

    `flag_texts` and `basis_texts` (from `check_consistency`) give flags and confidence bases their
    Chinese; a flag or basis without one, or edited since, is quoted in its English wording.
    `programme_of` (pathway id -> programme, from the knowledge base) lets a pathway's vote be stated."""
    builders: dict[str, Callable[[], list[Sentence]]] = {
        "decisions": lambda: _decisions(report, flag_texts or {}),
        "diagnosis": lambda: _diagnosis(report, basis_texts or {}, programme_of or {}),
        "markers": lambda: _markers(report),
        "growth": lambda: _growth(report),
        "spatial": lambda: _spatial(report),
        "histology": lambda: _histology(report),
        "mechanism": lambda: _mechanism(report),
        "plan": lambda: _plan(report),
        "uncertainty": lambda: _uncertainty(report),
    }
    sections = [
        NarrativeSection(key=key, title=localise(Phrase(f"section.{key}")), sentences=builders[key]())
        for key in SECTION_ORDER if key in builders
    ]
    return [s for s in sections if s.sentences]


def place_sections(base: Sequence[NarrativeSection], sections: Sequence[NarrativeSection]) -> list[NarrativeSection]:
    """`base` with `sections` put at their `SECTION_ORDER` place, each replacing the section of its key."""
    by_key = {s.key: s for s in base} | {s.key: s for s in sections}
    rank = {key: i for i, key in enumerate(SECTION_ORDER)}
    return sorted(by_key.values(), key=lambda s: rank.get(s.key, len(rank)))


def _sentence(phrase: Phrase, evidence: Sequence[str]) -> Sentence:
    """A template sentence citing `evidence`; unverified until the claim verifier has checked it."""
    return Sentence(text=localise(phrase), evidence=list(dict.fromkeys(evidence)), grounded=False, phrase=phrase.key)


def _quoted(text: str) -> LocalisedText:
    """Text kept in its own words (a reviewer's edit, a loader's reason) and quoted where it is not translated."""
    return localise(Phrase("quote.source", {"text": text}))


def _flag_ids(report: EvidenceChainReport, kind: str, modality: str | None = None) -> list[str]:
    return [
        f.id for f in report.consistency_flags
        if f.kind == kind and (modality is None or modality in f.modalities)
    ]


def _absent(report: EvidenceChainReport, modality: str, missing_key: str, empty_key: str) -> list[Sentence]:
    """The one sentence of an empty section: the modality is missing (citing its flag), or yielded nothing."""
    if modality in report.modalities.missing:
        return [_sentence(Phrase(missing_key), _flag_ids(report, "missing_modality", modality))]
    return [_sentence(Phrase(empty_key), _flag_ids(report, "unusable_input", modality))]


def _decisions(report: EvidenceChainReport, flag_texts: Mapping[str, FlagText]) -> list[Sentence]:
    """What the board must decide: every flag with its action, most severe first, then the tests not done."""
    # sorted() is stable: flags keep their F order within a severity
    ordered = sorted(report.consistency_flags, key=lambda f: SEVERITY_ORDER[f.severity])
    sentences = []
    for flag in ordered:
        text = _flag_text(flag, flag_texts)
        phrase = Phrase("decisions.flag", {
            "severity": Term("severity", flag.severity), "kind": Term("flag_kind", flag.kind),
            "message": text.message, "action": text.action,
        })
        sentences.append(_sentence(phrase, [flag.id, *flag.evidence]))
    open_markers = [m for m in report.markers if m.status in OPEN_MARKER_STATUSES]
    if open_markers:
        names = Listing(tuple(Term("marker", m.marker) for m in open_markers))
        evidence = [i for m in open_markers for i in m.evidence]
        # the numbers in a marker's name (1p/19q, +7/-10) are the marker's own, not values to ground
        sentences.append(_sentence(Phrase("decisions.missing_tests", {"markers": names}), evidence))
    if not sentences:
        sentences.append(_sentence(Phrase("decisions.none"), []))
    return sentences


def _diagnosis(
    report: EvidenceChainReport, basis_texts: Mapping[str, LocalisedText], programme_of: Mapping[str, str]
) -> list[Sentence]:
    """Each conclusion with its probability, confidence and why; then the evidence against it."""
    sentences = _integrated_diagnosis(report) + _clinical_context(report)
    evidence = (report.spatial_evidence, report.histology_evidence, report.mechanism_evidence, dict(programme_of))
    for c in report.conclusions:
        if c.diagnosis_layers is not None:  # stated above, layer by layer
            continue
        basis = basis_texts.get(c.task)
        fields: dict[str, FieldValue] = {
            "task": Term("task", c.task), "label": Term("label", c.label),
            "p": fmt_probability(c.probability), "confidence": Term("confidence", c.confidence),
            "basis": basis if basis is not None and basis.en == c.confidence_basis else _quoted(c.confidence_basis),
        }
        survival = conclusion_survival(c)
        if survival is not None and c.score is not None:
            sentences.append(_risk_sentence(c, survival))
        else:
            phrase = Phrase("summary.conclusion", fields)
            sentences.append(_sentence(phrase, c.supporting_evidence))
        sentences += _against(c, evidence_votes(c.task, *evidence))
    return sentences


def _against(c: Conclusion, votes: Mapping[str, frozenset[str]]) -> list[Sentence]:
    """The evidence against a conclusion, grouped by what it reads as instead (agents/evidence/votes.py):
    a sentence says what its evidence shows, never more."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for eid in c.contradicting_evidence:
        groups.setdefault(tuple(sorted(votes.get(eid, ()))), []).append(eid)
    fields: dict[str, FieldValue] = {"task": Term("task", c.task), "label": Term("label", c.label)}
    return [
        _sentence(Phrase("summary.against", fields | {"labels": Listing(tuple(Term("label", v) for v in labels), "list")}), ids)
        if labels else _sentence(Phrase("summary.against_listed", fields), ids)
        for labels, ids in groups.items()
    ]


def _integrated_diagnosis(report: EvidenceChainReport) -> list[Sentence]:
    """The WHO CNS5 integrated diagnosis, the most probable candidate where the tests leave it open, and the
    rules behind it (the tests still missing are decisions, stated there)."""
    dx = next((c for c in report.conclusions if c.task == "diagnosis" and c.diagnosis_layers is not None), None)
    if dx is None:
        return []
    layers = dx.diagnosis_layers
    grade: FieldValue = Term("word", "not_assigned") if layers.cns_who_grade is None else str(layers.cns_who_grade)
    sentences = [_sentence(Phrase("diagnosis.integrated", {
        "label": Term("label", dx.label), "p": fmt_probability(dx.probability),
        "confidence": Term("confidence", dx.confidence), "grade": grade,
    }), dx.supporting_evidence)]
    top = max(dx.class_probabilities, key=dx.class_probabilities.__getitem__)
    if top != dx.label:
        sentences.append(_sentence(Phrase("diagnosis.most_probable", {
            "label": Term("label", top), "p": fmt_probability(dx.class_probabilities[top]),
        }), []))
    for rule in (RULES_BY_ID[r.split(":", 1)[0]] for r in layers.rules_applied):
        citations = Listing(tuple(Term("citation", c) for c in rule.citations), "comma")
        sentences.append(_sentence(Phrase("diagnosis.rule", {
            "rule": Term("rule", rule.id), "citation": citations,
        }), []))
    return sentences


def _markers(report: EvidenceChainReport) -> list[Sentence]:
    """The markers table says each status; a sentence only where a result needs its caveat read out."""
    return [
        _sentence(Phrase("marker.r132h_note"), m.evidence)
        for m in report.markers
        if m.source == "immunohistochemistry" and m.status == "not_detected" and "R132H" in (m.value or "")
    ]


def _clinical_context(report: EvidenceChainReport) -> list[Sentence]:
    """Age, sex and quoted presenting symptoms, when the clinical modality carried weight in the fusion."""
    context = report.clinical_context
    if context is None or not context.carries_weight or context.clinical_weight is None:
        return []
    parts: list[FieldValue] = []
    if context.age_band is not None:
        parts.append(Phrase("clinical.age", {"age": context.age_band}))
    if context.sex is not None:
        parts.append(Phrase("clinical.sex", {"sex": Term("sex", context.sex)}))
    if context.presenting_symptoms is not None:
        parts.append(Phrase("clinical.symptoms", {"text": context.presenting_symptoms}))
    phrase = Phrase("summary.clinical_context", {
        "weight": fmt(context.clinical_weight, PROBABILITY_DECIMALS), "details": Listing(tuple(parts), "comma"),
    })
    return [_sentence(phrase, [])]


def _risk_sentence(c: Conclusion, survival: float) -> Sentence:
    """Estimated 2-year survival, the band that names the risk group, and the scale of the score."""
    bands = SURVIVAL_BANDS
    band = Phrase(f"risk.band.{c.risk_group}", {
        "lo": fmt_percent(bands.high_risk_below), "hi": fmt_percent(bands.low_risk_from),
    })
    phrase = Phrase("summary.conclusion_risk", {
        "survival": fmt_percent(survival), "group": Term("label", c.risk_group or "insufficient_evidence"),
        "band": band, "confidence": Term("confidence", c.confidence), "score": fmt(c.score or 0.0, PROBABILITY_DECIMALS),
        "hr": fmt(RISK_SCALE.hazard_ratio_per_step, 1), "years": Term("years", str(RISK_SCALE.horizon_years)),
    })
    return _sentence(phrase, c.supporting_evidence)


def _growth(report: EvidenceChainReport) -> list[Sentence]:
    """Each longitudinal change up front, with its RANO-style volumetric reading and that reading's caveat."""
    rano = RANO_VOLUMETRIC
    sentences = []
    for s in (s for s in report.spatial_evidence if s.unit_level == "longitudinal"):
        reading = Phrase(f"rano.{s.rano_volumetric_range or 'not_assessable'}", {
            "vp": fmt(rano.progression_volume_percent, 0), "pp": fmt(rano.progression_product_percent, 0),
            "vr": fmt(rano.response_volume_percent, 0), "pr": fmt(rano.response_product_percent, 0),
        })
        phrase = Phrase("summary.growth", {"growth": growth_phrase(s), "reading": reading})
        sentences.append(_sentence(phrase, [s.id]))
    return sentences


def _spatial_clauses(s: SpatialEvidence) -> list[FieldValue]:
    clauses: list[FieldValue] = []
    if s.volume_ml is not None:
        clauses.append(f"{fmt(s.volume_ml, VOLUME_DECIMALS)} mL")
    if s.fraction_of_lesion is not None and s.unit_level != "lesion":
        clauses.append(Phrase("clause.fraction", {"pct": fmt_percent(s.fraction_of_lesion)}))
    if s.ratio_to_lesion is not None:
        clauses.append(Phrase("clause.ratio_to_lesion", {"r": fmt(s.ratio_to_lesion, PROBABILITY_DECIMALS)}))
    if s.attribution is not None:
        clauses.append(Phrase("clause.attribution", {"pct": fmt_percent(s.attribution)}))
    if s.hemisphere is not None:
        lobe: FieldValue = Term("lobe", s.lobe) if s.lobe else Term("lobe", "none")
        clauses.append(Phrase("clause.location", {"side": Term("hemisphere", s.hemisphere), "lobe": lobe}))
    if s.centroid_mm is not None:
        x, y, z = (fmt(c, MM_DECIMALS) for c in s.centroid_mm)
        clauses.append(Phrase("clause.centroid", {"x": x, "y": y, "z": z}))
    if s.timepoint_date is not None:
        clauses.append(Phrase("clause.scan_date", {"date": s.timepoint_date.isoformat()}))
    return clauses


def _spatial_sentence(s: SpatialEvidence) -> Sentence:
    return _sentence(Phrase("spatial.unit", {
        "phenotype": Term("phenotype", s.phenotype), "unit": s.unit_id, "level": Term("unit_level", s.unit_level),
        "details": Listing(tuple(_spatial_clauses(s)), "comma"),
    }), [s.id])


def _spatial(report: EvidenceChainReport) -> list[Sentence]:
    if not report.spatial_evidence:
        return _absent(report, "imaging", "spatial.none_missing", "spatial.none")
    return [_spatial_sentence(s) for s in report.spatial_evidence if s.unit_level != "longitudinal"]


def _number(value: float) -> str:
    return fmt(value, 0) if float(value).is_integer() else fmt(value, 1)


def _finding_phrase(h: HistologyEvidence) -> Phrase:
    """A pathologist's structured read, one findings.json field per sentence."""
    v = h.value
    if h.pattern == "who_grade" and isinstance(v, (int, float)) and not isinstance(v, bool):
        return Phrase("histology.who_grade", {"grade": _number(v)})
    if h.pattern in ("necrosis", "microvascular_proliferation") and isinstance(v, bool):
        presence = Term("presence", str(v).lower())  # 'true' / 'false', never Python's True / False
        return Phrase("histology.feature", {"pattern": Term("pattern", h.pattern), "presence": presence})
    if h.pattern == "cellularity":
        return Phrase("histology.cellularity", {"value": Term("cellularity", str(v))})
    if h.pattern == "ki67_percent" and isinstance(v, (int, float)) and not isinstance(v, bool):
        return Phrase("histology.ki67", {"pct": f"{_number(v)}%"})
    if h.pattern == "histology":
        # Quoted as written, less its closing full stop: the sentence around the quote supplies one.
        return Phrase("histology.diagnosis", {"text": str(v).strip().rstrip(".。")})
    if h.pattern == "sampled_region":
        region = Term("phenotype", str(v))
        if h.linked_spatial_unit:
            return Phrase("histology.sampled_region_linked", {"region": region, "unit": h.linked_spatial_unit})
        return Phrase("histology.sampled_region", {"region": region})
    return Phrase("histology.other", {"pattern": Term("pattern", h.pattern), "value": str(v)})


def _patch_phrase(h: HistologyEvidence) -> Phrase:
    clauses: list[FieldValue] = []
    if h.attention_vs_uniform is not None and h.slide_patches is not None:
        clauses.append(Phrase("clause.attention_vs_uniform", {
            "r": fmt(h.attention_vs_uniform, 1), "n": str(h.slide_patches),
        }))
    elif h.attention is not None:
        clauses.append(Phrase("clause.attention", {"a": fmt(h.attention, ATTENTION_DECIMALS)}))
    if isinstance(h.value, float):
        clauses.append(Phrase("clause.pattern_probability", {"p": fmt_probability(h.value)}))
    if h.bbox_level0 is not None:
        x, y, w, hh = (str(c) for c in h.bbox_level0)
        clauses.append(Phrase("clause.bbox", {"x": x, "y": y, "w": w, "h": hh}))
    if h.linked_spatial_unit:
        clauses.append(Phrase("clause.linked_unit", {"unit": h.linked_spatial_unit}))
    return Phrase("histology.patch", {
        "pattern": Term("pattern", h.pattern), "slide": h.slide_id or h.source.file,
        "details": Listing(tuple(clauses), "comma"),
    })


def _summary_phrase(h: HistologyEvidence) -> Phrase:
    if isinstance(h.value, (int, float)) and not isinstance(h.value, bool):
        return Phrase("histology.summary", {"pattern": Term("pattern", h.pattern), "pct": fmt_percent(float(h.value))})
    return Phrase("histology.other", {"pattern": Term("pattern", h.pattern), "value": str(h.value)})


_HISTOLOGY_PHRASES: dict[str, Callable[[HistologyEvidence], Phrase]] = {
    "pathologist_findings": _finding_phrase,
    "patch_attention": _patch_phrase,
    "pattern_summary": _summary_phrase,
}


def _histology(report: EvidenceChainReport) -> list[Sentence]:
    if not report.histology_evidence:
        return _absent(report, "pathology", "histology.none_missing", "histology.none")
    return [_sentence(_HISTOLOGY_PHRASES[h.origin](h), [h.id]) for h in report.histology_evidence]


def _mechanism_clauses(m: MechanismEvidence) -> list[FieldValue]:
    clauses: list[FieldValue] = []
    if m.kind == "pathway_activity":
        clauses.append(Term("direction", m.direction))
        if m.activity is not None:
            clauses.append(Phrase("clause.activity", {"a": fmt(m.activity, ACTIVITY_DECIMALS, signed=True)}))
    elif m.direction == "altered":  # a called event; a 'neutral' driver item states an absence (e.g. IDH wild-type)
        clauses.append(Term("mechanism_kind", m.kind))
        if m.activity is not None and m.kind == "copy_number":
            clauses.append(Phrase("clause.gistic", {"v": fmt(m.activity, GISTIC_DECIMALS)}))
        elif m.activity is not None:
            clauses.append(Phrase("clause.vaf", {"v": fmt(m.activity, VAF_DECIMALS)}))
    if m.driver_genes:
        clauses.append(Phrase("clause.genes", {"genes": Listing(tuple(m.driver_genes), "list")}))
    if m.knowledge_refs:
        clauses.append(Phrase("clause.knowledge", {"refs": Listing(tuple(m.knowledge_refs), "list")}))
    return clauses


def _event_name(m: MechanismEvidence) -> FieldValue:
    """The pathway or event named in every language: programmes by id, driver events from their genes."""
    gene = m.driver_genes[0] if m.driver_genes else m.pathway_id.partition(":")[2]
    if m.kind == "pathway_activity":
        return Term("pathway", m.pathway_id)
    if m.kind == "copy_number":
        event = "amplification" if (m.activity or 0.0) > 0 else "homozygous_deletion"
        return Phrase(f"event.{event}", {"gene": gene})
    if m.direction == "neutral":  # the absence of a called mutation, e.g. IDH wild-type
        return Phrase("event.no_mutation", {"genes": "/".join(m.driver_genes)})
    # The variants are the part of the name inside its brackets ('PTEN mutation (R130Q)').
    variants = m.pathway_name.partition("(")[2].rstrip(")")
    return Phrase("event.mutation", {"gene": gene, "variants": variants or "–"})


def _mechanism(report: EvidenceChainReport) -> list[Sentence]:
    if not report.mechanism_evidence:
        return _absent(report, "genomics", "mechanism.none_missing", "mechanism.none")
    return [
        _sentence(Phrase("mechanism.item", {
            "name": _event_name(m), "id": m.pathway_id, "details": Listing(tuple(_mechanism_clauses(m)), "comma"),
        }), [m.id])
        for m in report.mechanism_evidence
    ]


def _flag_text(flag: ConsistencyFlag, flag_texts: Mapping[str, FlagText]) -> FlagText:
    text = flag_texts.get(flag.id)
    if text is not None and text.message.en == flag.message and text.action.en == flag.recommended_action:
        return text
    # Edited after the check (or raised elsewhere): there is no translation of the new wording.
    return FlagText(message=_quoted(flag.message), action=_quoted(flag.recommended_action))


def _plan(report: EvidenceChainReport) -> list[Sentence]:
    """Why there is a plan or none (the statement), then one sentence per target."""
    sentences = []
    if report.sampling_statement is not None:
        phrase = Phrase("plan.statement", {"text": report.sampling_statement})
        sentences.append(_sentence(phrase, []))
    enhancing = enhancing_tumour(latest_units(report.spatial_evidence))
    sentences += [
        _sentence(Phrase("plan.target", {
            "rank": str(t.rank), "phenotype": Term("phenotype", t.phenotype), "unit": t.unit_id,
            "eig": fmt(t.expected_information_gain, BITS_DECIMALS),
            "rationale": Term("rationale", rationale_key(t.phenotype, enhancing)),
        }), t.evidence)
        for t in report.sampling_plan
    ]
    return sentences


def _uncertainty(report: EvidenceChainReport) -> list[Sentence]:
    return [
        _sentence(phrase, ids)
        for phrase, ids in uncertainty_phrases(report.modalities, report.consistency_flags, report.conclusions)
    ]
