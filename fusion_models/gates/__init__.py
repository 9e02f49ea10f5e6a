"""Input gates: plausibility checks per modality, between loading a case and the model.

A loader answers "can this file be read?"; a gate answers "is what was read plausible,
and on the scale the model was trained on?". Each gate is `(CaseInputs, InputNeeds) ->
CaseInputs`, registered by name and run in registration order, and ends in one of:

* accepted: the inputs come back unchanged;
* converted: values rewritten to the model's scale, the conversion recorded in
  `CaseInputs.conversions` (-> `provenance.input_conversions`);
* unusable: the part is removed and an `UnusableModality` names file and field
  (-> an `unusable_input` flag);
* out of distribution: the part is kept and a `ModalityOOD` with method `gate:<check>`
  records the distance (-> an `out_of_distribution` flag that lowers confidence).

A case of a cancer type the model was not trained for is refused (`InputError` naming
`case.json: cancer_type`) unless `InputNeeds.other_cancer_type` asks for a report
without conclusions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import numpy as np

from schemas.common import Modality
from schemas.errors import InputError
from schemas.fusion import ModalityOOD
from schemas.report import UnusableModality
from toolkit.registry import Registry

if TYPE_CHECKING:  # inputs.py runs the gates, so the gates only name its types
    from fusion_models.inputs import CaseInputs

OtherCancerType = Literal["refuse", "report_without_conclusions"]
# Every model this project trains is an adult diffuse glioma model; a cancer type passes
# when one of these words appears in it ("glioma", "Adult diffuse glioma", "glioblastoma").
GLIOMA_TYPES: tuple[str, ...] = ("glioma", "glioblastoma", "astrocytoma", "oligodendroglioma")
CANCER_TYPE_CHECK = "cancer_type"


@dataclass(frozen=True)
class PatchStats:
    """Per-dimension mean and standard deviation of the patch features the model was trained on."""

    mean: np.ndarray
    std: np.ndarray


@dataclass(frozen=True)
class InputNeeds:
    """What the model reads: the gates check a case against it."""

    model: str = "the model"
    cancer_types: tuple[str, ...] = GLIOMA_TYPES
    other_cancer_type: OtherCancerType = "refuse"
    expression_scale: str = "zscore"
    expression_genes: frozenset[str] | None = None  # genes read one by one; None = only rank-based scores
    min_expression_coverage: float = 0.5
    patch_stats: PatchStats | None = None  # None = the model has no patch branch (or no statistics)


Gate = Callable[["CaseInputs", InputNeeds], "CaseInputs"]
_GATES: Registry[Gate] = Registry("input gate")


def register_gate(name: str) -> Callable[[Gate], Gate]:
    return _GATES.register(name)


def list_gates() -> list[str]:
    """Registered gate names, in the order they run."""
    return list(_GATES)


def apply_gates(inputs: CaseInputs, needs: InputNeeds) -> CaseInputs:
    """Every gate in order; only the cancer-type gate raises (InputError), the others record."""
    for name in _GATES:
        inputs = _GATES.get(name)(inputs, needs)
    return inputs


def with_unusable(inputs: CaseInputs, modality: Modality, error: InputError, **changes) -> CaseInputs:
    """`inputs` with `changes` applied and `error` recorded as an unusable part of `modality`."""
    record = UnusableModality(modality=modality, reason=str(error), file=error.file)
    return replace(inputs, unusable=[*inputs.unusable, record], **changes)


def gate_ood(
    modality: Modality, check: str, score: float, threshold: float, detail: str, *, action: str = "none"
) -> ModalityOOD:
    return ModalityOOD(
        modality=modality,
        method=f"gate:{check}",
        score=float(score),
        threshold=float(threshold),
        out_of_distribution=bool(score > threshold),
        action=action,
        detail=" ".join(detail.split()),
    )


def outside_trained_cancer_types(inputs: CaseInputs) -> bool:
    """Whether the cancer-type gate let this case through only to be reported without conclusions."""
    return any(o.method == f"gate:{CANCER_TYPE_CHECK}" and o.out_of_distribution for o in inputs.ood)

# Registration order is run order: a refused cancer type stops the case before any other check.
from fusion_models.gates import clinical, imaging, pathology, genomics  # noqa: E402,F401  (registers the gates)

__all__ = [
    "CANCER_TYPE_CHECK",
    "GLIOMA_TYPES",
    "InputNeeds",
    "OtherCancerType",
    "PatchStats",
    "apply_gates",
    "gate_ood",
    "list_gates",
    "outside_trained_cancer_types",
    "register_gate",
    "with_unusable",
]
