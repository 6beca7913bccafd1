"""`influcoder distill` and `evaluate` end to end on tiny labels and a tiny encoder backbone."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as settings_hypothesis
from hypothesis import strategies as st

from influcoder.cli.main import main
from influcoder.core.errors import InflucoderError
from influcoder.encoder.model import InfluenceEncoder
from influcoder.encoder.splits import (
    split_all_pairs,
    split_from_file,
    split_labels,
    split_labels_by_group,
    validation_split,
)
from influcoder.labels.labelling import label
from influcoder.labels.settings import LabelSettings
from influcoder.metrics import auroc

from .test_labels import samples


def test_split_labels_is_disjoint_and_seeded():
    tp, ep, tq, eq = split_labels(30, 12, 10, 4, seed=1)
    assert set(tp).isdisjoint(ep) and set(tq).isdisjoint(eq)
    assert len(tp) + len(ep) == 30 and len(tq) + len(eq) == 12
    assert all(np.array_equal(a, b) for a, b in zip((tp, ep, tq, eq), split_labels(30, 12, 10, 4, seed=1)))
    with pytest.raises(InflucoderError):
        split_labels(10, 12, 8, 4)


def test_split_from_file_holds_out_exactly_the_listed_ids(tmp_path):
    pool_ids, query_ids = [f"p{i}" for i in range(8)], [f"q{i}" for i in range(5)]
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"pool_ids": ["p6", "p1"], "query_ids": ["q3"]}))
    tp, ep, tq, eq = split_from_file(path, pool_ids, query_ids)
    assert ep.tolist() == [1, 6] and tp.tolist() == [0, 2, 3, 4, 5, 7]
    assert eq.tolist() == [3] and tq.tolist() == [0, 1, 2, 4]
    path.write_text(json.dumps({"pool_ids": ["p1", "zz"], "query_ids": []}))
    with pytest.raises(InflucoderError, match="1 pool ids are not in the labels, e.g. 'zz'"):
        split_from_file(path, pool_ids, query_ids)


def test_distill_then_evaluate_cli(tiny_model_dir, tiny_bert_dir, tmp_path, capsys):
    labels = tmp_path / "labels"
    settings = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=32, max_length=24, shard_size=8)
    queries = samples(10, seed=7, prefix="q")
    for j, query in enumerate(queries):
        query.meta["task"] = "even" if j % 2 == 0 else "odd"
    label(samples(24), queries, labels, settings, progress=False)
    out = tmp_path / "enc"
    assert (
        main(
            [
                "distill",
                "--labels",
                str(labels),
                "--out",
                str(out),
                "--encoder",
                str(tiny_bert_dir),
                "--epochs",
                "2",
                "--max-length",
                "16",
                "--eval-pool",
                "6",
                "--eval-queries",
                "3",
                "--quiet",
                "--lr",
                "1e-3",
            ]
        )
        == 0
    )
    assert "best epoch" in capsys.readouterr().out
    split = json.loads((out / "eval_split.json").read_text())
    training = json.loads((out / "training.json").read_text())
    assert len(split["pool_ids"]) == 6 and len(split["query_ids"]) == 3
    assert set(split["pool_ids"]).isdisjoint(training["train_pool_ids"] + training["val_pool_ids"])
    assert set(split["query_ids"]).isdisjoint(training["train_query_ids"] + training["val_query_ids"])
    encoder = InfluenceEncoder.from_pretrained(out)  # resolves to out/best
    assert encoder.config.label_config["projector"]["dim"] == 32
    assert (
        main(
            [
                "evaluate",
                "--encoder",
                str(out),
                "--labels",
                str(labels),
                "--untrained",
                "--baselines",
                "tfidf",
                "pool-mean",
                "rds+",
                "repsim-response",
                "less",
                "datainf",
                "logra-fisher",
                "--flops",
                "--by",
                "task",
                "--json",
                str(tmp_path / "eval.json"),
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "eval.json").read_text())
    assert list(rows) == [
        "distilled",
        "untrained",
        "tfidf",
        "pool-mean",
        "rds+",
        "repsim-response",
        "less",
        "datainf",
        "logra-fisher",
    ]
    assert rows["repsim-response"]["flops_per_sample"] == rows["rds+"]["flops_per_sample"]  # the same forward pass
    assert rows["less"]["preconditioner"] == "sgd" and rows["datainf"]["preconditioner"] == "datainf"
    assert (
        rows["logra-fisher"]["preconditioner"] == "empirical-fisher"
        and rows["logra-fisher"]["method"] == "logra-fisher"
    )
    assert rows["less"]["flops_per_sample"] > rows["rds+"]["flops_per_sample"] > 0  # a backward pass costs more
    assert rows["distilled"]["flops_per_sample"] > 0 and rows["tfidf"]["flops_per_sample"] is None
    assert rows["distilled"]["n_pool"] == 6 and rows["untrained"]["n_queries"] == 3
    assert all(r["protocol"] == "random" and r["n_pool"] == 6 for r in rows.values())
    assert rows["pool-mean"]["query_specific_mean"] == 0.0
    per_group = rows["distilled"]["per_group"]
    held_tasks = ["even" if int(q[1:]) % 2 == 0 else "odd" for q in split["query_ids"]]
    assert {g: v["n_queries"] for g, v in per_group.items()} == {t: held_tasks.count(t) for t in set(held_tasks)}
    assert "per-anchor rho by query task" in capsys.readouterr().out
    assert main(["evaluate", "--encoder", str(out), "--labels", str(labels), "--by", "nosuchfield"]) == 2
    assert "no meta field 'nosuchfield'" in capsys.readouterr().err
    leak = tmp_path / "leak.json"
    leak.write_text(json.dumps({"pool_ids": training["train_pool_ids"][:3], "query_ids": split["query_ids"]}))
    assert main(["evaluate", "--encoder", str(out), "--labels", str(labels), "--split", str(leak)]) == 2
    assert "used in training" in capsys.readouterr().err

    # a second run holds out exactly the first run's split
    again = tmp_path / "enc2"
    args = ["distill", "--labels", str(labels), "--out", str(again), "--encoder", str(tiny_bert_dir)]
    args += ["--epochs", "1", "--max-length", "16", "--quiet", "--eval-split", str(out / "eval_split.json")]
    assert main(args) == 0
    assert json.loads((again / "eval_split.json").read_text())["pool_ids"] == split["pool_ids"]
    assert main([*args, "--eval-pool", "3"]) == 2
    assert "not both" in capsys.readouterr().err


@settings_hypothesis(max_examples=60, deadline=None)
@given(
    pool=st.lists(st.sampled_from("abcdefg"), min_size=6, max_size=40),
    queries=st.lists(st.sampled_from("uvwxyz"), min_size=4, max_size=30),
    eval_pool=st.integers(1, 8),
    eval_queries=st.integers(1, 6),
    seed=st.integers(0, 5),
)
def test_task_protocol_never_puts_a_group_on_both_sides(pool, queries, eval_pool, eval_queries, seed):
    try:
        tp, ep, tq, eq = split_labels_by_group(pool, queries, eval_pool, eval_queries, seed)
    except InflucoderError as exc:
        assert "leaves too little to train on" in str(exc)
        return
    for groups, train, held, wanted in ((pool, tp, ep, eval_pool), (queries, tq, eq, eval_queries)):
        assert sorted([*train, *held]) == list(range(len(groups)))  # a partition
        assert {groups[i] for i in train}.isdisjoint({groups[i] for i in held})
        assert len(held) >= wanted and len(train) >= 2
    again = split_labels_by_group(pool, queries, eval_pool, eval_queries, seed)
    assert all(np.array_equal(a, b) for a, b in zip((tp, ep, tq, eq), again))


@settings_hypothesis(max_examples=60, deadline=None)
@given(
    groups=st.lists(st.sampled_from("abcdefgh"), min_size=10, max_size=50),
    eval_pool=st.integers(1, 8),
    eval_queries=st.integers(0, 6),
    seed=st.integers(0, 5),
    by_group=st.booleans(),
)
def test_all_pairs_split_never_puts_a_text_on_both_sides(groups, eval_pool, eval_queries, seed, by_group):
    """All-pairs labels: evaluation pool and queries are disjoint texts, training holds none of them on
    either side, and (by group) no held-out group trains on either side."""
    n = len(groups)
    try:
        tp, ep, tq, eq = split_all_pairs(n, eval_pool, eval_queries, seed, groups if by_group else None)
    except InflucoderError as exc:
        assert "too little" in str(exc) or "cannot give" in str(exc)
        return
    assert np.array_equal(tp, tq) and sorted([*tp, *ep, *eq]) == list(range(n))  # one partition of the texts
    assert len(eq) == eval_queries and len(ep) >= eval_pool and len(tp) >= 5
    if by_group:
        assert {groups[i] for i in tp}.isdisjoint({groups[i] for i in (*ep, *eq)})
    else:
        assert len(ep) == eval_pool
    again = split_all_pairs(n, eval_pool, eval_queries, seed, groups if by_group else None)
    assert all(np.array_equal(a, b) for a, b in zip((tp, ep, tq, eq), again))


def test_validation_split_of_the_same_texts_is_disjoint():
    groups = [f"t{i % 9}" for i in range(60)]
    for by_group in (None, (groups, groups)):
        tp, vp, tq, vq = validation_split(60, 60, 0.2, np.random.default_rng(3), by_group, same_texts=True)
        assert np.array_equal(tp, tq) and set(vp).isdisjoint(vq) and set(tp).isdisjoint({*vp, *vq})
        assert len(vp) + len(vq) >= 12
    with pytest.raises(InflucoderError, match="a validation split"):
        validation_split(8, 8, 0.9, np.random.default_rng(0), same_texts=True)


def test_distill_on_all_pairs_labels_holds_out_disjoint_texts(tiny_model_dir, tiny_bert_dir, tmp_path, caplog):
    """The same texts as pool and queries: whatever the protocol, no held-out query is also a held-out pool
    sample (its own label would top its ranking) and, under `task`, no held-out task trains on either side."""
    texts = samples(30, seed=5)
    for i, s in enumerate(texts):
        s.meta["task"] = f"task-{i % 10}"
    settings = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=32, max_length=24, shard_size=8)
    label(texts, texts, tmp_path / "labels", settings, progress=False)
    task = {s.id: s.meta["task"] for s in texts}
    for protocol in ("task", "random"):
        out = tmp_path / protocol
        args = ["distill", "--labels", str(tmp_path / "labels"), "--out", str(out), "--encoder", str(tiny_bert_dir)]
        args += ["--epochs", "1", "--max-length", "16", "--eval-pool", "6", "--eval-queries", "3"]
        assert main([*args, "--eval-protocol", protocol, "--quiet"]) == 0
        split = json.loads((out / "eval_split.json").read_text())
        training = json.loads((out / "training.json").read_text())
        held = {*split["pool_ids"], *split["query_ids"]}
        assert set(split["pool_ids"]).isdisjoint(split["query_ids"]) and len(split["query_ids"]) == 3
        trained = {*training["train_pool_ids"], *training["val_pool_ids"], *training["train_query_ids"],
                   *training["val_query_ids"]}  # fmt: skip
        assert trained.isdisjoint(held) and set(training["val_pool_ids"]).isdisjoint(training["val_query_ids"])
        if protocol == "task":
            assert {task[i] for i in trained}.isdisjoint({task[i] for i in held})
    # a given split: every held-out text stays out of training on both sides; one on both sides is named
    given = tmp_path / "given.json"
    ids = [s.id for s in texts]
    given.write_text(json.dumps({"pool_ids": ids[:6], "query_ids": ids[5:9]}))
    args = ["distill", "--labels", str(tmp_path / "labels"), "--out", str(tmp_path / "given"), "--encoder",
            str(tiny_bert_dir), "--epochs", "1", "--max-length", "16", "--eval-split", str(given)]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="influcoder.encoder.distill"):
        assert main(args) == 0
    assert "holds 1 texts out as both pool samples and queries" in caplog.text
    training = json.loads((tmp_path / "given" / "training.json").read_text())
    trained = {*training["train_pool_ids"], *training["val_pool_ids"], *training["train_query_ids"],
               *training["val_query_ids"]}  # fmt: skip
    assert trained.isdisjoint(ids[:9]) and len(trained) == len(ids) - 9


def test_distill_task_protocol_holds_out_whole_tasks(tiny_model_dir, tiny_bert_dir, tmp_path, capsys):
    labels = tmp_path / "labels"
    pool, queries = samples(24), samples(12, seed=7, prefix="q")
    for i, s in enumerate(pool):
        s.meta["task"] = f"pool-task-{i % 6}"
    for j, q in enumerate(queries):
        q.meta["task"] = f"query-task-{j % 4}"
    settings = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=32, max_length=24, shard_size=8)
    label(pool, queries, labels, settings, progress=False)
    out = tmp_path / "enc"
    args = ["distill", "--labels", str(labels), "--out", str(out), "--encoder", str(tiny_bert_dir), "--epochs", "1"]
    args += ["--max-length", "16", "--eval-pool", "6", "--eval-queries", "3", "--eval-protocol", "task", "--quiet"]
    assert main(args) == 0
    split = json.loads((out / "eval_split.json").read_text())
    training = json.loads((out / "training.json").read_text())
    task = {s.id: s.meta["task"] for s in pool + queries}
    assert split["protocol"] == "task" and split["group_field"] == "task"
    seen = {task[i] for i in training["train_pool_ids"] + training["val_pool_ids"]}
    seen_q = {task[i] for i in training["train_query_ids"] + training["val_query_ids"]}
    assert {task[i] for i in split["pool_ids"]}.isdisjoint(seen) and len(split["pool_ids"]) >= 6
    assert {task[i] for i in split["query_ids"]}.isdisjoint(seen_q) and len(split["query_ids"]) >= 3
    capsys.readouterr()
    assert main(["evaluate", "--encoder", str(out), "--labels", str(labels), "--quiet"]) == 0
    assert "protocol: task, tasks never seen in distillation" in capsys.readouterr().out

    # one report over runs of both protocols: per-protocol tables, mean and spread over the runs, a page
    seen = tmp_path / "enc-random"
    args = ["distill", "--labels", str(labels), "--out", str(seen), "--encoder", str(tiny_bert_dir), "--epochs", "1"]
    assert main([*args, "--max-length", "16", "--eval-pool", "6", "--eval-queries", "3", "--quiet", "--seed", "1"]) == 0
    report = tmp_path / "report"
    evaluate = ["evaluate", "--encoder", str(out), str(seen), str(out), "--labels", str(labels), "--quiet"]
    assert (
        main([*evaluate, "--baselines", "tfidf", "pool-mean", "airrep", "--by", "task", "--report", str(report)]) == 0
    )
    results = json.loads((report / "results.json").read_text())
    assert [r["protocol"] for r in results["runs"]] == ["task", "random", "task"]
    assert [r["seed"] for r in results["runs"]] == [0, 1, 0]
    task_rows = results["summary"]["task"]
    assert list(task_rows) == ["distilled", "tfidf", "pool-mean", "airrep"] and task_rows["distilled"]["n_runs"] == 2
    assert task_rows["tfidf"]["per_anchor_mean_std"] == 0.0  # the same split twice: no spread
    first = results["runs"][0]["rows"]["tfidf"]["per_anchor_mean"]
    assert task_rows["tfidf"]["per_anchor_mean"] == pytest.approx(first)
    assert results["summary"]["random"]["distilled"]["n_runs"] == 1
    example = results["runs"][0]["examples"][0]
    assert len(example["top"]["ground truth"]) == 5 and set(example["top"]) == {"ground truth", *task_rows}
    assert "### protocol `task`: unseen tasks" in (report / "results.md").read_text()
    flag = results["runs"][0]["coverage"]  # distill saved a reference: the flag is evaluated on each run
    assert flag["n_queries"] == len(split["query_ids"]) == len(flag["query_coverage"])
    assert "coverage_flag" in task_rows["distilled"] and "out-of-coverage flag" in (report / "results.md").read_text()
    # all runs' queries at once: None exactly when one class (rho < 0.3 or not) is empty, else every query counted
    pooled = results["coverage_flag_pooled"]
    rhos = [x for r in results["runs"] for x in r["rows"]["distilled"]["per_anchor"] if x is not None]
    both_classes = 0 < sum(x < 0.3 for x in rhos) < len(rhos)
    assert (pooled is not None) == both_classes, (pooled, rhos)
    if pooled is not None:
        assert pooled["n_queries"] == len(rhos) == sum(len(r["coverage"]["query_coverage"]) for r in results["runs"])
        low = np.array([x < 0.3 for x in rhos])
        coverage = np.array([c for r in results["runs"] for c in r["coverage"]["query_coverage"]])
        assert pooled["auroc_low_rho"] == pytest.approx(auroc(-coverage, low))
    page = (report / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # --by task adds the per-task bars
    assert "http" not in page.replace("http-equiv", "")
    assert (report / "config.yaml").exists()


def test_evaluate_refuses_labels_of_other_gradient_features(tiny_model_dir, tiny_bert_dir, tmp_path, capsys):
    pool, queries = samples(16), samples(8, seed=7, prefix="q")
    settings = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=32, max_length=24, shard_size=8)
    label(pool, queries, tmp_path / "a", settings, progress=False)
    other = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=16, max_length=24, shard_size=8)
    label(samples(12, seed=3, prefix="n"), samples(6, seed=9, prefix="m"), tmp_path / "b", other, progress=False)
    out = tmp_path / "enc"
    args = ["distill", "--objective", "influcoder", "--labels", str(tmp_path / "a"), "--out", str(out)]
    args += ["--encoder", str(tiny_bert_dir)]
    assert main([*args, "--epochs", "1", "--max-length", "16", "--quiet"]) == 0
    evaluate = ["evaluate", "--encoder", str(out), "--labels", str(tmp_path / "b"), "--quiet"]
    assert main(evaluate) == 2
    assert "other gradient features" in capsys.readouterr().err
    assert main([*evaluate, "--other-labels"]) == 0  # all of b: the encoder's split belongs to a
    assert "evaluated on all labels" in capsys.readouterr().out


def test_continued_distillation_starts_from_the_given_encoder(
    tiny_model_dir, tiny_bert_dir, tmp_path, capsys, monkeypatch
):
    """--init loads the earlier encoder's weights and architecture (a vanishing learning rate leaves them as they
    were, a fresh backbone would differ); labels of other gradient features and --out over --init are refused.
    The first run asks for --low-memory: the allocator is told before training (its effect: test_memory_budget),
    and for --checkpoint-minutes, which reaches the trainer in seconds, and --activation-checkpointing (their
    effects: test_distill_resume)."""
    import torch

    import influcoder.core.allocator
    from influcoder.encoder.distill import Distiller

    asked: list[int] = []
    monkeypatch.setattr(influcoder.core.allocator, "fix_mmap_threshold", lambda size=1 << 20: asked.append(size))
    real_fit, every, recomputed = Distiller.fit, [], []

    def fit(self, *args, checkpoint_seconds=None, **kwargs):
        every.append(checkpoint_seconds)
        recomputed.append(self.encoder.backbone.is_gradient_checkpointing)
        return real_fit(self, *args, checkpoint_seconds=checkpoint_seconds, **kwargs)

    monkeypatch.setattr(Distiller, "fit", fit)

    settings = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=32, max_length=24, shard_size=8)
    label(samples(16), samples(8, seed=7, prefix="q"), tmp_path / "a", settings, progress=False)
    label(samples(16, seed=5, prefix="n"), samples(8, seed=9, prefix="m"), tmp_path / "b", settings, progress=False)
    first = tmp_path / "first"
    base = ["distill", "--objective", "influcoder", "--encoder", str(tiny_bert_dir), "--epochs", "1"]
    base += ["--max-length", "16", "--quiet"]
    first_args = ["--labels", str(tmp_path / "a"), "--out", str(first), "--pooling", "attention", "--low-memory"]
    assert main([*base, *first_args, "--checkpoint-minutes", "0.5", "--activation-checkpointing"]) == 0
    assert asked == [1 << 20] and "no effect here" in capsys.readouterr().err  # the stand-in reports no glibc
    assert every == [30.0]
    second = tmp_path / "second"
    args = ["distill", "--labels", str(tmp_path / "b"), "--out", str(second), "--init", str(first), "--quiet"]
    assert main([*args, "--epochs", "1", "--lr", "1e-30", "--weight-decay", "0"]) == 0
    assert every == [30.0, 600.0]  # the default: ten minutes
    assert recomputed == [True, False]
    assert main([*args, "--checkpoint-minutes", "-1"]) == 2
    assert "--checkpoint-minutes must be 0 or more, got -1" in capsys.readouterr().err
    before, after = InfluenceEncoder.from_pretrained(first), InfluenceEncoder.from_pretrained(second)
    assert after.config.pooling == "attention" and after.config.max_length == 16  # the init's, not the defaults
    for (name, a), b in zip(before.state_dict().items(), after.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    assert json.loads((second / "training.json").read_text())["settings"]["init"] == str(first)
    other = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=16, max_length=24, shard_size=8)
    label(samples(16, seed=5, prefix="n"), samples(8, seed=9, prefix="m"), tmp_path / "c", other, progress=False)
    assert main(["distill", "--labels", str(tmp_path / "c"), "--out", str(tmp_path / "x"), "--init", str(first)]) == 2
    assert "other gradient features" in capsys.readouterr().err
    assert main(["distill", "--labels", str(tmp_path / "b"), "--out", str(first), "--init", str(first / "best")]) == 2
    assert "would overwrite the encoder --init starts from" in capsys.readouterr().err


def test_overwrite_keeps_a_users_files_and_refuses_a_foreign_training_record(
    tiny_model_dir, tiny_bert_dir, tmp_path, capsys
):
    """`distill --overwrite` replaces the run it wrote, not what a user put beside it: a notes file inside
    best/ survives (named in a warning), and a training.json that influcoder did not write is refused."""
    labels = tmp_path / "labels"
    settings = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=16, max_length=24, shard_size=8)
    label(samples(14), samples(6, seed=7, prefix="q"), labels, settings, progress=False)
    out = tmp_path / "enc"
    args = ["distill", "--labels", str(labels), "--out", str(out), "--encoder", str(tiny_bert_dir),
            "--epochs", "1", "--max-length", "16", "--quiet"]  # fmt: skip
    assert main(args) == 0
    (out / "best" / "notes.txt").write_text("my notes", encoding="utf-8")
    assert main([*args, "--overwrite", "--lr", "1e-3"]) == 0
    assert (out / "best" / "notes.txt").read_text(encoding="utf-8") == "my notes"
    assert json.loads((out / "training.json").read_text())["settings"]["lr"] == 1e-3  # the new run is there
    (out / "training.json").write_text(json.dumps({"my": "experiment log"}), encoding="utf-8")
    capsys.readouterr()
    assert main([*args, "--overwrite"]) == 2
    message = capsys.readouterr().err
    assert "training.json was not written by `influcoder distill`" in message
    # the library's advice names fields; the CLI prints them as this command's flags
    assert "--overwrite replaces only a distillation run: move the file away or pick another --out" in message
    assert json.loads((out / "training.json").read_text()) == {"my": "experiment log"}
