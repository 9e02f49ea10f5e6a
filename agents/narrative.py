"""The report's narrative: sections of sentences in English and Chinese, each citing its evidence.

Sentences come from the phrase tables in prompts/ (one phrase per sentence kind and
language), so numbers are formatted once and read the same in both languages. Each
sentence is checked against the numbers of what it cites: `grounded=False` marks a
sentence with a number that the cited evidence does not state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from pydantic import BaseModel

from agents.consistency.confidence import modality_phrase, uncertainty_phrases
from agents.consistency.grounding import (
    ACTIVITY_DECIMALS,
    ATTENTION_DECIMALS,
    BITS_DECIMALS,
    GISTIC_DECIMALS,
    MM_DECIMALS,
    PROBABILITY_DECIMALS,
    VAF_DECIMALS,
    VOLUME_DECIMALS,
    cited_values,
    fmt,
    fmt_percent,
    sentence_is_grounded,
    values_of,
)
from agents.consistency.rules import FlagText
from agents.clinical.profile import RULES_BY_ID
from agents.sampling import enhancing_tumour, latest_units, rationale_key
from prompts import FieldValue, Listing, Phrase, Term, localise
from schemas.report import (
    ConsistencyFlag,
    EvidenceChainReport,
    HistologyEvidence,
    LocalisedText,
    MechanismEvidence,
    NarrativeSection,
    Sentence,
    SpatialEvidence,
)

SECTION_KEYS = ("summary", "diagnosis", "spatial", "histology", "mechanism", "consistency", "plan", "uncertainty")
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def build_narrative(
    report: EvidenceChainReport, flag_texts: Mapping[str, FlagText] | None = None
) -> list[NarrativeSection]:
    """Sections summary .. uncertainty. `flag_texts` (from `check_consistency`) gives flags their Chinese text;
    a flag without one, or edited since, is shown with its English message inside the Chinese sentence."""
    builders: dict[str, Callable[[], list[Sentence]]] = {
        "summary": lambda: _summary(report),
        "diagnosis": lambda: _diagnosis(report),
        "spatial": lambda: _spatial(report),
        "histology": lambda: _histology(report),
        "mechanism": lambda: _mechanism(report),
        "consistency": lambda: _consistency(report, flag_texts or {}),
        "plan": lambda: _plan(report),
        "uncertainty": lambda: _uncertainty(report),
    }
    return [
        NarrativeSection(key=key, title=localise(Phrase(f"section.{key}")), sentences=builders[key]())
        for key in SECTION_KEYS
    ]


def _sentence(
    report: EvidenceChainReport, phrase: Phrase, evidence: Sequence[str], about: Sequence[BaseModel] = ()
) -> Sentence:
    """A sentence citing `evidence`; `about` holds the non-evidence items (a conclusion, a target) it quotes."""
    text = localise(phrase)
    cited = list(dict.fromkeys(evidence))
    values = cited_values(report, cited) + values_of(*about)
    return Sentence(text=text, evidence=cited, grounded=sentence_is_grounded(text.en, values))


def _flag_ids(report: EvidenceChainReport, kind: str, modality: str | None = None) -> list[str]:
    return [
        f.id for f in report.consistency_flags
        if f.kind == kind and (modality is None or modality in f.modalities)
    ]


def _absent(report: EvidenceChainReport, modality: str, missing_key: str, empty_key: str) -> list[Sentence]:
    """The one sentence of an empty section: the modality is missing (citing its flag), or yielded nothing."""
    if modality in report.modalities.missing:
        return [_sentence(report, Phrase(missing_key), _flag_ids(report, "missing_modality", modality))]
    return [_sentence(report, Phrase(empty_key), _flag_ids(report, "unusable_input", modality))]


def _summary(report: EvidenceChainReport) -> list[Sentence]:
    sentences = [_sentence(report, modality_phrase(report.modalities), _flag_ids(report, "missing_modality"))]
    for c in report.conclusions:
        fields: dict[str, FieldValue] = {
            "task": Term("task", c.task), "label": Term("label", c.label),
            "p": fmt(c.probability, PROBABILITY_DECIMALS), "confidence": Term("confidence", c.confidence),
        }
        if c.score is not None:
            group = Term("label", c.risk_group or "insufficient_evidence")
            phrase = Phrase("summary.conclusion_risk", {**fields, "group": group, "score": fmt(c.score, PROBABILITY_DECIMALS)})
        else:
            phrase = Phrase("summary.conclusion", fields)
        sentences.append(_sentence(report, phrase, c.supporting_evidence, about=(c,)))
        if c.contradicting_evidence:
            against = Phrase("summary.against", {"task": Term("task", c.task), "label": Term("label", c.label)})
            sentences.append(_sentence(report, against, c.contradicting_evidence, about=(c,)))
    return sentences


def _spatial_clauses(s: SpatialEvidence) -> list[FieldValue]:
    clauses: list[FieldValue] = []
    if s.volume_ml is not None:
        clauses.append(f"{fmt(s.volume_ml, VOLUME_DECIMALS)} mL")
    if s.fraction_of_lesion is not None and s.unit_level != "lesion":
        clauses.append(Phrase("clause.fraction", {"pct": fmt_percent(s.fraction_of_lesion)}))
    if s.attribution is not None:
        clauses.append(Phrase("clause.attribution", {"pct": fmt_percent(s.attribution)}))
    if s.change_ml is not None:
        clauses.append(Phrase("clause.change", {"ml": f"{fmt(s.change_ml, VOLUME_DECIMALS, signed=True)} mL"}))
    if s.change_percent is not None:
        clauses.append(Phrase("clause.change_percent", {"pct": f"{fmt(s.change_percent, 0, signed=True)}%"}))
    if s.centroid_mm is not None:
        x, y, z = (fmt(c, MM_DECIMALS) for c in s.centroid_mm)
        clauses.append(Phrase("clause.centroid", {"x": x, "y": y, "z": z}))
    return clauses


def _spatial(report: EvidenceChainReport) -> list[Sentence]:
    if not report.spatial_evidence:
        return _absent(report, "imaging", "spatial.none_missing", "spatial.none")
    return [
        _sentence(report, Phrase("spatial.unit", {
            "phenotype": Term("phenotype", s.phenotype), "unit": s.unit_id, "level": Term("unit_level", s.unit_level),
            "details": Listing(tuple(_spatial_clauses(s)), "comma"),
        }), [s.id])
        for s in report.spatial_evidence
    ]


def _number(value: float) -> str:
    return fmt(value, 0) if float(value).is_integer() else fmt(value, 1)


def _finding_phrase(h: HistologyEvidence) -> Phrase:
    """A pathologist's structured read, one findings.json field per sentence."""
    v = h.value
    if h.pattern == "who_grade" and isinstance(v, (int, float)) and not isinstance(v, bool):
        return Phrase("histology.who_grade", {"grade": _number(v)})
    if h.pattern in ("necrosis", "microvascular_proliferation") and isinstance(v, bool):
        presence = Term("presence", str(v).lower())
        return Phrase("histology.feature", {"pattern": Term("pattern", h.pattern), "presence": presence})
    if h.pattern == "cellularity":
        return Phrase("histology.cellularity", {"value": Term("cellularity", str(v))})
    if h.pattern == "ki67_percent" and isinstance(v, (int, float)) and not isinstance(v, bool):
        return Phrase("histology.ki67", {"pct": f"{_number(v)}%"})
    if h.pattern == "histology":
        return Phrase("histology.diagnosis", {"text": str(v)})
    if h.pattern == "sampled_region":
        region = Term("phenotype", str(v))
        if h.linked_spatial_unit:
            return Phrase("histology.sampled_region_linked", {"region": region, "unit": h.linked_spatial_unit})
        return Phrase("histology.sampled_region", {"region": region})
    return Phrase("histology.other", {"pattern": Term("pattern", h.pattern), "value": str(v)})


def _patch_phrase(h: HistologyEvidence) -> Phrase:
    clauses: list[FieldValue] = []
    if h.attention is not None:
        clauses.append(Phrase("clause.attention", {"a": fmt(h.attention, ATTENTION_DECIMALS)}))
    if isinstance(h.value, float):
        clauses.append(Phrase("clause.pattern_probability", {"p": fmt(h.value, PROBABILITY_DECIMALS)}))
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
    return [_sentence(report, _HISTOLOGY_PHRASES[h.origin](h), [h.id]) for h in report.histology_evidence]


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
        clauses.append(Phrase("clause.genes", {"genes": Listing(tuple(m.driver_genes), "comma")}))
    if m.knowledge_refs:
        clauses.append(Phrase("clause.knowledge", {"refs": Listing(tuple(m.knowledge_refs), "comma")}))
    return clauses


def _mechanism(report: EvidenceChainReport) -> list[Sentence]:
    if not report.mechanism_evidence:
        return _absent(report, "genomics", "mechanism.none_missing", "mechanism.none")
    return [
        _sentence(report, Phrase("mechanism.item", {
            "name": m.pathway_name, "id": m.pathway_id, "details": Listing(tuple(_mechanism_clauses(m)), "comma"),
        }), [m.id])
        for m in report.mechanism_evidence
    ]


def _flag_text(flag: ConsistencyFlag, flag_texts: Mapping[str, FlagText]) -> FlagText:
    text = flag_texts.get(flag.id)
    if text is not None and text.message.en == flag.message and text.action.en == flag.recommended_action:
        return text
    # Edited after the check (or raised elsewhere): there is no translation of the new wording.
    return FlagText(
        message=LocalisedText(en=flag.message, zh=flag.message),
        action=LocalisedText(en=flag.recommended_action, zh=flag.recommended_action),
    )


def _consistency(report: EvidenceChainReport, flag_texts: Mapping[str, FlagText]) -> list[Sentence]:
    if not report.consistency_flags:
        return [_sentence(report, Phrase("consistency.none"), [])]
    # sorted() is stable: flags keep their F order within a severity
    ordered = sorted(report.consistency_flags, key=lambda f: SEVERITY_ORDER[f.severity])
    sentences = []
    for flag in ordered:
        text = _flag_text(flag, flag_texts)
        phrase = Phrase("consistency.flag", {
            "severity": Term("severity", flag.severity), "kind": Term("flag_kind", flag.kind),
            "message": text.message, "action": text.action,
        })
        sentences.append(_sentence(report, phrase, [flag.id, *flag.evidence]))
    return sentences


def _plan(report: EvidenceChainReport) -> list[Sentence]:
    """Why there is a plan or none (the statement), then one sentence per target."""
    sentences = []
    if report.sampling_statement is not None:
        dx = [c for c in report.conclusions if c.task == "diagnosis"]
        phrase = Phrase("plan.statement", {"text": report.sampling_statement})
        sentences.append(_sentence(report, phrase, [], about=(*dx, *report.sampling_plan)))
    enhancing = enhancing_tumour(latest_units(report.spatial_evidence))
    sentences += [
        _sentence(report, Phrase("plan.target", {
            "rank": str(t.rank), "phenotype": Term("phenotype", t.phenotype), "unit": t.unit_id,
            "eig": fmt(t.expected_information_gain, BITS_DECIMALS),
            "rationale": Term("rationale", rationale_key(t.phenotype, enhancing)),
        }), t.evidence, about=(t,))
        for t in report.sampling_plan
    ]
    return sentences


def _diagnosis(report: EvidenceChainReport) -> list[Sentence]:
    """The WHO CNS5 integrated diagnosis, the rules behind it, each marker's status, and the missing tests."""
    dx = next((c for c in report.conclusions if c.task == "diagnosis"), None)
    sentences = []
    if dx is not None and dx.diagnosis_layers is not None:
        layers = dx.diagnosis_layers
        grade: FieldValue = Term("word", "not_assigned") if layers.cns_who_grade is None else str(layers.cns_who_grade)
        sentences.append(_sentence(report, Phrase("diagnosis.integrated", {
            "label": Term("label", dx.label), "p": fmt(dx.probability, PROBABILITY_DECIMALS),
            "confidence": Term("confidence", dx.confidence), "grade": grade,
        }), dx.supporting_evidence, about=(dx,)))
        top = max(dx.class_probabilities, key=dx.class_probabilities.__getitem__)
        if top != dx.label:
            quoted = LocalisedText(en=top, zh=top)  # the candidate's own label (its grade) is quoted, not computed
            sentences.append(_sentence(report, Phrase("diagnosis.most_probable", {
                "label": Term("label", top), "p": fmt(dx.class_probabilities[top], PROBABILITY_DECIMALS),
            }), [], about=(dx, quoted)))
        for rule in (RULES_BY_ID[r.split(":", 1)[0]] for r in layers.rules_applied):
            citations = Listing(tuple(Term("citation", c) for c in rule.citations), "comma")
            sentences.append(_sentence(report, Phrase("diagnosis.rule", {
                "rule": Term("rule", rule.id), "citation": citations,
            }), [], about=(dx,)))
        if layers.missing_tests:
            tests = Listing(tuple(Term("test", t) for t in layers.missing_tests))
            sentences.append(_sentence(report, Phrase("diagnosis.missing_tests", {"tests": tests}), []))
    for m in report.markers:
        value: FieldValue = Phrase("marker.value", {"value": m.value}) if m.value and m.status == "detected" else ""
        fields: dict[str, FieldValue] = {"marker": Term("marker", m.marker), "status": Term("marker_status", m.status)}
        if m.source == "none":  # nothing was tested: no source to name
            phrase = Phrase("marker.line_untested", fields)
        else:
            phrase = Phrase("marker.line", {**fields, "source": Term("marker_source", m.source), "value": value})
        sentences.append(_sentence(report, phrase, m.evidence, about=(m,)))
        if m.source == "immunohistochemistry" and m.status == "not_detected" and "R132H" in (m.value or ""):
            sentences.append(_sentence(report, Phrase("marker.r132h_note"), [], about=(m,)))
    return sentences or [_sentence(report, Phrase("diagnosis.none"), [])]


def _uncertainty(report: EvidenceChainReport) -> list[Sentence]:
    return [
        _sentence(report, phrase, ids)
        for phrase, ids in uncertainty_phrases(report.modalities, report.consistency_flags, report.conclusions)
    ]
