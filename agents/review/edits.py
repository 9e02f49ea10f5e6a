"""Typed clinician edits: checked against the report they change, and re-applied after every re-check.

The workflow keeps every accepted edit (StampedEdit) and applies them at three points, so
that the rules and the narrative follow the clinician:

- `before_checks`: label overrides, on the draft, so the consistency rules judge the clinician's label;
- `after_checks`: label and confidence overrides (the confidence step may have changed them), flag
  dismissals and sampling-plan moves, on the checked report;
- `after_narrative`: the clinician's sentences, on the written narrative.

The model's value is always kept (ClinicianOverride.model_value).
"""

from __future__ import annotations

from typing import Any, get_args

from schemas.common import Confidence
from schemas.report import (
    ClinicianOverride,
    Conclusion,
    EvidenceChainReport,
    FlagDismissal,
    LocalisedText,
    SamplingTarget,
    Sentence,
)
from schemas.review import ConclusionEdit, Edit, FlagDismissEdit, NarrativeEdit, SamplingTargetEdit, StampedEdit


class InvalidEdit(ValueError):
    """An edit that does not fit the report; the message names the field."""


def field_path(edit: Edit) -> str:
    """The report field an edit changes, as an audit-trail path."""
    if isinstance(edit, ConclusionEdit):
        return f"conclusions[{edit.task}].{edit.field}"
    if isinstance(edit, FlagDismissEdit):
        return f"consistency_flags[{edit.flag_id}].dismissal"
    if isinstance(edit, SamplingTargetEdit):
        return "sampling_plan"
    return f"narrative[{edit.section}].sentences[{edit.index}]"


def check_edit(report: EvidenceChainReport, edit: Edit) -> None:
    """Raise InvalidEdit (naming the field and what would be valid) when `edit` cannot apply to `report`."""
    where = field_path(edit)
    if isinstance(edit, ConclusionEdit):
        tasks = {c.task: c for c in report.conclusions}
        if edit.task not in tasks:
            raise InvalidEdit(f"{where}: unknown task {edit.task!r}; this report concludes on: {', '.join(tasks) or 'none'}")
        allowed = list(tasks[edit.task].class_probabilities) if edit.field == "label" else list(get_args(Confidence))
        if edit.value not in allowed:
            raise InvalidEdit(f"{where}: {edit.value!r} is not one of {', '.join(allowed)}")
    elif isinstance(edit, FlagDismissEdit):
        flags = {f.id: f for f in report.consistency_flags}
        if edit.flag_id not in flags:
            raise InvalidEdit(f"{where}: unknown flag id {edit.flag_id!r}; flags: {', '.join(flags) or 'none'}")
        if flags[edit.flag_id].dismissal is not None:
            raise InvalidEdit(f"{where}: flag {edit.flag_id} is already dismissed")
    elif isinstance(edit, SamplingTargetEdit):
        units = {s.unit_id for s in report.spatial_evidence}
        planned = [t.unit_id for t in report.sampling_plan]
        if edit.unit_id not in units:
            raise InvalidEdit(f"{where}: unknown unit {edit.unit_id!r}; units: {', '.join(sorted(units)) or 'none'}")
        if edit.unit_id not in planned:
            raise InvalidEdit(f"{where}: unit {edit.unit_id!r} is not in the plan; planned: {', '.join(planned) or 'none'}")
        if edit.rank > len(planned):
            raise InvalidEdit(f"{where}: rank {edit.rank} is beyond the plan's {len(planned)} target(s)")
    else:
        sections = {s.key: s for s in report.narrative}
        if edit.section not in sections:
            raise InvalidEdit(f"{where}: unknown narrative section {edit.section!r}; sections: {', '.join(sections)}")
        if edit.index > len(sections[edit.section].sentences):
            raise InvalidEdit(f"{where}: index {edit.index} is beyond the section's "
                              f"{len(sections[edit.section].sentences)} sentence(s)")
        unknown = [e for e in edit.evidence if e not in report.citable_ids()]
        if unknown:
            raise InvalidEdit(f"{where}.evidence: unknown evidence ids {', '.join(unknown)}")


def _override(c: Conclusion, stamped: StampedEdit, model_value: str) -> Conclusion:
    edit = stamped.edit
    update: dict[str, Any] = {edit.field: edit.value}
    if edit.field == "label":
        # The shown probability stays the model's, now the one it gave the clinician's label.
        update["probability"] = c.class_probabilities[edit.value]
    override = ClinicianOverride(field=edit.field, model_value=model_value, value=edit.value,
                                 reviewer=stamped.actor, reason=edit.reason, time=stamped.time)
    return c.model_copy(update=update | {"overrides": [*c.overrides, override]})


def _conclusion_edits(edits: list[StampedEdit], task: str, field: str) -> list[StampedEdit]:
    return [s for s in edits if isinstance(s.edit, ConclusionEdit) and s.edit.task == task and s.edit.field == field]


def before_checks(draft: EvidenceChainReport, edits: list[StampedEdit]) -> EvidenceChainReport:
    """Label overrides on the draft (whose conclusions carry none: the checks start afresh every time)."""
    conclusions = []
    for c in draft.conclusions:
        model_label = c.label
        for s in _conclusion_edits(edits, c.task, "label"):
            c = _override(c, s, model_label)
        conclusions.append(c)
    return draft.model_copy(update={"conclusions": conclusions})


def after_checks(report: EvidenceChainReport, edits: list[StampedEdit]) -> EvidenceChainReport:
    conclusions = []
    for c in report.conclusions:
        labels = [o.value for o in c.overrides if o.field == "label"]
        if labels and c.label != labels[-1]:  # the confidence step may have replaced the clinician's label
            c = c.model_copy(update={"label": labels[-1], "probability": c.class_probabilities[labels[-1]]})
        model_confidence = c.confidence
        for s in _conclusion_edits(edits, c.task, "confidence"):
            c = _override(c, s, model_confidence)
        conclusions.append(c)
    flags, plan = list(report.consistency_flags), list(report.sampling_plan)
    for s in edits:
        edit = s.edit
        if isinstance(edit, FlagDismissEdit):
            dismissal = FlagDismissal(reviewer=s.actor, reason=edit.reason, time=s.time)
            # A re-check numbers flags afresh; a dismissal follows the flag it was made on (kind and evidence).
            flags = [f.model_copy(update={"dismissal": dismissal})
                     if f.kind == s.flag_kind and f.evidence == s.flag_evidence else f for f in flags]
        elif isinstance(edit, SamplingTargetEdit):
            plan = move_target(plan, edit.unit_id, edit.rank)
    return report.model_copy(update={"conclusions": conclusions, "consistency_flags": flags, "sampling_plan": plan})


def move_target(plan: list[SamplingTarget], unit_id: str, rank: int) -> list[SamplingTarget]:
    """The plan with `unit_id` at `rank` and the others in their order, ranked 1..n again.

    Unchanged when the unit is not in the plan (a re-check after another edit may have dropped it)."""
    moved = next((t for t in plan if t.unit_id == unit_id), None)
    if moved is None:
        return plan
    rest = [t for t in plan if t is not moved]
    rest.insert(min(rank, len(plan)) - 1, moved)
    return [t.model_copy(update={"rank": i}) for i, t in enumerate(rest, start=1)]


def clinician_sentence(edit: NarrativeEdit) -> Sentence:
    # Not checked by the claim verifier: the reviewer's own statement, marked as theirs.
    return Sentence(text=LocalisedText(en=edit.text, zh=edit.text_zh or edit.text), evidence=edit.evidence,
                    grounded=False, source="clinician")


def stamp(report: EvidenceChainReport, edit: Edit, actor: str, time, version: int) -> StampedEdit:
    """A checked edit with who, when, and (for a dismissal) which flag it was made on."""
    check_edit(report, edit)
    pinned = {}
    if isinstance(edit, FlagDismissEdit):
        flag = next(f for f in report.consistency_flags if f.id == edit.flag_id)
        pinned = {"flag_kind": flag.kind, "flag_evidence": list(flag.evidence)}
    return StampedEdit(edit=edit, actor=actor, time=time, version=version, **pinned)


def after_narrative(report: EvidenceChainReport, edits: list[StampedEdit]) -> EvidenceChainReport:
    sections = {s.key: s for s in report.narrative}
    for s in edits:
        edit = s.edit
        if not isinstance(edit, NarrativeEdit) or edit.section not in sections:
            continue
        sentences = list(sections[edit.section].sentences)
        sentence = clinician_sentence(edit)
        if edit.index < len(sentences):
            sentences[edit.index] = sentence
        else:
            sentences.append(sentence)
        sections[edit.section] = sections[edit.section].model_copy(update={"sentences": sentences})
    return report.model_copy(update={"narrative": list(sections.values())})
