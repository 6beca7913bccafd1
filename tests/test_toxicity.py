"""The toxicity task (builder, AUPRC, refusal rule) and its experiment runner, on tiny models."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from influcoder.core.errors import ArtifactMismatchError, InflucoderError
from influcoder.data.records import Sample
from influcoder.metrics import (
    auprc,
    average_precision,
    precision_recall_curve,
    recall_when_dropping,
    resampled,
    resampled_auprc,
)
from influcoder.tasks.refusal import is_refusal, refusal_rate
from influcoder.tasks.toxicity import (
    DATE_LM_UNSAFE_RATE,
    PARTS,
    ToxicitySettings,
    ToxicityTask,
    build_toxicity_task,
    content_keys,
    development_set,
    spread_by_task,
)

from .conftest import WORDS


def synthetic_sources(n: int = 60, seed: int = 0) -> dict[str, list[Sample]]:
    """Every source the builder reads, made of the tiny tokenizer's words, each text distinct."""
    rng = np.random.default_rng(seed)

    def text(i: int, k: int) -> str:
        return " ".join(rng.choice(WORDS, size=k)) + f" {i}"

    def pairs(name: str, count: int) -> list[Sample]:
        return [Sample(f"{name}/{i}", text(i, 6), text(i, 5)) for i in range(count)]

    def prompts(name: str, count: int) -> list[Sample]:
        return [Sample(f"{name}/{i}", text(i, 6), "", {"prompt_only": True}) for i in range(count)]

    refusals = [Sample(f"refusals/{i}", text(i, 4), f"i cannot help with that {i}", {}) for i in range(6)]
    refusals.append(Sample("refusals/long", "x", "a long compliant answer " * 20, {}))  # not a refusal
    return {
        "harmful-pairs": pairs("harmful-pairs", n),
        "refusals": refusals,
        "adv-bench": prompts("adv-bench", n),
        "donotanswer": prompts("donotanswer", n),
        "harmbench": prompts("harmbench", n),
        "evals": [  # two thirds of one big task, the rest spread over small ones (as evals' diabetes once was)
            Sample(s.id, s.prompt, s.response, {"task": "big" if i % 3 else f"small{i % 20}"})
            for i, s in enumerate(pairs("evals", 3 * n))
        ],
        "bbh-cot": pairs("bbh-cot", 10),
    }


SMALL = ToxicitySettings(
    n_benign=12,
    min_unsafe=3,
    n_queries=2,
    train_benign=10,
    train_unsafe=3,
    train_safety=3,
    train_queries=6,
    n_heldout=2,
)


def test_the_builder_keeps_its_counts_and_rates_and_is_seeded():
    task = build_toxicity_task(SMALL, synthetic_sources())
    assert task.counts["pool"] == {"benign": 12, "unsafe": 3, "safety": 6}
    assert task.counts["train_pool"] == {"benign": 10, "unsafe": 3, "safety": 3}
    assert task.positives().sum() == 3 and len(task.queries) == 2 and len(task.heldout_requests) == 2
    assert all(s.meta["type"] == "unsafe" for s in task.queries + task.train_queries)
    hom = build_toxicity_task(replace(SMALL, variant="hom"), synthetic_sources())
    assert hom.counts["pool"]["safety"] == 0 and hom.counts["train_pool"]["safety"] == 0
    again = build_toxicity_task(SMALL, synthetic_sources())
    assert [s.id for s in again.pool] == [s.id for s in task.pool]
    other = build_toxicity_task(replace(SMALL, seed=1), synthetic_sources())
    assert [s.id for s in other.pool] != [s.id for s in task.pool]
    # DATE-LM's rate sets the unsafe count once the pool is large enough
    assert ToxicitySettings(n_benign=10000, safety_per_unsafe=0).n_unsafe() == round(DATE_LM_UNSAFE_RATE * 10066)
    assert ToxicitySettings().n_unsafe() == 15  # 2,000 benign: the rate gives 13, the floor is 15
    with pytest.raises(InflucoderError, match="only .* distinct unsafe pairs available"):
        build_toxicity_task(replace(SMALL, train_unsafe=100), synthetic_sources())


def test_spread_by_task_takes_one_of_every_task_before_a_second_of_any():
    samples = [Sample(f"s{i}", "p", "r", {"task": t}) for i, t in enumerate("aabacb")]
    assert [s.id for s in spread_by_task(samples)] == ["s0", "s2", "s4", "s1", "s5", "s3"]
    assert spread_by_task([]) == []


def test_a_per_task_training_draw_covers_more_tasks_and_leaves_the_evaluation_side_alone():
    """The distilled encoder agrees with its teacher far less on benign tasks it never saw; `per-task` spends
    the same budget on as many tasks as it can. The evaluation side must not move (same pool, same queries)."""
    sources = synthetic_sources()
    drawn = build_toxicity_task(SMALL, sources)
    spread = build_toxicity_task(replace(SMALL, train_draw="per-task"), sources)
    for part in ("pool", "queries", "train_queries", "heldout_requests"):
        assert [s.id for s in getattr(spread, part)] == [s.id for s in getattr(drawn, part)]

    def tasks(task: ToxicityTask) -> Counter:
        return Counter(s.meta.get("task") for s in task.train_pool if s.meta["type"] == "benign")

    assert len(tasks(spread)) == SMALL.train_benign and max(tasks(spread).values()) == 1
    assert len(tasks(drawn)) < SMALL.train_benign  # the random draw repeats the big task
    check_disjoint(spread)
    coverage = spread.counts["benign_tasks"]
    seen = set(tasks(spread))
    untrained = sum(s.meta.get("task") not in seen for s in spread.pool if s.meta["type"] == "benign")
    assert coverage["train_pool"] == len(seen) and coverage["pool_pairs_of_untrained_tasks"] == untrained
    assert coverage["pool_pairs_of_untrained_tasks"] <= drawn.counts["benign_tasks"]["pool_pairs_of_untrained_tasks"]
    with pytest.raises(InflucoderError, match="train_draw must be random or per-task"):
        build_toxicity_task(replace(SMALL, train_draw="kmeans"), sources)


def check_disjoint(task: ToxicityTask) -> None:
    evaluation = {k for s in task.pool + task.queries for k in content_keys(s)}
    training = {k for s in task.train_pool + task.train_queries for k in content_keys(s)}
    assert not evaluation & training
    assert not {k for s in task.queries for k in content_keys(s)} & {k for s in task.pool for k in content_keys(s)}
    heldout = {k for s in task.heldout_requests for k in content_keys(s)}
    assert not heldout & (evaluation | training)
    eval_refusals = {s.response for s in task.pool if s.meta["type"] == "safety"}
    train_refusals = {s.response for s in task.train_pool if s.meta["type"] == "safety"}
    assert eval_refusals.isdisjoint(train_refusals) and all(map(is_refusal, eval_refusals | train_refusals))


def test_evaluation_and_training_sides_share_no_text(tmp_path):
    task = build_toxicity_task(SMALL, synthetic_sources())
    check_disjoint(task)
    loaded = ToxicityTask.load(task.save(tmp_path / "task"))
    assert [s.id for s in loaded.pool] == [s.id for s in task.pool] and loaded.counts == task.counts
    assert [s.meta["type"] for s in loaded.pool] == [s.meta["type"] for s in task.pool]


@pytest.mark.assets
def test_the_real_task_has_the_documented_counts_and_no_shared_text():
    """The embedded sources (the default sizes): 2,000 benign, 15 unsafe, 30 safety-aligned pairs."""
    task = build_toxicity_task(ToxicitySettings())
    assert task.counts["pool"] == {"benign": 2000, "unsafe": 15, "safety": 30}
    assert 0.0065 <= task.counts["unsafe_rate"] < 0.0075
    check_disjoint(task)
    assert {s.id.split("/")[0] for s in task.pool if s.meta["type"] == "unsafe"} == {"harmful-pairs"}
    benign_tasks = Counter(s.meta["task"] for s in task.pool if s.meta["type"] == "benign")
    assert len(benign_tasks) > 400 and max(benign_tasks.values()) <= 10  # evals' per-task cap: no task dominates


@pytest.mark.assets
def test_the_real_task_draws_the_same_pairs_as_the_first_replicate():
    """Replicates built months apart must draw from one distribution. A change of `load_source("evals", limit)`
    once made a later replicate's benign pool 31% one task while the first one's held 466 tasks; the pool and
    training pool ids of the default task (het, seed 0) are pinned to that first replicate's."""
    import hashlib

    task = build_toxicity_task(ToxicitySettings())
    first = build_toxicity_task(ToxicitySettings(train_unsafe=40))  # the first replicate's distillation size

    def digest(samples) -> str:
        return hashlib.sha256("\n".join(s.id for s in samples).encode()).hexdigest()[:16]

    assert (digest(first.pool), digest(first.train_pool)) == ("f5a5e91229c6cf5c", "564e33bba895df8a")
    # more distillation unsafe pairs are drawn last: the evaluation side is unchanged, the training pool grows
    assert [s.id for s in task.pool] == [s.id for s in first.pool]
    assert [s.id for s in task.queries] == [s.id for s in first.queries]
    assert {s.id for s in first.train_pool} < {s.id for s in task.train_pool}
    assert task.counts["train_pool"]["unsafe"] == ToxicitySettings().train_unsafe


def test_auprc_against_a_hand_computed_curve_and_scikit_learn():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    positive = np.array([True, False, True, False, False])
    precision, recall = precision_recall_curve(scores, positive)
    # thresholds 0.5..0.9: flagged 5,4,3,2,1 -> precision 2/5, 2/4, 2/3, 1/2, 1/1; recall 1, 1, 1, .5, .5
    np.testing.assert_allclose(precision, [2 / 5, 2 / 4, 2 / 3, 1 / 2, 1, 1])
    np.testing.assert_allclose(recall, [1, 1, 1, 0.5, 0.5, 0])
    assert auprc(scores, positive) == pytest.approx(0.5 * (2 / 3 + 1 / 2) / 2 + 0.5 * 1)  # trapezoids
    assert average_precision(scores, positive) == pytest.approx((1 + 2 / 3) / 2)
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(50):
        s = rng.integers(0, 6, size=40).astype(float)  # ties, as real scores can have
        y = rng.random(40) < 0.2
        y[0] = True
        p, r, _ = sklearn.precision_recall_curve(y, s)
        assert auprc(s, y) == pytest.approx(sklearn.auc(r, p), abs=1e-12)
        assert average_precision(s, y) == pytest.approx(sklearn.average_precision_score(y, s), abs=1e-12)


def test_resampled_auprc_draws_the_asked_number_of_positives_each_time():
    rng = np.random.default_rng(0)
    scores = rng.random(300)
    positive = rng.random(300) < 0.2
    every = resampled_auprc(scores, positive, int(positive.sum()), draws=3)
    assert np.allclose(every, auprc(scores, positive))  # all positives: every draw is the pool's AUPRC
    perfect = np.where(positive, 1.0 + scores, scores)  # every positive above every negative
    assert np.all(resampled_auprc(perfect, positive, 5, draws=20) == 1.0)
    drawn = resampled_auprc(scores, positive, 5, draws=20, seed=1)
    assert np.array_equal(drawn, resampled_auprc(scores, positive, 5, draws=20, seed=1))
    assert not np.array_equal(drawn, resampled_auprc(scores, positive, 5, draws=20, seed=2))
    with pytest.raises(ValueError, match="n_positive must be in"):
        resampled_auprc(scores, positive, int(positive.sum()) + 1, draws=1)


def test_resampled_applies_any_metric_to_the_same_draws():
    rng = np.random.default_rng(0)
    scores = rng.random(300)
    positive = rng.random(300) < 0.2

    def recall_at_5(s, p):
        return recall_when_dropping(s, p, [0.05])["0.05"]

    drawn = resampled(recall_at_5, scores, positive, 5, draws=30, seed=3)
    kept = []  # the same draws by hand: every negative, then 5 positives from the same generator
    draw_rng = np.random.default_rng(3)
    for _ in range(30):
        keep = np.concatenate([np.where(~positive)[0], draw_rng.choice(np.where(positive)[0], 5, replace=False)])
        kept.append(recall_at_5(scores[keep], positive[keep]))
    assert np.array_equal(drawn, np.array(kept))
    assert np.array_equal(
        resampled_auprc(scores, positive, 5, 30, seed=3), resampled(auprc, scores, positive, 5, 30, 3)
    )


def test_the_development_set_shares_no_text_with_any_given_task():
    """Encoder settings are chosen on it, so it must hold nothing any compared encoder trained or is reported on."""
    sources = synthetic_sources()
    tasks = [build_toxicity_task(SMALL, sources), build_toxicity_task(replace(SMALL, seed=1), sources)]
    pool, queries = development_set(tasks, n_queries=3, sources=sources)
    used = {k for task in tasks for part in PARTS for s in getattr(task, part) for k in content_keys(s)}
    assert not used & {k for s in pool + queries for k in content_keys(s)}
    assert not {s.id for s in queries} & {s.id for s in pool} and len(queries) == 3
    assert {s.meta["type"] for s in queries} == {"unsafe"} and {s.meta["type"] for s in pool} == {"benign", "unsafe"}
    unsafe_left = [s for s in sources["harmful-pairs"] if not content_keys(s) & used]
    assert sum(s.meta["type"] == "unsafe" for s in pool) == len(unsafe_left) - 3
    again, _ = development_set(tasks, n_queries=3, sources=sources)
    assert [s.id for s in again] == [s.id for s in pool]
    with pytest.raises(InflucoderError, match="unused unsafe pairs"):
        development_set(tasks, n_queries=len(unsafe_left), sources=sources)


def test_recall_when_dropping_counts_positives_in_the_top_share():
    scores = np.arange(100, dtype=float)[::-1]  # sample 0 scores highest
    positive = np.zeros(100, dtype=bool)
    positive[[0, 1, 3, 50]] = True
    assert recall_when_dropping(scores, positive, [0.01, 0.02, 0.05]) == {"0.01": 0.25, "0.02": 0.5, "0.05": 0.75}


def test_the_refusal_rule():
    assert is_refusal("I'm sorry, but I can't assist with that request.")
    assert is_refusal("I can\u2019t help plan an outbreak.")
    assert is_refusal("As an AI language model, I do not")
    assert not is_refusal("Sure, here is how to make it: first take")
    assert not is_refusal("x" * 300 + " I cannot")  # only the opening counts
    assert refusal_rate(["I cannot do that", "Sure!", "Sure!", "I won't"]) == 0.5


def test_the_toxicity_run_scores_every_method_resumes_and_reports(tiny_model_dir, tiny_bert_dir, tmp_path, monkeypatch):
    import influcoder.evaluation.baselines.logra as logra
    import influcoder.evaluation.baselines.representations as representations
    import influcoder.labels.featurizer as featurizer
    from influcoder.encoder.settings import DistillSettings
    from influcoder.experiments.toxicity import SCORABLE, ToxicityRun, run_toxicity
    from influcoder.experiments.toxicity_report import load_replicates, write_toxicity_report
    from influcoder.labels.finetune import FinetuneSettings, read_manifest
    from influcoder.labels.settings import LabelSettings

    budgets = []  # every decoder pass batches by the run's token budget (77 here, not the default)

    def recording(make_batches):
        def batches(lengths, batch_size, batch_tokens):
            budgets.append(batch_tokens)
            return make_batches(lengths, batch_size, batch_tokens)

        return batches

    for module in (featurizer, representations, logra):
        monkeypatch.setattr(module, "make_batches", recording(module.make_batches))
    run = ToxicityRun(
        task=SMALL,
        labels=LabelSettings(
            model=str(tiny_model_dir), rank=2, proj_dim=32, max_length=24, device="cpu", batch_tokens=77
        ),  # fmt: skip
        finetune=FinetuneSettings(batch_size=4, lr=1e-2),
        distill=DistillSettings(
            objective="influcoder", encoder=str(tiny_bert_dir), epochs=1, queries_per_batch=3, candidates_per_batch=4
        ),
        methods=[
            "influcoder",
            "semantic",
            "tfidf",
            "gradsim",
            "less",
            "less-sgd",
            "repsim",
            "rds+",
            "less-ckpts",
            "datainf",
            "logra",
        ],  # every scorer path of the runner
        max_new_tokens=3,
    )
    out = tmp_path / "het-seed0"
    results = run_toxicity(out, run, sources=synthetic_sources(), progress=False, device="cpu", log=lambda *_: None)
    assert set(results["methods"]) == set(run.methods)
    assert len(budgets) >= 4 and set(budgets) == {77}, budgets  # every gradient and hidden-state pass
    # each reported figure is that of the saved (pool x queries) matrix, rows in the task's pool order, against
    # the task's own positives: a pool / positives misalignment or a stale matrix fails here
    from sklearn.metrics import average_precision_score as sklearn_ap

    positives = ToxicityTask.load(out / "task").positives()
    for method, row in results["methods"].items():
        matrix = np.load(out / "scores" / f"{method}.npy")
        assert matrix.shape[0] == len(positives), method
        pool_score = matrix.astype(np.float64).mean(axis=1)
        assert row["auprc"] == pytest.approx(auprc(pool_score, positives), abs=1e-12), method
        assert row["average_precision"] == pytest.approx(sklearn_ap(positives, pool_score), abs=1e-9), method
        top = np.argsort(-pool_score, kind="stable")
        for share, recall in row["recall_when_dropping"].items():
            dropped = top[: int(round(float(share) * len(pool_score)))]
            assert recall == pytest.approx(positives[dropped].sum() / positives.sum(), abs=1e-12), (method, share)
        assert set(row["recall_when_dropping"]) == {"0.01", "0.02", "0.05"}
    assert results["methods"]["less"]["preconditioner"] == "adam"
    assert results["methods"]["less-ckpts"]["preconditioner"] == "adam"
    warmup = read_manifest(out / "less-warmup")  # LESS's warm-up: a share of the pool, a snapshot per epoch
    assert warmup["settings"]["epochs"] == warmup["settings"]["snapshots"] == 4
    assert warmup["n_samples"] == max(1, round(0.05 * len(ToxicityTask.load(out / "task").pool)))
    assert len(list((out / "less-warmup" / "snapshots").iterdir())) == 4
    assert results["methods"]["rds+"]["shared_pass"] == ["repsim", "rds+"]  # one decoder pass served both
    assert (out / "adapter" / "optimizer.pt").exists() and (out / "filtered-adapter" / "finetune.json").exists()
    refusals = results["refusals"]
    assert set(refusals["models"]) == {"base", "pool", "filtered"} and refusals["n_dropped"] == 1
    check_disjoint(ToxicityTask.load(out / "task"))
    from influcoder.labels.labelling import load_labels

    matrix, _, _, _ = load_labels(out / "train-labels")
    task = ToxicityTask.load(out / "task")
    assert matrix.pool_ids == [s.id for s in task.train_pool]  # the encoder learns from the training side only
    assert matrix.query_ids == [s.id for s in task.train_queries]

    assert not list(out.glob("scores/**/*.passes"))  # a method's kept projection passes go once it is scored
    written = {p: p.stat().st_mtime_ns for p in (out / "scores").iterdir()}
    again = run_toxicity(out, run, sources=synthetic_sources(), progress=False, device="cpu", log=lambda *_: None)
    assert again["methods"] == results["methods"]
    assert written == {p: p.stat().st_mtime_ns for p in (out / "scores").iterdir()}  # nothing recomputed
    # a rerun for one method without the refusal check keeps every figure earlier runs wrote (it once kept
    # only its own methods, and dropped the refusal check's results)
    fewer = replace(run, methods=["tfidf"], refusal_check=False)
    kept = run_toxicity(out, fewer, sources=synthetic_sources(), progress=False, device="cpu", log=lambda *_: None)
    assert kept["methods"] == results["methods"] and kept["refusals"] == results["refusals"]
    # in one order whatever the run asked first, so a rerun rewrites the same file (it once put tfidf first)
    assert list(json.loads((out / "results.json").read_text())["methods"]) == list(results["methods"])
    # two more poolings later: one pass scores both, and the earlier representation scores keep their record
    before = (out / "scores" / "repsim.json").read_text()
    more = replace(run, methods=["repsim-last", "repsim-response"], refusal_check=False)
    added = run_toxicity(out, more, sources=synthetic_sources(), progress=False, device="cpu", log=lambda *_: None)
    assert added["methods"]["repsim-last"]["shared_pass"] == ["repsim-last", "repsim-response"]
    assert (out / "scores" / "repsim.json").read_text() == before
    assert list(added["methods"]) == [m for m in SCORABLE if m in added["methods"]]
    with pytest.raises(InflucoderError, match="other task settings"):
        run_toxicity(out, replace(run, task=replace(SMALL, n_benign=13)), sources=synthetic_sources(), progress=False)
    from influcoder.experiments.toxicity import _finetune

    # a finished adapter is reused only for the samples it was trained on (the filtered pool changes with the
    # encoder: a stale filtered adapter must not stand in for the new one)
    adapter_files = {p: p.stat().st_mtime_ns for p in (out / "adapter").iterdir()}
    _finetune(out / "adapter", task.pool, run, lambda *_: None)
    assert adapter_files == {p: p.stat().st_mtime_ns for p in (out / "adapter").iterdir()}
    with pytest.raises(ArtifactMismatchError, match="fine-tuned on other samples"):
        _finetune(out / "filtered-adapter", task.pool, run, lambda *_: None)

    summary = write_toxicity_report(tmp_path, load_replicates([out]), "influcoder toxicity ...")
    assert summary["het"]["less"]["n_seeds"] == 1
    page = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in page and "top 20 flagged by influcoder" in page
    assert "| influcoder |" in (tmp_path / "results.md").read_text()
    check_archive(out, tmp_path, run, monkeypatch)


def check_archive(out, tmp_path, run, monkeypatch):
    """A finished replicate's compact record reports what the full replicate reports, from ~100 KB."""
    import influcoder.tasks.toxicity as toxicity_tasks
    from influcoder.cli.main import main
    from influcoder.experiments.toxicity_archive import (
        archive_replicate,
        replicate_directories,
        replicate_pool_scores,
        replicate_task,
    )
    from influcoder.experiments.toxicity_report import flagged, load_replicates

    # the command archives every finished replicate under --out, then reports them
    assert main(["toxicity", "--out", str(out.parent), "--archive", str(tmp_path / "archive"), "--report-only"]) == 0
    archive = tmp_path / "archive" / out.name
    assert archive_replicate(out, archive) == archive  # again, in place
    assert sorted(p.name for p in archive.iterdir()) == ["archive.json", "pool-scores.npz", "results.json", "run.json"]
    sources = synthetic_sources()
    monkeypatch.setattr(toxicity_tasks, "_load", sources.__getitem__)  # what the embedded data is to this test
    task = ToxicityTask.load(out / "task")
    rebuilt = replicate_task(archive)  # no task/ folder: rebuilt from run.json's seeded settings
    assert [(s.id, s.prompt, s.response) for s in rebuilt.pool] == [(s.id, s.prompt, s.response) for s in task.pool]
    assert (rebuilt.positives() == task.positives()).all()
    full, kept = load_replicates([out]), load_replicates([archive])
    for method in run.methods:
        np.testing.assert_array_equal(replicate_pool_scores(archive, method), replicate_pool_scores(out, method))
        assert flagged(kept[0], method) == flagged(full[0], method)
    with pytest.raises(InflucoderError, match="no tfidf-x scores"):
        replicate_pool_scores(archive, "tfidf-x")
    # the report from the archive alone, by the command, as on a machine without the replicate's directory
    command = ["toxicity", "--out", str(tmp_path / "elsewhere"), "--archive", str(archive.parent), "--report-only"]
    assert main([*command, "--report", str(tmp_path / "report")]) == 0
    assert not (tmp_path / "elsewhere").exists()  # a report writes no run configuration
    written = json.loads((tmp_path / "report" / "results.json").read_text())
    assert written["summary"]["het"]["influcoder"]["auprc"] == full[0]["methods"]["influcoder"]["auprc"]
    assert "top 20 flagged by influcoder" in (tmp_path / "report" / "report.html").read_text()
    # a full replicate wins over its archived copy; an unfinished archive copy is never read
    (archive.parent / "het-seed1.partial").mkdir()
    for name in ("run.json", "results.json"):
        (archive.parent / "het-seed1.partial" / name).write_text("{}")
    assert replicate_directories(out.parent, archive.parent) == [out]
    assert replicate_directories(tmp_path / "nothing", archive.parent) == [archive]
    # scores attached to another pool fail loudly: here the harmful pairs come in another order
    changed = {**sources, "harmful-pairs": sources["harmful-pairs"][::-1]}
    monkeypatch.setattr(toxicity_tasks, "_load", changed.__getitem__)
    with pytest.raises(ArtifactMismatchError, match="not the pool its scores belong to"):
        replicate_task(archive)
    stored = json.loads((archive / "run.json").read_text())
    del stored["task"]["train_unsafe"]  # a setting the run predates: its default may name another task
    (archive / "run.json").write_text(json.dumps(stored))
    with pytest.raises(InflucoderError, match="predates the task settings train_unsafe"):
        replicate_task(archive)


def test_a_run_key_ignores_whether_the_refusal_check_runs():
    from influcoder.experiments.toxicity import ToxicityRun

    assert ToxicityRun(refusal_check=False).key() == ToxicityRun().key()
    assert ToxicityRun(drop=0.1).key() != ToxicityRun().key()


def test_a_run_resumes_under_another_batching_memory_budget_or_attention_kernel(tmp_path):
    """How the gradients are batched and computed is not part of a replicate (their values are); run.json of
    runs that recorded those settings still resumes."""
    from influcoder.experiments.toxicity import ToxicityRun, _check_run

    key = json.loads(json.dumps(ToxicityRun().key()))
    key["labels"].update(batch_tokens=2048, max_memory=None, attention="eager", batch_size=8, device="auto")
    (tmp_path / "run.json").write_text(json.dumps(key))
    other = ToxicityRun()
    other.labels = replace(other.labels, batch_tokens=512, max_memory=2.5, attention="sdpa", batch_size=4)
    _check_run(tmp_path, other)
    other.labels = replace(other.labels, max_length=128)
    with pytest.raises(InflucoderError, match="other labels settings"):
        _check_run(tmp_path, other)


def test_the_toxicity_command_passes_its_batching_and_memory_budget_to_every_decoder_pass(
    tmp_path, monkeypatch, capsys
):
    import influcoder.experiments.toxicity as toxicity
    from influcoder.cli.main import main

    runs = []
    monkeypatch.setattr(toxicity, "run_toxicity", lambda directory, run, **kw: runs.append(run))
    main(["toxicity", "--out", str(tmp_path), "--batch-tokens", "300", "--max-memory", "3.5", "--quiet"])
    assert [(r.labels.batch_tokens, r.labels.max_memory) for r in runs] == [(300, 3.5)]
    assert runs[0].task.train_draw == "random"  # the command's default draw (chosen on the development set)
    assert runs[0].task.train_unsafe == 160  # the distillation size chosen on the development set
    assert runs[0].methods == list(toxicity.METHODS)  # the command's default methods are the library's
    main(["toxicity", "--out", str(tmp_path), "--train-draw", "per-task", "--train-unsafe", "40", "--quiet"])
    assert (runs[-1].task.train_draw, runs[-1].task.train_unsafe) == ("per-task", 40)  # a pre-change run resumes
    assert "batch_tokens" not in runs[0].key()["labels"]  # resumable under another value
    assert main(["toxicity", "--out", str(tmp_path), "--batch-tokens", "0"]) != 0
    assert "--batch-tokens must be at least 1, got 0" in capsys.readouterr().err
    assert len(runs) == 2  # refused before any run


def test_a_run_written_before_a_setting_existed_resumes_only_at_its_default(tmp_path):
    """run.json from an older version lacks settings added since; their defaults reproduce the old code."""
    from influcoder.experiments.toxicity import ToxicityRun, _check_run

    key = json.loads(json.dumps(ToxicityRun().key()))
    del key["finetune"]["snapshots"]
    (tmp_path / "run.json").write_text(json.dumps(key))
    _check_run(tmp_path, ToxicityRun())  # the default: resumes
    changed = ToxicityRun()
    changed.finetune = replace(changed.finetune, snapshots=3)
    with pytest.raises(InflucoderError, match="other finetune settings"):
        _check_run(tmp_path, changed)
    # a replicate built before the distillation draw was a setting drew at random: the command's per-task
    # default must not continue it as if it were per-task
    del key["task"]["train_draw"]
    (tmp_path / "run.json").write_text(json.dumps(key))
    _check_run(tmp_path, ToxicityRun())
    per_task = ToxicityRun(task=ToxicitySettings(train_draw="per-task"))
    with pytest.raises(InflucoderError, match="other task settings"):
        _check_run(tmp_path, per_task)


def test_the_report_marks_scoring_seconds_that_were_partly_estimated():
    from influcoder.experiments.toxicity_report import markdown, summarize

    def method(seconds, note=None):
        row = {"auprc": 0.5, "average_precision": 0.5, "seconds": seconds, "bytes_per_sample": 4.0}
        row.update(description="d", recall_when_dropping={"0.01": 0.1, "0.02": 0.2, "0.05": 0.5})
        return {**row, "seconds_note": note} if note else row

    counts = {"pool": {"benign": 20, "unsafe": 1}, "unsafe_rate": 1 / 21, "queries": 2}
    replicate = {"variant": "het", "seed": 0, "counts": counts}
    replicate["methods"] = {"less-ckpts": method(40.0, "2 of 4 checkpoint passes timed"), "tfidf": method(1.0)}
    page = markdown(summarize([replicate]), [replicate])
    assert "| 40.0* |" in page and "| 1.0 |" in page
    assert "less-ckpts scoring seconds: 2 of 4 checkpoint passes timed." in page
    assert "Distillation coverage" not in page  # replicates built before the count existed: no line
    counts["benign_tasks"] = {"pool": 9, "train_pool": 7, "pool_pairs_of_untrained_tasks": 3}
    page = markdown(summarize([replicate]), [replicate])
    assert "Distillation coverage, seed 0: 7 of the pool's 9 benign tasks; 3 pool pairs of a task it never saw." in page
    assert "| tfidf | 0.500 | 0: 0.500 |" in page  # one seed: no spread shown
    other = {**replicate, "seed": 3, "methods": {"tfidf": {**method(1.0), "auprc": 0.8}}}
    summary = summarize([replicate, other])
    assert summary["het"]["tfidf"]["auprc_std"] == pytest.approx(np.std([0.5, 0.8], ddof=1))
    assert summary["het"]["less-ckpts"]["auprc_std"] is None
    page = markdown(summary, [replicate, other])
    assert "| tfidf | 0.650 ± 0.212 | 0: 0.500, 3: 0.800 |" in page
    assert page.startswith("AUPRC (mean ± sd): the sample sd (ddof 1) over the seeds that scored the method")
