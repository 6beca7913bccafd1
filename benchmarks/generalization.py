"""Label budgets spent on coverage: which pool samples to label so that the distilled encoder transfers to
tasks it never saw (the generalization issue), measured on labels that already exist.

A real user labels only what `influcoder select` chose; here every candidate is already labelled (the ranking
experiment's 1,500 evals x 300 bbh labels), so choosing a subset and distilling on it alone simulates labelling
just that subset exactly: the other candidates' labels are never read by training. Per seed:

1. hold out whole tasks, as the `task` protocol does (`split_labels_by_group`, the same split as the ranking
   experiment's `task` run of that seed): the **unseen** evaluation (pool tasks and query tasks never trained on);
2. of the remaining, hold out random pool samples and queries: the **seen** evaluation (tasks of the training
   split: every task is a candidate, but a selection that labels few tasks, e.g. ``concentrated``, leaves most
   of them unlabelled, so for it "seen" is partly unseen; the ``continued`` step restricts to labelled tasks);
3. what is left are the candidates. Each selection spends the same pool budget on them:
   - ``concentrated``: whole tasks in a seeded order until the budget is spent (a few tasks labelled deeply,
     as the demo did);
   - ``random``: a seeded random draw (about as many tasks as there are, few samples each);
   - ``kmeans`` / ``farthest``: `influcoder.encoder.selection` in the untrained encoder's space;
4. distil on the chosen pool x all training queries (same settings for every selection), then score the
   unseen and seen evaluations: per-anchor and query-specific Spearman, against the untrained encoder and
   pool-mean (query-agnostic, needs the gradients of every evaluated pool sample);
5. the out-of-coverage flag: AUROC of low query coverage for per-anchor rho < 0.3, over the seen and unseen
   queries together (the question a user asks: does the flag point at the queries the encoder fails on?);
6. continued distillation (``continued``, after ``concentrated``): `--init` from the ``concentrated`` encoder
   (tasks A), trained on as many samples of the *next* tasks in the same seeded order (tasks B, disjoint from
   A); fidelity on the seen evaluation's samples of tasks A before and after says what it forgot, on tasks B
   what it learned.

Every distillation resumes (`Distiller.fit` with `out`), evaluations are kept per run (`runs/NAME.json`), so a
stopped experiment continues where it stopped. Writes results.json and results.md into --out:

    python benchmarks/generalization.py --labels runs/rank/labels --out runs/generalization --seeds 0 1 2 \\
        --budget 400 --epochs 4 --lr 1e-4
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from influcoder.core.atomic import write_json_atomic
from influcoder.data.records import sample_groups
from influcoder.encoder.length_prior import LengthPrior
from influcoder.encoder.prior_fit import fit_length_prior
from influcoder.encoder.run_record import DistillRun
from influcoder.encoder.settings import DistillSettings
from influcoder.evaluation.baselines.base import EvaluationData
from influcoder.metrics import auroc

SELECTIONS = ("concentrated", "random", "kmeans", "farthest")
CONTINUED = "continued"
LOW_RHO = 0.3


def concentrated(groups: list[str], budget: int, seed: int, skip: int = 0) -> np.ndarray:
    """Whole groups in a seeded order until `budget` samples are taken (the last group cut to fit); `skip`
    passes over that many samples' worth of groups first (the next tasks in the same order)."""
    names = sorted(set(groups))
    order = np.random.default_rng([seed, 31]).permutation(len(names))
    if skip:
        taken = np.cumsum([groups.count(names[k]) for k in order])
        order = order[int(np.searchsorted(taken, skip, side="left")) + 1 :]
    chosen: list[int] = []
    for k in order:
        chosen += [i for i, g in enumerate(groups) if g == names[k]][: budget - len(chosen)]
        if len(chosen) >= budget:
            break
    return np.sort(np.array(chosen, dtype=np.int64))


def splits(pool, queries, seed: int, unseen: tuple[int, int], seen: tuple[int, int], group_field: str) -> dict:
    """Row/column indices of the unseen evaluation, the seen evaluation and the candidates / training queries."""
    from influcoder.encoder.splits import split_labels_by_group

    train_p, unseen_p, train_q, unseen_q = split_labels_by_group(
        sample_groups(pool, group_field), sample_groups(queries, group_field), *unseen, seed
    )
    rng = np.random.default_rng([seed, 4049])
    seen_p = np.sort(rng.choice(train_p, size=seen[0], replace=False))
    seen_q = np.sort(rng.choice(train_q, size=seen[1], replace=False))
    return {
        "unseen_pool": unseen_p,
        "unseen_queries": unseen_q,
        "seen_pool": seen_p,
        "seen_queries": seen_q,
        "candidates": np.setdiff1d(train_p, seen_p),
        "train_queries": np.setdiff1d(train_q, seen_q),
    }


def choose(method: str, candidates: np.ndarray, pool, groups: list[str], budget: int, seed: int, untrained):
    """Rows of the pool to distil on: `budget` of the candidates chosen by `method`."""
    from influcoder.encoder.selection import select_indices

    if method == "concentrated":
        local = concentrated([groups[i] for i in candidates], budget, seed)
    else:
        embeddings = None
        if method != "random":
            embeddings = untrained.encode([pool[i] for i in candidates])
        local = select_indices(len(candidates), budget, method, embeddings, seed)
    return candidates[local]


def evaluate_run(encoder_dir: Path, scores, pool, queries, parts: dict, chosen: np.ndarray, untrained) -> dict:
    """Spearman figures of the distilled encoder, the untrained one and pool-mean on both evaluations, and the
    coverage flag's AUROC over both evaluations' queries."""
    from influcoder.encoder.coverage import CoverageReference, query_spread
    from influcoder.encoder.model import InfluenceEncoder
    from influcoder.evaluation.baselines.reference import PoolMean
    from influcoder.evaluation.baselines.text import Distilled, Semantic
    from influcoder.evaluation.evaluate import evaluate_scorers

    distilled = DistillRun(encoder_dir)
    encoder = InfluenceEncoder.from_pretrained(distilled.best)
    trained_on = distilled.record()
    out: dict = {}
    coverage, spreads, rhos = [], [], []
    reference = CoverageReference.load(distilled.best)
    for kind in ("unseen", "seen"):
        data = EvaluationData(
            scores, pool, queries, chosen, parts[f"{kind}_pool"], parts["train_queries"], parts[f"{kind}_queries"]
        )
        scorers = {"influcoder": Distilled(encoder), "untrained": Semantic(untrained), "pool-mean": PoolMean()}
        reports = evaluate_scorers(scorers, data, trained_on=trained_on)
        out[kind] = {
            name: {
                "per_anchor": r["per_anchor_mean"],
                "query_specific": r["query_specific_mean"],
                "mean_aggregated": r["mean_aggregated"],
            }
            for name, r in reports.items()
        }
        evaluated_pool, evaluated = data.eval_samples()
        embedded = encoder.encode(evaluated)
        coverage += list(reference.score(embedded))
        spreads += list(query_spread(embedded, encoder.encode(evaluated_pool)))
        rhos += [np.nan if x is None else x for x in reports["influcoder"]["per_anchor"]]
    rho, coverage, spreads = np.array(rhos, dtype=np.float64), np.array(coverage), np.array(spreads)
    known = ~np.isnan(rho)
    n_unseen = len(parts["unseen_queries"])
    out["coverage"] = {
        "auroc_low_rho": auroc(-coverage[known], rho[known] < LOW_RHO),
        "auroc_low_rho_spread": auroc(-spreads[known], rho[known] < LOW_RHO),
        "n_low_rho": int((rho[known] < LOW_RHO).sum()),
        "n_queries": int(known.sum()),
        "covered_unseen": float(reference.covered(coverage[:n_unseen]).mean()),
        "covered_seen": float(reference.covered(coverage[n_unseen:]).mean()),
    }
    return out


def distill_run(
    out: Path, scores, pool, queries, chosen, train_queries, settings: DistillSettings, init: Path | None = None
) -> None:
    """Distil on the chosen rows x training queries into `out` (resumes; from the encoder at `init` when
    given), then save its coverage reference."""
    from influcoder.encoder.coverage import CoverageReference, write_coverage_reference
    from influcoder.encoder.distill import Distiller
    from influcoder.encoder.model import InfluenceEncoder

    distiller = Distiller(settings, encoder=InfluenceEncoder.from_pretrained(init) if init else None)
    distiller.fit(
        scores[np.ix_(chosen, train_queries)],
        [pool[i] for i in chosen],
        [queries[j] for j in train_queries],
        out=out,
        progress=False,
    )
    if CoverageReference.load(DistillRun(out).best) is None:
        write_coverage_reference(out, [*pool, *queries])


def add_spread(run: dict, run_dir: Path, scores, pool, queries, parts: dict) -> bool:
    """Add the spread flag's AUROC (low spread of a query's predicted influence over the evaluated pool, for
    per-anchor rho < 0.3, over both evaluations' queries) to a run measured before it was; True when added."""
    from influcoder.encoder.coverage import query_spread
    from influcoder.encoder.model import InfluenceEncoder
    from influcoder.metrics import per_anchor_spearman

    if "auroc_low_rho_spread" in run["coverage"]:
        return False
    encoder = InfluenceEncoder.from_pretrained(DistillRun(run_dir).best)
    rho, spreads = [], []
    for kind in ("unseen", "seen"):
        rows, cols = parts[f"{kind}_pool"], parts[f"{kind}_queries"]
        pool_vectors = encoder.encode_pool([pool[i] for i in rows])
        query_vectors = encoder.encode_queries([queries[j] for j in cols])
        rho += list(per_anchor_spearman(pool_vectors @ query_vectors.T, scores[np.ix_(rows, cols)]))
        spreads += list(query_spread(query_vectors[:, : encoder.dim], pool_vectors[:, : encoder.dim]))
    rho, spreads = np.array(rho, dtype=np.float64), np.array(spreads)
    known = ~np.isnan(rho)
    run["coverage"]["auroc_low_rho_spread"] = auroc(-spreads[known], rho[known] < LOW_RHO)
    return True


def chosen_rows(run_dir: Path, pool) -> np.ndarray:
    """Pool rows a finished run distilled on (its training and validation ids)."""
    record = DistillRun(run_dir).record()
    row = {s.id: i for i, s in enumerate(pool)}
    return np.sort(np.array([row[i] for i in record.train_pool_ids + record.val_pool_ids], dtype=np.int64))


def add_lengths(run: dict, scores, pool, queries, parts: dict, chosen: np.ndarray) -> bool:
    """Add the `lengths` reference (pool offset predicted from length features, fitted on the chosen rows and
    training queries: what the same label budget buys without an encoder) to a run's figures when missing; it
    needs no model, so finished runs get it on the next report. True when something was added."""
    from influcoder.evaluation.baselines.reference import LengthOffset
    from influcoder.evaluation.evaluate import evaluate_scorers

    added = False
    for kind in ("unseen", "seen"):
        if "lengths" in run[kind]:
            continue
        data = EvaluationData(
            scores, pool, queries, chosen, parts[f"{kind}_pool"], parts["train_queries"], parts[f"{kind}_queries"]
        )
        r = evaluate_scorers({"lengths": LengthOffset()}, data)["lengths"]
        run[kind]["lengths"] = {
            "per_anchor": r["per_anchor_mean"],
            "query_specific": r["query_specific_mean"],
            "mean_aggregated": r["mean_aggregated"],
        }
        added = True
    return added


def fidelity_on(encoder_dir: Path, scores, pool, queries, rows: np.ndarray, cols: np.ndarray) -> dict:
    """Per-anchor and query-specific rho of one encoder on pool `rows` x query `cols`."""
    from influcoder.encoder.model import InfluenceEncoder
    from influcoder.metrics import spearman_report

    encoder = InfluenceEncoder.from_pretrained(DistillRun(encoder_dir).best)
    predicted = encoder.encode([pool[i] for i in rows]) @ encoder.encode([queries[j] for j in cols]).T
    report = spearman_report(predicted, scores[np.ix_(rows, cols)])
    return {"per_anchor": report.per_anchor_mean, "query_specific": report.query_specific_mean, "n_pool": len(rows)}


def forgetting(out: Path, first_dir: Path, scores, pool, queries, parts: dict, groups: list[str], first, new) -> dict:
    """Fidelity of the first encoder (``concentrated``, in `first_dir`) and of the continued one (`out`) on the
    seen evaluation's pool samples of the first run's tasks (A) and of the new tasks (B)."""
    tasks_a, tasks_b = {groups[i] for i in first}, {groups[i] for i in new}
    seen = parts["seen_pool"]
    result = {}
    for name, tasks in (("tasks_a", tasks_a), ("tasks_b", tasks_b)):
        rows = np.array([i for i in seen if groups[i] in tasks], dtype=np.int64)
        if len(rows) < 3:
            continue
        result[name] = {
            when: fidelity_on(directory, scores, pool, queries, rows, parts["seen_queries"])
            for when, directory in (("before", first_dir), ("after", out))
        }
    return result


def summarize(runs: dict[str, dict]) -> dict:
    """Mean and standard deviation over seeds, per selection, evaluation and method."""
    table: dict = {}
    for name, run in runs.items():
        selection = name.rsplit("-s", 1)[0]
        for kind in ("unseen", "seen"):
            for method, figures in run[kind].items():
                for metric, value in figures.items():
                    table.setdefault(selection, {}).setdefault(kind, {}).setdefault(method, {}).setdefault(
                        metric, []
                    ).append(value)
        table[selection].setdefault("coverage_auroc", []).append(run["coverage"]["auroc_low_rho"])
        table[selection].setdefault("spread_auroc", []).append(run["coverage"].get("auroc_low_rho_spread"))
        table[selection].setdefault("seconds", []).append(run["seconds"])
        table[selection].setdefault("n_groups", []).append(run["n_groups"])
    return table


def fmt(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def markdown(table: dict, command: str, n_runs: int) -> str:
    lines = [
        "| selection | tasks labelled | unseen per-anchor ρ | unseen query-specific ρ | seen per-anchor ρ "
        "| seen query-specific ρ | coverage flag AUROC (ρ < 0.3) | spread flag AUROC | distil s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    references = {}
    for selection, row in table.items():
        u, s = row["unseen"]["influcoder"], row["seen"]["influcoder"]
        lines.append(
            f"| {selection} | {int(np.median(row['n_groups']))} | {fmt(u['per_anchor'])} "
            f"| {fmt(u['query_specific'])} | {fmt(s['per_anchor'])} | {fmt(s['query_specific'])} "
            f"| {fmt(row['coverage_auroc'])} | {fmt(row['spread_auroc'])} | {np.median(row['seconds']):.0f} |"
        )
        references = {m: (row["unseen"][m], row["seen"][m]) for m in ("untrained", "pool-mean")}
        if "lengths" in row["unseen"]:
            lines.append(
                f"| {selection}: *lengths only* | - | {fmt(row['unseen']['lengths']['per_anchor'])} | - "
                f"| {fmt(row['seen']['lengths']['per_anchor'])} | - | - | - | - |"
            )
    for method, (u, s) in references.items():
        lines.append(
            f"| *{method}* | - | {fmt(u['per_anchor'])} | {fmt(u['query_specific'])} | {fmt(s['per_anchor'])} "
            f"| {fmt(s['query_specific'])} | - | - | - |"
        )
    head = f"{n_runs} runs; mean ± sample sd (ddof 1) over seeds.\n\n"
    return head + "\n".join(lines) + f"\n\nCommand: `{command}`\n"


def forgetting_table(runs: dict[str, dict]) -> str:
    """Per-anchor rho on the seen evaluation's samples of tasks A (first run) and B (continued run), before and
    after continued distillation, mean over seeds, per variant (e.g. with replay)."""
    variants: dict[str, list[dict]] = {}
    for name, run in runs.items():
        if run.get("forgetting"):
            variants.setdefault(name.rsplit("-s", 1)[0], []).append(run["forgetting"])
    if not variants:
        return ""
    lines = [
        "| run | seeds | pool tasks | before (first encoder) | after (continued) | change |",
        "|---|---|---|---|---|---|",
    ]
    for variant, found in variants.items():
        for part, label in (("tasks_a", "A: first run's (forgetting)"), ("tasks_b", "B: new (learning)")):
            pairs = [(f[part]["before"]["per_anchor"], f[part]["after"]["per_anchor"]) for f in found if part in f]
            if pairs:
                before, after = np.mean([p[0] for p in pairs]), np.mean([p[1] for p in pairs])
                lines.append(
                    f"| {variant} | {len(pairs)} | {label} | {before:.3f} | {after:.3f} | {after - before:+.3f} |"
                )
    return "\nContinued distillation (per-anchor rho on seen-evaluation samples):\n\n" + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--selections", nargs="+", choices=[*SELECTIONS, CONTINUED], default=[*SELECTIONS, CONTINUED])
    parser.add_argument("--budget", type=int, default=400, help="pool samples distilled on per run")
    parser.add_argument("--unseen", nargs=2, type=int, default=[100, 40], help="pool, queries of held-out tasks")
    parser.add_argument("--seen", nargs=2, type=int, default=[100, 30], help="pool, queries of training tasks")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--pearson-center", default="none", choices=["none", "query"])
    parser.add_argument("--group-field", default="task")
    parser.add_argument(
        "--val-group", default=None, help="distil with whole groups of this field held out for validation"
    )
    parser.add_argument(
        "--length-prior",
        action="store_true",
        help="fit the encoder's length prior after distilling (distill --length-prior)",
    )
    parser.add_argument(
        "--reuse",
        metavar="TAG",
        help="start each run from a copy of the finished run of this tag (e.g. '' or "
        "'+taskval'), same selection and seed: with --length-prior, measures the prior without training again",
    )
    parser.add_argument("--tag", default="", help="suffix of the run names for a variant of the settings: '+taskval'")
    parser.add_argument(
        "--replay", type=float, default=0.0, help="continued: also train on this share of the first run's samples"
    )
    parser.add_argument("--report-only", action="store_true", help="summarize the finished runs, run nothing")
    args = parser.parse_args()
    from influcoder.encoder.model import InfluenceEncoder
    from influcoder.labels.labelling import load_labels

    matrix, pool, queries, _ = load_labels(args.labels)
    scores = np.asarray(matrix.scores)
    groups = sample_groups(pool, args.group_field)
    settings = DistillSettings(
        epochs=args.epochs,
        lr=args.lr,
        pearson_center=args.pearson_center,
        val_group=args.val_group,
        objective="influcoder",
    )
    untrained = InfluenceEncoder.from_backbone(settings.encoder)
    runs_dir = args.out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict] = {}
    for seed in args.seeds:
        parts = splits(pool, queries, seed, tuple(args.unseen), tuple(args.seen), args.group_field)
        for selection in args.selections:
            name = f"{selection}{args.tag}-s{seed}"
            path = runs_dir / f"{name}.json"
            if path.exists():
                runs[name] = json.loads(path.read_text(encoding="utf-8"))
                chosen = chosen_rows(args.out / name, pool)
                added = add_lengths(runs[name], scores, pool, queries, parts, chosen)
                if add_spread(runs[name], args.out / name, scores, pool, queries, parts) or added:
                    write_json_atomic(path, runs[name])
                continue
            if args.report_only:
                continue
            init = None
            if selection == CONTINUED:  # tasks B: the next tasks of the concentrated order, from its encoder
                first = choose("concentrated", parts["candidates"], pool, groups, args.budget, seed, untrained)
                local = concentrated([groups[i] for i in parts["candidates"]], args.budget, seed, skip=args.budget)
                new = parts["candidates"][local]
                replayed = np.random.default_rng([seed, 5]).choice(first, int(round(args.replay * len(first))), False)
                chosen = np.union1d(new, replayed)  # rehearsal: a share of tasks A trained on again
                first_dir = args.out / f"concentrated{args.tag}-s{seed}"
                first_dir = first_dir if first_dir.exists() else args.out / f"concentrated-s{seed}"
                init = DistillRun(first_dir).best
                if not init.exists():
                    sys.exit(f"{name} starts from {init}: run the concentrated selection first")
            else:
                chosen = choose(selection, parts["candidates"], pool, groups, args.budget, seed, untrained)
            print(f"{name}: {len(chosen)} pool samples of {len({groups[i] for i in chosen})} tasks", flush=True)
            started = time.perf_counter()
            run_settings = replace(settings, seed=seed)
            source = args.out / f"{selection}{args.reuse}-s{seed}"
            if args.reuse is not None and not (args.out / name).exists():
                if not DistillRun(source).has_record():
                    sys.exit(f"{name} reuses {source}: run it first")
                shutil.copytree(source, args.out / name)
            distill_run(args.out / name, scores, pool, queries, chosen, parts["train_queries"], run_settings, init)
            if args.length_prior and LengthPrior.load(DistillRun(args.out / name).best) is None:
                rows, cols = chosen, parts["train_queries"]
                fit_length_prior(
                    args.out / name, scores[np.ix_(rows, cols)], [pool[i] for i in rows], [queries[j] for j in cols]
                )
            seconds = time.perf_counter() - started
            run = evaluate_run(args.out / name, scores, pool, queries, parts, chosen, untrained)
            add_lengths(run, scores, pool, queries, parts, chosen)
            if selection == CONTINUED:
                run["forgetting"] = forgetting(
                    args.out / name, first_dir, scores, pool, queries, parts, groups, first, new
                )
            run.update(seconds=seconds, n_groups=len({groups[i] for i in chosen}), n_chosen=len(chosen), seed=seed)
            write_json_atomic(path, run)
            runs[name] = run
            print(f"  unseen per-anchor {run['unseen']['influcoder']['per_anchor']:.3f}", flush=True)
    command = shlex.join(["python", "benchmarks/generalization.py", *sys.argv[1:]])
    for path in sorted(runs_dir.glob("*.json")):  # the report covers every variant run so far, not just this one
        if path.stem in runs:
            continue
        run = runs[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        parts = splits(pool, queries, run["seed"], tuple(args.unseen), tuple(args.seen), args.group_field)
        added = add_lengths(run, scores, pool, queries, parts, chosen_rows(args.out / path.stem, pool))
        if add_spread(run, args.out / path.stem, scores, pool, queries, parts) or added:
            write_json_atomic(path, run)
    table = summarize(runs)
    write_json_atomic(args.out / "results.json", {"command": command, "runs": runs, "summary": table})
    text = markdown(table, command, len(runs)) + forgetting_table(runs)
    (args.out / "results.md").write_text(text, encoding="utf-8")
    print((args.out / "results.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
