"""Clinical profile of the cancer type: WHO CNS5 integrated diagnosis and its markers (adult diffuse glioma)."""

from agents.clinical.diagnosis import IntegratedDiagnosis, integrated_diagnosis
from agents.clinical.markers import MolecularData, glioma_markers, marker_status, molecular_data

__all__ = ["IntegratedDiagnosis", "MolecularData", "glioma_markers", "integrated_diagnosis", "marker_status", "molecular_data"]
