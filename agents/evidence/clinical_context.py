"""Clinical context from case.json: age band, sex and presenting symptoms, quoted as data.

Clinical notes are free text from outside: they are quoted, never interpreted or obeyed,
and nothing here feeds a conclusion, flag or action. The context is shown when the
clinical modality carries weight in the fusion (at least an equal share of the modalities
used), because then age and sex shaped the model's output and the board should see them.
"""

from __future__ import annotations

import re

from schemas.case import CaseManifest
from schemas.report import ClinicalContext

# "presenting with X." / "presented with X;" -> X: the only part of the notes we quote.
_PRESENTING = re.compile(r"\bpresent(?:s|ed|ing)?\s+with\s+([^.;\n]+)", re.IGNORECASE)
MAX_QUOTE_CHARS = 160
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def presenting_symptoms(notes: str) -> str | None:
    """The presenting symptoms as written in the notes, or None when the notes do not state them."""
    match = _PRESENTING.search(notes or "")
    if match is None:
        return None
    text = _CONTROL.sub(" ", match.group(1)).strip()
    return text[:MAX_QUOTE_CHARS].rstrip() or None


def clinical_context(manifest: CaseManifest, contributions: dict[str, float]) -> ClinicalContext | None:
    """Age, sex and symptoms as recorded; None when case.json records none of them."""
    symptoms = presenting_symptoms(manifest.clinical_notes)
    sex = manifest.sex if manifest.sex not in (None, "unknown") else None
    if manifest.age_band is None and sex is None and symptoms is None:
        return None
    weight = contributions.get("clinical")
    return ClinicalContext(
        age_band=manifest.age_band,
        sex=sex,
        presenting_symptoms=symptoms,
        clinical_weight=None if weight is None else round(weight, 4),
        carries_weight=weight is not None and weight >= 1.0 / len(contributions),
    )
