"""The evidence-chain report as a FHIR R4 (R4B models) `Bundle`: one `DiagnosticReport`, its `Observation`s.

Codes follow mCODE and the HL7 Genomics Reporting IG where a code exists for what we state:
the report is LOINC 60568-3 "Pathology Synoptic report" (category LOINC LP7839-6 "Pathology");
the CNS WHO grade of the integrated diagnosis is LOINC 33732-9 "Histology grade [Identifier] in
Cancer specimen" (mCODE Histologic Grade) with method SNOMED CT 1149430001 (WHO classification of
tumors histologic grading system, fifth edition); a tested marker is LOINC 69548-6 "Genetic
variant assessment" valued LA9633-4 Present / LA9634-2 Absent, with LOINC 48018-6 "Gene studied"
naming the marker. Everything without a code we are certain of (model conclusions, evidence items,
consistency flags) uses the project's own code system, never an invented LOINC code.

fhir.resources validates structure, not code values, so `check_codes` enforces the status values
and a closed table of code systems (and of the codes taken from LOINC and SNOMED CT). A marker
that was not tested carries `dataAbsentReason: not-performed`: a model prediction never stands in
for a test that was not done.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from agents.render import render_html, render_markdown
from schemas.report import Conclusion, EvidenceChainReport, Marker, Review

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
# The project's own concepts; a URN claims no web domain.
PROJECT = "urn:evidencechain:fhir:codes"
CASE_ID_SYSTEM = "urn:evidencechain:fhir:case-id"

# Every code system the export may use and, for external terminologies, the only codes it may use
# (None: any code of that system, because we define it).
ALLOWED_CODES: dict[str, frozenset[str] | None] = {
    LOINC: frozenset({"60568-3", "LP7839-6", "33732-9", "69548-6", "48018-6", "LA9633-4", "LA9634-2"}),
    SNOMED: frozenset({"1149430001"}),
    UCUM: frozenset({"mL"}),
    OBSERVATION_CATEGORY: frozenset({"laboratory", "imaging"}),
    DATA_ABSENT_REASON: frozenset({"not-performed"}),
    PROJECT: None,
}
# FHIR R4 value sets diagnostic-report-status and observation-status.
REPORT_STATUSES = frozenset(
    {"registered", "partial", "preliminary", "final", "amended", "corrected", "appended", "cancelled",
     "entered-in-error", "unknown"}
)
OBSERVATION_STATUSES = frozenset(
    {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}
)


class FHIRExportError(ValueError):
    """The bundle breaks a rule fhir.resources does not check (status value, code system, code)."""


def fhir_status(review: Review) -> str:
    """DiagnosticReport/Observation status of a report: a draft is preliminary until a clinician approves it."""
    if review.status == "approved":
        return "amended" if review.version > 1 else "final"
    if review.status == "rejected":
        return "cancelled"
    return "preliminary"


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    return {"system": system, "code": code, **({"display": display} if display else {})}


def _concept(system: str, code: str, display: str | None = None, text: str | None = None) -> dict[str, Any]:
    return {"coding": [_coding(system, code, display)], **({"text": text} if text else {})}


def _text(text: str) -> dict[str, str]:
    return {"text": text}


def _uuid(case_id: str, version: int, key: str) -> str:
    # Deterministic: the same report version exports to the same resource ids.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{PROJECT}/{case_id}/v{version}/{key}"))


class _Builder:
    def __init__(self, report: EvidenceChainReport) -> None:
        self.report = report
        self.status = fhir_status(report.review)
        self.effective = report.provenance.generated_at.isoformat()
        self.patient_url = f"urn:uuid:{self._id('patient')}"
        self.observations: list[dict[str, Any]] = []
        self.urls: dict[str, str] = {}

    def _id(self, key: str) -> str:
        return _uuid(self.report.case_id, self.report.review.version, key)

    def observation(self, key: str, body: dict[str, Any]) -> str:
        url = f"urn:uuid:{self._id(key)}"
        self.observations.append({
            "resourceType": "Observation",
            "id": self._id(key),
            "identifier": [{"system": CASE_ID_SYSTEM, "value": f"{self.report.case_id}/{key}"}],
            "status": self.status,
            "subject": {"reference": self.patient_url},
            "effectiveDateTime": self.effective,
            **body,
        })
        self.urls[key] = url
        return url

    def evidence(self) -> None:
        """Observations for the evidence items the conclusions cite (the key evidence)."""
        cited = {e for c in self.report.conclusions for e in [*c.supporting_evidence, *c.contradicting_evidence]}
        for s in self.report.spatial_evidence:
            if s.id not in cited:
                continue
            body: dict[str, Any] = {
                "category": [_concept(OBSERVATION_CATEGORY, "imaging")],
                "code": _concept(PROJECT, "spatial-evidence", "Imaging spatial evidence", f"{s.id} {s.unit_id}"),
                "component": [{"code": _concept(PROJECT, "phenotype", "Imaging phenotype"),
                               "valueCodeableConcept": _concept(PROJECT, s.phenotype)}],
                "note": [_text(f"source: {s.source.file}")],
            }
            if s.volume_ml is not None:
                body["valueQuantity"] = {"value": s.volume_ml, "unit": "mL", "system": UCUM, "code": "mL"}
            else:
                body["valueString"] = s.unit_level
            self.observation(s.id, body)
        for h in self.report.histology_evidence:
            if h.id in cited:
                self.observation(h.id, {
                    "category": [_concept(OBSERVATION_CATEGORY, "laboratory")],
                    "code": _concept(PROJECT, "histology-evidence", "Histology evidence", h.id),
                    "valueString": h.pattern if h.value is None else f"{h.pattern}: {h.value}",
                    "note": [_text(f"{h.origin}; source: {h.source.file}")],
                })
        for m in self.report.mechanism_evidence:
            if m.id in cited:
                self.observation(m.id, {
                    "category": [_concept(OBSERVATION_CATEGORY, "laboratory")],
                    "code": _concept(PROJECT, "mechanism-evidence", "Mechanism evidence", m.id),
                    "valueString": f"{m.pathway_name} ({m.direction})",
                    "note": [_text(f"driver genes: {', '.join(m.driver_genes) or 'none'}; source: {m.source.file}")],
                })

    def conclusion(self, c: Conclusion) -> None:
        notes = [_text(f"confidence basis: {c.confidence_basis}")]
        notes += [
            _text(f"clinician override of {o.field}: model {o.model_value!r} -> {o.value!r} by {o.reviewer}: {o.reason}")
            for o in c.overrides
        ]
        components = [
            {"code": _concept(PROJECT, "probability", "Calibrated probability of the label"),
             "valueQuantity": {"value": c.probability}},
            {"code": _concept(PROJECT, "confidence", "Confidence after cross-modal checks"),
             "valueCodeableConcept": _concept(PROJECT, c.confidence)},
        ]
        if c.score is not None:
            components.append({"code": _concept(PROJECT, "risk-score", "Risk score (higher = worse)"),
                               "valueQuantity": {"value": c.score}})
        derived = [{"reference": self.urls[e]} for e in c.supporting_evidence if e in self.urls]
        self.observation(f"conclusion-{c.task}", {
            "code": _concept(PROJECT, f"conclusion-{c.task}", f"Evidence-chain conclusion: {c.task}"),
            "valueCodeableConcept": _concept(PROJECT, c.label, text=c.label),
            "component": components,
            "note": notes,
            **({"derivedFrom": derived} if derived else {}),
        })
        layers = c.diagnosis_layers
        if c.task == "diagnosis" and layers is not None and layers.cns_who_grade is not None:
            self.observation("cns-who-grade", {
                "category": [_concept(OBSERVATION_CATEGORY, "laboratory")],
                "code": _concept(LOINC, "33732-9", "Histology grade [Identifier] in Cancer specimen"),
                "valueCodeableConcept": _concept(
                    PROJECT, f"cns-who-grade-{layers.cns_who_grade}", f"CNS WHO grade {layers.cns_who_grade}"
                ),
                "method": _concept(
                    SNOMED, "1149430001",
                    "World Health Organization classification of tumors histologic grading system fifth edition",
                ),
            })

    def marker(self, index: int, m: Marker) -> None:
        body: dict[str, Any] = {
            "category": [_concept(OBSERVATION_CATEGORY, "laboratory")],
            "code": _concept(LOINC, "69548-6", "Genetic variant assessment", m.marker),
            "component": [{"code": _concept(LOINC, "48018-6", "Gene studied [ID]"), "valueCodeableConcept": _text(m.marker)}],
        }
        if m.status == "detected":
            body["valueCodeableConcept"] = _concept(LOINC, "LA9633-4", "Present")
        elif m.status == "not_detected":
            body["valueCodeableConcept"] = _concept(LOINC, "LA9634-2", "Absent")
        else:
            body["dataAbsentReason"] = _concept(DATA_ABSENT_REASON, "not-performed", "Not Performed")
        notes = [n for n in (m.value, m.note, f"status: {m.status}; source: {m.source}") if n]
        body["note"] = [_text(n) for n in notes]
        self.observation(f"marker-{index}", body)

    def flags(self) -> None:
        for f in self.report.consistency_flags:
            notes = [_text(f"recommended action: {f.recommended_action}")]
            if f.dismissal is not None:
                notes.append(_text(f"dismissed by {f.dismissal.reviewer}: {f.dismissal.reason}"))
            self.observation(f.id, {
                "code": _concept(PROJECT, "consistency-flag", "Consistency flag", f"{f.id} {f.kind}"),
                "valueCodeableConcept": _concept(PROJECT, f.kind, text=f.message),
                "interpretation": [_concept(PROJECT, f"severity-{f.severity}", f.severity)],
                "note": notes,
            })


def _attachment(text: str, content_type: str, lang: str, title: str) -> dict[str, str]:
    return {
        "contentType": f"{content_type}; charset=utf-8",
        "language": lang,
        "title": title,
        "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
    }


def _approval_time(report: EvidenceChainReport) -> dt.datetime:
    times = [e.time for e in report.review.audit_trail if e.action in ("approved", "rejected")]
    return times[-1] if times else report.provenance.generated_at


def report_bundle(report: EvidenceChainReport) -> dict[str, Any]:
    """The report as a FHIR R4 collection Bundle (JSON-ready dict), validated by fhir.resources and `check_codes`."""
    b = _Builder(report)
    b.evidence()
    for c in report.conclusions:
        b.conclusion(c)
    for i, m in enumerate(report.markers, start=1):
        b.marker(i, m)
    b.flags()
    diagnosis = next((c for c in report.conclusions if c.task == "diagnosis"), None)
    review = report.review
    diagnostic_report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": b._id("report"),
        "identifier": [{"system": CASE_ID_SYSTEM, "value": f"{report.case_id}/v{review.version}"}],
        "status": b.status,
        "category": [_concept(LOINC, "LP7839-6", "Pathology")],
        "code": _concept(LOINC, "60568-3", "Pathology Synoptic report", "Evidence-chain report"),
        "subject": {"reference": b.patient_url},
        "effectiveDateTime": b.effective,
        "issued": _approval_time(report).isoformat(),
        "result": [{"reference": f"urn:uuid:{o['id']}"} for o in b.observations],
        "presentedForm": [
            _attachment(render_markdown(report, "en"), "text/markdown", "en", "report.en.md"),
            _attachment(render_markdown(report, "zh"), "text/markdown", "zh", "report.zh.md"),
            _attachment(render_html(report, "en"), "text/html", "en", "report.html"),
        ],
    }
    if review.reviewer:
        diagnostic_report["resultsInterpreter"] = [{"display": review.reviewer}]
    if diagnosis is not None:
        diagnostic_report["conclusion"] = diagnosis.label
    patient = {
        "resourceType": "Patient",
        "id": b._id("patient"),
        # Pseudonymous: case.json carries no names, record numbers or birth dates.
        "identifier": [{"system": CASE_ID_SYSTEM, "value": report.case_id}],
    }
    resources = [diagnostic_report, patient, *b.observations]
    data = {
        "resourceType": "Bundle",
        "id": b._id("bundle"),
        "identifier": {"system": CASE_ID_SYSTEM, "value": f"{report.case_id}/v{review.version}/bundle"},
        "type": "collection",
        "timestamp": _approval_time(report).isoformat(),
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
    }
    return validate_bundle(data)


def _codings(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "system" in node and "code" in node:
            yield node
        for value in node.values():
            yield from _codings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _codings(value)


def check_codes(bundle: dict[str, Any]) -> None:
    """Raise FHIRExportError naming the resource and value when a status or code is outside the allowed tables."""
    for entry in bundle.get("entry", []):
        resource = entry["resource"]
        kind = resource["resourceType"]
        allowed = {"DiagnosticReport": REPORT_STATUSES, "Observation": OBSERVATION_STATUSES}.get(kind)
        if allowed is not None and resource.get("status") not in allowed:
            raise FHIRExportError(f"{kind}/{resource.get('id')}: status: {resource.get('status')!r} is not a FHIR R4 status")
        for coding in _codings(resource):
            system, code = coding["system"], coding["code"]
            if system not in ALLOWED_CODES:
                raise FHIRExportError(f"{kind}/{resource.get('id')}: coding: system {system!r} is not allowed")
            codes = ALLOWED_CODES[system]
            if codes is not None and code not in codes:
                raise FHIRExportError(f"{kind}/{resource.get('id')}: coding: {system}|{code} is not in the allowed codes")


def validate_bundle(data: dict[str, Any]) -> dict[str, Any]:
    """Validate with the R4B models and the code tables; return the bundle as fhir.resources serialises it."""
    check_codes(data)
    return json.loads(Bundle.model_validate(data).model_dump_json())


def bundle_json(report: EvidenceChainReport) -> str:
    return json.dumps(report_bundle(report), ensure_ascii=False, indent=2)
