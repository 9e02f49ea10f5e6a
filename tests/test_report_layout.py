"""Every demo report as a board reads it: Chinese that is Chinese, decisions first, each section once.

Runs over the whole demo cohort through the real graph (the `demo_reports` fixture), so a
section or phrase another part of the system adds is checked without a new test.

What may stay in Latin letters in the Chinese rendering (everything else is English prose):
  * identifiers: evidence and flag ids (S1, H3, M2, F1), unit ids (T0:enhancing, T0->T1:lesion), pathway and
    event ids (GO:0001666, PROGENY:Hypoxia, CNV:EGFR), and whatever case, slide or unit id the report declares;
  * gene symbols and other upper-case names: IDH1, CDKN2A/B, EGFR, TERT, MGMT, GISTIC, R132H, FISH;
    the markers as written: 1p/19q, Ki-67, H3 K27M, +7/-10; the classifications: WHO, CNS, CNS5, NOS, RANO, Cox (the survival model),
    cIMPACT-NOW;
  * units and coordinates: mL, mm, %, x, y;
  * quoted source text, 「...」 or “...” (the pathologist's words, a loader's reason, a reviewer's edit);
  * machine identifiers shown as code (file paths, locators, model names, versions, hashes, timestamps).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from html.parser import HTMLParser

import pytest

from agents.narrative import SECTION_ORDER
from agents.render import render_html
from prompts import phrase_table
from schemas.report import EvidenceChainReport

ALLOWED_WORDS = {"WHO", "CNS", "CNS5", "NOS", "NEC", "RANO", "Cox", "cIMPACT-NOW", "mL", "mm", "x", "y", "Ki-67"}
_ID = re.compile(r"[A-Za-z0-9_-]+(?:->[A-Za-z0-9_-]+)?:[A-Za-z0-9_-]+")  # T0:enhancing, GO:0001666, MUT:PTEN
_UPPER = re.compile(r"[A-Z0-9][A-Z0-9-]*")  # gene symbols, S1, DEMO-004-HE1, R130Q
_MARKER = re.compile(r"\d+[pq](?:/\d+[pq])?|[+-]?\d+/[+-]?\d+")  # 1p/19q, +7/-10
_QUOTED = re.compile(r"「[^」]*」|“[^”]*”")
_MD_CODE = re.compile(r"`[^`]*`")
_MD_LINK = re.compile(r"\]\((?:#|figures/)[^)]*\)|<a id=\"[^\"]*\"></a>")  # anchors and figure files
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00")
_LATIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./:+<>\-]*[A-Za-z0-9]|[A-Za-z]")


def report_ids(report: EvidenceChainReport) -> set[str]:
    """Every identifier a report declares: its case id, evidence and flag ids, unit, slide and pathway ids."""
    ids = {report.case_id, *(f.id for f in report.consistency_flags)}
    ids |= {x for s in report.spatial_evidence for x in (s.id, s.unit_id)}
    ids |= {x for h in report.histology_evidence for x in (h.id, h.slide_id) if x}
    ids |= {x for m in report.mechanism_evidence for x in (m.id, m.pathway_id)}
    return ids


def allowed(token: str, ids: Collection[str] = ()) -> bool:
    """A Latin-script token that may stand in Chinese text (see the module docstring)."""
    if token in ids or token in ALLOWED_WORDS or _ID.fullmatch(token) or _MARKER.fullmatch(token):
        return True
    parts = token.split("/")  # CDKN2A/B, IDH1/IDH2, IDH1/2
    return all(p in ALLOWED_WORDS or _UPPER.fullmatch(p) for p in parts)


def english_in(text: str, ids: Collection[str] = ()) -> list[str]:
    """Tokens of English prose left in a Chinese text, after quotes, code, link targets and times are set aside;
    `ids` are the identifiers the report declares (`report_ids`)."""
    for pattern in (_QUOTED, _MD_CODE, _MD_LINK, _TIMESTAMP):
        text = pattern.sub(" ", text)
    text = text.replace("\\", "")  # Markdown escapes
    return [t for t in _LATIN.findall(text) if not re.fullmatch(r"[\d.+\-<>/:]+", t) and not allowed(t, ids)]


class _VisibleText(HTMLParser):
    """What a reader sees on the page: text outside <style>, <title> and <code>."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        self._hidden += tag in ("style", "title", "code")

    def handle_endtag(self, tag):
        self._hidden -= tag in ("style", "title", "code")

    def handle_data(self, data):
        if not self._hidden:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _VisibleText()
    parser.feed(html)
    return " ".join(parser.parts)


@pytest.fixture(scope="module")
def reports(demo_reports) -> dict[str, tuple[EvidenceChainReport, dict[str, str]]]:
    """case id -> (report, rendering name -> text): the written Markdown and the HTML in both languages."""
    out, results = demo_reports
    rendered = {}
    for case_id in results:
        report = EvidenceChainReport.model_validate_json((out / case_id / "report.json").read_text(encoding="utf-8"))
        rendered[case_id] = (report, {
            "en.md": (out / case_id / "report.en.md").read_text(encoding="utf-8"),
            "zh.md": (out / case_id / "report.zh.md").read_text(encoding="utf-8"),
            "en.html": render_html(report, "en"),
            "zh.html": render_html(report, "zh"),
        })
    return rendered


def test_the_allowed_token_rule_itself():
    for token in ("S1", "F12", "T0:enhancing", "T0->T1:lesion", "GO:0001666", "PROGENY:JAK-STAT", "IDH1", "CDKN2A/B",
                  "IDH1/IDH2", "1p/19q", "+7/-10", "Ki-67", "EGFR", "DEMO-004-HE1", "R132H", "cIMPACT-NOW", "mL", "WHO"):
        assert allowed(token), token
    for token in ("glioma", "False", "amplification", "bit", "IDHwt", "Grade", "oedema"):
        assert not allowed(token), token
    assert english_in("EGFR扩增，见「necrosis: false」与`imaging/T0/mask.nii.gz`，[S1](#ev-S1)") == []
    assert english_in("EGFR amplification；坏死：False") == ["amplification", "False"]
    assert english_in("证据链报告: planted-1", {"planted-1"}) == [] and english_in("证据链报告: planted-1") == ["planted-1"]


def test_chinese_rendering_of_every_demo_report_has_no_english_prose(reports):
    leftovers = {}
    for case_id, (report, rendered) in reports.items():
        for name in ("zh.md", "zh.html"):
            text = rendered[name] if name.endswith(".md") else visible_text(rendered[name])
            words = english_in(text, report_ids(report))
            if words:
                leftovers[f"{case_id} {name}"] = sorted(set(words))
    assert not leftovers, leftovers


def test_chinese_rendering_uses_clinical_terms(reports):
    for case_id, (_, rendered) in reports.items():
        zh = rendered["zh.md"]
        for unnatural in ("组织切块", "生境亚区", "level-0", "两年时存活", "重新取材", ".。", "和病理为"):
            assert unnatural not in zh, (case_id, unnatural)


def headings(markdown: str) -> list[str]:
    return re.findall(r"^## (.+)$", markdown, flags=re.MULTILINE)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_report_opens_with_the_decisions_and_states_each_section_once(reports, lang):
    table = phrase_table(lang)
    titles = {table[f"section.{key}"]: key for key in SECTION_ORDER}
    for case_id, (report, rendered) in reports.items():
        found = headings(rendered[f"{lang}.md"])
        assert len(found) == len(set(found)), (case_id, found)
        keys = [titles[h] for h in found if h in titles]
        assert keys[0] == "decisions" and found[0] == table["section.decisions"], (case_id, found)
        assert keys == [k for k in SECTION_ORDER if k in keys], (case_id, keys)
        html = rendered[f"{lang}.html"]
        assert html.count('id="section-') == len(keys), case_id
        decisions = html.index('id="section-decisions"')
        assert all(html.index(f'id="section-{k}"') > decisions for k in keys[1:]), case_id
        for flag in report.consistency_flags:
            # each flag is stated once, in the decisions, before any conclusion or evidence
            assert html.count(f'id="ev-{flag.id}"') == 1, (case_id, flag.id)
            assert decisions < html.index(f'id="ev-{flag.id}"') < html.index('id="section-diagnosis"'), (case_id, flag.id)


def test_the_most_severe_flag_of_a_biopsy_from_oedema_is_in_the_first_screen(reports):
    report, rendered = reports["DEMO-004"]
    # Molecular criteria settle DEMO-004's grade (EGFR amplification), so its sampling mismatch is
    # information, not a call for re-biopsy; its most severe flag still leads the page.
    worst = min((f.severity for f in report.consistency_flags), key=["critical", "warning", "info"].index)
    assert worst != "info"
    html = rendered["zh.html"]
    # Nothing but the title, the one-line disclaimer and the case facts stand before the decisions.
    assert html.index(f'<span class="badge {worst}">') < html.index('id="section-diagnosis"')
    assert visible_text(html[: html.index('id="section-decisions"')]).count("\n") < 20


_CERTAIN = re.compile(r"(?<![\d.])(?:1\.00|0\.00)(?![\d])")


def test_no_rendering_writes_a_probability_as_certain(reports):
    for case_id, (_, rendered) in reports.items():
        for name, text in rendered.items():
            for line in text.splitlines():
                if "概率" in line or "robabilit" in line or 'class="bars"' in line:
                    assert not _CERTAIN.search(line), (case_id, name, line)
