"""Contracts: the checked-in JSON Schema matches the pydantic models, and the validators bite."""

from __future__ import annotations

import copy

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from schemas.case import CaseManifest
from schemas.export import EXPORTED, drifted, load_schema, schema_text
from schemas.report import EvidenceChainReport


def test_checked_in_json_schemas_match_models():
    assert drifted() == [], "run `python -m schemas.export` and commit schemas/json/"


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_json_schemas_are_valid_draft_2020_12(name):
    Draft202012Validator.check_schema(load_schema(name))


def test_every_field_has_a_description():
    def walk(schema, path):
        for key, prop in schema.get("properties", {}).items():
            assert "description" in prop or "$ref" in prop or "allOf" in prop, f"{path}.{key} has no description"
        for name, sub in schema.get("$defs", {}).items():
            walk(sub, name)

    for name in EXPORTED:
        walk(load_schema(name), name)


def test_schema_text_is_stable():
    for model in EXPORTED.values():
        assert schema_text(model) == schema_text(model)


@pytest.mark.parametrize("case_id", ["../etc", "a/b", "x" * 65, "", "case id"])
def test_unsafe_case_ids_are_rejected(case_id):
    with pytest.raises(ValidationError):
        CaseManifest(case_id=case_id, cancer_type="glioma")


def minimal_report() -> dict:
    return {
        "case_id": "C1",
        "cancer_type": "glioma",
        "provenance": {"models": [], "code_version": "test", "configuration": {}, "generated_at": "2026-01-01T00:00:00Z"},
        "modalities": {"present": ["genomics"], "missing": ["imaging", "pathology"], "unusable": []},
        "conclusions": [
            {"task": "grade", "label": "G4", "probability": 0.7,
             "class_probabilities": {"G2": 0.1, "G3": 0.2, "G4": 0.7}, "confidence": "moderate",
             "confidence_basis": "test", "modalities_used": ["genomics"], "supporting_evidence": ["M1"]}
        ],
        "mechanism_evidence": [
            {"id": "M1", "kind": "copy_number", "pathway_id": "CNV:EGFR", "pathway_name": "EGFR amplification",
             "activity": 2.0, "direction": "altered", "source": {"file": "genomics/cnv.tsv"}}
        ],
        "modality_contributions": {"genomics": 1.0},
        "uncertainty": {"level": "moderate", "statement": "Imaging and pathology missing."},
        "review": {"status": "draft"},
    }


def test_minimal_report_validates_with_pydantic_and_jsonschema():
    data = minimal_report()
    EvidenceChainReport.model_validate(data)
    Draft202012Validator(load_schema("evidence_chain_report")).validate(
        EvidenceChainReport.model_validate(data).model_dump(mode="json")
    )


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["conclusions"][0].update(supporting_evidence=["M9"]), "do not exist"),
        (lambda d: d["mechanism_evidence"].append(dict(d["mechanism_evidence"][0])), "duplicate"),
        (lambda d: d["conclusions"][0].update(probability=1.2), "less than or equal"),
        (lambda d: d["conclusions"][0].update(confidence="very high"), "high"),
        (lambda d: d["conclusions"][0]["class_probabilities"].update(G2=0.5), "sum to 1"),
        (lambda d: d["conclusions"][0].update(probability=0.2), "class_probabilities"),
    ],
)
def test_report_validators_reject(mutate, message):
    data = copy.deepcopy(minimal_report())
    mutate(data)
    with pytest.raises(ValidationError, match=message):
        EvidenceChainReport.model_validate(data)
