"""Every registered model family: train on tiny data -> checkpoint -> load by content -> predict, identically
after a reload; a checkpoint written before the family field still loads; --model/--checkpoint mismatches."""

from __future__ import annotations

import csv
import io
import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from fusion_models.checkpoints import LegacyCheckpointWarning, checkpoint_family, load_checkpoint
from fusion_models.head_family import FusionHeadFamily
from fusion_models.neural_family import AttentionMILFamily
from fusion_models.registry import TrainingData, list_model_families, model_family
from fusion_models.tcga.family import LinearFamily
from schemas.errors import InputError

TCGA_EVERY = 4  # 110 of the 440 TCGA cases: enough for the inner folds and the calibration fold


@pytest.fixture(scope="module")
def tcga_subset(shared_data, tmp_path_factory) -> Path:
    """A labelled cohort folder with every TCGA_EVERY-th case of the real TCGA cohort."""
    source = shared_data / "tcga_glioma"
    root = tmp_path_factory.mktemp("tcga_subset")
    with (source / "labels.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    kept = [rows[0], *rows[1::TCGA_EVERY]]
    with (root / "labels.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(kept)
    for row in kept[1:]:
        shutil.copytree(source / "cases" / row[0], root / "cases" / row[0])
    return root


def tiny(family, request) -> tuple[object, TrainingData, object]:
    """(family to train, training data, one case's inputs to predict) for the family's kind.

    A new kind of family must be added here. The linear families train with one candidate per
    setting and two inner folds (the registered grid takes minutes): the checkpoint still names
    the registered family, whose loader reads the smaller config from it.
    """
    if isinstance(family, (AttentionMILFamily, FusionHeadFamily)):
        from demo.training import demo_training_data

        data = demo_training_data(n_cases=12, seed=3)
        cases = list(data.cases)
        return family, TrainingData(data.description, cases=cases), cases[0][0]
    if isinstance(family, LinearFamily):
        config = family.config
        classifiers = tuple(c.model_copy(update={"k_grid": (20,), "C_grid": (0.1,)}) for c in config.classifiers)
        small = LinearFamily(config.model_copy(update={"classifiers": classifiers, "inner_folds": 2}))
        small.name = family.name
        from fusion_models.genomics.io import load_genomics
        from fusion_models.inputs import CaseInputs, load_manifest

        folder = request.getfixturevalue("tcga_subset")
        case_dir = sorted((folder / "cases").iterdir())[0]
        genomics, _ = load_genomics(case_dir)
        probe = CaseInputs(case_dir, load_manifest(case_dir), [], [], None, genomics)
        return small, TrainingData("TCGA subset", folder=folder), probe
    raise AssertionError(f"no tiny training set-up for {type(family).__name__}; add it to tiny()")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """name -> (checkpoint, probe inputs, trained config), each family trained once for the module."""
    return {}


def train_once(name: str, trained: dict, request, tmp_path_factory):
    if name not in trained:
        family, data, probe = tiny(model_family(name), request)
        out = tmp_path_factory.mktemp(name) / f"{name}{family.suffix}"
        result = family.train(out, data, epochs=2, seed=0, progress=False)
        assert result.checkpoint == out and out.is_file()
        trained[name] = (out, probe, family.config)
    return trained[name]


def as_json(output, *, with_file_hash: bool = True) -> str:
    return output.model_dump_json(exclude=None if with_file_hash else {"weights_sha256"})


@pytest.mark.parametrize("name", list_model_families())
def test_train_save_load_predict_round_trip(name, trained, request, tmp_path_factory, kb):
    path, probe, config = train_once(name, trained, request, tmp_path_factory)
    found, payload, _ = checkpoint_family(path)
    assert found == name and payload["family"] == name
    first = load_checkpoint(path, expected=name)
    assert first.family is model_family(name) and first.name == name
    assert first.config == config  # the config travelled inside the checkpoint
    output = first.predict(probe, kb, top_patches=2)
    assert output.model_name == name and output.predictions
    assert set(output.modalities_used) <= set(first.reads())
    again = load_checkpoint(path)
    assert as_json(again.predict(probe, kb, top_patches=2)) == as_json(output)


def strip_family(path: Path, out: Path) -> Path:
    """The checkpoint as written before the family field (torch: also the version-1 calibration tables)."""
    raw = path.read_bytes()
    if path.suffix == ".json":
        payload = json.loads(raw)
        del payload["family"]
        out.write_text(json.dumps(payload))
        return out
    payload = torch.load(io.BytesIO(raw), weights_only=True)
    del payload["family"]
    if payload["format"] != "evidencechain.fusion_checkpoint/2":  # no older format of this family exists
        torch.save(payload, out)
        return out
    stored = payload.pop("task_calibration")
    payload["format"] = "evidencechain.fusion_checkpoint/1"
    payload["temperatures"] = {t: c["temperature"] for t, c in stored.items() if "temperature" in c}
    payload["risk"] = {t: c for t, c in stored.items() if "baseline_cumulative_hazard" in c}
    torch.save(payload, out)
    return out


@pytest.mark.parametrize("name", list_model_families())
def test_checkpoint_without_family_field_loads_with_one_note(name, trained, request, tmp_path_factory, tmp_path, kb):
    path, probe, _ = train_once(name, trained, request, tmp_path_factory)
    # No suffix at all: the content, not the name, says how to read it.
    old = strip_family(path, tmp_path / "old_checkpoint")
    with pytest.warns(LegacyCheckpointWarning, match=f"identified as '{name}'"):
        loaded = load_checkpoint(old, expected=name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LegacyCheckpointWarning)
        load_checkpoint(old)  # identified once per file and process
    before = load_checkpoint(path).predict(probe, kb, top_patches=2)
    after = loaded.predict(probe, kb, top_patches=2)
    assert as_json(after, with_file_hash=False) == as_json(before, with_file_hash=False)


def test_mismatched_model_is_refused_naming_both(trained, request, tmp_path_factory):
    path, _, _ = train_once("tcga_glioma", trained, request, tmp_path_factory)
    with pytest.raises(InputError, match=r"family: checkpoint holds model 'tcga_glioma', but --model is 'glioma_demo'"):
        load_checkpoint(path, expected="glioma_demo")


def test_unknown_family_in_a_checkpoint_is_named(tmp_path):
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"format": "evidencechain.linear_checkpoint/1", "family": "nope", "config": {}}))
    with pytest.raises(InputError, match="model.json: family: unknown model family 'nope'"):
        load_checkpoint(path)


def test_default_checkpoint_follows_the_family():
    assert str(model_family("glioma_demo").default_checkpoint()) == "checkpoints/glioma_demo.pt"
    assert str(model_family("tcga_glioma").default_checkpoint()) == "checkpoints/tcga_glioma.json"


def test_cli_refuses_a_checkpoint_of_another_model(trained, request, tmp_path_factory, tmp_path, capsys):
    from agents.cli import main

    path, _, _ = train_once("tcga_glioma", trained, request, tmp_path_factory)
    case = sorted((request.getfixturevalue("tcga_subset") / "cases").iterdir())[0]
    out = str(tmp_path / "out")
    code = main(["report", str(case), "--out", out, "--checkpoint", str(path), "--model", "glioma_demo"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "checkpoint holds model 'tcga_glioma', but --model is 'glioma_demo'" in err[0] and str(path) in err[0]


def test_cli_default_checkpoint_follows_model(tmp_path, monkeypatch, capsys):
    from agents.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(["batch", str(tmp_path), "--out", str(tmp_path / "out"), "--model", "tcga_glioma"])
    assert code == 2
    assert capsys.readouterr().err.startswith("evchain: error: checkpoints/tcga_glioma.json: checkpoint:")


def test_cli_train_names_unknown_models_and_heads(capsys):
    from agents.cli import main

    assert main(["train", "--model", "nope"]) == 2
    assert "--model: model: unknown model family 'nope'" in capsys.readouterr().err
    assert main(["train", "--model", "tcga_glioma", "--head", "mcat"]) == 2
    assert "--head: head: model tcga_glioma has no fusion head 'mcat'" in capsys.readouterr().err


def test_cases_lacking_the_models_inputs_get_a_note_naming_the_model_and_the_alternatives(tcga_subset):
    from agents.cli import masked_branches_note

    cases = sorted((tcga_subset / "cases").iterdir())
    note = masked_branches_note(cases, "glioma_demo")
    assert note.startswith(
        f"note: glioma_demo reads imaging, pathology, genomics, clinical; {len(cases)} of {len(cases)} cases lack "
        "imaging and pathology, so it runs on them with those branches masked"
    )
    assert note.endswith("read only what they have: tcga_glioma, tcga_glioma_no_expression (--model NAME)")
    assert masked_branches_note(cases, "tcga_glioma") is None


def test_genomics_only_case_with_the_demo_model_says_so_and_reports(trained, request, tmp_path_factory, tmp_path, capsys):
    from agents.cli import main

    path, _, _ = train_once("glioma_demo", trained, request, tmp_path_factory)
    case = sorted((request.getfixturevalue("tcga_subset") / "cases").iterdir())[0]
    code = main(["report", str(case), "--out", str(tmp_path / "out"), "--checkpoint", str(path)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "evchain: note: glioma_demo reads imaging, pathology, genomics, clinical; 1 of 1 cases lack imaging and pathology" in err
    report = json.loads((tmp_path / "out" / case.name / "report.json").read_text())
    assert report["provenance"]["configuration"]["fusion_model"] == "glioma_demo"
    flagged = {m for f in report["consistency_flags"] if f["kind"] == "missing_modality" for m in f["modalities"]}
    assert {"imaging", "pathology"} <= flagged
