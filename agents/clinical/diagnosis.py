"""WHO CNS5 integrated diagnosis: the rules of `profile` applied to tested markers and histology,
and a posterior over the candidate diagnoses that the model's grade and subtype beliefs seed.

Two things are kept apart on purpose:

* the **label** comes only from tests (markers detected / not detected, the pathologist's read)
  through the profile's rules; where a required test is missing the label is the NOS form and the
  missing test is named. A model prediction never fills a criterion.
* the **posterior** over `CANDIDATES` is the model's joint belief (subtype x grade, mapped by
  `MODEL_CANDIDATE`) restricted to the candidates the tests allow and renormalised. It gives the
  label's probability (for a NOS label: the mass of the candidates it covers) and the sampling
  plan's prior.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agents.clinical.profile import (
    CANDIDATES,
    DIFFUSE_ASTROCYTIC_IDHWT_NOS,
    DIFFUSE_GLIOMA_NOS,
    FAMILY_RULES,
    GLIOBLASTOMA,
    GRADE_RULES,
    HISTOLOGY_TEST,
    INSUFFICIENT,
    MARKER_SPECS,
    MODEL_CANDIDATE,
    NOS_LABELS,
    ASTROCYTOMA_NOS,
    OLIGODENDROGLIOMA_NOS,
    Candidate,
    Rule,
    astrocytoma,
    oligodendroglioma,
)
from schemas.case import PathologyFindings

GLIOBLASTOMA_MARKERS = ("TERT", "EGFR", "7+10-")
HIGH_GRADE_FEATURES = ("histology:necrosis", "histology:microvascular_proliferation")


@dataclass(frozen=True)
class IntegratedDiagnosis:
    label: str
    probability: float
    posterior: dict[str, float]  # candidate label -> probability, over CANDIDATES
    histology: str
    grade: int | None
    molecular: str
    rules: tuple[Rule, ...]
    missing_tests: tuple[str, ...]
    settled: bool  # a specific diagnosis with histology and every test that could change it in hand
    model_agreement: float  # share of the model's prior the tests leave possible


def histology_facts(findings: PathologyFindings | None) -> frozenset[str]:
    if findings is None:
        return frozenset()
    facts = set()
    if findings.necrosis is True:
        facts.add("histology:necrosis")
    if findings.microvascular_proliferation is True:
        facts.add("histology:microvascular_proliferation")
    if findings.who_grade is not None and findings.who_grade >= 2:
        facts.add(f"histology:who_grade_{findings.who_grade}")
    return frozenset(facts)


def facts_of(status: Mapping[str, str], findings: PathologyFindings | None) -> frozenset[str]:
    """'<marker>:<status>' for tested markers, plus the histology facts."""
    tested = {f"{k}:{v}" for k, v in status.items() if v in ("detected", "not_detected")}
    return frozenset(tested) | histology_facts(findings)


def holds(rule: Rule, facts: frozenset[str]) -> bool:
    return set(rule.all_of) <= facts and (not rule.any_of or bool(set(rule.any_of) & facts))


def family_allowed(c: Candidate, facts: frozenset[str]) -> bool:
    """Whether the tests leave the candidate's family possible (IDH, 1p/19q and ATRX results)."""
    f = facts
    if "IDH:detected" in f and c.family not in ("astrocytoma", "oligodendroglioma"):
        return False
    if "IDH:not_detected" in f and c.family not in ("glioblastoma", "diffuse_astrocytic_idhwt"):
        return False
    if "1p19q:detected" in f and c.family != "oligodendroglioma":
        return False
    return not (("1p19q:not_detected" in f or "ATRX:detected" in f) and c.family == "oligodendroglioma")


def upgraded(c: Candidate, facts: frozenset[str]) -> str:
    """The candidate a tumour of `c` becomes given grading facts: a specimen can under-grade but not over-grade,
    so a histological grade k lifts lower grades to k, and necrosis, microvascular proliferation, CDKN2A/B deletion
    (astrocytoma) or a glioblastoma marker (IDH-wildtype) lift it as the rules say. The model's belief in the
    family is kept; only the grade moves."""
    f = facts
    seen = max((k for k in (2, 3, 4) if f"histology:who_grade_{k}" in f), default=0)
    high = bool(set(HIGH_GRADE_FEATURES) & f)
    if c.family == "diffuse_astrocytic_idhwt":
        molecular_gbm = any(f"{k}:detected" in f for k in GLIOBLASTOMA_MARKERS)
        return GLIOBLASTOMA if high or molecular_gbm or seen == 4 else c.label
    if c.family == "astrocytoma":
        grade = 4 if high or "CDKN2AB:detected" in f else max(c.grade or 2, seen)
        return astrocytoma(grade)
    if c.family == "oligodendroglioma":
        return oligodendroglioma(3 if high else max(c.grade or 2, min(seen, 3)))
    return c.label


def model_prior(grade_p: Mapping[str, float] | None, subtype_p: Mapping[str, float] | None) -> dict[str, float]:
    """The model's joint belief over candidates, treating its grade and subtype heads as independent;
    a head that is absent contributes a uniform distribution."""
    grades = grade_p or {g: 1.0 / 3 for g in ("G2", "G3", "G4")}
    subtypes = subtype_p or {s: 1.0 / 3 for s in ("IDHwt", "IDHmut-codel", "IDHmut-non-codel")}
    prior = {c.label: 0.0 for c in CANDIDATES}
    for (s, g), label in MODEL_CANDIDATE.items():
        prior[label] += subtypes.get(s, 0.0) * grades.get(g, 0.0)
    total = sum(prior.values())
    return {k: v / total for k, v in prior.items()} if total > 0 else {k: 1.0 / len(prior) for k in prior}


def posterior(prior: Mapping[str, float], facts: frozenset[str]) -> dict[str, float]:
    """The prior with each candidate's mass moved to what the grading facts make it (`upgraded`), restricted to
    the families the tests allow and renormalised; uniform over those if the model gave them no mass, and the
    prior unchanged if the tests contradict each other (no family is allowed)."""
    moved = {c.label: 0.0 for c in CANDIDATES}
    for c in CANDIDATES:
        moved[upgraded(c, facts)] += prior[c.label]
    allowed = [c.label for c in CANDIDATES if family_allowed(c, facts) and upgraded(c, facts) == c.label]
    if not allowed:
        return dict(prior)
    mass = sum(moved[k] for k in allowed)
    return {
        c.label: ((moved[c.label] / mass) if mass > 0 else 1.0 / len(allowed)) if c.label in allowed else 0.0
        for c in CANDIDATES
    }


def model_agreement(prior: Mapping[str, float], facts: frozenset[str]) -> float:
    """Share of the model's belief that the tests leave possible (1 = the tests only sharpen it; near 0 = the
    tests overrule the model, so the renormalised posterior is not the model's confidence)."""
    return sum(prior[c.label] for c in CANDIDATES if family_allowed(c, facts))


def _first(rules: Sequence[Rule], facts: frozenset[str], family: str | None = None) -> Rule | None:
    return next((r for r in rules if (family is None or r.for_family == family) and holds(r, facts)), None)


def _untested(status: Mapping[str, str], keys: Sequence[str]) -> list[str]:
    return [MARKER_SPECS[k].test for k in keys if status.get(k) not in ("detected", "not_detected")]


def label_by_rules(
    status: Mapping[str, str], findings: PathologyFindings | None, post: Mapping[str, float]
) -> tuple[str, int | None, tuple[Rule, ...], list[str]]:
    """(label, CNS WHO grade, rules applied, tests still missing for the diagnosis)."""
    facts = facts_of(status, findings)
    family_rule = _first(FAMILY_RULES, facts)
    if family_rule is None:
        if status.get("IDH") != "detected":
            return DIFFUSE_GLIOMA_NOS, None, (), _untested(status, ("IDH",))
        families = {"astrocytoma": 0.0, "oligodendroglioma": 0.0}
        for c in CANDIDATES:
            if c.family in families:
                families[c.family] += post.get(c.label, 0.0)
        label = OLIGODENDROGLIOMA_NOS if families["oligodendroglioma"] > families["astrocytoma"] else ASTROCYTOMA_NOS
        return label, None, (), _untested(status, ("1p19q",))
    if family_rule.family == "glioblastoma":
        return GLIOBLASTOMA, 4, (family_rule,), []
    if family_rule.family == "diffuse_astrocytic_idhwt":
        return DIFFUSE_ASTROCYTIC_IDHWT_NOS, None, (family_rule,), _untested(status, GLIOBLASTOMA_MARKERS)
    grade_rule = _first(GRADE_RULES, facts, family_rule.family)
    make = astrocytoma if family_rule.family == "astrocytoma" else oligodendroglioma
    nos = ASTROCYTOMA_NOS if family_rule.family == "astrocytoma" else OLIGODENDROGLIOMA_NOS
    missing = []
    if family_rule.family == "astrocytoma" and (grade_rule is None or (grade_rule.grade or 0) < 4):
        missing = _untested(status, ("CDKN2AB",))  # a deletion would make it grade 4
    if grade_rule is None:
        return nos, None, (family_rule,), [HISTOLOGY_TEST, *missing]
    return make(grade_rule.grade), grade_rule.grade, (family_rule, grade_rule), missing


def _histology_layer(findings: PathologyFindings | None) -> str:
    if findings is None:
        return "no histology available"
    parts = [f"'{findings.histology}'" if findings.histology else "diffuse glioma (no histological type stated)"]
    if findings.who_grade is not None:
        parts.append(f"histological grade {findings.who_grade}")
    for name, value in (("necrosis", findings.necrosis), ("microvascular proliferation", findings.microvascular_proliferation)):
        if value is not None:
            parts.append(f"{name} {'present' if value else 'absent'}")
    return "; ".join(parts)


def _molecular_layer(status: Mapping[str, str]) -> str:
    words = {"detected": "detected", "not_detected": "not detected", "not_tested": "not tested"}
    keys = ("IDH", "1p19q", "CDKN2AB", "TERT", "EGFR", "7+10-", "ATRX")
    return "; ".join(f"{MARKER_SPECS[k].name} {words[status.get(k, 'not_tested')]}" for k in keys)


def integrated_diagnosis(
    status: Mapping[str, str],
    findings: PathologyFindings | None,
    grade_probabilities: Mapping[str, float] | None,
    subtype_probabilities: Mapping[str, float] | None,
) -> IntegratedDiagnosis:
    """The WHO CNS5 integrated diagnosis of one case (see the module docstring)."""
    facts = facts_of(status, findings)
    prior = model_prior(grade_probabilities, subtype_probabilities)
    post = posterior(prior, facts)
    tested = any(v in ("detected", "not_detected") for v in status.values())
    if findings is None and not tested:
        label, grade, rules = INSUFFICIENT, None, ()
        missing = [HISTOLOGY_TEST, MARKER_SPECS["IDH"].test]
        probability = max(post.values())
    else:
        label, grade, rules, missing = label_by_rules(status, findings, post)
        if findings is None:
            missing = [HISTOLOGY_TEST, *missing]
        if label in post:
            probability = post[label]
        else:
            families = NOS_LABELS[label]
            probability = sum(post[c.label] for c in CANDIDATES if c.family in families)
    settled = not missing and label not in (INSUFFICIENT, *NOS_LABELS, DIFFUSE_ASTROCYTIC_IDHWT_NOS)
    return IntegratedDiagnosis(
        label=label, probability=min(1.0, probability), posterior=post, histology=_histology_layer(findings),
        grade=grade, molecular=_molecular_layer(status), rules=rules, missing_tests=tuple(dict.fromkeys(missing)),
        settled=settled, model_agreement=model_agreement(prior, facts),
    )
