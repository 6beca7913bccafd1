"""`label --ray` resumes: a run stopped after some shards finished recomputes only the missing ones, on Ray
actors, and ends where an uninterrupted plain run ends (a local Ray with 2 CPUs, tiny models)."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

import influcoder.labels.distributed as labels_distributed
from influcoder.core.ray import RayOptions
from influcoder.core.store import FeatureStore
from influcoder.labels.featurizer import GradientFeaturizer
from influcoder.labels.labelling import label
from influcoder.labels.settings import LabelSettings

from .test_labels import samples

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def on_disk(path) -> tuple[int, int, str]:
    """What a rewrite would change: inode (atomic rename), mtime, contents."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def test_ray_label_stopped_after_some_shards_recomputes_only_the_missing_ones(
    local_ray, tiny_model_dir, tmp_path, monkeypatch
):
    pool, queries = samples(10), samples(4, seed=2, prefix="q")
    settings = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=32, max_length=24, shard_size=3, device="cpu")
    plain = label(pool, queries, tmp_path / "plain", settings, progress=False)
    out = tmp_path / "ray"
    label(pool, queries, out, settings, progress=False, ray=RayOptions(num_actors=2))
    first = {p.relative_to(out): p.read_bytes() for p in out.glob("*/shard-*.npy")}

    # a run stopped after some shards: pool shards 2 and 3 and query shard 1 not yet written, no matrix or
    # record yet, the stores not marked complete
    stopped = {"pool": [2, 3], "queries": [1]}
    for part, missing in stopped.items():
        for index in missing:
            for name in (f"shard-{index:05d}.npy", f"shard-{index:05d}.npy.sha256"):
                (out / part / name).unlink()
        manifest = json.loads((out / part / "manifest.json").read_text())
        (out / part / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    (out / "labels.json").unlink()
    shutil.rmtree(out / "influence")
    kept = {p: on_disk(p) for p in out.glob("*/shard-*.npy*")}
    assert len(kept) == 2 * (4 + 2 - 3)

    asked = []  # the shards each store sends to the actors

    def recording(job, shards, *args, **kwargs):
        asked.append((job.store_path, sorted(shards)))
        return run_shards_on_ray(job, shards, *args, **kwargs)

    def no_local_work(*args, **kw):
        raise AssertionError("the Ray path computed in the driver process")

    run_shards_on_ray = labels_distributed.run_shards_on_ray
    monkeypatch.setattr(labels_distributed, "run_shards_on_ray", recording)
    monkeypatch.setattr(GradientFeaturizer, "featurize_tokenized", no_local_work)  # actors are other processes
    resumed = label(pool, queries, out, settings, progress=False, ray=RayOptions(num_actors=2))
    monkeypatch.undo()

    assert asked == [(str((out / part).resolve()), missing) for part, missing in stopped.items()]
    assert {p: on_disk(p) for p in kept} == kept  # the finished shards were not written again
    # bit for bit what the uninterrupted Ray run wrote; the plain run's to float rounding (Ray's actors run
    # torch with other thread counts, so sums are ordered differently: tests/test_ray.py)
    assert {p.relative_to(out): p.read_bytes() for p in out.glob("*/shard-*.npy")} == first
    for part in ("pool", "queries"):
        a, b = FeatureStore(tmp_path / "plain" / part), FeatureStore(out / part)
        assert b.manifest == a.manifest  # complete again
        np.testing.assert_allclose(b.load(), a.load(), rtol=1e-5, atol=1e-6)
    assert resumed.pool_ids == plain.pool_ids and resumed.query_ids == plain.query_ids
    np.testing.assert_allclose(resumed.scores, plain.scores, rtol=1e-5, atol=1e-6)
