"""Figures: every kind rendered where its data is, captions citing real evidence ids, embedded in report.html,
byte-identical on a re-run, and drawn where the evidence says (the pixels of a cited patch's box)."""

from __future__ import annotations

import base64
import io
import logging
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from agents.context import Settings
from agents.figures import render_figures
from agents.figures import common as figure_common
from agents.figures.common import BOX_COLOUR, FigureContext, png_bytes, style
from agents.figures.slide import attention_grid, draw_slide
from agents.output import write_case_folder
from agents.runner import run_batch, run_case
from fusion_models.encoders import create_encoder
from fusion_models.inputs import load_case_inputs
from schemas.report import EvidenceChainReport, HistologyEvidence
from test_report_layout import english_in, report_ids

CJK = re.compile(r"[\u4e00-\u9fff]")


def _pick(cases, test) -> str:
    return next(c.name for c in cases if test(c))


@pytest.fixture(scope="module")
def chosen(demo_cohort) -> dict[str, str]:
    """One demo case per situation the figures must handle, chosen by what the case folder holds."""
    cases = sorted((demo_cohort / "cases").iterdir())
    return {
        "imaging_only": _pick(cases, lambda c: not (c / "pathology").exists() and not (c / "genomics").exists()),
        "slide": _pick(cases, lambda c: any((c / "pathology").glob("*.tif"))),
        "hdf5_only": _pick(cases, lambda c: any((c / "pathology").glob("*.h5")) and not any((c / "pathology").glob("*.tif"))),
        "two_timepoints": _pick(cases, lambda c: len(list((c / "imaging").iterdir())) >= 2),
    }


@pytest.fixture(scope="module")
def rendered(chosen, demo_cohort, settings, tmp_path_factory):
    """The chosen cases through the real graph: output folder and case id -> report."""
    cohort = tmp_path_factory.mktemp("figure_cases")
    for case_id in set(chosen.values()):
        shutil.copytree(demo_cohort / "cases" / case_id, cohort / case_id)
    out = tmp_path_factory.mktemp("figure_reports")
    results = run_batch(cohort, out, settings, progress=False)
    assert all(r.status == "ok" for r in results), [(r.case_id, r.error) for r in results]
    reports = {
        r.case_id: EvidenceChainReport.model_validate_json((out / r.case_id / "report.json").read_text()) for r in results
    }
    return cohort, out, reports


def kinds(report: EvidenceChainReport) -> set[str]:
    return {f.kind for f in report.figures}


def test_each_kind_is_drawn_where_its_data_is_and_skipped_where_not(rendered, chosen):
    _, _, reports = rendered
    assert {"mri_slices", "molecular_panel", "calibration"} <= kinds(reports[chosen["imaging_only"]])
    assert not {"slide_heatmap", "pathway_activity", "mri_longitudinal"} & kinds(reports[chosen["imaging_only"]])
    assert {"slide_heatmap", "pathway_activity"} <= kinds(reports[chosen["slide"]])
    hdf5 = reports[chosen["hdf5_only"]]
    heatmap = next(f for f in hdf5.figures if f.kind == "slide_heatmap")
    assert "coordinates" in heatmap.caption.en and "坐标" in heatmap.caption.zh  # no slide image: drawn from coords
    assert {"mri_longitudinal", "volume_over_time"} <= kinds(reports[chosen["two_timepoints"]])
    for report in reports.values():
        assert [f.id for f in report.figures] == [f"FIG{i}" for i in range(1, len(report.figures) + 1)]


def test_pngs_decode_at_their_fixed_size(rendered):
    _, out, reports = rendered
    for case_id, report in reports.items():
        for figure in report.figures:
            image = Image.open(out / case_id / figure.path)
            image.load()
            assert image.format == "PNG" and image.width >= 300 and image.height >= 200, (case_id, figure.path)
            if figure.kind == "mri_slices":  # 9 x 6.9 in at 100 dpi: FLAIR and T1c rows
                assert image.size == (900, 690)
            if figure.kind == "slide_heatmap":
                assert image.size == (720, 620)


def test_captions_cite_ids_of_the_report_and_alt_text_is_in_both_languages(rendered):
    _, _, reports = rendered
    for report in reports.values():
        known = report.evidence_ids()
        for figure in report.figures:
            assert set(figure.evidence) <= known, figure
            for i in figure.evidence:
                assert re.search(rf"\b{i}\b", figure.caption.en) and re.search(rf"\b{i}\b", figure.caption.zh), (i, figure)
            assert figure.alt.en.strip() and CJK.search(figure.alt.zh) and CJK.search(figure.caption.zh)
            for text in (figure.alt.zh, figure.caption.zh):  # Chinese throughout, as the report's own rule says
                assert not english_in(text, report_ids(report)), (figure.kind, text)
            # Calibration pictures the model, and a panel of untested markers has nothing to cite.
            if figure.kind in ("mri_slices", "mri_longitudinal", "volume_over_time", "pathway_activity"):
                assert figure.evidence, figure


def test_report_html_embeds_every_figure_and_evidence_ids_link_to_their_picture(rendered, chosen):
    _, out, reports = rendered
    for case_id, report in reports.items():
        html = (out / case_id / "report.html").read_text(encoding="utf-8")
        md = (out / case_id / "report.en.md").read_text(encoding="utf-8")
        for figure in report.figures:
            png = (out / case_id / figure.path).read_bytes()
            assert f'id="fig-{figure.id}"' in html
            assert f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"' in html
            assert f"]({figure.path})" in md
        assert "<script" not in html and 'src="http' not in html  # self-contained
    report = reports[chosen["imaging_only"]]
    mri = next(f for f in report.figures if f.kind == "mri_slices")
    html = (out / chosen["imaging_only"] / "report.html").read_text(encoding="utf-8")
    assert f'href="#fig-{mri.id}">{mri.evidence[0]}</a>' in html


def test_a_rerun_writes_byte_identical_pictures(rendered, chosen, settings, tmp_path):
    cohort, out, reports = rendered
    case_id = chosen["two_timepoints"]
    result = run_case(cohort / case_id, tmp_path, settings)
    assert result.status == "ok", result.error
    for figure in reports[case_id].figures:
        assert (tmp_path / case_id / figure.path).read_bytes() == (out / case_id / figure.path).read_bytes(), figure.path


def test_the_cited_patch_box_is_drawn_on_the_patch(rendered, chosen, settings):
    """The box's top edge lies where transData puts the patch's level-0 corner, in the box colour."""
    cohort, _, reports = rendered
    case_dir = cohort / chosen["slide"]
    inputs = load_case_inputs(case_dir, encoder=create_encoder(settings.encoder))
    slide = inputs.slides[0]
    x, y = (int(v) for v in slide.coords[len(slide.coords) // 2])
    size = slide.patch_size_level0
    patch = HistologyEvidence(
        id="H99", slide_id=slide.slide_id, bbox_level0=(x, y, size, size), attention=0.2, pattern="necrosis",
        origin="patch_attention", source={"file": slide.file, "locator": "features[0]"},
    )
    report = reports[chosen["slide"]]
    report = report.model_copy(update={"histology_evidence": [*report.histology_evidence, patch]})
    ctx = FigureContext(inputs, report, None, settings, "en")
    attention = np.full(len(slide.coords), 1.0 / len(slide.coords))
    with style():
        fig, ax, cited, has_image = draw_slide(ctx, slide, attention)
        pixels = np.asarray(Image.open(io.BytesIO(png_bytes(fig))).convert("RGB"))
    assert has_image and [h.id for h in cited][-1] == "H99"
    box = tuple(int(BOX_COLOUR[i:i + 2], 16) for i in (1, 3, 5))
    height = pixels.shape[0]

    def colour_near(level0_x: float, level0_y: float) -> bool:
        px, py = ax.transData.transform((level0_x, level0_y))
        row, col = int(round(height - py)), int(round(px))
        window = pixels[row - 1:row + 2, col - 1:col + 2].reshape(-1, 3)
        return any(tuple(p) == box for p in window)

    assert colour_near(x + size / 2, y) and colour_near(x, y + size / 2)  # top and left edges
    assert not colour_near(x + size / 2, y + size / 2)  # the patch itself is not painted over


def test_attention_grid_places_each_patch_in_its_cell():
    grid = attention_grid(np.array([[0, 0], [512, 256]]), np.array([0.25, 0.75]), 256)
    assert grid.shape == (2, 3)
    assert grid[0, 0] == 0.5 and grid[1, 2] == 1.5  # attention x N: 1 = uniform
    assert np.isnan(grid[0, 1]) and np.isnan(grid[1, 0])


def test_figures_off_renders_nothing(rendered, chosen, settings):
    _, _, reports = rendered
    off = Settings(**(settings.model_dump() | {"figures": False}))
    assert render_figures(None, reports[chosen["imaging_only"]], None, off) == ([], {})


def test_without_a_cjk_font_pictures_fall_back_to_english_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(figure_common, "cjk_font", lambda: None)
    with caplog.at_level(logging.WARNING, logger="agents.figures.common"):
        assert figure_common.picture_language("zh") == "en"
    assert "fonts-noto-cjk" in caplog.text
    assert figure_common.picture_language("en") == "en"


def test_case_folder_takes_binary_files_in_subfolders(tmp_path):
    written = write_case_folder(tmp_path, "C1", {"report.json": "{}\n", "figures/a.png": b"\x89PNG\r\n"})
    assert (tmp_path / "C1" / "figures" / "a.png").read_bytes() == b"\x89PNG\r\n"
    assert set(written) == {"report.json", "figures/a.png"}


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_a_volume_one_voxel_thick_draws_every_plane_without_outlines_it_cannot_have(plane):
    import matplotlib.pyplot as plt

    from agents.figures.mri import Volume, _panel

    mask = np.zeros((6, 6, 1), dtype=np.int16)
    mask[2:4, 2:4, 0] = 4  # enhancing, on the only axial slice
    volume = Volume("T0", {"t1c": np.linspace(0, 1, mask.size).reshape(mask.shape)}, mask, np.eye(4))
    fig, ax = plt.subplots()
    try:
        _panel(ax, volume, "t1c", plane, 0 if plane == "axial" else 2, [])  # each slice through the lesion
        outlines = len(ax.collections)
    finally:
        plt.close(fig)
    # The axial slice (6 x 6) carries the outline; coronal and sagittal slices are 6 x 1, where none fits.
    assert outlines == (1 if plane == "axial" else 0)
