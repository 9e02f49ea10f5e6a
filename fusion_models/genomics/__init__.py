"""Genomics inputs (TSV readers and checks) and pathway scoring."""
