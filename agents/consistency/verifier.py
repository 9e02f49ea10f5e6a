"""The claim verifier: every narrative sentence, in every language, checked claim by claim before it is kept.

`verify_narrative` reads each sentence's claims (claims.py) and checks them against the evidence it
cites and the fixed parts of the report its section restates. A sentence whose claims all hold is
kept with `grounded=True`. One that fails is replaced by the aligned fallback sentence (same section
key and index) if that one passes, or else removed; either way an `ungrounded_claim` flag names the
claim that failed. A sentence that cites nothing fails too, unless it is a template sentence of a
phrase declared in `UNCITED_PHRASES`, which says what such a sentence rests on instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from agents.clinical.profile import ARM_GENES
from agents.consistency.claims import Claim, Lexicon, Scope, check_claim, extract_claims, lexicon
from agents.consistency.confidence import HIGH_PROBABILITY, MODERATE_PROBABILITY
from agents.evidence.risk import RISK_SCALE, SURVIVAL_BANDS
from agents.evidence.spatial import RANO_VOLUMETRIC
from agents.evidence.votes import evidence_votes
from schemas.report import (
    ConsistencyFlag,
    EvidenceChainReport,
    GroundingSummary,
    NarrativeSection,
    Sentence,
)

# Template phrases that cite no evidence id, and what each rests on instead. Their claims are still
# checked, against the fixed parts of their section (SECTION_FIXED_PARTS).
UNCITED_PHRASES: Mapping[str, str] = {
    "decisions.none": "states that there is no flag and no missing test: there is nothing to cite",
    "decisions.missing_tests": "names markers the case has no test for; an untested marker has no evidence item",
    "diagnosis.integrated": "the integrated diagnosis; uncited only when no evidence supports one (insufficient evidence)",
    "diagnosis.most_probable": "the diagnosis conclusion's candidate probabilities (fusion model and tested markers)",
    "diagnosis.rule": "quotes a WHO CNS5 / cIMPACT-NOW rule that fired (agents/clinical/profile.py)",
    "summary.clinical_context": "quotes case.json, which has no evidence id",
    "summary.conclusion": "a conclusion with no supporting evidence (e.g. insufficient evidence) states only itself",
    "marker.r132h_note": "the caveat of a negative R132H stain, a marker result (markers table)",
    "summary.conclusion_risk": "the risk head's survival estimate; the risk conclusion cites no evidence item",
    "plan.statement": "the sampling statement, computed from the diagnosis posterior (agents/sampling.py)",
    "uncertainty.all_present": "the report's modalities",
    "uncertainty.no_flags": "states that no flag lowered confidence: there is nothing to cite",
    "uncertainty.level": "the conclusions' confidence levels",
    "uncertainty.no_conclusion": "states that there is no conclusion: there is nothing to cite",
    "rationale.unsupported": "states that no evidence item speaks for the conclusion: there is nothing to cite",
    "rationale.uncertainty_missing": "names the report's missing modalities",
    "rationale.uncertainty_sets": "names the conclusions whose prediction sets hold more than one label",
    "rationale.uncertainty_none": "states that no modality is missing and no prediction set is open",
}

# Genes WHO CNS5 names for adult diffuse glioma (the profile's markers and the codeletion partners),
# read beside the knowledge base's gene universe.
DIAGNOSTIC_GENES = ("IDH1", "IDH2", "TERT", "EGFR", "CDKN2A", "CDKN2B", "ATRX", "TP53", "MGMT", "CIC", "FUBP1", "PTEN")
# Constants a sentence may state: confidence band edges (the confidence rule).
_BAND_EDGES = (HIGH_PROBABILITY, MODERATE_PROBABILITY)
_MODALITY_OF_ID = {"S": "imaging", "H": "pathology", "M": "genomics"}


def _fixed_parts(report: EvidenceChainReport) -> Mapping[str, tuple[BaseModel, ...]]:
    """The fixed parts of the report each section restates (beyond the evidence its sentences cite)."""
    conclusions = tuple(report.conclusions)
    statement = (report.sampling_statement,) if report.sampling_statement is not None else ()
    context = (report.clinical_context,) if report.clinical_context is not None else ()
    return {
        "decisions": (*report.markers, *conclusions),
        "diagnosis": (*conclusions, *context, SURVIVAL_BANDS, RISK_SCALE),
        "rationale": (*conclusions, report.uncertainty, report.modalities),
        "markers": tuple(report.markers),
        "growth": (RANO_VOLUMETRIC,),
        "plan": (*conclusions, *report.sampling_plan, *statement),
        "uncertainty": (report.uncertainty, report.modalities, *conclusions),
    }


@dataclass(frozen=True)
class ClaimFailure:
    section: str
    index: int
    sentence: Sentence
    claim: Claim
    reason: str
    action: str  # 'replaced' or 'removed'


@dataclass(frozen=True)
class VerifiedNarrative:
    sections: list[NarrativeSection]
    flags: list[ConsistencyFlag]
    summary: GroundingSummary
    failures: list[ClaimFailure]


@dataclass(frozen=True)
class SentenceCheck:
    claims: list[Claim]
    failures: list[tuple[Claim, str]]  # (claim, why it failed), in reading order

    @property
    def passed(self) -> bool:
        return not self.failures


class Verifier:
    """Checks sentences of one report; built once per report (votes, vocabulary, fixed parts)."""

    def __init__(self, report: EvidenceChainReport, programme_of: Mapping[str, str], genes: Iterable[str]):
        self.report = report
        self.lexicon: Lexicon = lexicon({*genes, *DIAGNOSTIC_GENES, *(g for arm in ARM_GENES.values() for g in arm)})
        self.items: dict[str, BaseModel] = {
            i.id: i for i in (*report.spatial_evidence, *report.histology_evidence, *report.mechanism_evidence,
                              *report.consistency_flags)
        }
        args = (report.spatial_evidence, report.histology_evidence, report.mechanism_evidence, dict(programme_of))
        self.votes = {task: evidence_votes(task, *args) for task in ("grade", "molecular_subtype")}
        self.fixed = _fixed_parts(report)
        self.conclusions = {c.task: c for c in report.conclusions}

    def scope(self, section: str, cited: Sequence[str]) -> Scope:
        return Scope(
            known_ids=frozenset(self.items),
            cited=tuple(self.items[i] for i in dict.fromkeys(cited) if i in self.items),
            fixed=self.fixed.get(section, ()),
            constants=_BAND_EDGES if section == "diagnosis" else (),
            votes=self.votes,
            conclusions=self.conclusions,
            genes_known=self.lexicon.genes,
        )

    def check(self, section: str, sentence: Sentence) -> SentenceCheck:
        claims = [Claim("citation", i, f"[{i}]") for i in sentence.evidence]
        for lang in ("en", "zh"):
            claims += extract_claims(getattr(sentence.text, lang), lang, self.lexicon)
        named = [c.entity for c in claims if c.kind == "citation"]
        scope = self.scope(section, named)
        failures = [(c, why) for c in claims if (why := check_claim(c, scope)) is not None]
        if not sentence.evidence and not (sentence.source == "template" and sentence.phrase in UNCITED_PHRASES):
            uncited = Claim("citation", "", sentence.text.en)  # the claim that the sentence rests on evidence
            claims.insert(0, uncited)
            failures.insert(0, (uncited, "the sentence cites no evidence"))
        return SentenceCheck(claims, failures)


def verify_narrative(
    report: EvidenceChainReport,
    sections: Sequence[NarrativeSection],
    fallback: Sequence[NarrativeSection],
    *,
    programme_of: Mapping[str, str],
    genes: Iterable[str],
) -> VerifiedNarrative:
    """Keep what passes; replace a failing sentence by its aligned fallback if that passes, else remove it.

    `programme_of` (pathway id -> programme) lets the vote of a pathway be read; `genes` is the gene
    vocabulary (the knowledge base's universe)."""
    verifier = Verifier(report, programme_of, genes)
    aligned = {s.key: s.sentences for s in fallback}
    kept_sections: list[NarrativeSection] = []
    failures: list[ClaimFailure] = []
    n_sentences = n_claims = n_passed = 0
    for section in sections:
        kept: list[Sentence] = []
        for index, sentence in enumerate(section.sentences):
            check = verifier.check(section.key, sentence)
            n_sentences += 1
            n_claims += len(check.claims)
            n_passed += len(check.claims) - len(check.failures)
            if check.passed:
                kept.append(sentence.model_copy(update={"grounded": True}))
                continue
            replacement = _replacement(verifier, section.key, index, sentence, aligned)
            if replacement is not None:
                kept.append(replacement)
            claim, reason = check.failures[0]
            failures.append(ClaimFailure(section.key, index, sentence, claim, reason,
                                         "replaced" if replacement is not None else "removed"))
        if kept:
            kept_sections.append(section.model_copy(update={"sentences": kept}))
    flags = _flags(report, failures, verifier)
    summary = GroundingSummary(
        sentences_checked=n_sentences, claims_checked=n_claims, claims_passed=n_passed,
        sentences_stripped=len(failures),
    )
    return VerifiedNarrative(kept_sections, flags, summary, failures)


def combined(*summaries: GroundingSummary) -> GroundingSummary:
    """The counts of verifications over disjoint sentences, added up."""
    return GroundingSummary(**{
        field: sum(getattr(s, field) for s in summaries) for field in GroundingSummary.model_fields
    })


def _replacement(
    verifier: Verifier, key: str, index: int, failed: Sentence, aligned: Mapping[str, Sequence[Sentence]]
) -> Sentence | None:
    candidates = aligned.get(key, ())
    if index >= len(candidates) or candidates[index] == failed:
        return None
    candidate = candidates[index]
    return candidate.model_copy(update={"grounded": True}) if verifier.check(key, candidate).passed else None


def _flags(report: EvidenceChainReport, failures: Sequence[ClaimFailure], verifier: Verifier) -> list[ConsistencyFlag]:
    first = 1 + max((int(f.id[1:]) for f in report.consistency_flags if f.id[1:].isdigit()), default=0)
    flags = []
    for n, f in enumerate(failures, start=first):
        evidence = [i for i in dict.fromkeys(f.sentence.evidence) if i in verifier.items]
        modalities = list(dict.fromkeys(_MODALITY_OF_ID[i[0]] for i in evidence if i[0] in _MODALITY_OF_ID))
        done = "replaced by the template sentence" if f.action == "replaced" else "removed"
        who = f.sentence.source.replace("_", " ")
        flags.append(ConsistencyFlag(
            id=f"F{n}", kind="ungrounded_claim", severity="warning", modalities=modalities, evidence=evidence,
            message=f"A {who} sentence of the {f.section} section was {done}: {f.claim.describe()}: {f.reason}. "
                    f"Sentence: “{f.sentence.text.en}”",
            recommended_action="Check the sentence against the cited evidence; the report states only what the "
                               "evidence shows.",
        ))
    return flags
