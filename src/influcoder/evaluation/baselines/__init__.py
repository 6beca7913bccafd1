"""Every attribution method the evaluation compares, behind one `Scorer` interface (`base`).

- `text`: `tfidf` (TF-IDF cosine, scikit-learn) and `semantic` (the untrained encoder's cosine)
- `reference`: `pool-mean`, each pool sample's mean true influence over the *training* queries: a
  query-agnostic reference that needs the gradients of every pool sample, the bar a learned method should clear
- `representations`: `repsim` and `rds+`, cosines of the labelling decoder's (position-weighted) mean
  last-layer states
- the distilled encoder itself is `text.Distilled`

Gradient methods (less, logra, datainf) and airrep are still to come (issue: evaluation harness).
"""
