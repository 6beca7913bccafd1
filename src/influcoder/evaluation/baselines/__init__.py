"""Every attribution method the evaluation compares, behind one `Scorer` interface (`base`).

- `text`: `tfidf` (TF-IDF cosine, scikit-learn) and `semantic` (the untrained encoder's cosine)
- `reference`: `pool-mean`, each pool sample's mean true influence over the *training* queries: a
  query-agnostic reference that needs the gradients of every pool sample, the bar a learned method should clear
- `learned`: `influcoder`, a distilled encoder

`SCORERS` maps the names the CLI takes to the classes. Decoder-based methods (repsim, rds+, less, logra,
datainf) and airrep are still to come (issue: evaluation harness).
"""
