"""The Ray Data path writes the same stores as the local path (a local Ray with 2 CPUs, tiny models)."""

from __future__ import annotations

import numpy as np
import pytest

import influcoder.core.ray as core_ray
import influcoder.labels.distributed as labels_distributed
from influcoder.attribution.index import EmbeddingIndex
from influcoder.core.ray import RayOptions
from influcoder.core.store import FeatureStore
from influcoder.encoder.model import InfluenceEncoder
from influcoder.labels.featurizer import GradientFeaturizer
from influcoder.labels.labelling import label
from influcoder.labels.settings import LabelSettings

from .test_labels import samples

ray = pytest.importorskip("ray")


def shipping(sent: list, run_shards_on_ray):
    """`run_shards_on_ray` that first records the pickled job (what each actor receives)."""
    import cloudpickle

    def run(job, *args, **kwargs):
        sent.append(cloudpickle.dumps(job))
        return run_shards_on_ray(job, *args, **kwargs)

    return run


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def test_ray_label_and_index_equal_local(local_ray, tiny_model_dir, tiny_bert_dir, tmp_path, monkeypatch):
    pool, queries = samples(10), samples(4, seed=2, prefix="q")
    settings = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=32, max_length=24, shard_size=3, device="cpu")
    local = label(pool, queries, tmp_path / "local", settings, progress=False)

    def no_local_work(*args, **kw):
        raise AssertionError("the Ray path computed in the driver process")

    # Actors are other processes: this patch only stops the driver from doing the work itself.
    monkeypatch.setattr(GradientFeaturizer, "featurize_tokenized", no_local_work)
    monkeypatch.setattr(InfluenceEncoder, "encode", no_local_work)
    sent = []  # what the driver ships to the actors: a path to stream, never the pool's texts
    for module in (labels_distributed, core_ray):  # label, index
        monkeypatch.setattr(module, "run_shards_on_ray", shipping(sent, module.run_shards_on_ray))
    remote = label(pool, queries, tmp_path / "ray", settings, progress=False, ray=RayOptions(num_actors=2))
    for part in ("pool", "queries"):
        a, b = FeatureStore(tmp_path / "local" / part), FeatureStore(tmp_path / "ray" / part)
        assert a.manifest == b.manifest
        np.testing.assert_allclose(b.load(), a.load(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(remote.scores, local.scores, rtol=1e-5, atol=1e-6)

    encoder_dir = tmp_path / "enc"
    encoder = InfluenceEncoder.from_backbone(str(tiny_bert_dir), max_length=24)
    encoder.save_pretrained(encoder_dir)
    encoder = InfluenceEncoder.from_pretrained(encoder_dir)
    kw = dict(shard_size=4, progress=False, encoder_path=encoder_dir, dtype="float32")
    b = EmbeddingIndex.build(encoder, pool, tmp_path / "idx-ray", ray=RayOptions(num_actors=2), **kw)
    monkeypatch.undo()
    assert len(sent) == 3 and not any(s.response.encode() in job for s in pool for job in sent)
    assert not list((tmp_path / "ray" / "pool").glob("*.jsonl"))  # the shared copy is removed after the run
    a = EmbeddingIndex.build(encoder, pool, tmp_path / "idx-local", **kw)
    assert a.ids() == b.ids()
    np.testing.assert_allclose(b.embeddings(), a.embeddings(), rtol=1e-5, atol=1e-6)


def test_index_command_on_ray_equals_the_plain_run_and_its_config_reruns_it(
    local_ray, tiny_bert_dir, tmp_path, monkeypatch
):
    """`influcoder index --ray` encodes on Ray actors (it used to ignore the flag) and writes the same index."""
    import yaml

    from influcoder.cli.main import main
    from influcoder.data.formats import write_samples

    pool_file = tmp_path / "pool.jsonl"
    write_samples(samples(9), pool_file)
    encoder_dir = tmp_path / "enc"
    InfluenceEncoder.from_backbone(str(tiny_bert_dir), max_length=24).save_pretrained(encoder_dir)
    argv = ["index", "--encoder", str(encoder_dir), "--pool", str(pool_file), "--shard-size", "4"]
    argv += ["--dtype", "float32", "--quiet", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "plain")]) == 0

    def no_local_work(*args, **kw):
        raise AssertionError("--ray computed in the driver process")

    monkeypatch.setattr(InfluenceEncoder, "encode", no_local_work)  # actors are other processes
    assert main([*argv, "--out", str(tmp_path / "ray"), "--ray", "--ray-actors", "2"]) == 0
    monkeypatch.undo()
    plain, remote = EmbeddingIndex(tmp_path / "plain"), EmbeddingIndex(tmp_path / "ray")
    assert remote.ids() == plain.ids()
    np.testing.assert_allclose(remote.embeddings(), plain.embeddings(), rtol=0, atol=1e-6)
    config = tmp_path / "ray" / "config.yaml"
    assert yaml.safe_load(config.read_text())["distributed"]["ray"] == "local"
    assert main(["--config", str(config), "--out", str(tmp_path / "rerun")]) == 0
    rerun = EmbeddingIndex(tmp_path / "rerun")
    np.testing.assert_allclose(rerun.embeddings(), plain.embeddings(), rtol=0, atol=1e-6)
