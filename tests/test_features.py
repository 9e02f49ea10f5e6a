"""Feature vectors from hand-made case inputs, checked against hand-computed numbers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fusion_models.features import (
    IMAGING_FEATURES,
    GenomicsSpec,
    ImagingSpec,
    build_features,
    clinical_values,
    collate,
    findings_values,
    genomics_values,
    imaging_values,
)
from fusion_models.inputs import CaseInputs, GenomicsInput, ImagingTimepoint, SlideFeatures
from fusion_models.neural_family import fusion_model_config
from knowledge.sources import KnowledgeBase, Pathway
from schemas.case import CaseManifest, PathologyFindings
from schemas.errors import InputError

AFFINE_2MM = np.diag([2.0, 2.0, 2.0, 1.0])  # 8 mm^3 = 0.008 mL per voxel


def lesion_timepoint(name: str = "T1", with_sequences: bool = True) -> ImagingTimepoint:
    """10 enhancing (label 4), 5 core (label 1) and 25 oedema (label 2) voxels: 40 in all."""
    mask = np.zeros((10, 10, 10), np.int16)
    mask[1:3, 1:6, 1] = 4
    mask[1:2, 1:6, 2] = 1
    mask[5:10, 5:10, 5] = 2
    sequences = {}
    if with_sequences:
        t1c = np.full(mask.shape, 100.0, np.float32)
        t1c[mask == 4] = 200.0
        flair = np.full(mask.shape, 100.0, np.float32)
        flair[mask == 2] = 150.0
        sequences = {"t1c": t1c, "flair": flair}
    return ImagingTimepoint(name, None, mask, AFFINE_2MM, sequences, {"mask": f"imaging/{name}/lesion_mask.nii.gz"})


def test_imaging_values_hand_checked():
    values = imaging_values([lesion_timepoint()])
    assert values["lesion_log1p_volume_ml"] == pytest.approx(math.log1p(40 * 0.008))
    assert values["enhancing_log1p_volume_ml"] == pytest.approx(math.log1p(10 * 0.008))
    assert values["enhancing_fraction"] == pytest.approx(10 / 40)
    assert values["necrotic_core_fraction"] == pytest.approx(5 / 40)  # label 1 inside an enhancing lesion
    assert values["non_enhancing_core_fraction"] == 0.0
    assert values["oedema_fraction"] == pytest.approx(25 / 40)
    assert values["enhancing_present"] == 1.0 and values["necrotic_core_present"] == 1.0
    assert values["t1c_ratio_enhancing_vs_normal"] == pytest.approx(2.0)
    assert values["flair_ratio_oedema_vs_normal"] == pytest.approx(1.5)
    assert "lesion_growth_log_ratio" not in values  # one time point: growth unknown


def test_imaging_growth_and_missing_sequences():
    earlier = lesion_timepoint("T0", with_sequences=False)
    earlier.mask[earlier.mask != 2] = 0  # 25 voxels then, 40 now
    values = imaging_values([earlier, lesion_timepoint("T1", with_sequences=False)])
    assert values["lesion_growth_log_ratio"] == pytest.approx(math.log(40 / 25))
    assert "t1c_ratio_enhancing_vs_normal" not in values


def test_imaging_without_mask_is_unknown():
    timepoint = lesion_timepoint()
    timepoint.mask = None
    assert imaging_values([timepoint]) == {}


def test_every_imaging_feature_has_a_phenotype():
    phenotypes = {"lesion", "enhancing", "necrotic_core", "non_enhancing_core", "oedema"}
    assert {f.phenotype for f in IMAGING_FEATURES} <= phenotypes


def test_findings_values():
    findings = PathologyFindings(who_grade=4, necrosis=True, cellularity="moderate", ki67_percent=30.0)
    names = ["who_grade", "necrosis", "microvascular_proliferation", "cellularity", "ki67_percent"]
    values = findings_values(findings, names)
    assert values == {"who_grade": 4.0, "necrosis": 1.0, "cellularity": 1.0, "ki67_percent": 30.0}
    assert findings_values(None, ["who_grade"]) == {}


def test_clinical_values():
    assert clinical_values(CaseManifest(case_id="c1", cancer_type="glioma", age_band="60-69"), ["age_years"]) == {
        "age_years": 64.5
    }
    assert clinical_values(CaseManifest(case_id="c1", cancer_type="glioma"), ["age_years"]) == {}


def tiny_kb() -> KnowledgeBase:
    def pathway(pid: str, genes: str, programme: str) -> Pathway:
        return Pathway(id=pid, name=pid, source="GO", description="", genes=tuple(genes), programme=programme)

    return KnowledgeBase(
        name="tiny", version="1",
        pathways=[pathway("P:HYP", "FGHIJ", "hypoxia"), pathway("P:IMM", "ABCDE", "immune")],
        gene_universe=frozenset("ABCDEFGHIJ"), attribution="test",
    )


def genomics_input() -> GenomicsInput:
    expression = pd.Series(np.arange(1.0, 11.0), index=list("ABCDEFGHIJ"))
    mutations = pd.DataFrame({"gene": ["IDH1"], "variant": ["R132H"], "vaf": [0.4]})
    cnv = pd.Series({"EGFR": 2.0, "CDKN2A": -1.0})
    return GenomicsInput(expression, "zscore", mutations, cnv, {"expression": "genomics/expression.tsv"})


def test_genomics_values_hand_checked():
    values = genomics_values(genomics_input(), GenomicsSpec(), tiny_kb())
    # Top five of ten genes: mean rank 8, Smin 3, Smax 8 -> (8 - 3) / 5 - 0.5 = 0.5; bottom five -0.5.
    assert values["pathway_hypoxia"] == pytest.approx(0.5)
    assert values["pathway_immune"] == pytest.approx(-0.5)
    assert "pathway_angiogenesis" not in values  # the knowledge base has no pathway for it
    assert values["IDH1_mutation"] == 1.0 and values["TP53_mutation"] == 0.0
    assert values["EGFR_amplification"] == 1.0  # GISTIC +2
    assert values["CDKN2A_deletion"] == 0.0  # -1 is a shallow loss, not a homozygous deletion


def test_genomics_parts_missing_are_unknown():
    genomics = genomics_input()
    genomics.mutations, genomics.cnv = None, None
    values = genomics_values(genomics, GenomicsSpec(expression_genes=("B", "Z")), tiny_kb())
    assert values["B_expression"] == 2.0 and "Z_expression" not in values
    assert not any(k.endswith(("_mutation", "_amplification", "_deletion")) for k in values)


def slide(slide_id: str, n: int, encoder: str = "hed_texture", dim: int = 32) -> SlideFeatures:
    coords = np.column_stack([np.arange(n) * 256, np.zeros(n)]).astype(np.int64)
    features = np.ones((n, dim), np.float32)
    return SlideFeatures(slide_id, features, coords, 256, 20.0, encoder, f"pathology/{slide_id}.h5")


def case_inputs(**parts) -> CaseInputs:
    manifest = CaseManifest(case_id="c1", cancer_type="glioma", age_band="60-69")
    defaults = dict(imaging=[], slides=[], findings=None, genomics=None)
    return CaseInputs(case_dir=Path("c1"), manifest=manifest, **{**defaults, **parts})


def test_build_features_blocks_and_patch_bag():
    spec = fusion_model_config("glioma_demo").inputs
    slides = [slide("s1", 3), slide("s2", 2)]
    inputs = case_inputs(imaging=[lesion_timepoint()], slides=slides, genomics=genomics_input())
    tensors = build_features(inputs, tiny_kb(), spec)
    assert set(tensors.values) == {"imaging", "findings", "genomics", "clinical"}
    assert tensors.values["clinical"].tolist() == [64.5]
    assert tensors.known["findings"].sum() == 0  # no findings.json, yet pathology is present through patches
    assert tensors.present() == {"imaging": True, "pathology": True, "genomics": True, "clinical": True}
    assert tensors.bag.features.shape == (5, 32)
    assert tensors.bag.slide.tolist() == [0, 0, 0, 1, 1]
    assert tensors.bag.row.tolist() == [0, 1, 2, 0, 1]
    assert tensors.bag.coords[4].tolist() == [256, 0]
    assert [s.slide_id for s in tensors.bag.slides] == ["s1", "s2"]


def test_missing_modalities_are_masked():
    spec = fusion_model_config("glioma_demo").inputs
    tensors = build_features(case_inputs(), tiny_kb(), spec)
    assert tensors.present() == {"imaging": False, "pathology": False, "genomics": False, "clinical": True}
    assert tensors.values["imaging"].abs().sum() == 0 and tensors.known["imaging"].sum() == 0


def test_patches_from_another_encoder_are_refused():
    spec = fusion_model_config("glioma_demo").inputs
    with pytest.raises(InputError) as error:
        build_features(case_inputs(slides=[slide("s1", 3, encoder="timm/vit", dim=384)]), tiny_kb(), spec)
    assert error.value.file == "pathology/s1.h5" and error.value.field == "features"


def test_spec_rejects_unknown_feature_names():
    with pytest.raises(ValueError, match="unknown imaging feature"):
        ImagingSpec(features=("tumour_colour",))


def test_collate_pads_bags_of_different_sizes():
    spec = fusion_model_config("glioma_demo").inputs
    with_patches = build_features(case_inputs(slides=[slide("s1", 3)]), tiny_kb(), spec)
    without = build_features(case_inputs(), tiny_kb(), spec)
    batch = collate([with_patches, without])
    assert batch.patches.shape == (2, 3, 32)
    assert batch.patch_mask.tolist() == [[True, True, True], [False, False, False]]
    assert batch.present["pathology"].tolist() == [True, False]
    assert batch.values["clinical"].shape == (2, 1)
    assert torch.equal(batch.patches[1], torch.zeros(3, 32))
