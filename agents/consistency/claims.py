"""Claims in a report sentence, and the check of each claim against what the sentence rests on (RadFact-style).

A sentence, in either of its languages and whoever wrote it, is read as claims: the evidence ids it
names, numbers (with unit and the rounding they are written with), genes and their events, pathway
ids and their direction, histological patterns present or absent, labels, and 'supports' / 'argues
against' stances; each with its negation and hedge. The words come from the phrase tables (every term
the report writes, in English and Chinese) plus the gene universe of the knowledge base, so a template
sentence and a language model's sentence are read the same way.

Each claim is then checked against its `Scope`: the evidence items and flags the sentence cites, plus
the fixed parts of the report its section restates (conclusions, markers, sampling plan, ...). Numbers
match when a scope value rounded to the decimals written equals the number (`grounding.number_is_grounded`,
tolerance 1e-9 after rounding); a written bound ('> 0.99') holds when a scope value lies beyond it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Literal

from pydantic import BaseModel

from agents.consistency.grounding import BOUND, NUMBER, number_is_grounded, values_of
from agents.evidence.votes import GRADES, SUBTYPES
from prompts import LANGUAGES, phrase_table, term
from schemas.report import Conclusion, ConsistencyFlag, HistologyEvidence, MechanismEvidence

ClaimKind = Literal["citation", "number", "gene", "pathway", "label", "phenotype", "direction", "pattern", "vote"]

# Patterns a pathologist reads as present or absent (findings.json booleans).
BOOLEAN_PATTERNS = ("necrosis", "microvascular_proliferation")

ID = re.compile(r"(?<![A-Za-z0-9_:/.\-])((?:FIG|[SHMF])\d+)(?![A-Za-z0-9_])")
PATHWAY_ID = re.compile(r"(?<![A-Za-z0-9_])((?:GO:\d{7})|(?:PROGENY|HALLMARK|MUT|CNV|WT):[A-Za-z0-9_]+|HALLMARK_[A-Z0-9_]+)")
# Gene-like tokens; 'CDKN2A/B' and 'IDH1/2' are shorthand for two genes.
_GENE_TOKEN = re.compile(r"(?<![A-Za-z0-9_:])([A-Z][A-Z0-9-]*[A-Z0-9])((?:/[A-Z0-9]{1,2}(?![A-Za-z0-9]))*)")
_CLAUSE_BREAK = re.compile(r"[;；：，。()（）「」“”]|[:,]\s|\.\s|\.$")
# A stance reaches over a list of labels ('reads as G2, G3'), not past the end of a statement.
_STATEMENT_BREAK = re.compile(r"[;；：。]|:\s|\.\s|\.$")
_UNIT = re.compile(r"^\s?(%|mL|ml|mm|bits?|px|days?|years?|比特|像素|天|岁|年)")

# Cue words; the phrase tables supply the terms, these supply the grammar around them.
_NEGATION = {
    "en": re.compile(r"\b(?:no|not|without|absent|none|neither|nor|never|cannot|excluded?)\b|n't", re.I),
    "zh": re.compile(r"未|无|不|没有|非|阴性"),
}
_HEDGE = {
    "en": re.compile(r"\b(?:may|might|could|possibly|probably|likely|suggests?|suggestive|about|approximately|around|appears?)\b", re.I),
    "zh": re.compile(r"可能|或许|提示|约|大约|疑似|倾向"),
}
_SUPPORT_CUE = {
    "en": re.compile(r"\b(?:supports?|supporting|favou?rs?|consistent with|in favour of|reads? as|points? to)\b", re.I),
    "zh": re.compile(r"(?<!不)支持|倾向于"),
}
_AGAINST_CUE = {
    "en": re.compile(r"\b(?:argues? against|speaks? against|contradicts?|rather than|instead of|instead)\b", re.I),
    "zh": re.compile(r"不支持|反对|而非|不符合"),
}
_EVENTS = {
    "en": (("amplified", r"amplification|amplified"), ("deleted", r"homozygous deletion|deletion|deleted"),
           ("wild_type", r"wild-type|wildtype|wild type"), ("mutated", r"mutation|mutated|mutant")),
    "zh": (("amplified", r"扩增"), ("deleted", r"纯合缺失|缺失"), ("wild_type", r"野生型"), ("mutated", r"突变")),
}
# Words a writer uses for a direction beside the phrase tables' own terms.
_DIRECTION_SYNONYMS = {
    "en": {"upregulated": "up", "increased": "up", "elevated": "up", "activated": "up", "downregulated": "down",
           "decreased": "down", "reduced": "down", "suppressed": "down", "unchanged": "neutral"},
    "zh": {"升高": "up", "增强": "up", "激活": "up", "降低": "down", "减弱": "down", "抑制": "down"},
}
_PRESENCE_SYNONYMS = {
    "en": {"present": "true", "seen": "true", "identified": "true", "shows": "true", "absent": "false"},
    "zh": {"可见": "true", "见到": "true", "未见": "false"},
}


@dataclass(frozen=True)
class Claim:
    """One checkable statement of a sentence."""

    kind: ClaimKind
    entity: str  # evidence id, gene, pathway id, label(s) joined by '|', pattern; '' for a bare number
    text: str  # the clause it was read from
    lang: str = "en"
    value: float | None = None
    decimals: int = 0
    unit: str | None = None
    bound: str | None = None  # '>' or '<' for a written bound
    direction: str | None = None  # up/down/neutral; true/false (present); supports/against; gene events
    negated: bool = False
    hedged: bool = False

    def describe(self) -> str:
        """The claim in one line, for a flag message."""
        what = {
            "citation": f"cites {self.entity}" if self.entity else "cites no evidence",
            "number": f"number {'' if self.bound is None else self.bound + ' '}{_written(self)}{self.unit or ''}",
            "gene": f"gene {self.entity}" + (f" {self.direction}" if self.direction else ""),
            "pathway": f"pathway {self.entity}",
            "label": f"label {self.entity}",
            "phenotype": f"{self.entity.replace('_', ' ')}",
            "direction": f"{self.entity or 'pathway'} {self.direction}",
            "pattern": f"{self.entity}" + ({"true": " present", "false": " absent"}.get(self.direction or "", "")),
            "vote": f"{self.direction} {self.entity.replace('|', ' or ')}",
        }[self.kind]
        return ("not " if self.negated and self.kind in ("gene", "direction", "pattern") else "") + what


def _written(claim: Claim) -> str:
    return f"{claim.value:.{claim.decimals}f}" if claim.value is not None else ""


@dataclass(frozen=True)
class Lexicon:
    """What a reader of the report recognises: the phrase tables' terms per language, and gene symbols."""

    genes: frozenset[str]
    # lang -> namespace -> (one pattern over every surface, longest first; surface -> value)
    terms: Mapping[str, Mapping[str, tuple[re.Pattern[str], Mapping[str, str]]]] = field(default_factory=dict)


_LABELS = (*GRADES, "G1", *SUBTYPES)
_CLAIM_NAMESPACES = ("label", "direction", "presence", "pattern", "phenotype")
# Names read only so that their digits and words are not read as claims ('第5版', '1p/19q 共缺失').
_NAME_NAMESPACES = ("citation", "rule")


def lexicon(genes: Iterable[str]) -> Lexicon:
    """The vocabulary of both languages from the phrase tables, and `genes` (HGNC symbols)."""
    return Lexicon(genes=frozenset(genes), terms={lang: _terms(lang) for lang in LANGUAGES})


@lru_cache(maxsize=None)
def _terms(lang: str) -> Mapping[str, tuple[re.Pattern[str], Mapping[str, str]]]:
    table = phrase_table(lang)
    out: dict[str, dict[str, str]] = {ns: {} for ns in (*_CLAIM_NAMESPACES, *_NAME_NAMESPACES)}
    for key, surface in table.items():
        ns, _, value = key.removeprefix("term.").partition(".")
        if not key.startswith("term.") or ns not in out or (ns == "label" and not _is_clinical_label(value)):
            continue
        out[ns][surface] = value
        if lang == "en" and ns == "pattern":
            out[ns][value.replace("_", " ")] = value
    out["direction"] |= _DIRECTION_SYNONYMS[lang]
    out["presence"] |= _PRESENCE_SYNONYMS[lang]
    edge = ("(?<![A-Za-z0-9])", "(?![A-Za-z0-9])") if lang == "en" else ("", "")
    return {
        ns: (re.compile(edge[0] + "(?:" + "|".join(re.escape(t) for t in sorted(m, key=len, reverse=True)) + ")" + edge[1],
                        re.I if lang == "en" and ns not in ("label",) else 0), m)
        for ns, m in out.items() if m
    }


def _is_clinical_label(value: str) -> bool:
    """Grades, subtypes and integrated diagnoses; not 'high'/'low', which are also confidence words."""
    return value in _LABELS or "CNS WHO" in value or value.endswith("NOS")


def label_task(label: str) -> str:
    if label in GRADES or label == "G1":
        return "grade"
    if label in SUBTYPES:
        return "molecular_subtype"
    return "diagnosis"


# ---------------------------------------------------------------- extraction


@dataclass
class _Reader:
    """Claims of one text, read left to right; a span read once is masked so it is not read again."""

    text: str
    lang: str
    masked: str = ""
    claims: list[tuple[int, Claim]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.masked = self.text

    def mask(self, start: int, end: int) -> None:
        self.masked = self.masked[:start] + " " * (end - start) + self.masked[end:]

    def clause(self, pos: int, breaks: re.Pattern[str] = _CLAUSE_BREAK) -> tuple[int, int]:
        starts = [m.end() for m in breaks.finditer(self.text) if m.end() <= pos]
        ends = [m.start() for m in breaks.finditer(self.text) if m.start() >= pos]
        return (max(starts, default=0), min(ends, default=len(self.text)))

    def add(self, start: int, end: int, kind: ClaimKind, entity: str, **kw: object) -> None:
        lo, hi = self.clause(start)
        before = self.masked[lo:start] if kind != "number" else ""
        negated = bool(_NEGATION[self.lang].search(before)) if kind in ("gene", "direction", "pattern") else False
        hedged = bool(_HEDGE[self.lang].search(self.text[lo:hi]))
        claim = Claim(kind=kind, entity=entity, text=self.text[lo:hi].strip(), lang=self.lang,
                      negated=bool(kw.pop("negated", negated)), hedged=hedged, **kw)  # type: ignore[arg-type]
        self.claims.append((start, claim))

    def terms(self, lex: Lexicon, ns: str) -> list[tuple[int, int, str]]:
        if ns not in lex.terms[self.lang]:
            return []
        pattern, values = lex.terms[self.lang][ns]
        lower = {k.lower(): v for k, v in values.items()}
        found = [(m.start(), m.end(), values.get(m.group(0)) or lower[m.group(0).lower()])
                 for m in pattern.finditer(self.masked)]
        for start, end, _ in found:
            self.mask(start, end)
        return found


def extract_claims(text: str, lang: str, lex: Lexicon) -> list[Claim]:
    """Every claim of `text` (one language of a sentence), in reading order."""
    r = _Reader(text, lang)
    for m in ID.finditer(r.masked):
        r.add(m.start(), m.end(), "citation", m.group(1))
        r.mask(m.start(), m.end())
    pathways = []
    for m in PATHWAY_ID.finditer(r.masked):
        r.add(m.start(), m.end(), "pathway", m.group(1))
        pathways.append((m.start(), m.group(1)))
        r.mask(m.start(), m.end())
    for ns in _NAME_NAMESPACES:
        r.terms(lex, ns)
    labels = r.terms(lex, "label")
    for start, end, value in r.terms(lex, "phenotype"):
        r.add(start, end, "phenotype", value)
    for start, end, value in labels:
        r.add(start, end, "label", value)
    _genes(r, lex)
    _patterns(r, lex)
    for start, end, value in r.terms(lex, "direction"):
        entity = next((p for s, p in reversed(pathways) if s < start), "")
        r.add(start, end, "direction", entity, direction=value)
    _votes(r, labels)
    for m in NUMBER.finditer(r.masked):
        sign, digits = m.groups()
        bound = BOUND.search(r.masked[: m.start()])
        unit = _UNIT.match(r.text[m.end():])
        r.add(m.start(), m.end(), "number", "", value=-float(digits) if sign else float(digits),
              decimals=len(digits.split(".")[1]) if "." in digits else 0,
              unit=unit.group(1) if unit else None, bound=bound.group(1) if bound else None)
    return [c for _, c in sorted(r.claims, key=lambda sc: sc[0])]


def genes_in(text: str, genes: frozenset[str]) -> list[tuple[int, int, str]]:
    """(start, end, symbol) of each known gene named in `text`; 'CDKN2A/B' names CDKN2A and CDKN2B."""
    out = []
    for m in _GENE_TOKEN.finditer(text):
        head, tails = m.group(1), [t for t in m.group(2).split("/") if t]
        names = [head] + [head[: len(head) - len(t)] + t for t in tails]
        out += [(m.start(), m.end(), g) for g in names if g in genes]
    return out


def _genes(r: _Reader, lex: Lexicon) -> None:
    for start, end, gene in genes_in(r.masked, lex.genes):
        _, hi = r.clause(start)
        after = r.text[end:hi]
        event = next((name for name, pattern in _EVENTS[r.lang] if re.match(r"\s?(?:promoter\s|启动子)?(?:" + pattern + ")", after)), None)
        r.add(start, end, "gene", gene, direction=event)
    for start, end, _ in genes_in(r.masked, lex.genes):
        r.mask(start, end)


_NEGATION_WINDOW = 30  # characters before a pattern where 'no' / 'without' / '未' negates it ('without X or Y')


def _patterns(r: _Reader, lex: Lexicon) -> None:
    presence = r.terms(lex, "presence")
    for start, end, pattern in r.terms(lex, "pattern"):
        direction = None
        if pattern in BOOLEAN_PATTERNS:
            lo, hi = r.clause(start)
            if _NEGATION[r.lang].search(r.masked[max(lo, start - _NEGATION_WINDOW):start]):
                direction = "false"
            else:
                near = sorted((min(abs(s - end), abs(start - e)), v) for s, e, v in presence if lo <= s < hi)
                direction = near[0][1] if near else None
        r.add(start, end, "pattern", pattern, direction=direction, negated=False)


def _votes(r: _Reader, labels: list[tuple[int, int, str]]) -> None:
    """'supports X' and 'argues against X' (or 'reads as X instead' = supports X, against the label before)."""
    for stance, cues in (("against", _AGAINST_CUE), ("supports", _SUPPORT_CUE)):
        for m in cues[r.lang].finditer(r.text):
            lo, _ = r.clause(m.start())
            _, hi = r.clause(m.start(), _STATEMENT_BREAK)
            after = [v for s, _, v in labels if m.end() <= s < hi]
            before = [v for s, _, v in labels if s < m.start()]
            negated = bool(_NEGATION[r.lang].search(r.text[lo:m.start()])) and stance == "supports" and r.lang == "en"
            if stance == "supports" and after:
                r.add(m.start(), m.end(), "vote", "|".join(after), direction="against" if negated else "supports", negated=False)
            elif stance == "against" and (after or before):
                target = after if after and not m.group(0).lower() == "instead" else before[:1]
                r.add(m.start(), m.end(), "vote", "|".join(target), direction="against", negated=False)


# ---------------------------------------------------------------- checks


@dataclass(frozen=True)
class Scope:
    """What one sentence may state: the items it cites and the fixed parts its section restates."""

    known_ids: frozenset[str]
    cited: tuple[BaseModel, ...]
    fixed: tuple[BaseModel, ...] = ()
    constants: tuple[float, ...] = ()
    # task -> evidence id -> labels it supports (agents/evidence/votes.py), over all the report's evidence
    votes: Mapping[str, Mapping[str, frozenset[str]]] = field(default_factory=dict)
    conclusions: Mapping[str, Conclusion] = field(default_factory=dict)
    genes_known: frozenset[str] = frozenset()

    @cached_property
    def values(self) -> list[float]:
        return values_of(*self.cited, *self.fixed) + list(self.constants)

    @cached_property
    def words(self) -> str:
        return "\n".join(_strings([item.model_dump() for item in (*self.cited, *self.fixed)]))

    @cached_property
    def genes(self) -> frozenset[str]:
        named = {g for _, _, g in genes_in(self.words, self.genes_known)}
        return frozenset(named | {g for m in self.cited if isinstance(m, MechanismEvidence) for g in m.driver_genes})

    @cached_property
    def labels(self) -> frozenset[str]:
        named = {c.label for c in self.fixed if isinstance(c, Conclusion)}
        named |= {k for c in self.fixed if isinstance(c, Conclusion) for k in c.class_probabilities}
        named |= {label for votes in self.votes.values() for i, labels in votes.items() if i in self.cited_ids for label in labels}
        return frozenset(named)

    @cached_property
    def cited_ids(self) -> frozenset[str]:
        return frozenset(getattr(item, "id", "") for item in self.cited)


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if isinstance(k, str):
                yield k
            yield from _strings(v)
    elif isinstance(value, Sequence):
        for v in value:
            yield from _strings(v)


def check_claim(claim: Claim, scope: Scope) -> str | None:
    """None when the claim holds in its scope, else why it does not (one line)."""
    return _CHECKS[claim.kind](claim, scope)


def _check_citation(claim: Claim, scope: Scope) -> str | None:
    return None if claim.entity in scope.known_ids else f"{claim.entity} does not exist in this report"


def _check_number(claim: Claim, scope: Scope) -> str | None:
    assert claim.value is not None
    if number_is_grounded(claim.value, claim.decimals, claim.bound, scope.values):
        return None
    return f"{claim.describe()} is not stated by what the sentence cites"


def _check_gene(claim: Claim, scope: Scope) -> str | None:
    if claim.entity not in scope.genes:
        return f"{claim.entity} is not named in the cited evidence"
    items = [m for m in scope.cited if isinstance(m, MechanismEvidence) and claim.entity in (*m.driver_genes, m.pathway_id.partition(":")[2])]
    event = claim.direction
    said_absent = event == "wild_type" or (claim.negated and event is not None)
    for m in items:
        if m.kind == "copy_number" and event in ("amplified", "deleted"):
            called = "amplified" if (m.activity or 0.0) > 0 else "deleted"
            if (called == event) == claim.negated:
                return f"{claim.describe()} contradicts {m.id} ({m.pathway_name})"
        if event in ("mutated", "wild_type"):
            called_mutated = m.kind == "driver_mutation" and m.direction == "altered"
            called_wild_type = m.direction == "neutral" and m.pathway_id.startswith("WT:")
            if (said_absent and called_mutated) or (not said_absent and called_wild_type):
                return f"{claim.describe()} contradicts {m.id} ({m.pathway_name})"
    return None


def _check_pathway(claim: Claim, scope: Scope) -> str | None:
    return None if claim.entity in scope.words else f"{claim.entity} is not in the cited evidence"


def _check_phenotype(claim: Claim, scope: Scope) -> str | None:
    words = scope.words.lower()
    if claim.entity in words or claim.entity.replace("_", " ") in words:
        return None
    return f"{claim.describe()} is not in the cited evidence"


def _check_label(claim: Claim, scope: Scope) -> str | None:
    if claim.entity in scope.labels or re.search(rf"(?<![A-Za-z0-9]){re.escape(claim.entity)}(?![A-Za-z0-9-])", scope.words):
        return None
    return f"label {claim.entity} is neither concluded nor supported by the cited evidence"


def _check_direction(claim: Claim, scope: Scope) -> str | None:
    """A direction is about the pathway it names (by id, or by name in its clause); one naming none claims nothing."""
    items = [m for m in scope.cited if isinstance(m, MechanismEvidence) and m.kind == "pathway_activity"]
    targets = [m for m in items if claim.entity and claim.entity == m.pathway_id] or [
        m for m in items if any(n and n.lower() in claim.text.lower() for n in _pathway_names(m))
    ]
    wrong = [m.id for m in targets if (m.direction == claim.direction) == claim.negated]
    return f"{claim.describe()} contradicts {', '.join(wrong)}" if wrong else None


def _pathway_names(m: MechanismEvidence) -> list[str]:
    """The pathway as a writer names it: its id, its name's longer words, its Chinese term."""
    words = [w for w in re.split(r"[^A-Za-z-]+", m.pathway_name) if len(w) >= 5]
    return [m.pathway_id, *words, term("zh", "pathway", m.pathway_id) if term("zh", "pathway", m.pathway_id) != m.pathway_id else ""]


def _check_pattern(claim: Claim, scope: Scope) -> str | None:
    items = [h for h in scope.cited if isinstance(h, HistologyEvidence) and h.pattern == claim.entity]
    surface = claim.entity.replace("_", " ")
    if claim.entity == "high_cellularity":  # the pathologist reads cellularity as a level
        reads = [h for h in scope.cited if isinstance(h, HistologyEvidence) and h.pattern == "cellularity"]
        if reads and not items:
            low = [h.id for h in reads if h.value != "high"]
            return f"{surface} contradicts {', '.join(low)} (pathologist's read)" if low else None
    if not items and surface not in scope.words.lower() and claim.entity not in scope.words:
        return f"{surface} is not in the cited evidence"
    if claim.direction is None:
        return None
    present = claim.direction == "true"
    # The pathologist's read outranks the model's patches: a sentence may state it against them.
    reads = [h for h in items if h.origin == "pathologist_findings" and isinstance(h.value, bool)]
    for h in reads:
        if h.value != present:
            return f"{claim.describe()} contradicts {h.id} (pathologist's read: {'present' if h.value else 'absent'})"
    if not reads and not present:
        patches = [h.id for h in items if h.origin != "pathologist_findings"]
        if patches:
            return f"{claim.describe()} contradicts {', '.join(patches)} (the model finds {surface} on the slide)"
    return None


def _check_vote(claim: Claim, scope: Scope) -> str | None:
    labels = claim.entity.split("|")
    task = label_task(labels[0])
    evidence = [i for i in scope.cited_ids if not isinstance(_item(scope, i), ConsistencyFlag)]
    if task in scope.votes:
        votes = scope.votes[task]
        for i in evidence:
            vote = votes.get(i, frozenset())
            if claim.direction == "supports" and not vote & set(labels):
                return f"{i} does not support {' or '.join(labels)} (it {_reads(vote, task)})"
            if claim.direction == "against" and (not vote or vote & set(labels)):
                return f"{i} does not argue against {' or '.join(labels)} (it {_reads(vote, task)})"
        return None
    conclusion = scope.conclusions.get(task)
    if conclusion is None or conclusion.label not in labels:
        return f"no vote of the evidence on {' or '.join(labels)} can be checked"
    side = conclusion.supporting_evidence if claim.direction == "supports" else conclusion.contradicting_evidence
    off = [i for i in evidence if i not in side]
    return f"{', '.join(off)} not cited as {claim.direction} {labels[0]} by the conclusion" if off else None


def _reads(vote: frozenset[str], task: str) -> str:
    return f"reads as {' or '.join(sorted(vote))}" if vote else f"says nothing about the {task.replace('_', ' ')}"


def _item(scope: Scope, item_id: str) -> BaseModel | None:
    return next((item for item in scope.cited if getattr(item, "id", None) == item_id), None)


_CHECKS = {
    "citation": _check_citation, "number": _check_number, "gene": _check_gene, "pathway": _check_pathway,
    "label": _check_label, "phenotype": _check_phenotype, "direction": _check_direction, "pattern": _check_pattern, "vote": _check_vote,
}
