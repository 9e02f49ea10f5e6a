"""Growth rule: a lesion read as low grade that grows into the volumetric range of RANO progression.

Interval growth of that size in a lesion that imaging, histology or the model reads as
low grade raises concern for malignant transformation or under-grading; the board
should see it as a decision, not as one spatial bullet among many.
"""

from __future__ import annotations

from agents.consistency.grounding import PERCENT_DECIMALS, VOLUME_DECIMALS, fmt
from agents.consistency.rules import GRADE_FINDINGS, GRADE_TASKS, ConsistencyContext, FlagDraft, register_rule
from agents.consistency.signals import histology_high_grade, histology_low_grade, imaging_grade_hint
from prompts import Listing, Phrase, Term
from schemas.common import Modality
from schemas.report import SpatialEvidence

LOW_GRADE_MODEL_LABELS = ("G2",)
HIGH_GRADE_MODEL_LABELS = ("G4",)


def _ml(value: float | None, signed: bool = False) -> str:
    return f"{fmt(value or 0.0, VOLUME_DECIMALS, signed=signed)} mL"


def growth_phrase(s: SpatialEvidence) -> Phrase:
    """Volumes before and after, the change absolute and relative, and with dated scans the interval and rate."""
    fields = {
        "v0": _ml(s.baseline_volume_ml), "v1": _ml(s.volume_ml), "ml": _ml(s.change_ml, signed=True),
        "pct": f"{fmt(s.change_percent or 0.0, PERCENT_DECIMALS, signed=True)}%",
        "t0": s.baseline_timepoint or "", "t1": s.timepoint or "",
    }
    if s.interval_days and s.baseline_date and s.timepoint_date and s.change_ml_per_month is not None:
        return Phrase("growth.change_dated", {
            **fields, "d0": s.baseline_date.isoformat(), "d1": s.timepoint_date.isoformat(),
            "days": str(s.interval_days), "rate": _ml(s.change_ml_per_month, signed=True),
        })
    return Phrase("growth.change", fields)


def significant_growth(spatial: tuple[SpatialEvidence, ...]) -> SpatialEvidence | None:
    """The latest longitudinal change, if it lies in the RANO-style progression range."""
    changes = [s for s in spatial if s.unit_level == "longitudinal"]
    if not changes or changes[-1].rano_volumetric_range != "progression_range":
        return None
    return changes[-1]


def _low_grade_reads(ctx: ConsistencyContext) -> tuple[list[Phrase], list[Modality], list[str]]:
    """Which reads call the lesion low grade, the modalities behind them and their evidence ids."""
    reads: list[Phrase] = []
    modalities: list[Modality] = []
    evidence: list[str] = []
    if imaging_grade_hint(ctx.spatial) == 2:
        reads.append(Phrase("morphology.imaging_low"))
        modalities.append("imaging")
    if histology_low_grade(ctx.findings):
        reads.append(Phrase("morphology.histology_low", {"grade": str(ctx.findings.who_grade)}))
        modalities.append("pathology")
        evidence += ctx.findings_ids(*GRADE_FINDINGS)
    grade = next((c for c in ctx.conclusions if c.task == "grade"), None)
    if grade is not None and grade.label in LOW_GRADE_MODEL_LABELS:
        reads.append(Phrase("growth.model_low", {"label": Term("label", grade.label)}))
        modalities += grade.modalities_used
    return reads, modalities, evidence


def _read_high_grade(ctx: ConsistencyContext) -> bool:
    grade = next((c for c in ctx.conclusions if c.task == "grade"), None)
    return (
        imaging_grade_hint(ctx.spatial) == 4
        or histology_high_grade(ctx.findings)
        or (grade is not None and grade.label in HIGH_GRADE_MODEL_LABELS)
    )


@register_rule("growth_of_low_grade")
def growth_of_low_grade(ctx: ConsistencyContext) -> list[FlagDraft]:
    """Growth in the RANO-style progression range of a lesion that some read calls low grade and none high grade."""
    growth = significant_growth(ctx.spatial)
    if growth is None or _read_high_grade(ctx):
        return []
    reads, modalities, evidence = _low_grade_reads(ctx)
    if not reads:
        return []
    message = Phrase("flag.growth_low_grade", {"growth": growth_phrase(growth), "reads": Listing(tuple(reads))})
    action = Phrase("action.growth_low_grade", {
        "unit": growth.unit_id, "ml": f"{fmt(growth.volume_ml or 0.0, VOLUME_DECIMALS)} mL",
    })
    return [FlagDraft(
        "significant_growth", "warning", ("imaging", *modalities), (growth.id, *evidence),
        message, action, GRADE_TASKS,
    )]
