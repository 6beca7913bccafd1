"""Every attribution method the evaluation compares, behind one `Scorer` interface (`base`).

- `text`: `tfidf` (TF-IDF cosine, scikit-learn) and `semantic` (the untrained encoder's cosine)
- `reference`: `pool-mean`, each pool sample's mean true influence over the *training* queries: a
  query-agnostic reference that needs the gradients of every pool sample, the bar a learned method should clear;
  `lengths`, that offset predicted from length features (text-only): the bar on unseen tasks
- `representations`: `repsim` and `rds+`, cosines of the labelling decoder's (position-weighted) mean
  last-layer states
- `less`: `less`, LoRA gradients Rademacher-projected to 8,192 (pool gradients as Adam updates when a
  fine-tuned adapter's optimizer state is given, plain SGD otherwise), and `less-ckpts`, over a warm-up's
  checkpoints
- `gradients`: `gradsim`, the labels' own CountSketch features, `datainf`, the exact LoRA gradients with
  DataInf's closed-form inverse Fisher per LoRA matrix, and `GradientSuite` (gradsim and LESS from one pass)
- `logra`: `logra` / `logra-fisher`, the base linear layers' gradients projected on both sides (k x k per
  layer), plain or whitened by each layer's empirical Fisher
- `learned`: `airrep`, an encoder trained in `fit` on the same training split with attention pooling and
  AirRep's group-wise ranking loss
- the distilled encoder itself is `text.Distilled`
"""
