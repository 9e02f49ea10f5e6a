"""Clinical gate: the case's cancer type, a plausible age band, and each time point listed once."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING

from fusion_models.gates import CANCER_TYPE_CHECK, InputNeeds, gate_ood, register_gate, with_unusable
from schemas.errors import InputError

if TYPE_CHECKING:
    from fusion_models.inputs import CaseInputs

MANIFEST = "case.json"
# The oldest documented human lived to 122; an upper bound above that is a typo, not a patient.
MAX_AGE_YEARS = 120


def cancer_type_matches(cancer_type: str, accepted: tuple[str, ...]) -> bool:
    """Whether one of the accepted words appears as a word of the cancer type (case-insensitive)."""
    words = set(re.findall(r"[a-z0-9]+", cancer_type.lower()))
    return any(term in words for term in accepted)


def age_band_problem(band: str) -> str | None:
    """Why an age band (already '<lo>-<hi>' or '<lo>+' by the manifest schema) is implausible, or None."""
    lo, _, hi = band.rstrip("+").partition("-")
    low, high = int(lo), int(hi) if hi else int(lo)
    if high > MAX_AGE_YEARS:
        return f"{band!r} reaches {high} years; a plausible age band lies within 0-{MAX_AGE_YEARS}"
    if hi and low > high:
        return f"{band!r} has its lower bound above its upper bound"
    return None


@register_gate("cancer_type")
def cancer_type(inputs: CaseInputs, needs: InputNeeds) -> CaseInputs:
    value = inputs.manifest.cancer_type
    if cancer_type_matches(value, needs.cancer_types):
        return inputs
    message = f"{value!r} is not a cancer type {needs.model} was trained for ({', '.join(needs.cancer_types)})"
    if needs.other_cancer_type == "refuse":
        raise InputError(MANIFEST, "cancer_type", message)
    detail = f"{MANIFEST}: cancer_type: {message}; reported without conclusions"
    record = gate_ood("clinical", CANCER_TYPE_CHECK, 1.0, 0.0, detail, action="masked")
    return replace(inputs, ood=[*inputs.ood, record])


@register_gate("age_band")
def age_band(inputs: CaseInputs, needs: InputNeeds) -> CaseInputs:
    band = inputs.manifest.age_band
    problem = age_band_problem(band) if band is not None else None
    if problem is None:
        return inputs
    manifest = inputs.manifest.model_copy(update={"age_band": None})
    return with_unusable(inputs, "clinical", InputError(MANIFEST, "age_band", problem), manifest=manifest)


@register_gate("timepoints")
def timepoints(inputs: CaseInputs, needs: InputNeeds) -> CaseInputs:
    """A time point listed twice would become a growth 'between' a scan and itself: keep its first listing."""
    repeated = [name for name, n in Counter(inputs.manifest.timepoint_names()).items() if n > 1]
    if not repeated:
        return inputs
    seen: set[str] = set()
    imaging = []
    for timepoint in inputs.imaging:
        if timepoint.name not in seen:
            seen.add(timepoint.name)
            imaging.append(timepoint)
    names = ", ".join(repr(n) for n in repeated)
    error = InputError(MANIFEST, "timepoints", f"{names} listed more than once; only the first listing is used")
    return with_unusable(inputs, "imaging", error, imaging=imaging)
