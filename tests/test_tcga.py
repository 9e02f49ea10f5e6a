"""TCGA glioma learning: features, linear building blocks, the linear model end to end, baselines, CV.

Most tests run on small synthetic cohorts; the ones marked with `shared_data` read the real
TCGA bundles and skip when ../shared/data is absent.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evals.metrics import concordance_index, roc_auc
from fusion_models.genomics.io import GenomicsInput, load_genomics
from fusion_models.inputs import CaseInputs, load_manifest
from fusion_models.tcga.baselines import conditional_frequencies
from fusion_models.tcga.checkpoint import LoadedLinearModel, load_linear_model, save_linear_model
from fusion_models.tcga.cohort import (
    TASK_LABELS,
    Cohort,
    load_cohort,
    patient_id,
    read_labels,
    strata,
    stratified_folds,
)
from evals.tcga_cv import (
    METRICS,
    HeldOut,
    cross_validate,
    evaluate,
    format_spread_table,
    format_table,
    run_cv,
    run_repeated_cv,
    spread,
)
from fusion_models.tcga.features import case_vector, feature_names, modality_of, transform_expression
from fusion_models.tcga.inference import predict_case
from fusion_models.tcga.linear import (
    CLIP_SD,
    CoxFit,
    LogisticMember,
    Preprocessor,
    anova_top_k,
    ensemble_logits,
    fit_l2_logistic,
)
from fusion_models.tcga.methods import METHODS
from fusion_models.tcga.model import (
    ClassifierSpec,
    LinearModelConfig,
    RiskSpec,
    fit_linear_model,
    select_candidate,
)
from fusion_models.tcga.family import linear_model_config, list_linear_models
from schemas.case import CaseManifest
from schemas.errors import InputError
from schemas.fusion import FusionOutput

# ---- features -----------------------------------------------------------------------------------


def test_transform_expression_is_asinh_keeping_sign_and_order():
    z = np.array([-math.sinh(2.0), 0.0, math.sinh(1.0), 3515.0])
    t = transform_expression(z)
    assert t[:3] == pytest.approx([-2.0, 0.0, 1.0])
    assert t[3] == pytest.approx(math.log(3515.0 + math.sqrt(3515.0**2 + 1)))


def genomics(expression: dict[str, float] | None, mutated: list[str] | None, scale: str = "zscore") -> GenomicsInput:
    return GenomicsInput(
        expression=None if expression is None else pd.Series(expression, dtype=float),
        expression_scale=scale,
        mutations=None if mutated is None else pd.DataFrame({"gene": mutated, "variant": "x", "vaf": np.nan}),
        cnv=pd.Series({"EGFR": 2.0}),
        files={},
    )


MANIFEST = CaseManifest(case_id="c1", cancer_type="glioma", age_band="60-69", sex="F")
NAMES = feature_names(["EGFR", "MGMT"], ["EGFR"], ["IDH1", "TP53"])


def test_case_vector_reads_every_block_and_marks_unmeasured_as_nan():
    x = case_vector(genomics({"EGFR": math.sinh(1.0)}, ["TP53"]), MANIFEST, NAMES)
    expected = [1.0, np.nan, 2.0, 0.0, 1.0, 64.5, 0.0]  # MGMT not measured; IDH1 absent from the file = wild type
    assert NAMES == ["expr:EGFR", "expr:MGMT", "cnv:EGFR", "mut:IDH1", "mut:TP53", "clin:age_years", "clin:sex_male"]
    np.testing.assert_allclose(x, expected)


def test_case_vector_without_mutation_file_leaves_mutations_unknown():
    x = case_vector(genomics({"EGFR": 0.0}, None), MANIFEST, NAMES)
    assert np.isnan(x[3]) and np.isnan(x[4])


def test_case_vector_refuses_expression_on_another_scale():
    with pytest.raises(InputError) as error:
        case_vector(genomics({"EGFR": 7.0}, [], scale="log2_tpm"), MANIFEST, NAMES)
    assert str(error.value).startswith("genomics/meta.json: expression_scale: ")


def test_modality_of_feature_names():
    assert [modality_of(n) for n in NAMES] == ["genomics"] * 5 + ["clinical"] * 2


# ---- linear building blocks -----------------------------------------------------------------------


def test_preprocessor_standardises_fills_clips_and_filters_floor_genes():
    names = ["expr:A", "expr:FLOOR", "cnv:B", "mut:C"]
    X = np.array(
        [
            [1.0, 0.0, 1.0, 1.0],
            [3.0, 0.0, 1.0, 0.0],
            [np.nan, 0.0, 1.0, 1.0],
            [2.0, 9.0, 1.0, 0.0],
        ]
    )
    pre = Preprocessor.fit(X, names)
    # expr:A over its 3 measured values: mean 2, population SD sqrt(2/3)
    assert pre.mean[0] == pytest.approx(2.0) and pre.scale[0] == pytest.approx(math.sqrt(2 / 3))
    # FLOOR's quartiles are 0 and 2.25, spread enough to be selectable; B is constant, so it is not
    assert pre.selectable.tolist() == [True, True, False, True]
    Z = pre.transform(np.array([[np.nan, 1e6, 1.0, 1.0]]))
    assert Z[0, 0] == 0.0  # unmeasured -> training mean
    assert Z[0, 1] == CLIP_SD  # extreme value clipped
    assert Z[0, 2] == 0.0  # constant feature: scale 1, centred


def test_preprocessor_marks_genes_silent_in_most_cases_unselectable():
    names = ["expr:SILENT", "expr:VARYING"]
    X = np.array([[-0.08, -1.0], [-0.08, 0.0], [-0.08, 1.0], [-0.08, 2.0], [5.0, 3.0]])
    assert Preprocessor.fit(X, names).selectable.tolist() == [False, True]


def test_anova_top_k_picks_the_separating_selectable_features():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 10)
    Z = rng.normal(size=(30, 4))
    Z[:, 1] += 5 * y  # separates the classes
    Z[:, 3] += 3 * y  # separates too, but is not selectable
    selectable = np.array([True, True, True, False])
    assert anova_top_k(Z, y, selectable, 1).tolist() == [1]
    assert anova_top_k(Z, y, selectable, 10).tolist() == [0, 1, 2]
    assert anova_top_k(Z, y, selectable, None).tolist() == [0, 1, 2]


def test_l2_logistic_with_more_features_than_cases_matches_the_direct_fit():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 8)
    X = rng.normal(size=(24, 60)) + 0.3  # off-centre, so the intercept must absorb the column means
    X[:, :3] += y[:, None]
    coef, intercept = fit_l2_logistic(X, y, 0.1)
    direct = LogisticRegression(C=0.1, max_iter=5000, tol=1e-10).fit(X, y)
    # same optimum up to the solver's default stopping tolerance (logits here span about +-2)
    np.testing.assert_allclose(coef, direct.coef_, atol=1e-3)
    np.testing.assert_allclose(X @ coef.T + intercept, direct.decision_function(X), atol=5e-3)


def test_select_candidate_scores_log_loss_after_temperature_and_prefers_the_earlier_on_ties():
    y = np.array([0, 1, 2, 0, 1, 2])
    good = 2.0 * np.eye(3)[y]
    good[0] = [0.0, 1.0, 0.0]  # one mistake
    wrong = 2.0 * np.eye(3)[(y + 1) % 3]
    best, losses = select_candidate([wrong, good, 1.5 * good], y)
    # the sharper copy ranks exactly as `good`; after its own temperature it scores the same, so `good` wins
    assert best == 1
    assert losses[1] == pytest.approx(losses[2], abs=1e-5)
    assert losses[0] > losses[1]


def test_logistic_member_terms_are_against_the_mean_logit():
    member = LogisticMember(np.array([0, 2]), np.array([[1.0, 2.0], [3.0, 0.0], [-1.0, 1.0]]), np.zeros(3))
    z = np.array([1.0, 99.0, 2.0])
    # mean coefficient row (1, 1); label 1: (3 - 1, 0 - 1) * (1, 2) = (2, -2)
    assert member.terms(z, 1).tolist() == [2.0, -2.0]
    assert member.logits(z[None]).tolist() == [[5.0, 3.0, 1.0]]
    other = LogisticMember(np.array([1]), np.array([[1.0], [0.0], [0.0]]), np.array([0.0, 1.0, 0.0]))
    assert ensemble_logits([member, other], z[None]).tolist() == [[52.0, 2.0, 0.5]]


def test_logistic_member_refuses_a_class_without_training_cases():
    Z = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="missing class indices \\[2\\]"):
        LogisticMember.fit(Z, np.array([0, 1] * 5), 3, 2, 1.0, np.ones(3, dtype=bool))


def test_cox_linear_predictor_is_centred():
    cox = CoxFit(beta=np.array([0.5, -1.0]), centre=np.array([1.0, 2.0]))
    assert cox.linear_predictor(np.array([[3.0, 2.0], [1.0, 3.0]])).tolist() == [1.0, -1.0]


def test_conditional_frequencies_hand_checked():
    table = conditional_frequencies(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 2, 2, 1]), 3)
    np.testing.assert_allclose(table, [[2 / 5, 2 / 5, 1 / 5], [1 / 6, 2 / 6, 3 / 6]])


# ---- synthetic cohort -----------------------------------------------------------------------------


def synthetic_cohort(n: int = 120, seed: int = 0) -> Cohort:
    """Subtype read from expr:G0 and IDH1, grade from expr:G1 and age, survival worse with grade."""
    rng = np.random.default_rng(seed)
    subtype = rng.integers(0, 3, n)
    grade = rng.integers(0, 3, n)
    genes = [f"G{i}" for i in range(8)]
    names = feature_names(genes, ["EGFR"], ["IDH1"])
    X = rng.normal(size=(n, len(names)))
    X[:, 0] += 3.0 * subtype
    X[:, 1] += 3.0 * grade
    X[:, names.index("mut:IDH1")] = (subtype > 0).astype(float)
    X[:, names.index("cnv:EGFR")] = rng.integers(-2, 3, n)
    X[:, names.index("clin:age_years")] = 40.0 + 10.0 * grade + rng.normal(0, 5, n)
    X[:, names.index("clin:sex_male")] = rng.integers(0, 2, n)
    months = rng.exponential(60.0 / np.exp(grade))
    grades = np.array([TASK_LABELS["grade"][g] for g in grade], dtype=object)
    grades[:5] = None  # some cases without a grade, as in TCGA
    return Cohort(
        root=Path("synthetic"),
        case_ids=tuple(f"TCGA-AA-{i:04d}" for i in range(n)),
        feature_names=tuple(names),
        X=X,
        grade=grades,
        subtype=np.array([TASK_LABELS["molecular_subtype"][s] for s in subtype], dtype=object),
        survival_months=months,
        event=rng.random(n) < 0.8,
    )


SMALL = LinearModelConfig(
    name="synthetic_linear",
    version="0.0.1",
    description="test model",
    classifiers=(
        ClassifierSpec(task="grade", k_grid=(3,), C_grid=(1.0,)),
        ClassifierSpec(task="molecular_subtype", k_grid=(2, None), C_grid=(0.1, 1.0)),
    ),
    risk=RiskSpec(inputs=("clin:age_years", "grade=G4", "molecular_subtype=IDHwt")),
    inner_folds=3,
)


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return synthetic_cohort()


@pytest.fixture(scope="module")
def small_model(cohort):
    return fit_linear_model(SMALL, cohort)


def test_patient_folds_are_disjoint_cover_everything_and_keep_patients_together(cohort):
    ids = list(cohort.case_ids)
    ids[1] = ids[0].replace("TCGA-AA-0000", "TCGA-AA-0000-01A")  # a second sample of patient 0
    ids[0] = "TCGA-AA-0000-02A"
    twin = Cohort(**{**vars(cohort), "case_ids": tuple(ids)})
    assert patient_id(ids[0]) == patient_id(ids[1]) == "TCGA-AA-0000"
    folds = stratified_folds(twin, 5, seed=0)
    held = np.concatenate([test for _, test in folds])
    assert sorted(held.tolist()) == list(range(len(twin)))
    for train, test in folds:
        assert not set(train) & set(test)
        assert (0 in test) == (1 in test)


def test_strata_pool_small_groups():
    c = synthetic_cohort(30)
    keys = strata(c, 5)
    counts = pd.Series(keys).value_counts()
    assert counts.min() >= 5 or counts.index[counts.argmin()] == "pooled"


def test_linear_model_learns_calibrates_and_stacks_risk(cohort, small_model):
    figures = small_model.heldout_metrics
    assert figures["molecular_subtype"]["accuracy"] > 0.9
    assert figures["grade"]["accuracy"] > 0.8
    assert 0.5 <= figures["grade"]["temperature"] <= 5.0
    predicted = small_model.predict(cohort)
    for p in predicted.probabilities.values():
        np.testing.assert_allclose(p.sum(axis=1), 1.0)
    grade = cohort.labels("grade")
    assert predicted.risk[grade == 2].mean() > predicted.risk[grade == 0].mean()
    assert small_model.risk.calibration.cut_points[0] < small_model.risk.calibration.cut_points[1]


def test_linear_model_records_the_inner_cv_choice(cohort, small_model):
    chosen = small_model.heldout_metrics["molecular_subtype"]
    assert chosen["C"] in (0.1, 1.0)
    selectable = int(small_model.preprocessor.selectable.sum())
    assert chosen["k_features"] in (2, selectable)
    head = small_model.classifiers[1]
    assert len(head.members) == 1 and len(head.members[0].features) == chosen["k_features"]
    assert small_model.heldout_metrics["grade"]["k_features"] == 3


def test_feature_blocks_keep_the_classifiers_off_other_blocks(cohort):
    no_expression = SMALL.model_copy(update={"feature_blocks": ("cnv:", "mut:", "clin:")})
    model = fit_linear_model(no_expression, cohort)
    for head in model.classifiers:
        used = [model.feature_names[i] for i in head.members[0].features]
        assert used and not any(n.startswith("expr:") for n in used)
    assert linear_model_config("tcga_glioma_no_expression").feature_blocks == ("cnv:", "mut:", "clin:")


def test_predict_aligns_columns_by_name(cohort, small_model):
    order = np.arange(len(cohort.feature_names))[::-1]
    shuffled = Cohort(
        **{**vars(cohort), "X": cohort.X[:, order], "feature_names": tuple(cohort.feature_names[i] for i in order)}
    )
    np.testing.assert_allclose(small_model.predict(shuffled).risk, small_model.predict(cohort).risk)


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path, cohort, small_model):
    path = tmp_path / "model.json"
    sha = save_linear_model(small_model, path, {"n_cases": len(cohort)})
    loaded = load_linear_model(path)
    assert loaded.weights_sha256 == sha
    before, after = small_model.predict(cohort), loaded.model.predict(cohort)
    for task in before.probabilities:
        assert np.array_equal(before.probabilities[task], after.probabilities[task])
    assert np.array_equal(before.risk, after.risk)


def test_load_rejects_other_files_naming_the_field(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(InputError, match="format: expected evidencechain.linear_checkpoint/1"):
        load_linear_model(path)
    path.write_text(json.dumps({"format": "evidencechain.linear_checkpoint/1", "config": {}}))
    with pytest.raises(InputError, match="checkpoint: malformed"):
        load_linear_model(path)


def write_case(root: Path, expression: dict[str, float], mutated: list[str], case_id: str = "TCGA-AA-9999") -> Path:
    case = root / case_id
    (case / "genomics").mkdir(parents=True)
    (case / "case.json").write_text(
        json.dumps({"case_id": case_id, "cancer_type": "glioma", "age_band": "60-69", "sex": "M"})
    )
    (case / "genomics" / "expression.tsv").write_text(
        "gene\tvalue\n" + "".join(f"{g}\t{v}\n" for g, v in expression.items())
    )
    (case / "genomics" / "mutations.tsv").write_text("gene\tvariant\tvaf\n" + "".join(f"{g}\tx\t\n" for g in mutated))
    return case


def case_inputs(case: Path) -> CaseInputs:
    g, unusable = load_genomics(case)
    return CaseInputs(case, load_manifest(case), [], [], None, g, unusable)


def test_predict_case_gives_a_valid_fusion_output(tmp_path, small_model):
    case = write_case(tmp_path, {f"G{i}": 0.0 for i in range(8)} | {"G0": math.sinh(6.0)}, ["IDH1"])
    out = predict_case(LoadedLinearModel(small_model, "0" * 64, tmp_path / "m.json"), case_inputs(case))
    assert isinstance(out, FusionOutput)
    assert [p.task for p in out.predictions] == ["grade", "molecular_subtype", "risk"]
    assert out.prediction("molecular_subtype").top()[0] == "IDHmut-non-codel"  # high G0, IDH1 mutated
    risk = out.prediction("risk")
    assert risk.score is not None and risk.risk_group in ("low", "intermediate", "high")
    assert out.modalities_used == ["genomics", "clinical"]
    assert sum(out.modality_contributions.values()) == pytest.approx(1.0)


def test_predict_case_refuses_a_profile_missing_most_model_genes(tmp_path, small_model):
    case = write_case(tmp_path, {"G0": 1.0, "G1": 0.5}, [])
    with pytest.raises(InputError) as error:
        predict_case(LoadedLinearModel(small_model, "0" * 64, tmp_path / "m.json"), case_inputs(case))
    assert str(error.value).startswith("genomics/expression.tsv: gene: 2 of the 8 genes")


def test_config_validation_and_registry():
    with pytest.raises(ValueError, match="risk input 'grade=G5'"):
        LinearModelConfig.model_validate({**SMALL.model_dump(), "risk": {"inputs": ["grade=G5"]}})
    with pytest.raises(ValueError, match="unknown feature blocks \\['img:'\\]"):
        LinearModelConfig.model_validate({**SMALL.model_dump(), "feature_blocks": ["img:"]})
    with pytest.raises(ValueError, match="C_grid entries must be > 0"):
        ClassifierSpec(task="grade", k_grid=(5,), C_grid=(0.0,))
    with pytest.raises(ValueError, match="k_grid entries must be positive or None"):
        ClassifierSpec(task="grade", k_grid=(0,), C_grid=(1.0,))
    assert set(list_linear_models()) >= {"tcga_glioma", "tcga_glioma_no_expression"}
    assert linear_model_config("tcga_glioma").name == "tcga_glioma"
    assert {
        "tcga_glioma", "tcga_glioma_no_expression", "idh1_rule", "expression_logistic", "genomic_logistic",
        "cox_age_idh1",
    } <= set(METHODS.names())
    with pytest.raises(ValueError, match="unknown model family 'nope'"):
        linear_model_config("nope")
    with pytest.raises(ValueError, match="'glioma_demo' is not a linear model"):
        linear_model_config("glioma_demo")


# ---- cross-validation -----------------------------------------------------------------------------


def test_cross_validate_fills_every_case_from_its_held_out_fold(cohort):
    held = cross_validate(cohort, "idh1_rule", stratified_folds(cohort, 5, 0))
    assert held.risk is None
    for p in held.probabilities.values():
        assert not np.isnan(p).any()
    figures = evaluate(cohort, held, n_boot=20, seed=0)
    assert figures["C-index (risk score)"] is None
    subtype = figures["subtype accuracy"]
    assert subtype.low <= subtype.value <= subtype.high


def test_metric_targets():
    by_name = {m.name: m for m in METRICS}
    assert by_name["subtype accuracy"].met(0.98) and not by_name["subtype accuracy"].met(0.979)
    assert by_name["subtype ECE"].met(0.03) and not by_name["subtype ECE"].met(0.031)
    assert by_name["grade accuracy (3-class)"].met(0.72) and not by_name["grade accuracy (3-class)"].met(0.719)
    assert by_name["C-index (risk score)"].met(0.85) and not by_name["C-index (risk score)"].met(0.849)
    assert by_name["grade Brier"].met(0.5) is None
    assert by_name["grade ECE"].at_least_as_good(0.02, 0.03) and not by_name["grade ECE"].at_least_as_good(0.04, 0.03)
    assert by_name["subtype accuracy"].at_least_as_good(0.99, 0.98)


def test_g2_vs_g3_auc_ignores_grade_4_cases():
    metric = next(m for m in METRICS if m.name == "grade G2-vs-G3 AUC (one study)")
    # p(G3) / (p(G2) + p(G3)): 0.2, 0.8, 0.4 for G2, G3, G3; the G4 case would break the ranking if it counted
    p = np.array([[0.8, 0.2, 0.0], [0.1, 0.4, 0.5], [0.3, 0.2, 0.5], [0.0, 0.0, 1.0]])
    grades = np.array(["G2", "G3", "G3", "G4"], dtype=object)
    c = Cohort(Path("x"), ("a", "b", "c", "d"), ("clin:age_years",), np.zeros((4, 1)), grades, grades, np.ones(4),
               np.ones(4, dtype=bool))
    held = HeldOut("m", {"grade": p}, None, 0.0)
    assert metric.statistic(c, held, np.arange(4)) == pytest.approx(1.0)
    p[2] = [0.45, 0.05, 0.5]  # G3 case now at 0.1: ranked below the G2 case (0.2) -> AUC 1/2
    assert metric.statistic(c, held, np.arange(4)) == pytest.approx(0.5)


def test_run_cv_table_puts_methods_side_by_side(cohort):
    result = run_cv(cohort, ["idh1_rule", "cox_age_idh1"], n_folds=3, seed=0, n_boot=20)
    table = format_table(result, "idh1_rule")
    lines = table.splitlines()
    assert lines[0] == "| metric | idh1_rule | cox_age_idh1 | target | idh1_rule meets it |"
    assert len(lines) == 2 + len(METRICS)
    c_index_row = next(line for line in lines if line.startswith("| C-index"))
    assert c_index_row.split(" | ")[1] == "—"


def test_repeated_cv_reports_mean_and_sd_over_seeds_and_compares_with_baselines(cohort):
    results = run_repeated_cv(cohort, ["idh1_rule", "cox_age_idh1"], n_folds=3, seeds=[0, 1], n_boot=10)
    assert [r.seed for r in results] == [0, 1]
    assert results[1].figures["idh1_rule"]["subtype accuracy"].low is None  # intervals on the first seed only
    figures = spread(results)
    accuracy = figures["idh1_rule"]["subtype accuracy"]
    values = [r.figures["idh1_rule"]["subtype accuracy"].value for r in results]
    assert accuracy.mean == pytest.approx(np.mean(values)) and accuracy.sd == pytest.approx(np.std(values, ddof=1))
    assert figures["cox_age_idh1"]["subtype accuracy"] is None
    lines = format_spread_table(results, "idh1_rule", ["cox_age_idh1"]).splitlines()
    assert lines[0] == "| metric | idh1_rule | cox_age_idh1 | target | idh1_rule meets it | idh1_rule >= baselines |"
    row = next(line for line in lines if line.startswith("| subtype accuracy")).split(" | ")
    assert row[1] == f"{accuracy.mean:.3f} ± {accuracy.sd:.3f}" and row[2] == "—"
    assert row[-1] == " |"  # no baseline answers subtype: nothing to compare


# ---- cohort loading -------------------------------------------------------------------------------


def test_read_labels_names_file_field_and_line(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(
        "case_id,who_grade,idh_codel_subtype,survival_months,event\nA,G2,IDHwt,3.5,1\nB,G9,IDHwt,1.0,0\n"
    )
    with pytest.raises(InputError) as error:
        read_labels(path)
    assert str(error.value) == "labels.csv: who_grade: line 3: 'G9' is not one of ['G2', 'G3', 'G4']"
    path.write_text("case_id,who_grade\nA,G2\n")
    with pytest.raises(InputError, match="labels.csv: idh_codel_subtype: missing column"):
        read_labels(path)


def test_load_cohort_reads_bundles_and_labels(tmp_path):
    (tmp_path / "labels.csv").write_text(
        "case_id,who_grade,idh_codel_subtype,survival_months,event\n"
        "TCGA-AA-0001,G2,IDHmut-codel,40.0,0\nTCGA-AA-0002,,IDHwt,3.0,1\n"
    )
    write_case(tmp_path / "cases", {"EGFR": 0.0, "MGMT": math.sinh(1.0)}, ["IDH1"], "TCGA-AA-0001")
    write_case(tmp_path / "cases", {"EGFR": 2.0}, [], "TCGA-AA-0002")
    cohort = load_cohort(tmp_path)
    assert cohort.feature_names == ("expr:EGFR", "expr:MGMT", "mut:IDH1", "clin:age_years", "clin:sex_male")
    np.testing.assert_allclose(cohort.X, [[0.0, 1.0, 1.0, 64.5, 1.0], [math.asinh(2.0), np.nan, 0.0, 64.5, 1.0]])
    assert cohort.labels("grade").tolist() == [0, -1]
    assert cohort.labels("molecular_subtype").tolist() == [1, 0]
    assert cohort.event.tolist() == [False, True]


def test_load_cohort_refuses_a_broken_training_file(tmp_path):
    (tmp_path / "labels.csv").write_text(
        "case_id,who_grade,idh_codel_subtype,survival_months,event\nTCGA-AA-0001,G2,,1,0\n"
    )
    case = write_case(tmp_path / "cases", {"EGFR": 0.0}, [], "TCGA-AA-0001")
    (case / "genomics" / "expression.tsv").write_text("gene\tvalue\nEGFR\tabc\n")
    with pytest.raises(InputError) as error:
        load_cohort(tmp_path)
    assert str(error.value).startswith("cases/TCGA-AA-0001/genomics/expression.tsv: value: non-numeric value 'abc'")


# ---- real TCGA data (skipped without ../shared/data) ------------------------------------------------


@pytest.fixture(scope="module")
def tcga(shared_data) -> Cohort:
    return load_cohort(shared_data / "tcga_glioma")


def test_tcga_cohort_loads_every_case_with_its_labels(tcga):
    assert len(tcga) == 440
    assert tcga.X.shape == (440, 1544 + 30 + 16 + 2)
    assert not np.isnan(tcga.X).any()
    grades = pd.Series(tcga.grade).value_counts(dropna=False)
    assert grades.to_dict() == {"G3": 167, "G2": 156, "G4": 74, None: 43}
    assert (tcga.labels("molecular_subtype") < 0).sum() == 2
    assert tcga.column("mut:IDH1").sum() == 285


def test_tcga_model_beats_idh1_rule_on_held_out_cases(tcga, tmp_path):
    """Train on 150 cases, predict 150 others: the linear model must beat the IDH1 rule clearly."""
    order = np.random.default_rng(0).permutation(len(tcga))
    train, test = tcga.subset(order[:150]), tcga.subset(order[150:300])
    ours = fit_linear_model(linear_model_config("tcga_glioma"), train).predict(test)
    rule = METHODS.get("idh1_rule")(train).predict(test)
    y = test.labels("molecular_subtype")
    known = y >= 0

    def accuracy(p: np.ndarray) -> float:
        return float(np.mean(p[known].argmax(axis=1) == y[known]))

    assert accuracy(ours.probabilities["molecular_subtype"]) >= 0.93
    assert accuracy(ours.probabilities["molecular_subtype"]) > accuracy(rule.probabilities["molecular_subtype"]) + 0.15
    grade = test.labels("grade")
    g = grade >= 0
    # 150 training cases hold about 25 grade-4 ones: the floor is the margin over the rule, not the 440-case figure
    g4_auc = roc_auc(grade[g] == 2, ours.probabilities["grade"][g, 2])
    assert g4_auc >= 0.90
    assert g4_auc > roc_auc(grade[g] == 2, rule.probabilities["grade"][g, 2]) + 0.05
    assert concordance_index(test.survival_months, test.event, ours.risk) >= 0.80


def test_tcga_case_report_outputs(tcga, shared_data, tmp_path):
    model = fit_linear_model(linear_model_config("tcga_glioma"), tcga.subset(np.arange(0, 440, 3)))
    path = tmp_path / "tcga_glioma.json"
    save_linear_model(model, path, {})
    case = shared_data / "tcga_glioma" / "cases" / tcga.case_ids[1]
    out = predict_case(load_linear_model(path), case_inputs(case))
    assert {p.task for p in out.predictions} == {"grade", "molecular_subtype", "risk"}
    assert set(out.prediction("grade").probabilities) == {"G2", "G3", "G4"}
    assert out.modalities_used == ["genomics", "clinical"]
