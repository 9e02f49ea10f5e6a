"""The imaging features file (`imaging_features.json` beside report.json): grid, habitats, margin bands, radiomics.

The report's spatial evidence cites an entry here by `features_ref` ("imaging_features.json#T1:enhancing").
"""

from __future__ import annotations

from pydantic import Field

from schemas.common import ContractModel, HabitatMethod, Phenotype

IMAGING_FEATURES_FILE = "imaging_features.json"


class RegionFeatures(ContractModel):
    unit_id: str = Field(description="The spatial unit, as in the report's spatial evidence: 'T1:enhancing'.")
    phenotype: Phenotype = Field(description="Imaging phenotype of the region.")
    voxels: int = Field(ge=1, description="Voxels of the region on the (isotropic) analysis grid.")
    shape: dict[str, float] = Field(
        default_factory=dict, description="pyradiomics shape features of the mask ('shape_VoxelVolume' in mm^3, ...)."
    )
    intensity: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Per sequence, pyradiomics first-order and GLCM features of its z-scored intensities "
        "('firstorder_Mean', 'glcm_Contrast', ...).",
    )
    note: str | None = Field(default=None, description="Why the region has no features (e.g. too few voxels).")


class MarginBandFeatures(ContractModel):
    unit_id: str = Field(description="'T1:margin_0-5mm': the band's time point and distance range.")
    inner_mm: float = Field(ge=0, description="Voxel centres more than this far from the lesion...")
    outer_mm: float = Field(gt=0, description="...and at most this far (Euclidean distance transform, mm).")
    volume_ml: float = Field(ge=0, description="Band volume inside the brain (non-zero voxels of any sequence).")
    mean_z: dict[str, float] = Field(
        default_factory=dict, description="Per sequence, mean z-scored intensity over the band; empty for an empty band."
    )


class TimepointFeatures(ContractModel):
    timepoint: str = Field(description="Imaging time point.")
    habitat_method: HabitatMethod | None = Field(description="How the habitats were delineated; None: no lesion mask.")
    lesion_file: str | None = Field(description="The label map or whole-tumour mask, relative to the case folder.")
    spacing_mm: float | None = Field(description="Isotropic voxel edge of the analysis grid; None when anisotropic.")
    native_spacing_mm: tuple[float, float, float] | None = Field(
        default=None, description="Voxel edges as stored, when the time point was resampled to the analysis grid."
    )
    normalisation: str = Field(description="How sequence intensities were normalised before features.")
    bin_width: float = Field(gt=0, description="Fixed grey-level bin width of the texture features, in z units.")
    regions: list[RegionFeatures] = Field(description="The lesion, then each habitat.")
    margin_bands: list[MarginBandFeatures] = Field(description="Distance bands outside the lesion, nearest first.")


class ImagingFeatures(ContractModel):
    case_id: str = Field(description="Case the features belong to.")
    software: dict[str, str] = Field(description="Versions of the libraries that computed them (pyradiomics, SimpleITK).")
    feature_classes: list[str] = Field(description="pyradiomics feature classes computed per region.")
    timepoints: list[TimepointFeatures] = Field(description="Every time point with a lesion mask, oldest first.")
