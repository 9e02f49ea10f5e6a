"""Marker statuses: one test per source (mutation call, copy number, immunohistochemistry, model, none)."""

from __future__ import annotations

import pandas as pd

from agents.clinical.markers import MolecularData, arm_status, glioma_markers, marker_status, molecular_data
from schemas.case import PathologyFindings
from schemas.common import SourceRef
from schemas.report import MechanismEvidence
from fusion_models.genomics.io import GenomicsInput

CODEL_P = {"IDHwt": 0.02, "IDHmut-codel": 0.95, "IDHmut-non-codel": 0.03}


def by_name(markers):
    return {m.marker: m for m in markers}


def event(eid: str, pathway_id: str) -> MechanismEvidence:
    return MechanismEvidence(id=eid, kind="driver_mutation", pathway_id=pathway_id, pathway_name=pathway_id,
                             direction="altered", source=SourceRef(file="genomics/mutations.tsv", locator="x"))


def test_mutation_calls_give_detected_and_not_detected_with_their_evidence():
    data = MolecularData(mutations=(("IDH1", "R132H"), ("ATRX", "R1426*")))
    m = by_name(glioma_markers(data, [event("M4", "MUT:IDH1"), event("M5", "MUT:ATRX")]))
    assert (m["IDH1/2 mutation"].status, m["IDH1/2 mutation"].source) == ("detected", "mutation_call")
    assert m["IDH1/2 mutation"].value == "IDH1 R132H" and m["IDH1/2 mutation"].evidence == ["M4"]
    assert m["ATRX loss or mutation"].status == "detected" and m["ATRX loss or mutation"].evidence == ["M5"]
    assert m["TP53 mutation"].status == "not_detected"
    # the promoter is non-coding: absent from exome calls means not tested, never not detected
    assert m["TERT promoter mutation"].status == "not_tested"
    assert "non-coding" in m["TERT promoter mutation"].note


def test_no_idh_call_is_not_detected_citing_the_wild_type_item():
    m = by_name(glioma_markers(MolecularData(mutations=(("TP53", "R273H"),)), [event("M1", "WT:IDH")]))
    assert (m["IDH1/2 mutation"].status, m["IDH1/2 mutation"].evidence) == ("not_detected", ["M1"])


def test_tert_promoter_call_is_detected():
    m = by_name(glioma_markers(MolecularData(mutations=(("TERT", "C228T"),)), []))
    assert m["TERT promoter mutation"].status == "detected"


def test_copy_number_gives_egfr_and_cdkn2ab_and_leaves_arms_untested():
    data = MolecularData(cnv={"EGFR": 2.0, "CDKN2A": -1.0, "CDKN2B": 0.0})
    m = by_name(glioma_markers(data, []))
    assert (m["EGFR amplification"].status, m["EGFR amplification"].source) == ("detected", "copy_number")
    # a shallow (-1) loss is not a homozygous deletion
    assert m["CDKN2A/B homozygous deletion"].status == "not_detected"
    # no genes on 1p/19q or chromosome 10: not tested, and no model here to predict them
    assert m["1p/19q codeletion"].status == "not_tested"
    assert m["chromosome 7 gain / chromosome 10 loss (+7/-10)"].status == "not_tested"
    assert m["1p/19q codeletion"].note == "would be settled by 1p/19q codeletion testing (FISH or CNV array)"


def test_arm_level_calls_hand_checked():
    whole = {"CHD5": -1, "JUN": -1, "CIC": -1, "AKT2": -2}
    partial = {"CHD5": -1, "JUN": 0, "CIC": -1}
    assert arm_status(whole, (), ("1p", "19q")) == "detected"
    assert arm_status(partial, (), ("1p", "19q")) == "not_detected"  # a partial 1p loss is not a codeletion
    assert arm_status({"CHD5": -1}, (), ("1p", "19q")) is None  # 19q unmeasured
    focal_egfr = {"EGFR": 2, "MET": 0, "PTEN": -1, "GATA3": -1}
    assert arm_status(focal_egfr, ("7p", "7q"), ("10p", "10q")) == "not_detected"  # a focal amplicon is not +7


def test_negative_r132h_stain_is_its_own_not_detected_line_and_leaves_idh_untested():
    data = MolecularData(ihc={"IDH1_R132H": "negative"})
    markers = glioma_markers(data, [])
    m = by_name(markers)
    stain = m["IDH1 R132H (immunohistochemistry)"]
    assert (stain.status, stain.source, stain.value) == ("not_detected", "immunohistochemistry", "IDH1 R132H not detected")
    assert "does not exclude other IDH1/IDH2 mutations" in stain.note
    assert m["IDH1/2 mutation"].status == "not_tested"
    assert marker_status(markers)["IDH"] == "not_tested"


def test_positive_r132h_stain_and_atrx_loss_are_detected_by_immunohistochemistry():
    m = by_name(glioma_markers(MolecularData(ihc={"IDH1_R132H": "positive", "ATRX": "lost"}), []))
    assert (m["IDH1/2 mutation"].status, m["IDH1/2 mutation"].source) == ("detected", "immunohistochemistry")
    assert (m["ATRX loss or mutation"].status, m["ATRX loss or mutation"].source) == ("detected", "immunohistochemistry")


def test_model_fills_only_untested_markers_as_predicted():
    markers = glioma_markers(MolecularData(), [], CODEL_P)
    m = by_name(markers)
    assert (m["1p/19q codeletion"].status, m["1p/19q codeletion"].source) == ("predicted", "model")
    assert m["1p/19q codeletion"].value == "codeleted (model probability 0.95)"
    assert m["IDH1/2 mutation"].status == "predicted" and m["IDH1/2 mutation"].value == "IDH-mutant (model probability 0.98)"
    # a prediction never counts as a test for the rules
    assert marker_status(markers)["1p19q"] == "not_tested"
    assert m["MGMT promoter methylation"].status == "not_tested"
    assert m["H3 K27M"].status == "not_assessed"


def test_every_required_marker_is_listed_once():
    names = [m.marker for m in glioma_markers(MolecularData(), [])]
    assert names == [
        "IDH1/2 mutation", "1p/19q codeletion", "CDKN2A/B homozygous deletion", "TERT promoter mutation",
        "EGFR amplification", "chromosome 7 gain / chromosome 10 loss (+7/-10)", "ATRX loss or mutation",
        "TP53 mutation", "MGMT promoter methylation", "H3 K27M",
    ]


def test_molecular_data_reads_the_loaded_files_and_findings():
    genomics = GenomicsInput(
        expression=None, expression_scale="zscore",
        mutations=pd.DataFrame({"gene": ["IDH1"], "variant": ["R132H"], "vaf": [0.4]}),
        cnv=pd.Series({"EGFR": 0, "CDKN2A": -2}), files={"mutations": "genomics/mutations.tsv", "cnv": "genomics/cnv.tsv"},
    )
    data = molecular_data(genomics, PathologyFindings(immunohistochemistry={"ATRX": "retained"}))
    assert data.mutations == (("IDH1", "R132H"),)
    assert data.cnv == {"EGFR": 0.0, "CDKN2A": -2.0}
    assert data.ihc == {"ATRX": "retained"}
    assert molecular_data(None, None) == MolecularData()
