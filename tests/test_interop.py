"""A saved encoder loads in sentence-transformers as it is and gives the same vectors (within float rounding)."""

from __future__ import annotations

import numpy as np
import pytest

from influcoder.data.records import Sample
from influcoder.encoder.model import InfluenceEncoder

SAMPLES = [
    Sample("a", "what is the sum of one and two", "three"),
    Sample("b", "is the sky blue", "yes the sky is blue"),
    Sample("c", "count the cat and the dog", "two"),
]


def _view(sample: Sample) -> str:
    return f"{sample.prompt}\n\n{sample.response}"


@pytest.mark.parametrize("pooling, head_dim", [("mean", 16), ("cls", None), ("mean", None)])
def test_sentence_transformers_loads_a_saved_encoder(tiny_bert_dir, tmp_path, pooling, head_dim):
    st = pytest.importorskip("sentence_transformers")
    encoder = InfluenceEncoder.from_backbone(str(tiny_bert_dir), pooling=pooling, head_dim=head_dim, max_length=32)
    encoder.save_pretrained(tmp_path / "enc")
    ours = encoder.encode(SAMPLES)
    theirs = st.SentenceTransformer(str(tmp_path / "enc"), device="cpu").encode([_view(s) for s in SAMPLES])
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    assert InfluenceEncoder.from_pretrained(tmp_path / "enc").encode(SAMPLES).shape == ours.shape  # still ours too


def test_a_pooling_sentence_transformers_cannot_express_writes_no_module_files(tiny_bert_dir, tmp_path):
    InfluenceEncoder.from_backbone(str(tiny_bert_dir), pooling="attention", max_length=32).save_pretrained(tmp_path)
    assert not (tmp_path / "modules.json").exists()


@pytest.mark.assets
def test_the_real_minilm_encoder_through_sentence_transformers(minilm_dir, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    encoder = InfluenceEncoder.from_backbone(str(minilm_dir), head_dim=64)
    encoder.save_pretrained(tmp_path / "enc")
    theirs = st.SentenceTransformer(str(tmp_path / "enc"), device="cpu").encode([_view(s) for s in SAMPLES])
    np.testing.assert_allclose(theirs, encoder.encode(SAMPLES), atol=1e-5)
