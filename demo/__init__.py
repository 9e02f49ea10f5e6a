"""Deterministic demo glioma cohort on real anatomy and real tissue, and the in-memory training set."""
