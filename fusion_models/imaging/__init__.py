"""Imaging inputs (NIfTI per time point) on an isotropic grid; habitats from the label map or by clustering;
margin bands; radiomic features per habitat (pyradiomics, optional)."""
