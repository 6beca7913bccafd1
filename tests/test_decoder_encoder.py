"""The labels' own decoder as the encoder's backbone (the transfer page's design 5 in pipeline form):
`distill --objective subspace --encoder DECODER --pooling response --epochs 0` fits the ridge from the
decoder's response-token states to the training gradients' coordinates, and `index` / `attribute` use it like
any encoder. The pooled state is checked against the decoder's hidden states averaged by hand over the
response tokens."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from influcoder.attribution.influcoder import Influcoder
from influcoder.cli.main import main
from influcoder.encoder.model import InfluenceEncoder
from influcoder.encoder.settings import DistillSettings
from influcoder.encoder.subspace import pooled_states
from influcoder.labels.featurizer import GradientFeaturizer
from influcoder.labels.labelling import label
from influcoder.labels.settings import LabelSettings

from .test_labels import samples


@pytest.fixture(scope="module")
def decoder_run(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("decoder-encoder")
    settings = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=32, max_length=24, shard_size=8)
    pool, queries = samples(30), samples(10, seed=7, prefix="q")
    label(pool, queries, root / "labels", settings)
    # the defaults: the labels' decoder, response pooling, the labels' text view, no epoch
    argv = ["distill", "--labels", str(root / "labels"), "--out", str(root / "enc"), "--subspace-k", "4",
            "--max-length", "24", "--eval-pool", "6", "--eval-queries", "3", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    return root, settings, pool, queries


def test_epochs_0_keeps_the_ridge_start_on_the_decoders_response_states(decoder_run, tiny_model_dir):
    root, _, pool, _ = decoder_run
    training = json.loads((root / "enc" / "training.json").read_text())
    assert training["complete"] and [e["epoch"] for e in training["epochs"]] == [0]
    keys = ("objective", "encoder", "pooling", "text_view", "epochs", "backbone_layers")
    resolved = {key: training["settings"][key] for key in keys}
    assert resolved == {"objective": "subspace", "encoder": str(tiny_model_dir), "pooling": "response",
                        "text_view": "{prompt}\n{response}", "epochs": 0, "backbone_layers": 1}  # fmt: skip
    encoder = InfluenceEncoder.from_pretrained(root / "enc")
    assert type(encoder.backbone).__name__ == "LlamaModel" and encoder.config.pooling == "response"
    assert len(encoder.backbone.layers) == 1  # two thirds of the tiny decoder's 2 blocks, rounded
    # the pooled state: block 1's states through the final norm, averaged over the response tokens, by hand
    from transformers import AutoModel, AutoTokenizer

    model, tokenizer = AutoModel.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)
    for sample, got in zip(pool[:4], pooled_states(encoder, pool[:4])):
        text = encoder.config.text_view.format(prompt=sample.prompt, response=sample.response)
        start = len(encoder.config.text_view.split("{response}")[0].format(prompt=sample.prompt))
        tokens = tokenizer(text, return_offsets_mapping=True, return_tensors="pt", truncation=True, max_length=24)
        offsets = tokens.pop("offset_mapping")[0]
        response = torch.tensor([float(a < b and a >= start) for a, b in offsets.tolist()])
        with torch.no_grad():
            hidden = model.norm(model(**tokens, output_hidden_states=True).hidden_states[1])[0]
        expected = (hidden * response[:, None]).sum(0) / response.sum()
        width = model.config.hidden_size  # then the length features the subspace head also reads
        np.testing.assert_allclose(got[:width], expected.numpy(), rtol=1e-4, atol=1e-5)


def test_the_coverage_reference_from_the_fits_states_equals_one_encoded_from_the_saved_encoder(decoder_run, tmp_path):
    """An epochs-0 run writes its coverage reference from the ridge fit's pooled states (no second decoder
    pass); encoding every sample again with the saved encoder gives the same reference (float16 on disk)."""
    import shutil

    from influcoder.encoder.coverage import CoverageReference, query_spread
    from influcoder.encoder.run_record import DistillRun
    from influcoder.encoder.subspace import GradientSubspace
    from influcoder.encoder.subspace_distill import coordinates_of, write_subspace_coverage

    root, _, pool, queries = decoder_run
    from_states = CoverageReference.load(root / "enc")
    again = tmp_path / "enc"
    shutil.copytree(root / "enc", again)
    (again / "best" / "coverage.npz").unlink()
    write_subspace_coverage(root / "labels", again, [*pool, *queries])
    encoded = CoverageReference.load(again)
    np.testing.assert_allclose(from_states.embeddings, encoded.embeddings, atol=2e-3)
    np.testing.assert_allclose(from_states.threshold, encoded.threshold, atol=2e-3)
    np.testing.assert_allclose(from_states.spread_threshold, encoded.spread_threshold, atol=2e-3)
    # the spread threshold: validation queries by their exact coordinates, as `attribute` scores a query
    record, by_id = DistillRun(again).record(), {s.id: s for s in [*pool, *queries]}
    exact = coordinates_of(root / "labels", record.val_query_ids, GradientSubspace.load(again / "best"))
    encoder = InfluenceEncoder.from_pretrained(again)
    spreads = query_spread(exact, encoder.encode([by_id[i] for i in record.val_pool_ids]))
    np.testing.assert_allclose(encoded.spread_threshold, np.quantile(spreads, 0.05), rtol=1e-4)


def test_index_and_attribute_score_queries_by_their_exact_gradients(decoder_run):
    root, settings, pool, queries = decoder_run
    assert main(["index", "--encoder", str(root / "enc"), "--pool", str(root / "labels" / "pool.jsonl"),
                 "--out", str(root / "index"), "--quiet"]) == 0  # fmt: skip
    ic = Influcoder.from_index(root / "index")
    assert ic.query_side == "exact"
    hits = ic.attribute(queries[:3], k=5)
    coords = ic.subspace.coordinates(GradientFeaturizer(settings).featurize(queries[:3]))
    pool_vectors = ic.encoder.encode_pool(pool)
    for j, per_query in enumerate(hits):
        expected = pool_vectors @ coords[j]
        top = np.argsort(-expected, kind="stable")[:5]
        assert [a.sample.id for a in per_query] == [pool[i].id for i in top]
        np.testing.assert_allclose([a.score for a in per_query], expected[top], atol=2e-3)  # float16 index


def test_backbone_defaults_resolve_from_the_labels_and_flags_given_win():
    features = {"model": "smollm2-135m-instruct", "text_view": "chat-template"}
    on_decoder = DistillSettings().resolved(features)
    assert (on_decoder.encoder, on_decoder.pooling, on_decoder.text_view, on_decoder.epochs) == (
        "smollm2-135m-instruct", "response", "chat-template", 0)  # fmt: skip
    plain = DistillSettings().resolved({"model": "m", "text_view": "plain"})
    assert plain.text_view == "{prompt}\n{response}"  # as `label` renders a sample without a chat template
    text = DistillSettings(encoder="minilm-l6").resolved(features)
    assert (text.pooling, text.text_view, text.epochs) == ("mean", "{prompt}\n\n{response}", 10)
    cosine = DistillSettings(objective="influcoder").resolved(features)  # the cosine objectives train a text encoder
    assert (cosine.encoder, cosine.pooling, cosine.epochs) == ("minilm-l6", "mean", 10)
    assert DistillSettings().resolved({}).encoder == "minilm-l6"  # labels that name no decoder
    given = DistillSettings(pooling="mean", epochs=2, text_view="{prompt} {response}").resolved(features)
    assert (given.encoder, given.pooling, given.epochs, given.text_view) == (
        "smollm2-135m-instruct", "mean", 2, "{prompt} {response}")  # fmt: skip
    assert DistillSettings().resolved(features).resolved(features) == on_decoder  # resolving twice changes nothing


def test_epochs_0_is_refused_for_the_objectives_that_train_from_scratch(capsys):
    """The library names the fields, the CLI the flags."""
    from influcoder.core.errors import SettingError

    assert DistillSettings(objective="subspace", epochs=0).epochs == 0
    with pytest.raises(SettingError, match=r"^epochs 0 is out of range: at least 1 \(0 with `objective` subspace"):
        DistillSettings(objective="influcoder", epochs=0)
    assert main(["distill", "--labels", "L", "--out", "O", "--objective", "influcoder", "--epochs", "0"]) == 2
    assert "--epochs 0 is out of range: at least 1 (0 with --objective subspace" in capsys.readouterr().err


CHAT = "{% for m in messages %}<s> {{ m['content'] }} </s> {% endfor %}{% if add_generation_prompt %}<s> {% endif %}"


@pytest.fixture(scope="module")
def chat_decoder_dir(tiny_model_dir, tmp_path_factory):
    """The tiny decoder with a chat template (a real instruct model's tokenizer has one)."""
    import shutil

    from transformers import AutoTokenizer

    directory = tmp_path_factory.mktemp("chat") / "decoder"
    shutil.copytree(tiny_model_dir, directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.chat_template = CHAT
    tokenizer.save_pretrained(directory)
    return directory


def test_the_chat_template_view_reads_a_sample_as_the_labels_do(chat_decoder_dir):
    from influcoder.data.formatting import SampleFormatter

    encoder = InfluenceEncoder.from_backbone(str(chat_decoder_dir), pooling="response", text_view="chat-template",
                                             max_length=64)  # fmt: skip
    for sample in samples(4):
        prompt, response = SampleFormatter(encoder.tokenizer, 64, use_chat_template=True).render(sample)
        assert encoder.text_of(sample) == prompt + response and prompt.startswith("<s> ")
        start, end = encoder.response_span(sample)
        assert encoder.text_of(sample)[start:end] == response
        encoded = encoder.tokenize_unpadded([sample])
        ids, mask = encoded["input_ids"][0], encoded["response_mask"][0]
        # the pooled tokens are exactly the response's tokens (its closing </s> included), none of the prompt's
        assert [i for i, m in zip(ids, mask) if m] == encoder.tokenizer(response, add_special_tokens=False)["input_ids"]


def test_distill_takes_the_chat_template_view(decoder_run, chat_decoder_dir, tmp_path):
    root, _, _, _ = decoder_run
    argv = ["distill", "--labels", str(root / "labels"), "--out", str(tmp_path / "enc"), "--subspace-k", "4",
            "--encoder", str(chat_decoder_dir), "--pooling", "response", "--text-view", "chat-template",
            "--epochs", "0", "--max-length", "24", "--eval-pool", "6", "--eval-queries", "3", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert InfluenceEncoder.from_pretrained(tmp_path / "enc").config.text_view == "chat-template"


def test_evaluate_measures_coverage_and_spread_on_the_vectors_attribute_scores(decoder_run, tmp_path):
    """A subspace encoder's query is scored by its exact gradient coordinates: the evaluated spread is over
    those (not over the encoder's prediction of them), with the pool's vectors from the scoring pass."""
    from influcoder.encoder.coverage import CoverageReference, query_spread
    from influcoder.encoder.run_record import DistillRun
    from influcoder.encoder.subspace import GradientSubspace
    from influcoder.encoder.subspace_distill import coordinates_of

    root, _, pool, queries = decoder_run
    argv = ["evaluate", "--encoder", str(root / "enc"), "--labels", str(root / "labels"), "--report", str(tmp_path)]
    assert main([*argv, "--quiet"]) == 0
    flag = json.loads((tmp_path / "results.json").read_text())["runs"][0]["coverage"]
    split, by_id = DistillRun(root / "enc").eval_split(), {s.id: s for s in [*pool, *queries]}
    exact = coordinates_of(root / "labels", split.query_ids, GradientSubspace.load(root / "enc" / "best"))
    encoder = InfluenceEncoder.from_pretrained(root / "enc")
    pool_vectors = encoder.encode([by_id[i] for i in split.pool_ids])
    np.testing.assert_allclose(flag["query_spread"], query_spread(exact, pool_vectors), rtol=1e-4, atol=1e-6)
    reference = CoverageReference.load(root / "enc")
    np.testing.assert_allclose(flag["query_coverage"], reference.score(exact), rtol=1e-4, atol=1e-6)


def test_backbone_layers_given_reads_that_block_and_the_cut_travels_with_the_saved_encoder(
    decoder_run, tiny_model_dir, capsys
):
    """`--backbone-layers 2` (every block of the tiny decoder): the saved encoder pools the decoder's last
    hidden state (computed here from the whole decoder), unlike the default's block 1; a cut beyond the
    decoder's blocks is refused with the flag named."""
    root, _, pool, _ = decoder_run
    argv = ["distill", "--labels", str(root / "labels"), "--subspace-k", "4", "--max-length", "24", "--eval-pool",
            "6", "--eval-queries", "3", "--quiet"]  # fmt: skip
    assert main([*argv, "--out", str(root / "whole"), "--backbone-layers", "2"]) == 0
    encoder = InfluenceEncoder.from_pretrained(root / "whole")
    assert encoder.config.backbone_layers == 2 and len(encoder.backbone.layers) == 2
    default = InfluenceEncoder.from_pretrained(root / "enc")
    assert json.loads((root / "enc" / "best" / "backbone" / "config.json").read_text())["num_hidden_layers"] == 1
    from transformers import AutoModel

    full = AutoModel.from_pretrained(tiny_model_dir).eval()
    batch = encoder.tokenize(pool[:4])
    with torch.no_grad():
        states = full(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        block_1 = full.norm(states.hidden_states[1])
    mask = batch["response_mask"].unsqueeze(-1).float()
    width = full.config.hidden_size
    for model, hidden in ((encoder, states.last_hidden_state), (default, block_1)):
        expected = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
        np.testing.assert_allclose(pooled_states(model, pool[:4])[:, :width], expected, rtol=1e-4, atol=1e-5)
    capsys.readouterr()
    assert main([*argv, "--out", str(root / "too-deep"), "--backbone-layers", "3"]) == 2
    assert "--backbone-layers is 3, but the backbone has 2 blocks: 1 to 2" in capsys.readouterr().err


def test_keep_blocks_cuts_a_bert_encoder_and_refuses_what_has_no_blocks(tiny_bert_dir):
    from transformers import AutoModel

    from influcoder.core.errors import InflucoderError
    from influcoder.data.models import keep_blocks

    bert = AutoModel.from_pretrained(tiny_bert_dir)
    keep_blocks(bert, 1)
    assert len(bert.encoder.layer) == 1 and bert.config.num_hidden_layers == 1
    with pytest.raises(InflucoderError, match="has no stack of blocks"):
        keep_blocks(torch.nn.Linear(2, 2), 1)


def test_int8_warns_on_a_decoder_backbone_only(decoder_run, tiny_bert_dir):
    """int8 kept a text encoder's ranking but lowered the decoder's (benchmarks/results/backend_fidelity):
    switching a decoder encoder to it says so; a text encoder switches silently."""
    import warnings

    from influcoder.encoder.backends import INT8_ON_DECODER

    root = decoder_run[0]
    with pytest.warns(UserWarning, match="lowers how a decoder backbone ranks"):
        decoder = InfluenceEncoder.from_pretrained(root / "enc", backend="int8")
    assert decoder.backend == "int8" and "backbone_layers" in INT8_ON_DECODER
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        InfluenceEncoder.from_backbone(str(tiny_bert_dir)).to_backend("int8")
