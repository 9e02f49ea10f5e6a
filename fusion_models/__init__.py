"""Fusion models of imaging, pathology and genomics: inputs, encoders, heads, training and inference."""
