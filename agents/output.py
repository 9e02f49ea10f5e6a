"""Writing results: validated against the generated JSON Schema, and atomic.

A case's files appear together or not at all: they are written into a hidden
temporary folder beside the target and swapped into place in one step.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from jsonschema import Draft202012Validator

from schemas.export import load_schema
from toolkit.atomic import atomic_write_text, exchange

LOCKS_DIR = ".locks"
FINGERPRINT_FILE = ".fingerprint.json"
STAGING = "tmp"
RETIRED = "old"


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


def _staging_name(case_id: str, kind: str) -> str:
    return f".{case_id}.{secrets.token_hex(4)}.{kind}"


def write_case_folder(out_dir: Path, case_id: str, files: dict[str, str | bytes]) -> dict[str, str]:
    """Write `files` (relative path -> text or bytes) as OUT/<case_id>/ in one atomic step; returns path -> final path.

    The folder is built under a hidden name and swapped with the old one by one
    renameat2(RENAME_EXCHANGE), so OUT/<case_id> is at every instant either the
    old report or the new one. Where the file system cannot exchange, the old
    folder is first renamed aside; `clean_leftovers` puts it back if a run dies
    between the two renames. Callers hold the case lock.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / case_id
    staging = out_dir / _staging_name(case_id, STAGING)
    staging.mkdir()
    try:
        for name, content in files.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)  # figures/ and the like
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")  # permissions follow the umask
        if not os.path.lexists(final):
            os.rename(staging, final)
        elif exchange(staging, final):
            shutil.rmtree(staging)  # now the old report
        else:
            retired = out_dir / _staging_name(case_id, RETIRED)
            os.rename(final, retired)
            os.rename(staging, final)
            shutil.rmtree(retired)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {name: str(final / name) for name in files}


def leftover_case_ids(out_dir: Path) -> set[str]:
    """Case ids with hidden staging or retired folders in OUT (left by a killed run, or in use by a live one)."""
    ids = set()
    for name in os.listdir(out_dir) if out_dir.is_dir() else []:
        parts = name.split(".")
        if len(parts) == 4 and parts[0] == "" and parts[3] in (STAGING, RETIRED):
            ids.add(parts[1])
    return ids


def clean_leftovers(out_dir: Path, case_id: str) -> None:
    """Remove a killed run's hidden folders of one case; restore its report if it died mid-replacement.

    Callers hold the case lock, so no live run is using these folders.
    """
    final = out_dir / case_id
    for name in sorted(os.listdir(out_dir)):
        if not name.startswith(f".{case_id}."):
            continue
        path = out_dir / name
        if name.endswith(f".{RETIRED}") and not os.path.lexists(final):
            os.rename(path, final)
        elif name.endswith((f".{STAGING}", f".{RETIRED}")):
            shutil.rmtree(path)


@contextmanager
def case_lock(out_dir: Path, case_id: str, *, blocking: bool = True) -> Iterator[bool]:
    """Exclusive lock of one case in OUT across processes and runs (flock: released when a process dies).

    Yields False when `blocking` is off and another run holds it.
    """
    locks = out_dir / LOCKS_DIR
    locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks / f"{case_id}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
