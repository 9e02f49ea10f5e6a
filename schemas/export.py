"""Generate the checked-in JSON Schema files from the pydantic models.

    python -m schemas.export          # rewrite schemas/json/
    python -m schemas.export --check  # exit 1 if a checked-in file has drifted
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.case import CaseManifest, PathologyFindings
from schemas.drafting import DraftFill, DraftRequest
from schemas.fusion import FusionOutput
from schemas.imaging import ImagingFeatures
from schemas.reference import ReferenceReport
from schemas.report import EvidenceChainReport
from schemas.review import ReviewStep

JSON_DIR = Path(__file__).parent / "json"
EXPORTED: dict[str, type[BaseModel]] = {
    "case_manifest": CaseManifest,
    "pathology_findings": PathologyFindings,
    "fusion_output": FusionOutput,
    "evidence_chain_report": EvidenceChainReport,
    "reference_report": ReferenceReport,
    "draft_request": DraftRequest,
    "draft_fill": DraftFill,  # the generic fill; DraftRequest.fill_schema() narrows it to one case
    "review_step": ReviewStep,
    "imaging_features": ImagingFeatures,
}
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def schema_text(model: type[BaseModel]) -> str:
    schema = {"$schema": DRAFT, **model.model_json_schema(mode="serialization")}
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def schema_path(name: str) -> Path:
    return JSON_DIR / f"{name}.schema.json"


def load_schema(name: str) -> dict:
    return json.loads(schema_path(name).read_text(encoding="utf-8"))


def drifted() -> list[str]:
    return [
        name
        for name, model in EXPORTED.items()
        if not schema_path(name).exists() or schema_path(name).read_text(encoding="utf-8") != schema_text(model)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if checked-in schemas differ from the models")
    args = parser.parse_args(argv)
    if args.check:
        stale = drifted()
        for name in stale:
            print(f"{schema_path(name)}: out of date; run `python -m schemas.export`", file=sys.stderr)
        return 1 if stale else 0
    JSON_DIR.mkdir(exist_ok=True)
    for name, model in EXPORTED.items():
        schema_path(name).write_text(schema_text(model), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
