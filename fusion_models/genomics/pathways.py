"""Single-sample pathway activity from ranks: singscore (Foroutan et al., BMC Bioinformatics 2018).

A rank score needs no reference cohort and ignores the expression scale (z-score or
log2 TPM alike), so one case can be scored on its own. For a gene set of n measured
genes among N measured genes, with ascending ranks (ties averaged) and S their mean,

    score = (S - Smin) / (Smax - Smin) - 0.5,  Smin = (n + 1) / 2,  Smax = (2N - n + 1) / 2,

which is +0.5 when the set holds the n highest-expressed genes and -0.5 for the lowest.
Weighted signatures (PROGENy) use singscore's bidirectional mode: positive-weight genes
form an up set, negative-weight genes a down set, and the score is the mean of the up
score and the negated down score (singscore's TotalScore / 2, so it stays in
[-0.5, 0.5]). Weight magnitudes are not used, as in singscore; zero weights carry no
direction and are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from knowledge.sources import Pathway

Direction = Literal["up", "down", "neutral"]


@dataclass(frozen=True)
class PathwayScore:
    """One pathway on one sample; `score` is 0.0 and `driver_genes` empty when not assessable."""

    pathway_id: str
    name: str
    score: float
    n_genes: int
    n_measured: int
    driver_genes: tuple[str, ...]
    assessable: bool


@dataclass(frozen=True)
class _Ranked:
    """Ascending ranks of one sample's measured genes."""

    genes: pd.Index  # upper-cased symbols: HGNC symbols are unique ignoring case, and sources disagree on it
    names: np.ndarray  # the symbols as given, as an object array: cheap to index by position
    ranks: np.ndarray

    @classmethod
    def of(cls, expression: pd.Series) -> _Ranked:
        measured = expression.dropna()  # NaN = not measured, not "lowest"
        lookup = pd.Index(measured.index.astype(str).str.upper())
        if lookup.has_duplicates:
            duplicates = sorted(set(measured.index[lookup.duplicated(keep=False)].astype(str)))[:5]
            raise ValueError(f"expression lists genes more than once: {', '.join(map(str, duplicates))}")
        ranks = rankdata(measured.to_numpy(dtype=float), method="average")
        return cls(lookup, measured.index.to_numpy(), ranks)

    def locate(self, gene_sets: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Positions of each set's genes (-1 = not measured), looked up in one pass for speed."""
        positions = self.genes.get_indexer([gene.upper() for genes in gene_sets for gene in genes])
        return np.split(positions, np.cumsum([len(genes) for genes in gene_sets])[:-1])


def _split(positions: np.ndarray, weights: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Measured up-set and down-set positions (a gene listed twice counts once)."""
    signs = np.ones(len(positions)) if weights is None else np.sign(np.asarray(weights, dtype=float))
    measured = positions >= 0
    unique, first = np.unique(positions[measured], return_index=True)
    signs = signs[measured][first]
    return unique[signs > 0], unique[signs < 0]


def _normalised(ranks: np.ndarray, total: int) -> float:
    """Centred singscore of a set with these ranks among `total` genes (NaN if undefined)."""
    n = len(ranks)
    s_min, s_max = (n + 1) / 2, (2 * total - n + 1) / 2
    if n == 0 or s_max == s_min:  # an empty set, or one that is every measured gene
        return float("nan")
    return float((ranks.mean() - s_min) / (s_max - s_min) - 0.5)


def _score(ranked: _Ranked, up: np.ndarray, down: np.ndarray) -> float:
    total = len(ranked.ranks)
    parts = [_normalised(ranked.ranks[up], total)] if len(up) else []
    if len(down):
        parts.append(-_normalised(ranked.ranks[down], total))
    return float(np.mean(parts)) if parts else float("nan")


# A driver moves with its pathway: among the sample's measured genes it ranks in the outer
# quarter on the side of the score (top quarter for an up set when the score is up). The
# drivers are the leading edge, the set genes that push the score furthest, so a gene
# that sits mid-distribution, or moves against the pathway, is never named.
LEADING_EDGE_QUANTILE = 0.75


def _drivers(ranked: _Ranked, up: np.ndarray, down: np.ndarray, score: float, top: int) -> tuple[str, ...]:
    """Leading-edge set genes of a directional score, most extreme first; ties broken by symbol.

    None for a score without direction (NaN or `direction` neutral): nothing drives it.
    """
    if not np.isfinite(score) or direction(score) == "neutral":
        return ()
    total = len(ranked.ranks)
    # A down-set gene pushes the score up when it ranks low, so orient its rank first;
    # for a down score, flip again so that a high value always means "moves with the score".
    oriented = np.concatenate([ranked.ranks[up], total + 1 - ranked.ranks[down]])
    if score < 0:
        oriented = total + 1 - oriented
    names = ranked.names[np.concatenate([up, down])]
    edge = oriented > LEADING_EDGE_QUANTILE * total
    names, oriented = names[edge], oriented[edge]
    return tuple(str(name) for name in names[np.lexsort((names, -oriented))][:top])


def singscore(expression: pd.Series, genes: Sequence[str], weights: Sequence[float] | None = None) -> tuple[float, int]:
    """(score in [-0.5, 0.5], number of set genes measured); NaN score when none or all are measured.

    `weights` (aligned with `genes`) switches to the bidirectional mode by their signs.
    """
    ranked = _Ranked.of(expression)
    up, down = _split(ranked.locate([genes])[0], weights)
    return _score(ranked, up, down), len(up) + len(down)


def driver_genes(
    expression: pd.Series, genes: Sequence[str], top: int = 5, *, weights: Sequence[float] | None = None
) -> tuple[str, ...]:
    """The leading-edge set genes: measured, moving with the set's score, most extreme first."""
    ranked = _Ranked.of(expression)
    up, down = _split(ranked.locate([genes])[0], weights)
    return _drivers(ranked, up, down, _score(ranked, up, down), top)


def score_pathways(expression: pd.Series, pathways: Sequence[Pathway], *, min_genes: int = 5) -> list[PathwayScore]:
    """Score every pathway on one sample (ranked once); fewer than min_genes measured -> not assessable, 0.0."""
    ranked = _Ranked.of(expression)
    scores = []
    for pathway, positions in zip(pathways, ranked.locate([p.genes for p in pathways])):
        up, down = _split(positions, pathway.weights)
        n_measured = len(up) + len(down)
        score = _score(ranked, up, down)
        assessable = n_measured >= min_genes and np.isfinite(score)
        scores.append(
            PathwayScore(
                pathway_id=pathway.id,
                name=pathway.name,
                score=score if assessable else 0.0,
                n_genes=len(pathway.genes),
                n_measured=n_measured,
                driver_genes=_drivers(ranked, up, down, score, 5) if assessable else (),
                assessable=bool(assessable),
            )
        )
    return scores


def direction(score: float, threshold: float = 0.1) -> Direction:
    """'up' above +threshold, 'down' below -threshold, else 'neutral'."""
    if score > threshold:
        return "up"
    if score < -threshold:
        return "down"
    return "neutral"
