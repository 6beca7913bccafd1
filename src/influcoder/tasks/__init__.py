"""Experiment builders: seeded, documented pools and queries for the paper's experiments (toxicity)."""
