"""Clinician review: typed edits, the audit trail, the checkpointed pause, and the service the CLI and web app use."""
