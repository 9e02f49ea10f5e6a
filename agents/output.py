"""Writing results: validated against the generated JSON Schema, and atomic.

A case's files appear together or not at all: they are written into a hidden
temporary folder beside the target and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from jsonschema import Draft202012Validator

from schemas.export import load_schema
from toolkit.atomic import atomic_write_text


@lru_cache(maxsize=1)
def _report_validator() -> Draft202012Validator:
    schema = load_schema("evidence_chain_report")
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate_report(data: dict) -> None:
    """Raise ValueError naming the first failing field path if `data` breaks the report schema."""
    errors = sorted(_report_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        path = ".".join(str(p) for p in first.absolute_path) or "<root>"
        raise ValueError(f"report.json: {path}: {first.message} ({len(errors)} schema error(s))")


def write_json(path: Path, data: object) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def write_case_folder(out_dir: Path, case_id: str, files: dict[str, str]) -> dict[str, str]:
    """Write `files` (name -> text) as OUT/<case_id>/ in one rename; returns name -> final path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / case_id
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{case_id}.", suffix=".tmp"))
    try:
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
        if final.exists():
            retired = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{case_id}.", suffix=".old"))
            os.replace(final, retired / case_id)
            os.replace(staging, final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {name: str(final / name) for name in files}
