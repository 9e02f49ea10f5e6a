"""Every glioma marker as detected / not detected / not tested / predicted, with its source and evidence.

Pure functions over `MolecularData` (what the case's files say, read once at the edge by
`molecular_data`). A status comes from a test in the case (mutation call, copy number,
the pathologist's immunohistochemistry); the model may only fill an untested marker with
status "predicted", which no diagnostic rule reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agents.clinical.profile import (
    ARM_GENES,
    GISTIC_AMPLIFICATION,
    GISTIC_GAIN,
    GISTIC_HOMOZYGOUS_DELETION,
    GISTIC_LOSS,
    H3_GENES,
    H3_K27M_VARIANTS,
    MARKER_SPECS,
    TERT_PROMOTER_VARIANTS,
)
from agents.consistency.grounding import fmt, fmt_probability
from fusion_models.genomics.io import GenomicsInput
from schemas.case import PathologyFindings
from schemas.report import Marker, MechanismEvidence

IDH_GENES = ("IDH1", "IDH2")
CDKN2AB_GENES = ("CDKN2A", "CDKN2B")
IDH_MUTANT_SUBTYPES = ("IDHmut-codel", "IDHmut-non-codel")
CODELETED_SUBTYPE = "IDHmut-codel"
IDH_IHC_NOTE = (
    "a negative IDH1 R132H stain does not exclude other IDH1/IDH2 mutations; sequencing is needed, "
    "especially under 55 years"
)
TERT_NOTE = "the TERT promoter is non-coding and is not covered by the mutation calls of this case"
PREDICTED_NOTE = "model prediction, not a test: it fills no diagnostic criterion"


@dataclass(frozen=True)
class MolecularData:
    """The tests a case holds. `mutations` None = no mutation calls read; `cnv` None = no copy-number file."""

    mutations: tuple[tuple[str, str], ...] | None = None  # (gene, variant)
    cnv: Mapping[str, float] | None = None  # gene -> GISTIC
    ihc: Mapping[str, str] = field(default_factory=dict)  # stain -> result, from findings.json


def molecular_data(genomics: GenomicsInput | None, findings: PathologyFindings | None) -> MolecularData:
    """Read the case's mutation calls, copy number and stains once."""
    mutations = cnv = None
    if genomics is not None and genomics.mutations is not None:
        mutations = tuple(zip(genomics.mutations["gene"].astype(str), genomics.mutations["variant"].astype(str)))
    if genomics is not None and genomics.cnv is not None:
        cnv = {str(g): float(v) for g, v in genomics.cnv.items()}
    ihc = dict(findings.immunohistochemistry or {}) if findings is not None else {}
    return MolecularData(mutations=mutations, cnv=cnv, ihc=ihc)


def _ids(mechanism: Sequence[MechanismEvidence], *event_ids: str) -> list[str]:
    return [m.id for m in mechanism if m.pathway_id in event_ids]


def _marker(key: str, status: str, source: str, value: str | None = None,
            evidence: Sequence[str] = (), note: str = "") -> Marker:
    return Marker(marker=MARKER_SPECS[key].name, status=status, value=value, source=source,
                  evidence=list(evidence), note=note)


def _untested(key: str, note: str = "") -> Marker:
    return _marker(key, "not_tested", "none", note=note or f"would be settled by {MARKER_SPECS[key].test}")


def _predicted(key: str, label: str, p: float) -> Marker:
    return _marker(key, "predicted", "model", f"{label} (model probability {fmt_probability(p)})",
                   note=f"{PREDICTED_NOTE}; {MARKER_SPECS[key].test} settles it")


def _calls(data: MolecularData, genes: Sequence[str]) -> list[tuple[str, str]]:
    return [(g, v) for g, v in data.mutations or () if g in genes]


def idh_marker(data: MolecularData, mechanism: Sequence[MechanismEvidence],
               subtype_probabilities: Mapping[str, float] | None) -> Marker:
    if data.mutations is not None:
        calls = _calls(data, IDH_GENES)
        if calls:
            value = ", ".join(f"{g} {v}" for g, v in calls)
            return _marker("IDH", "detected", "mutation_call", value, _ids(mechanism, "MUT:IDH1", "MUT:IDH2"))
        return _marker("IDH", "not_detected", "mutation_call", "no IDH1/IDH2 mutation called",
                       _ids(mechanism, "WT:IDH"))
    if data.ihc.get("IDH1_R132H") == "positive":
        return _marker("IDH", "detected", "immunohistochemistry", "IDH1 R132H positive")
    note = IDH_IHC_NOTE if data.ihc.get("IDH1_R132H") == "negative" else ""
    if subtype_probabilities:
        p = sum(subtype_probabilities.get(s, 0.0) for s in IDH_MUTANT_SUBTYPES)
        marker = _predicted("IDH", "IDH-mutant" if p >= 0.5 else "IDH-wildtype", max(p, 1.0 - p))
        return marker.model_copy(update={"note": "; ".join(n for n in (note, marker.note) if n)})
    return _untested("IDH", note)


def idh_ihc_marker(data: MolecularData) -> Marker | None:
    """The R132H stain as its own line: 'not detected' here never means IDH-wildtype."""
    result = data.ihc.get("IDH1_R132H")
    if result in (None, "equivocal"):
        return None
    if result == "positive":
        return _marker("IDH1_R132H_IHC", "detected", "immunohistochemistry", "IDH1 R132H detected")
    return _marker("IDH1_R132H_IHC", "not_detected", "immunohistochemistry", "IDH1 R132H not detected",
                   note=IDH_IHC_NOTE)


def _arm_calls(cnv: Mapping[str, float], arm: str) -> list[float]:
    return [cnv[g] for g in ARM_GENES[arm] if g in cnv]


def arm_status(cnv: Mapping[str, float] | None, gains: Sequence[str], losses: Sequence[str]) -> str | None:
    """'detected' when every measured gene of each gained arm is gained and of each lost arm lost,
    'not_detected' when all arms are measured but the pattern is absent, None when an arm is unmeasured."""
    if cnv is None:
        return None
    calls = {arm: _arm_calls(cnv, arm) for arm in (*gains, *losses)}
    if any(not values for values in calls.values()):
        return None
    whole = all(v >= GISTIC_GAIN for a in gains for v in calls[a]) and all(
        v <= GISTIC_LOSS for a in losses for v in calls[a]
    )
    return "detected" if whole else "not_detected"


def codeletion_marker(data: MolecularData, subtype_probabilities: Mapping[str, float] | None) -> Marker:
    status = arm_status(data.cnv, (), ("1p", "19q"))
    if status is not None:
        return _marker("1p19q", status, "copy_number", "whole-arm loss of 1p and 19q" if status == "detected"
                       else "no whole-arm codeletion of 1p and 19q")
    if subtype_probabilities and CODELETED_SUBTYPE in subtype_probabilities:
        p = subtype_probabilities[CODELETED_SUBTYPE]
        return _predicted("1p19q", "codeleted" if p >= 0.5 else "not codeleted", max(p, 1.0 - p))
    return _untested("1p19q")


def chr7_chr10_marker(data: MolecularData) -> Marker:
    status = arm_status(data.cnv, ("7p", "7q"), ("10p", "10q"))
    if status is None:
        return _untested("7+10-", "the copy-number file covers too few genes on chromosomes 7 and 10")
    return _marker("7+10-", status, "copy_number", "gain of 7 and loss of 10" if status == "detected" else None)


def cnv_marker(key: str, data: MolecularData, mechanism: Sequence[MechanismEvidence], genes: Sequence[str],
               amplification: bool) -> Marker:
    measured = {g: data.cnv[g] for g in genes if data.cnv is not None and g in data.cnv}
    if not measured:
        return _untested(key)
    hit = {g: v for g, v in measured.items()
           if (v >= GISTIC_AMPLIFICATION if amplification else v <= GISTIC_HOMOZYGOUS_DELETION)}
    value = ", ".join(f"{g} GISTIC {fmt(v, 0)}" for g, v in (hit or measured).items())
    if hit:
        return _marker(key, "detected", "copy_number", value, _ids(mechanism, *(f"CNV:{g}" for g in hit)))
    return _marker(key, "not_detected", "copy_number", value)


def mutation_marker(key: str, data: MolecularData, mechanism: Sequence[MechanismEvidence], gene: str) -> Marker:
    if data.mutations is None:
        return _untested(key)
    calls = _calls(data, (gene,))
    if calls:
        return _marker(key, "detected", "mutation_call", ", ".join(f"{g} {v}" for g, v in calls),
                       _ids(mechanism, f"MUT:{gene}"))
    return _marker(key, "not_detected", "mutation_call", f"no {gene} mutation called")


def atrx_marker(data: MolecularData, mechanism: Sequence[MechanismEvidence]) -> Marker:
    stain = data.ihc.get("ATRX")
    if stain == "lost":
        return _marker("ATRX", "detected", "immunohistochemistry", "ATRX nuclear expression lost")
    sequenced = mutation_marker("ATRX", data, mechanism, "ATRX")
    if sequenced.status == "detected" or stain != "retained":
        return sequenced
    return _marker("ATRX", "not_detected", "immunohistochemistry", "ATRX nuclear expression retained")


def tert_marker(data: MolecularData, mechanism: Sequence[MechanismEvidence]) -> Marker:
    calls = [(g, v) for g, v in _calls(data, ("TERT",)) if any(t.lower() in v.lower() for t in TERT_PROMOTER_VARIANTS)]
    if calls:
        return _marker("TERT", "detected", "mutation_call", ", ".join(f"{g} {v}" for g, v in calls),
                       _ids(mechanism, "MUT:TERT"))
    return _untested("TERT", f"{TERT_NOTE}; would be settled by {MARKER_SPECS['TERT'].test}")


def h3_marker(data: MolecularData) -> Marker:
    calls = [(g, v) for g, v in _calls(data, H3_GENES) if any(k in v.upper() for k in H3_K27M_VARIANTS)]
    if calls:
        return _marker("H3K27M", "detected", "mutation_call", ", ".join(f"{g} {v}" for g, v in calls),
                       note="outside the adult-type diffuse glioma profile: consider diffuse midline glioma")
    stain = data.ihc.get("H3_K27M")
    if stain in ("positive", "negative"):
        status = "detected" if stain == "positive" else "not_detected"
        return _marker("H3K27M", status, "immunohistochemistry", f"H3 K27M {stain}")
    return _marker("H3K27M", "not_assessed", "none",
                   note="outside the adult-type diffuse glioma profile; test it in midline tumours")


def glioma_markers(data: MolecularData, mechanism: Sequence[MechanismEvidence],
                   subtype_probabilities: Mapping[str, float] | None = None) -> list[Marker]:
    """The profile's markers in the order a board reads them."""
    ihc = idh_ihc_marker(data)
    markers = [
        idh_marker(data, mechanism, subtype_probabilities),
        *([ihc] if ihc is not None else []),
        codeletion_marker(data, subtype_probabilities),
        cnv_marker("CDKN2AB", data, mechanism, CDKN2AB_GENES, amplification=False),
        tert_marker(data, mechanism),
        cnv_marker("EGFR", data, mechanism, ("EGFR",), amplification=True),
        chr7_chr10_marker(data),
        atrx_marker(data, mechanism),
        mutation_marker("TP53", data, mechanism, "TP53"),
        _untested("MGMT"),
        h3_marker(data),
    ]
    return markers


def marker_status(markers: Sequence[Marker]) -> dict[str, str]:
    """Profile key -> tested status ('predicted' and 'not_assessed' count as untested for the rules)."""
    by_name = {m.marker: m for m in markers}
    out = {}
    for key, spec in MARKER_SPECS.items():
        m = by_name.get(spec.name)
        out[key] = m.status if m is not None and m.status in ("detected", "not_detected") else "not_tested"
    return out
