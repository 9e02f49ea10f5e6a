"""Genomics loader on a real TCGA case bundle and on small hand-made TSVs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fusion_models.encoders import create_encoder
from fusion_models.genomics.io import load_genomics
from fusion_models.inputs import load_case_inputs

TCGA_CASE = Path("tcga_glioma") / "cases" / "TCGA-02-0047"


@pytest.fixture
def tcga_case(shared_data: Path) -> Path:
    case = shared_data / TCGA_CASE
    if not (case / "genomics" / "expression.tsv").is_file():
        pytest.skip(f"real TCGA case bundle {case} is absent from the shared data folder")
    return case


def write(case: Path, **files: str) -> Path:
    folder = case / "genomics"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("_", ".")).write_text(text)
    return case


def reasons(unusable) -> dict[str, str]:
    return {u.file: u.reason for u in unusable}


def test_real_tcga_case(tcga_case):
    genomics, unusable = load_genomics(tcga_case)
    assert unusable == []
    expr = genomics.expression
    assert len(expr) == 1544 and expr.index.is_unique
    assert all(g == g.upper() for g in expr.index) and expr.dtype == np.float64
    assert expr["AAK1"] == pytest.approx(1.5517)
    assert genomics.expression_scale == "zscore"
    assert list(genomics.mutations.columns) == ["gene", "variant", "vaf"]
    assert genomics.mutations["gene"].tolist() == ["PIK3CA", "RYR2"]
    assert genomics.mutations["vaf"].isna().all()  # the TCGA calls carry no allele fraction
    assert len(genomics.cnv) == 30 and genomics.cnv.between(-2, 2).all()
    assert genomics.files == {
        "expression": "genomics/expression.tsv",
        "mutations": "genomics/mutations.tsv",
        "cnv": "genomics/cnv.tsv",
        "meta": "genomics/meta.json",
    }


def test_real_tcga_case_inputs_have_genomics_and_clinical_only(tcga_case):
    inputs = load_case_inputs(tcga_case, encoder=create_encoder("hed_texture"))
    assert inputs.manifest.case_id == "TCGA-02-0047"
    assert inputs.present_modalities() == ["genomics", "clinical"]
    assert inputs.missing_modalities() == ["imaging", "pathology"]
    assert inputs.unusable == []
    assert inputs.files_read[0] == "case.json" and "genomics/expression.tsv" in inputs.files_read


def test_known_genes_minority_is_dropped_and_listed(tcga_case):
    genes = load_genomics(tcga_case)[0].expression.index
    known = set(genes[3:])  # the knowledge base hands over its universe upper-cased, like the expression index
    genomics, unusable = load_genomics(tcga_case, known_genes=known)
    assert unusable == []
    assert genomics.unknown_genes == list(genes[:3])
    assert len(genomics.expression) == 1541


def test_known_genes_majority_unknown_makes_expression_unusable(tmp_path):
    rows = "".join(f"FOO{i}\t{i / 10}\n" for i in range(8)) + "EGFR\t1\nTP53\t2\n"
    write(tmp_path, expression_tsv="gene\tvalue\n" + rows, cnv_tsv="gene\tvalue\nEGFR\t2\n")
    genomics, unusable = load_genomics(tmp_path, known_genes={"EGFR", "TP53"})
    assert genomics.expression is None and genomics.cnv["EGFR"] == 2.0
    assert "expression" not in genomics.files
    assert reasons(unusable) == {
        "genomics/expression.tsv": "genomics/expression.tsv: gene: 8 of 10 symbols are not HGNC symbols known "
        "to the knowledge base, e.g. FOO0, FOO1, FOO2, FOO3, FOO4"
    }


def test_hand_made_tsvs_are_normalised(tmp_path):
    write(
        tmp_path,
        expression_tsv="Gene\tValue\n egfr \t2.5\nTP53\t-1e-1\n\n",
        mutations_tsv="gene\tvariant\tvaf\nIDH1\tR132H\t0.41\nTP53\tR273C\t\nATRX\tframeshift\n",
        cnv_tsv="gene\tvalue\nCDKN2A\t-2\nEGFR\t1.5\n",
        meta_json=json.dumps({"expression_scale": "log2_tpm"}),
    )
    genomics, unusable = load_genomics(tmp_path)
    assert unusable == []
    assert genomics.expression.to_dict() == {"EGFR": 2.5, "TP53": -0.1}
    assert genomics.expression_scale == "log2_tpm"
    assert genomics.mutations["gene"].tolist() == ["IDH1", "TP53", "ATRX"]
    assert genomics.mutations["vaf"].iloc[0] == pytest.approx(0.41)
    assert math.isnan(genomics.mutations["vaf"].iloc[1]) and math.isnan(genomics.mutations["vaf"].iloc[2])
    assert genomics.cnv.to_dict() == {"CDKN2A": -2.0, "EGFR": 1.5}
    assert genomics.unknown_genes == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"expression_tsv": "gene\tval\nEGFR\t1\n"}, "genomics/expression.tsv: value: missing column; found gene, val"),
        (
            {"expression_tsv": "gene\tvalue\nEGFR\t1\nTP53\tabc\n"},
            "genomics/expression.tsv: value: non-numeric value 'abc' for gene TP53 (line 3)",
        ),
        (
            {"expression_tsv": "gene\tvalue\nEGFR\t1\n\nTP53\tNA\n"},
            "genomics/expression.tsv: value: non-numeric value 'NA' for gene TP53 (line 4)",
        ),
        (
            {"expression_tsv": "gene\tvalue\nEGFR\t1\negfr\t2\nTP53\t1\nTP53\t0\n"},
            "genomics/expression.tsv: gene: duplicate gene symbols: EGFR, TP53",
        ),
        ({"expression_tsv": "gene\tvalue\n\t1\n"}, "genomics/expression.tsv: gene: empty gene symbol on line 2"),
        (
            {"cnv_tsv": "gene\tvalue\nEGFR\t3\nPTEN\t-2\n"},
            "genomics/cnv.tsv: value: 1 values outside the GISTIC range -2..2, e.g. EGFR=3",
        ),
        (
            {"mutations_tsv": "gene\tvariant\tvaf\nIDH1\tR132H\t41\n"},
            "genomics/mutations.tsv: vaf: allele fraction 41 for gene IDH1 outside 0..1 (line 2)",
        ),
        (
            {"mutations_tsv": "gene\tvariant\nIDH1\tR132H\n"},
            "genomics/mutations.tsv: vaf: missing column; found gene, variant",
        ),
        (
            {"mutations_tsv": "gene\tvariant\tvaf\nIDH1\t\t0.3\n"},
            "genomics/mutations.tsv: variant: empty variant for gene IDH1 (line 2)",
        ),
        ({"cnv_tsv": "gene\tvalue\nEGFR\t1\t9\n"}, "genomics/cnv.tsv: tsv: line 2 has 3 fields, the header 2"),
    ],
)
def test_each_bad_file_is_unusable_with_file_and_field(tmp_path, files, expected):
    write(tmp_path, **files)
    genomics, unusable = load_genomics(tmp_path)
    assert genomics is None
    assert [u.reason for u in unusable] == [expected]
    assert unusable[0].modality == "genomics" and unusable[0].file == expected.split(":")[0]


def test_bad_meta_json_leaves_expression_out_but_keeps_the_rest(tmp_path):
    write(
        tmp_path,
        expression_tsv="gene\tvalue\nEGFR\t1\n",
        cnv_tsv="gene\tvalue\nEGFR\t1\n",
        meta_json="{broken",
    )
    genomics, unusable = load_genomics(tmp_path)
    assert genomics.expression is None and genomics.cnv is not None
    assert genomics.files == {"cnv": "genomics/cnv.tsv"}
    found = reasons(unusable)
    assert found["genomics/meta.json"].startswith("genomics/meta.json: json: invalid JSON")
    assert found["genomics/expression.tsv"] == (
        "genomics/expression.tsv: value: scale unknown because genomics/meta.json is unusable"
    )


def test_meta_json_scale_must_be_a_string(tmp_path):
    write(tmp_path, mutations_tsv="gene\tvariant\tvaf\nIDH1\tR132H\t0.4\n", meta_json='{"expression_scale": 3}')
    genomics, unusable = load_genomics(tmp_path)
    assert genomics.mutations is not None
    assert reasons(unusable) == {
        "genomics/meta.json": "genomics/meta.json: expression_scale: expected a non-empty string, got 3"
    }


def test_no_genomics_is_none_without_complaint(tmp_path):
    assert load_genomics(tmp_path) == (None, [])
    write(tmp_path, meta_json='{"expression_scale": "zscore"}')
    assert load_genomics(tmp_path) == (None, [])
