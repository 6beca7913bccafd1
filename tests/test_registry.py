"""The method registry: one name per method, old names resolved with a note, the commands' choices derived
from it, and each factory building the scorer class it names."""

from __future__ import annotations

import logging
import typing

import pytest

from influcoder.core.errors import InflucoderError
from influcoder.evaluation.baselines.registry import ALIASES, METHODS, MethodContext, build_scorer, canonical


def test_every_name_is_one_method_and_aliases_point_at_them(caplog):
    assert set(ALIASES) == {"distilled", "untrained"} and set(ALIASES.values()) <= set(METHODS)
    assert not set(ALIASES) & set(METHODS)
    with caplog.at_level(logging.WARNING):
        assert canonical("untrained") == "semantic"
    assert "now called 'semantic'" in caplog.text
    with pytest.raises(InflucoderError, match="unknown method 'gradient'; choose from influcoder, semantic"):
        canonical("gradient")


def test_the_commands_choices_come_from_the_registry():
    from influcoder.cli.evaluation import BaselineName
    from influcoder.experiments.toxicity import METHODS as TOXICITY_DEFAULTS
    from influcoder.experiments.toxicity import SCORABLE

    assert set(typing.get_args(BaselineName)) <= set(METHODS) | set(ALIASES)
    assert "influcoder" not in typing.get_args(BaselineName)  # the distilled encoder is always scored
    assert set(SCORABLE) <= set(METHODS) and set(TOXICITY_DEFAULTS) <= set(SCORABLE)


def test_factories_build_the_scorer_they_name(tiny_bert_dir, tmp_path):
    from influcoder.encoder.model import InfluenceEncoder
    from influcoder.evaluation.baselines.reference import LengthOffset, PoolMean
    from influcoder.evaluation.baselines.text import Distilled, Semantic, TfIdf

    encoder = InfluenceEncoder.from_backbone(str(tiny_bert_dir), max_length=16)
    encoder.save_pretrained(tmp_path / "enc")
    ctx = MethodContext(encoder_dir=tmp_path / "enc", device="cpu")
    built = {
        name: type(build_scorer(name, ctx)) for name in ("influcoder", "semantic", "tfidf", "pool-mean", "lengths")
    }
    assert built == {"influcoder": Distilled, "semantic": Semantic, "tfidf": TfIdf, "pool-mean": PoolMean,
                     "lengths": LengthOffset}  # fmt: skip
    with pytest.raises(InflucoderError, match="runs the decoder"):
        build_scorer("less", MethodContext())
    with pytest.raises(InflucoderError, match="needs a distilled encoder"):
        build_scorer("semantic", MethodContext())
