"""Step 2: the distilled side, an encoder whose embedding cosines predict gradient influence.

- `settings`: `DistillSettings` (torch-free, so the CLI builds its flags from it)
- `model`: `InfluenceEncoder` (from_pretrained / save_pretrained / encode); `predict`: its cosine matrix
- `losses`: Pearson + tempered-softmax KL (paper section 3.2); `splits`: held-out splits
- `distill`: the resumable training loop
"""
