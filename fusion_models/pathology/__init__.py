"""Pathology inputs: whole-slide tiling and CLAM/TRIDENT-style patch-feature files."""
