"""Imaging inputs (NIfTI per time point) and habitat statistics from the lesion label map."""
