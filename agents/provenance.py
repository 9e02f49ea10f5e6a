"""Provenance: which code, models and knowledge produced a report."""

from __future__ import annotations

import datetime as dt
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from agents.context import Settings
from schemas.report import ModelInfo, Provenance


@lru_cache(maxsize=1)
def code_version() -> str:
    try:
        version = metadata.version("evidencechain")
    except metadata.PackageNotFoundError:
        version = "unknown"
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "no-git"
    return f"evidencechain {version} ({commit})"


def build_provenance(
    settings: Settings, models: list[ModelInfo], inputs: list[str], conversions: list[str] | None = None
) -> Provenance:
    return Provenance(
        models=models,
        code_version=code_version(),
        configuration=settings.as_provenance(),
        generated_at=dt.datetime.now(dt.timezone.utc),
        inputs=inputs,
        input_conversions=list(conversions or []),
    )
