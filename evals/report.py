"""The eval report: `eval_report.md`, a self-contained `eval_report.html` (plots inline as
base64 PNG) and `eval_results.json` with the numbers behind every table and figure."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, select_autoescape

from evals.compare import FieldAgreement
from evals.metrics import ClassificationSummary, Interval, SurvivalSummary
from toolkit.atomic import atomic_write_text

if TYPE_CHECKING:
    # evals.run imports this module to write the report; the result type is only annotated here.
    from evals.run import EvalResult

WEAKER_SIGNAL = (
    "Text similarity is a weaker signal than the field checks: it rewards shared wording, "
    "not correct findings, and the embedding reads only the first ~256 tokens of each text."
)
TABLE_COLUMNS = ("field", "vs", "n", "coverage", "report states", "agreement", "precision", "recall")
# Stated by the reference, not scored, and why: kept apart so that no extractor miss is charged to the report.
NOT_SCORED_COLUMNS = ("report not stated", "extractor could not read", "reading contradicts truth")
TERMINAL_NOT_SCORED = ("report silent", "unread", "misread")
EXTRACTION_COLUMNS = ("field", "vs", "n", "truth known", "reference text states", "agreement")
DIAGNOSIS_FIELDS = ("diagnosis", "diagnosis_family", "diagnosis_grade")
DIAGNOSIS_LEVEL_NAMES = {"diagnosis": "exact", "diagnosis_family": "tumour type", "diagnosis_grade": "CNS WHO grade"}
LISTED_IN_TABLE = 10  # missing case ids named in the terminal header; the files list them all


# --- numbers to text ------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _p_value(p: float | None) -> str:
    return "-" if p is None else f"{p:.3g}"


def _interval(i: Interval | None) -> str:
    if i is None:
        return "-"
    if i.low is None:
        return _num(i.value)
    return f"{i.value:.3f} ({i.low:.3f}-{i.high:.3f})"


def _row(a: FieldAgreement) -> list[str]:
    return [
        a.field,
        a.versus,
        str(a.n),
        f"{a.stated} ({_pct(a.coverage)})",
        f"{a.compared} ({_pct(a.report_coverage)})",
        f"{a.agreed}/{a.compared} ({_pct(a.agreement)})",
        _pct(a.precision),
        _pct(a.recall),
    ]


def _not_scored(a: FieldAgreement) -> list[str]:
    return [str(a.report_not_stated), str(a.reference_unread), str(a.reading_contradicts_truth)]


def format_table(result: EvalResult) -> str:
    """The headline table for the terminal: per field, how often references state it and we agree."""
    rows = [[*TABLE_COLUMNS, *TERMINAL_NOT_SCORED]] + [_row(a) + _not_scored(a) for a in result.agreement]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    head = f"{result.n_reports}/{result.n_cases} cases have a report"
    for what, ids in (
        ("missing", result.missing_reports),
        ("unreadable", list(result.unreadable_reports)),
        ("references skipped (see eval_report.md for why)", list(result.unreadable_references)),
    ):
        if ids:
            more = f" (+{len(ids) - LISTED_IN_TABLE} more)" if len(ids) > LISTED_IN_TABLE else ""
            head += f"; {what}: {', '.join(ids[:LISTED_IN_TABLE])}{more}"
    return "\n".join([head, *lines])


# --- figures --------------------------------------------------------------------------
def _png(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width: float = 4.8, height: float = 3.6):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot()


def reliability_png(summary: ClassificationSummary) -> str:
    fig, ax = _figure()
    bins = [b for b in summary.reliability if b.count]
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.bar(
        [(b.lower + b.upper) / 2 for b in bins],
        [b.accuracy for b in bins],
        width=bins[0].upper - bins[0].lower if bins else 0.1,
        edgecolor="black",
        alpha=0.7,
        label="observed accuracy",
    )
    for b in bins:
        ax.annotate(str(b.count), ((b.lower + b.upper) / 2, b.accuracy), ha="center", va="bottom", fontsize=7)
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.05),
        xlabel="top-class probability",
        ylabel="accuracy",
        title=f"{summary.task}: ECE {summary.ece:.3f}",
    )
    ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


def decision_curve_png(summary: ClassificationSummary) -> str:
    curve = summary.decision_curve
    fig, ax = _figure()
    ax.plot(curve.thresholds, curve.model, label="model")
    ax.plot(curve.thresholds, curve.treat_all, label=f"treat all as {curve.positive_class}")
    ax.plot(curve.thresholds, curve.treat_none, label="treat none")
    ax.set(
        ylim=(-0.05, max(curve.prevalence, 0.05) + 0.05),
        xlabel="threshold probability",
        ylabel="net benefit",
        title=f"{summary.task}: {curve.positive_class} vs rest",
    )
    ax.legend(fontsize=7)
    return _png(fig)


def confusion_png(summary: ClassificationSummary) -> str:
    labels, matrix = summary.confusion_labels, summary.confusion
    fig, ax = _figure(1.2 + 0.8 * len(labels), 1.0 + 0.7 * len(labels))
    ax.imshow(matrix, cmap="Blues")
    dark = max(max(row) for row in matrix) / 2
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8, color="white" if count > dark else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set(xlabel="reported", ylabel="true", title=f"{summary.task}: accuracy {summary.accuracy.value:.2f}")
    return _png(fig)


def kaplan_meier_png(survival: SurvivalSummary) -> str:
    fig, ax = _figure()
    for curve in survival.km_by_risk_group:
        ax.step(curve.times, curve.survival, where="post", label=f"{curve.group} (n={curve.n}, events={curve.events})")
    p = f", log-rank p={survival.logrank_p:.3g}" if survival.logrank_p is not None else ""
    ax.set(
        ylim=(0, 1.02), xlabel="months", ylabel="survival probability", title=f"Kaplan-Meier by predicted risk group{p}"
    )
    ax.legend(fontsize=7)
    return _png(fig)


def figures(result: EvalResult) -> dict[str, str]:
    """Figure name -> base64 PNG."""
    out = {}
    for task, summary in result.classification.items():
        if any(b.count for b in summary.reliability):
            out[f"reliability_{task}"] = reliability_png(summary)
        if summary.decision_curve is not None:
            out[f"decision_curve_{task}"] = decision_curve_png(summary)
        out[f"confusion_{task}"] = confusion_png(summary)
    if result.survival is not None and result.survival.km_by_risk_group:
        out["kaplan_meier_risk_group"] = kaplan_meier_png(result.survival)
    return out


# --- documents ------------------------------------------------------------------------
Table = list[list[str]]


def _model_table(result: EvalResult) -> Table:
    head = ["task", "n", "accuracy (95% CI)", "macro-F1", "AUC macro OvR (95% CI)", "ECE", "Brier"]
    return [head] + [
        [task, str(s.n), _interval(s.accuracy), _num(s.macro_f1), _interval(s.auc_macro), _num(s.ece), _num(s.brier)]
        for task, s in result.classification.items()
    ]


def _survival_table(survival: SurvivalSummary | None) -> Table | None:
    if survival is None:
        return None
    return [
        ["n", "events", "C-index (95% CI)", "log-rank p"],
        [str(survival.n), str(survival.events), _interval(survival.c_index), _p_value(survival.logrank_p)],
    ]


def _modality_table(result: EvalResult) -> Table:
    head = ["modalities present", "n", "diagnosis accuracy", "grade accuracy", "subtype accuracy", "C-index"]
    return [head] + [
        [
            g.modalities,
            str(g.n),
            _num(g.accuracy.get("diagnosis")),
            _num(g.accuracy.get("grade")),
            _num(g.accuracy.get("molecular_subtype")),
            _num(g.c_index),
        ]
        for g in result.modality_breakdown
    ]


def _similarity_table(result: EvalResult) -> Table:
    return [["metric", "mean (95% CI)", "cases"]] + [
        [name, _interval(interval), str(sum(getattr(s, name) is not None for s in result.text_similarity))]
        for name, interval in result.text_similarity_mean.items()
    ]


def _disagreement_table(result: EvalResult) -> Table:
    head = ["case", "field", "vs", "reference / truth", "report", "reference says", "report says"]
    return [head] + [
        [
            d.case_id,
            d.field,
            d.versus,
            d.expected or "-",
            d.observed or "-",
            d.expected_evidence[:300],
            d.observed_evidence[:300],
        ]
        for d in result.disagreements
    ]


def _diagnosis_table(result: EvalResult) -> Table:
    head = ["level", "vs", "n", "stated", "agreement", "report not stated"]
    return [head] + [
        [
            DIAGNOSIS_LEVEL_NAMES[a.field],
            a.versus,
            str(a.n),
            f"{a.stated} ({_pct(a.coverage)})",
            f"{a.agreed}/{a.compared} ({_pct(a.agreement)})",
            str(a.report_not_stated),
        ]
        for a in result.agreement
        if a.field in DIAGNOSIS_FIELDS
    ]


def _sections(result: EvalResult) -> dict[str, Table | None]:
    """Tables shared by the Markdown and HTML documents."""
    return {
        "diagnosis": _diagnosis_table(result),
        "agreement": [[*TABLE_COLUMNS, *NOT_SCORED_COLUMNS]] + [_row(a) + _not_scored(a) for a in result.agreement],
        "extraction": [[*EXTRACTION_COLUMNS, "extractor could not read"]]
        + [_row(a)[: len(EXTRACTION_COLUMNS)] + [str(a.reference_unread)] for a in result.reference_extraction],
        "model": _model_table(result),
        "survival": _survival_table(result.survival),
        "modalities": _modality_table(result),
        "missing_rate": [["modality", "missing or unusable"]]
        + [[m, _pct(r)] for m, r in result.missing_modality_rate.items()],
        "similarity": _similarity_table(result),
        "disagreements": _disagreement_table(result),
    }


def _md_table(rows: Table | None) -> str:
    if not rows or len(rows) < 2:
        return "_none_\n"

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows[1:]]
    return "\n".join(lines) + "\n"


def _header(result: EvalResult) -> list[str]:
    lines = [
        f"Cohort: `{result.cohort_dir}`; reports: `{result.reports_dir}`; "
        f"ground truth: {result.ground_truth_file or 'none'}.",
        f"{result.n_reports} of {result.n_cases} cases have a report.",
    ]
    if result.missing_reports:
        lines.append(f"Missing reports ({len(result.missing_reports)}): {', '.join(result.missing_reports)}.")
    for case_id, error in result.unreadable_reports.items():
        lines.append(f"Unreadable report {case_id}: {error}")
    for case_id, error in result.unreadable_references.items():
        lines.append(f"Reference skipped for {case_id} (the case is still scored against the truth): {error}")
    if result.reference_encodings:
        decoded = ", ".join(f"{case_id} ({enc})" for case_id, enc in result.reference_encodings.items())
        lines.append(f"References read in another encoding than UTF-8: {decoded}.")
    return lines


_MD_PARTS = (
    (
        "Integrated diagnosis (WHO CNS5)",
        "diagnosis",
        "The report's diagnosis conclusion against the truth and the reference: the exact label, the tumour "
        "type (NOS forms count in the type they name) and the CNS WHO grade (a NOS label states none). "
        "A report without a diagnosis conclusion, or one that abstains, counts as not stated.",
    ),
    (
        "Field agreement",
        "agreement",
        "Coverage: share of evaluated cases whose reference (or truth) states the field. "
        "Report states: share of those where our report states it too. Agreement: over cases where both do. "
        "Not scored, and counted apart: the report does not state the field; the reference talks about it "
        "but the extractor could read no value; or what was read contradicts the ground truth while the "
        "report matches it (a misread or wrong reference, not a report error).",
    ),
    (
        "Reference extraction check",
        "extraction",
        "Fields extracted from the reference text against the ground truth: "
        "how far the reference_text rows above can be trusted.",
    ),
    ("Model metrics", "model", "Against the ground truth; 95% intervals by case bootstrap."),
    ("Survival", "survival", "Harrell's C of the risk score (higher = worse)."),
    ("By modalities present", "modalities", ""),
    ("Missing-modality rate", "missing_rate", ""),
    ("Text similarity (weaker signal)", "similarity", WEAKER_SIGNAL),
    ("Disagreements, case by case", "disagreements", ""),
)


def render_markdown(result: EvalResult) -> str:
    sections = _sections(result)
    parts = ["# EvidenceChain evaluation", "", *_header(result), ""]
    for title, key, note in _MD_PARTS:
        parts += [f"## {title}", ""]
        if note:
            parts += [note, ""]
        parts.append(_md_table(sections[key]))
    parts += ["Figures are in eval_report.html; their numbers are in eval_results.json.", ""]
    return "\n".join(parts)


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>EvidenceChain evaluation</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:top}
th{background:#f3f3f3}.note{color:#555;font-size:13px}img{margin:4px;border:1px solid #eee}
</style></head><body>
<h1>EvidenceChain evaluation</h1>
{% for line in header %}<p>{{ line }}</p>{% endfor %}
{% for title, key, note in parts %}
<h2>{{ title }}</h2>{% if note %}<p class="note">{{ note }}</p>{% endif %}
{% set rows = sections[key] %}
{% if rows and rows|length > 1 %}<table><tr>{% for c in rows[0] %}<th>{{ c }}</th>{% endfor %}</tr>
{% for r in rows[1:] %}<tr>{% for c in r %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}</table>
{% else %}<p><em>none</em></p>{% endif %}
{% endfor %}
<h2>Figures</h2>
{% for name, data in figures.items() %}<figure style="display:inline-block">
<img alt="{{ name }}" src="data:image/png;base64,{{ data }}"><figcaption class="note">{{ name }}</figcaption>
</figure>{% endfor %}
</body></html>
"""


def render_html(result: EvalResult, figure_data: dict[str, str]) -> str:
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    return env.from_string(_HTML).render(
        header=_header(result), parts=_MD_PARTS, sections=_sections(result), figures=figure_data
    )


def _finite(value: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_eval_report(result: EvalResult, out_dir: Path) -> dict[str, Path]:
    """Write the three eval files into `out_dir` (created if needed); returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figure_data = figures(result)
    paths = {
        "json": out_dir / "eval_results.json",
        "md": out_dir / "eval_report.md",
        "html": out_dir / "eval_report.html",
    }
    payload = _finite({**result.to_dict(), "figures": sorted(figure_data)})
    atomic_write_text(paths["json"], json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    atomic_write_text(paths["md"], render_markdown(result))
    atomic_write_text(paths["html"], render_html(result, figure_data))
    return paths
