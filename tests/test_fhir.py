"""FHIR export of real demo reports: valid R4B, round trip, codes from the allowed tables, status mapping."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from agents.fhir import (
    ALLOWED_CODES,
    LOINC,
    FHIRExportError,
    check_codes,
    fhir_status,
    report_bundle,
    validate_bundle,
)
from agents.render import render_markdown
from schemas.report import AuditEntry, ClinicianOverride, EvidenceChainReport, Review

NOW = dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def report(demo_reports) -> EvidenceChainReport:
    out, _ = demo_reports
    # DEMO-004: flagged, markers detected, not detected, predicted and not tested.
    return EvidenceChainReport.model_validate_json((out / "DEMO-004" / "report.json").read_text())


def approved(report: EvidenceChainReport, version: int = 1) -> EvidenceChainReport:
    grade = next(c for c in report.conclusions if c.task == "grade")
    override = ClinicianOverride(field="confidence", model_value=grade.confidence, value="moderate",
                                 reviewer="dr.lee", reason="histology under-samples the enhancing rim", time=NOW)
    conclusions = [c.model_copy(update={"overrides": [override]}) if c is grade else c for c in report.conclusions]
    review = Review(
        status="approved", reviewer="dr.lee", version=version,
        supersedes_sha256="0" * 64 if version > 1 else None,
        audit_trail=[*report.review.audit_trail,
                     AuditEntry(time=NOW, actor="dr.lee", action="approved", version=version)],
    )
    return report.model_copy(update={"conclusions": conclusions, "review": review})


def resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


@pytest.mark.parametrize(
    ("status", "version", "expected"),
    [("draft", 1, "preliminary"), ("awaiting_review", 1, "preliminary"), ("approved", 1, "final"),
     ("approved", 2, "amended"), ("rejected", 1, "cancelled")],
)
def test_review_status_maps_to_fhir_status(status, version, expected):
    assert fhir_status(Review(status=status, version=version)) == expected


def test_bundle_round_trips_through_the_r4b_models(report):
    bundle = report_bundle(report)
    parsed = Bundle.model_validate_json(json.dumps(bundle))
    assert json.loads(parsed.model_dump_json()) == bundle
    assert bundle["type"] == "collection"
    urls = {e["fullUrl"] for e in bundle["entry"]}
    (diagnostic,) = resources(bundle, "DiagnosticReport")
    assert {r["reference"] for r in diagnostic["result"]} <= urls
    assert diagnostic["subject"]["reference"] in urls
    assert len(diagnostic["result"]) == len(resources(bundle, "Observation"))
    assert report_bundle(report) == bundle  # deterministic ids: the same version exports the same bundle


def test_a_draft_is_preliminary_and_carries_the_narrative(report):
    bundle = report_bundle(report)
    (diagnostic,) = resources(bundle, "DiagnosticReport")
    assert diagnostic["status"] == "preliminary"
    assert {o["status"] for o in resources(bundle, "Observation")} == {"preliminary"}
    assert diagnostic["code"]["coding"][0] == {"system": LOINC, "code": "60568-3", "display": "Pathology Synoptic report"}
    forms = {(f["language"], f["contentType"].split(";")[0]): base64.b64decode(f["data"]).decode() for f in diagnostic["presentedForm"]}
    assert forms[("en", "text/markdown")] == render_markdown(report, "en")
    assert "胶质母细胞瘤" in forms[("zh", "text/markdown")]
    assert forms[("en", "text/html")].lstrip().lower().startswith("<!doctype html")
    diagnosis = next(c for c in report.conclusions if c.task == "diagnosis")
    assert diagnostic["conclusion"] == diagnosis.label
    assert "resultsInterpreter" not in diagnostic


def test_approved_report_is_final_with_reviewer_and_override_note(report):
    bundle = report_bundle(approved(report))
    (diagnostic,) = resources(bundle, "DiagnosticReport")
    assert diagnostic["status"] == "final"
    assert diagnostic["resultsInterpreter"] == [{"display": "dr.lee"}]
    assert diagnostic["issued"].startswith("2026-12-01T00:00:00")
    grade = next(o for o in resources(bundle, "Observation") if o["code"]["coding"][0]["code"] == "conclusion-grade")
    assert any("clinician override of confidence" in n["text"] and "dr.lee" in n["text"] for n in grade["note"])
    amended = report_bundle(approved(report, version=2))
    assert resources(amended, "DiagnosticReport")[0]["status"] == "amended"
    assert amended["id"] != bundle["id"]


def test_markers_state_tests_never_predictions(report):
    bundle = report_bundle(report)
    markers = {o["code"]["text"]: o for o in resources(bundle, "Observation") if o["code"]["coding"][0]["code"] == "69548-6"}
    assert len(markers) == len(report.markers)
    for m in report.markers:
        obs = markers[m.marker]
        if m.status in ("detected", "not_detected"):
            assert obs["valueCodeableConcept"]["coding"][0]["code"] == {"detected": "LA9633-4", "not_detected": "LA9634-2"}[m.status]
        else:  # not tested, not assessed, or only predicted by the model: no value at all
            assert "valueCodeableConcept" not in obs
            assert obs["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    assert any(m.status == "predicted" for m in report.markers)


def test_grade_of_the_integrated_diagnosis_uses_the_mcode_grade_code(report):
    bundle = report_bundle(report)
    (grade,) = [o for o in resources(bundle, "Observation") if o["code"]["coding"][0]["code"] == "33732-9"]
    diagnosis = next(c for c in report.conclusions if c.task == "diagnosis")
    assert grade["valueCodeableConcept"]["coding"][0]["display"] == f"CNS WHO grade {diagnosis.diagnosis_layers.cns_who_grade}"


def test_every_coding_comes_from_the_allowed_tables(report):
    bundle = report_bundle(approved(report))
    check_codes(bundle)
    systems = {c["system"] for e in bundle["entry"] for c in _all_codings(e["resource"])}
    assert systems <= set(ALLOWED_CODES)


def _all_codings(node):
    if isinstance(node, dict):
        if "system" in node and "code" in node:
            yield node
        for v in node.values():
            yield from _all_codings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _all_codings(v)


def _diagnostic(bundle: dict) -> dict:
    return bundle["entry"][0]["resource"]


def test_invented_loinc_code_unknown_system_and_bad_status_are_refused(report):
    bundle = report_bundle(report)
    invented = json.loads(json.dumps(bundle))
    _diagnostic(invented)["code"]["coding"][0]["code"] = "99999-9"
    with pytest.raises(FHIRExportError, match="99999-9"):
        validate_bundle(invented)
    foreign = json.loads(json.dumps(bundle))
    _diagnostic(foreign)["category"][0]["coding"][0]["system"] = "http://example.org/codes"
    with pytest.raises(FHIRExportError, match="example.org"):
        validate_bundle(foreign)
    bogus = json.loads(json.dumps(bundle))
    _diagnostic(bogus)["status"] = "approved"  # fhir.resources itself accepts any status string
    Bundle.model_validate(bogus)
    with pytest.raises(FHIRExportError, match="status"):
        validate_bundle(bogus)


def test_missing_required_fields_fail_r4b_validation(report):
    bundle = report_bundle(report)
    no_code = json.loads(json.dumps(bundle))
    del _diagnostic(no_code)["code"]
    with pytest.raises(ValidationError):
        validate_bundle(no_code)
    no_type = json.loads(json.dumps(bundle))
    del no_type["type"]
    with pytest.raises(ValidationError):
        validate_bundle(no_type)
