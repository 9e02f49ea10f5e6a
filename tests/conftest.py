"""Shared fixtures: the real demo cohort and a quickly trained demo fusion model, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# Small enough to train in well under a minute on 2 cores, large enough to beat chance clearly.
TEST_TRAINING_CASES = 160
TEST_TRAINING_EPOCHS = 25


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it ships beside the repository, not in it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_cohort(tmp_path_factory) -> Path:
    from demo.cohort import build_demo_cohort

    root = tmp_path_factory.mktemp("demo_cohort")
    build_demo_cohort(root, n_cases=16, seed=0, progress=False)
    return root


@pytest.fixture(scope="session")
def demo_checkpoint(tmp_path_factory) -> Path:
    from demo.training import demo_training

    path = tmp_path_factory.mktemp("model") / "glioma_demo.pt"
    demo_training(path, n_cases=TEST_TRAINING_CASES, epochs=TEST_TRAINING_EPOCHS, seed=1, progress=False)
    return path


@pytest.fixture(scope="session")
def kb():
    """The bundled pathway knowledge base, loaded once."""
    from knowledge.sources import load_knowledge

    return load_knowledge("bundled")


@pytest.fixture(scope="session")
def loaded(demo_checkpoint):
    """The session's demo fusion model, loaded once."""
    from fusion_models.inference import load_fusion_model

    return load_fusion_model(demo_checkpoint)


@pytest.fixture(scope="session")
def settings(demo_checkpoint, tmp_path_factory):
    from agents.context import Settings

    return Settings(checkpoint=demo_checkpoint, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def demo_reports(demo_cohort, settings, tmp_path_factory):
    """Every demo case through the real graph: (output folder, case id -> CaseResult)."""
    from agents.runner import run_batch

    out = tmp_path_factory.mktemp("demo_reports")
    results = run_batch(demo_cohort, out, settings, progress=False)
    return out, {r.case_id: r for r in results}


def pytest_addoption(parser):
    parser.addoption(
        "--property-cases", type=int, default=2000,
        help="generated case bundles in tests/test_property_cases.py (the slow tier runs 10000)",
    )
