"""benchmarks/transfer.py: subspace coordinates derived from the label matrix alone equal the explicit
projection of the gradients on the training gradients' top singular directions (the identity the whole
transfer study rests on), and rescore recall is what it says."""

from __future__ import annotations

import numpy as np

from .conftest import load_benchmark


def _load():
    return load_benchmark("transfer")


def test_coordinates_from_labels_equal_the_explicit_projection():
    bench = _load()
    rng = np.random.default_rng(0)
    G = rng.normal(size=(40, 300)) + 2.0 * rng.normal(size=(1, 300))  # a shared direction, as real gradients have
    G /= np.linalg.norm(G, axis=1, keepdims=True)
    S = G @ G.T
    train, other = np.arange(30), np.arange(30, 40)
    _, _, Vt = np.linalg.svd(G[train], full_matrices=False)  # the reference: explicit SVD of the gradients
    sub = bench.Subspace(S, train, 8)
    for rows in (train, other):
        explicit = G[rows] @ Vt[:8].T
        derived = sub.coordinates(rows, 8)
        signs = np.sign((explicit * derived).sum(0))  # singular vectors are defined up to sign
        np.testing.assert_allclose(derived * signs, explicit, atol=1e-8)
    full = bench.Subspace(S, train, 30)  # all directions: cosines within the training span are exact
    np.testing.assert_allclose(full.coordinates(train, 30) @ full.coordinates(train, 30).T, S[:30, :30], atol=1e-8)


def test_rescore_recall_counts_the_true_top_found_among_the_candidates():
    bench = _load()
    truth = np.arange(100, dtype=float)[:, None]  # sample 99 is the most influential, then 98 ...
    perfect = truth.copy()
    reversed_ = -truth
    assert bench.rescore_recall(perfect, truth, K=10) == 1.0
    assert bench.rescore_recall(reversed_, truth, K=10) == 0.0
    assert bench.rescore_recall(reversed_, truth, K=95) == 0.5  # candidates 0..94 hold 90..94 of the true top 10
    assert bench.rescore_recall(reversed_, truth, K=100) == 1.0


def test_ridge_recovers_a_linear_map():
    bench = _load()
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 5))
    W = rng.normal(size=(5, 3))
    model = bench.ridge_fit(X, X @ W + 0.5, lam=1e-6)
    np.testing.assert_allclose(bench.ridge_predict(model, X), X @ W + 0.5, atol=1e-5)


def test_interleaved_candidates_take_each_methods_best_in_turn():
    bench = _load()
    a = np.array([[5.0], [4.0], [3.0], [2.0], [1.0]])  # ranks rows 0, 1, 2, 3, 4
    b = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])  # ranks rows 4, 3, 2, 1, 0
    merged = bench.interleaved_ranks(a, b)
    assert list(np.argsort(-merged[:, 0], kind="stable")) == [0, 4, 1, 3, 2]


def test_merge_unites_designs_per_split_and_refuses_disagreeing_runs():
    import json

    import pytest

    bench = _load()

    def record(methods: dict, seed: int = 0) -> dict:
        run = {"seed": seed, "methods": {k: {"per_anchor": v, "mean_aggregated": v, "query_specific": v}
                                         for k, v in methods.items()}}  # fmt: skip
        return {"n": 10, "tasks": 2, "sources": ["a"], "protocols": {"task": [run]}}

    merged = bench.merge([record({"tfidf": 0.2, "ridge": 0.4}), record({"tfidf": 0.2, "encoder": 0.5})])
    assert set(merged["protocols"]["task"][0]["methods"]) == {"tfidf", "ridge", "encoder"}
    assert merged["summary"]["task"]["encoder"]["per_anchor"]["mean"] == 0.5
    assert json.loads(json.dumps(merged))  # plain JSON
    with pytest.raises(SystemExit, match="tfidf per_anchor differs"):
        bench.merge([record({"tfidf": 0.2}), record({"tfidf": 0.3})])


def test_the_command_record_averages_seeds_with_the_sample_sd():
    """benchmarks/transfer_command.py: mean and sample sd (ddof 1) over the seeds, per method and figure."""
    bench = load_benchmark("transfer_command")
    figures = dict.fromkeys(bench.FIGURES, 0.0)

    def run(seed, rho):
        return {"methods": {"distilled": {**figures, "per_anchor_mean": rho}, "tfidf": dict(figures)}, "seed": seed}

    summary = bench.summary([run(0, 0.7), run(1, 0.8), run(2, 0.9)])
    assert summary["distilled"]["per_anchor_mean"]["mean"] == np.mean([0.7, 0.8, 0.9])
    assert summary["distilled"]["per_anchor_mean"]["sd"] == np.std([0.7, 0.8, 0.9], ddof=1)
    assert bench.summary([run(0, 0.7)])["distilled"]["per_anchor_mean"]["sd"] is None  # one seed: no spread


def test_the_pool_size_split_holds_out_whole_tasks_as_disjoint_pool_and_queries():
    """benchmarks/rescore_pool_size.py: every held-out task is absent from training, and no text is on two sides."""
    from influcoder.data.records import Sample

    bench = load_benchmark("rescore_pool_size")
    samples = [Sample(id=f"s{i}", prompt="p", response="r", meta={"task": f"t{i % 40}"}) for i in range(1200)]
    rows = bench.held_out_tasks(samples, 0.5, seed=3)
    train, pool, queries = (set(rows[k].tolist()) for k in ("train", "pool", "queries"))
    assert not (train & pool or train & queries or pool & queries) and len(train | pool | queries) == 1200
    held = {samples[i].meta["task"] for i in pool | queries}
    assert len(held) == 20 and not held & {samples[i].meta["task"] for i in train}
    assert len(queries) == bench.QUERIES


def test_a_source_record_names_its_runs_and_marks_cached_timings():
    """benchmarks/transfer_command.py: runs held out by --eval-split show what they held out, and a record whose
    evaluations read cached states says so in the timing column's header."""
    bench = load_benchmark("transfer_command")
    figures = dict.fromkeys(bench.FIGURES, 0.5)
    run = {"seed": 0, "protocol": "source", "name": "bbh", "settings": {"subspace_head": "kernel"},
           "held_out": {"pool": 10, "queries": 4}, "states_cache": True, "lowest_per_anchor": 0.1,
           "queries_below_0.3": 1, "ridge_seconds": 3.0,
           "methods": {"distilled": {**figures, "encode_ms_per_sample": 1.0},
                       "tfidf": {**figures, "encode_ms_per_sample": 1.0}}}  # fmt: skip
    text = bench.markdown({"command": "c", "runs": [run], "summary": bench.summary([run])})
    assert "| bbh | 10 x 4 |" in text and "head fit s | encode ms/sample (states cached) |" in text
    assert "1 runs; mean (sample sd) over the runs" in text


def test_two_round_recall_finds_the_true_top_clustered_around_the_best_first_round_hit():
    """benchmarks/rescore_pool_size.py's two rounds: a pool whose true top 10 sit together in the stored space,
    ranked by the encoder below 40 decoys but one: one round over K = 15 finds that one, two rounds find the
    rest beside it (K - first = 5 of them), as `Influcoder.rescore(rounds=2)` would."""
    bench = load_benchmark("rescore_pool_size")
    rng = np.random.default_rng(0)
    n = 200
    stored = rng.normal(size=(n, 8))
    stored[:10] = stored[0] + 0.01 * rng.normal(size=(10, 8))  # the true top 10 cluster around row 0
    truth = np.zeros((n, 1))
    truth[:10, 0] = np.linspace(1.0, 0.9, 10)
    pred = rng.normal(size=(n, 1)) * 0.1
    pred[10:50, 0] += 1.0  # 40 decoys the encoder prefers
    pred[0, 0] = 2.0  # one true hit at its top
    one = bench.rescore_recall(pred, truth, K=15)
    two = bench.two_round_recall(pred, truth, stored, K=15, second_share=1 / 3)
    assert one == 0.1
    assert two == 0.6  # row 0 plus the 5 rows nearest it, all of the true top 10
    assert bench.two_round_recall(truth, truth, stored, K=15, second_share=1 / 3) == 1.0
