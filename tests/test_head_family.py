"""Every registered fusion head as a trainable, reportable model (`glioma_heads`), without a test per head.

Each head is trained by `evchain train`'s entry function (1 epoch, a tiny demo cohort generated
once), its checkpoint is loaded by content alone, and one demo case (every modality, two scans)
runs through the report graph: a valid report whose conclusions are that head's calibrated
ensemble predictions and whose provenance and evidence carry its interpretation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from agents.cli import main, train
from agents.context import Settings
from agents.runner import run_case
from fusion_models.checkpoints import load_checkpoint
from fusion_models.encoders import create_encoder
from fusion_models.fusion_heads import fusion_head_names, fusion_head_needs
from fusion_models.gates import InputNeeds
from fusion_models.inputs import load_case_inputs
from fusion_models.registry import TrainingData
from schemas.report import EvidenceChainReport

HEADS = fusion_head_names()
FAMILY = "glioma_heads"
N_CASES = 16  # splits of 9 training / 2 stopping / 3 calibration / 2 evaluation cases
CASE = "DEMO-007"  # imaging at T0 and T1, a slide's patch features, genomics, age


@pytest.fixture(scope="module")
def demo_cases():
    """The demo generator's labelled cases, generated once: its tile bank is most of the cost."""
    from demo.training import iter_training_cases

    return list(iter_training_cases(N_CASES, seed=5, encoder=create_encoder("hed_texture"), bank_tiles_per_pattern=8))


@pytest.fixture(scope="module")
def report_settings(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return lambda checkpoint, model: Settings(checkpoint=checkpoint, fusion_model=model, cache_dir=cache, figures=False)


@pytest.fixture(scope="module")
def case_inputs(demo_cohort, kb):
    """The report case's inputs as the pipeline loads them, before a model's patch-statistics check."""
    settings = Settings()
    return load_case_inputs(
        demo_cohort / "cases" / CASE, encoder=create_encoder(settings.encoder), patch_size=settings.patch_size,
        max_patches=settings.max_patches, known_genes=kb.symbol_lookup, needs=InputNeeds(model=FAMILY),
    )


def _report(result) -> EvidenceChainReport:
    assert result.status == "ok", result.error
    return EvidenceChainReport.model_validate(json.loads(Path(result.outputs["report.json"]).read_text()))


@pytest.mark.parametrize("name", HEADS)
def test_head_trains_loads_by_content_and_drives_the_report(
    name, demo_cases, demo_cohort, report_settings, case_inputs, kb, tmp_path
):
    data = TrainingData(f"{N_CASES} demo cases", cases=demo_cases)
    trained = train(name, data, out=tmp_path / "model.pt", epochs=1, seed=0, progress=False)
    loaded = load_checkpoint(trained.checkpoint)  # nothing but the file's content says what it is
    assert (loaded.name, loaded.config.head.head) == (FAMILY, name)
    card = json.loads(trained.card.read_text())
    assert card["training_data"]["fusion_head"] == name
    assert not any("OOD detector" in line for line in card["limitations"])  # this family has none

    case_dir = demo_cohort / "cases" / CASE
    settings = report_settings(trained.checkpoint, loaded.name)
    report = _report(run_case(case_dir, tmp_path / "out", settings))

    # The gates passed every input in the report too (they also check the slide against the head's patch
    # statistics), so the inputs loaded once for the module are the ones the report's model saw.
    assert not report.modalities.unusable and loaded.input_needs().patch_stats is not None
    direct = loaded.predict(case_inputs, kb, top_patches=settings.top_patches)
    assert direct.fusion_head == name and direct.ensemble_members == loaded.config.members
    for conclusion in report.conclusions:
        prediction = direct.prediction(conclusion.task)
        if prediction is None:  # the WHO CNS5 integrated diagnosis is built from markers, not by the model
            continue
        for label, p in prediction.probabilities.items():
            assert math.isclose(conclusion.class_probabilities[label], p, abs_tol=1e-3), (conclusion.task, label)

    info = next(m for m in report.provenance.models if m.name == FAMILY)
    assert info.details["fusion_head"] == name and "ensemble" in info.details
    assert set(report.modality_contributions) == set(direct.modalities_used) == {
        "imaging", "pathology", "genomics", "clinical"
    }
    assert math.isclose(sum(report.modality_contributions.values()), 1.0, abs_tol=1e-3)
    assert "modality_contributions" in " ".join(info.details)
    attributed = [s for s in report.spatial_evidence if s.unit_level == "habitat" and s.attribution is not None]
    assert attributed, "the occlusion attribution of the habitats reaches the spatial evidence"
    assert direct.slide_attention and direct.patch_attention and direct.pattern_fractions
    # Co-attention heads (they need genomics and patches) give each measured pathway its most attended patch,
    # and a cited patch names the pathways that attended to it most.
    assert bool(direct.pathway_patch_attention) == ({"genomics", "pathology"} <= fusion_head_needs(name))
    cited = {(h.slide_id, h.bbox_level0[:2]): h for h in report.histology_evidence if h.origin == "patch_attention"}
    for item in cited.values():
        assert item.attended_by_pathways == [
            link.pathway for link in direct.pathway_patch_attention
            if (link.slide_id, link.coord_level0) == (item.slide_id, item.bbox_level0[:2])
        ]
    if direct.timepoint_attention:  # the longitudinal head: its attention to T1 on the T0 -> T1 change
        change = next(s for s in report.spatial_evidence if s.unit_level == "longitudinal")
        assert change.attribution == round(direct.timepoint_attention["T1"], 3)
    if direct.node_attention:
        assert "node_attention" in info.details


def test_evchain_train_head_then_report_reads_the_model_from_the_checkpoint(demo_cohort, tmp_path, capsys):
    checkpoint = tmp_path / "late.pt"
    assert main(["train", "--head", "late", "--n-cases", "12", "--epochs", "1", "--out", str(checkpoint)]) == 0
    assert f"checkpoint {checkpoint}" in capsys.readouterr().out
    case_dir = str(demo_cohort / "cases" / CASE)
    out = tmp_path / "out"
    # No --model: the checkpoint's content names it. Figures on: the slide heatmap and the reliability curve
    # come from the head's attention and its model card.
    assert main(["report", case_dir, "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    report = json.loads((out / CASE / "report.json").read_text())
    assert report["provenance"]["configuration"]["fusion_model"] == FAMILY
    assert {"slide_heatmap", "calibration"} <= {f["kind"] for f in report["figures"]}
    # A --model that contradicts the checkpoint is bad input naming both.
    assert main(["report", case_dir, "--model", "glioma_demo", "--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert "holds model 'glioma_heads', but --model is 'glioma_demo'" in capsys.readouterr().err


@pytest.mark.parametrize("name", [h for h in HEADS if not fusion_head_needs(h) <= {"genomics", "clinical"}])
def test_a_head_that_needs_what_a_labelled_cohort_lacks_is_refused(name, shared_data, tmp_path, capsys):
    cohort = shared_data / "tcga_glioma"
    assert main(["train", "--head", name, "--data", str(cohort), "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert str(cohort) in err and f"fusion head '{name}' needs" in err
    assert not (tmp_path / "x.pt").exists()


def test_an_unknown_head_names_the_registered_ones(capsys):
    assert main(["train", "--head", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no registered model has fusion head 'nope'" in err and all(h in err for h in HEADS)


def test_the_masked_branches_note_follows_what_the_checkpoint_reads(demo_cohort):
    from agents.cli import masked_branches_note

    case = demo_cohort / "cases" / "DEMO-003"  # imaging and genomics, no slide
    note = masked_branches_note([case], FAMILY)
    assert note.startswith(f"note: {FAMILY} reads imaging, pathology, genomics, clinical; 1 of 1 cases lack pathology")
    # A head trained on a genomics-only cohort reads what this case has: nothing to say.
    assert masked_branches_note([case], FAMILY, ("genomics", "clinical")) is None
