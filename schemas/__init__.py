"""Contracts of EvidenceChain: pydantic models are the single source of truth."""

from schemas.case import CaseManifest, PathologyFindings, TimepointSpec
from schemas.errors import InputError
from schemas.fusion import FusionOutput, PatchAttention, TaskPrediction
from schemas.report import SCHEMA_VERSION, EvidenceChainReport

__all__ = [
    "SCHEMA_VERSION",
    "CaseManifest",
    "EvidenceChainReport",
    "FusionOutput",
    "InputError",
    "PatchAttention",
    "PathologyFindings",
    "TaskPrediction",
    "TimepointSpec",
]
