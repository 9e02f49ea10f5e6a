"""Offline evaluation: generated reports against reference reports and ground truth, and model metrics.

Entry point: `evals.run.run_eval`; the terminal table is `evals.report.format_table`.
"""
