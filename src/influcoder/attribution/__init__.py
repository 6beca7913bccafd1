"""Step 3: attribution at encoder speed.

- `index`: `EmbeddingIndex`, the encoded pool in resumable shards plus a FAISS index
- `influcoder`: `Influcoder`, the facade users call (`attribute`, `filter`)
- `audit`: exact-gradient check of an attribution on a sample of the pool
- `distributed`: the encode job for Ray
"""
