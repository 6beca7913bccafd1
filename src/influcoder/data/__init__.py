"""Data: samples and where they come from.

- `records`: `Sample`, stable ids, record -> sample conversion, seeded subsets
- `formats`: JSONL / CSV / Parquet / HF dataset readers and atomic writers
- `sources`: the built-in sources (evals, bbh, harmful-pairs, ...) read from embedded assets
- `loading`: `load_samples`, the one entry point for a source name or a file
- `assets`, `models`: embedded models and data fetched from the package registry through pip
- `formatting`: how a sample becomes tokens and which tokens carry the loss (the user's variation point)
"""
