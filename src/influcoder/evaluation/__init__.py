"""Evaluation: metrics against ground-truth influence, and (later) cost meters and reports."""
