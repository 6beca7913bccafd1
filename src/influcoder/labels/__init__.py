"""Step 1 of the paper ("stocking"): gradient influence labels of a decoder.

- `settings`: `LabelSettings`, everything that shapes the features (recorded in every manifest)
- `lora`, `gradients`: the decoder's LoRA adapter and batched per-example response-only gradients
- `projectors`: CountSketch (paper), Rademacher (LESS/TRAK), Identity, behind one `Projector`
- `featurizer`: samples -> projected gradients; `labelling`: pool + queries -> stores -> influence matrix
- `influence`: cosine influence matrices; `merge`: join labels of disjoint pools; `fidelity`: projection check
- `distributed`: the labelling job for Ray
- `labels_dir`: `LabelsDir` (the directory's file names) and `LabelsRecord` (its typed, versioned labels.json)

A labels directory is self-contained::

    labels/
      labels.json          settings, sizes, timings (`LabelsRecord`: format influcoder.labels, version 1)
      pool.jsonl           the pool samples (ids, texts), in store order
      queries.jsonl        the query samples
      pool/  queries/      feature stores (manifest + shards)
      influence/           scores.npy (pool x queries) + ids.json
"""
