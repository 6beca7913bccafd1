"""The evaluation report: every method's figures over seeds and protocols, as JSON, markdown and one HTML page.

A run is one evaluated split (one distilled encoder: one protocol, one seed) with a row per method, as
`evaluate_scorers` makes them. Runs of the same protocol are aggregated: mean and spread over seeds of the
Spearman figures (the spread says how much of a gap between two methods is the draw of the split), median
of the wall time. The HTML page opens offline: its figures are PNGs embedded as base64, its text inline.
"""

from __future__ import annotations

import base64
import html
import io
import platform
from pathlib import Path

import numpy as np

from influcoder.core.atomic import write_json_atomic, write_text_atomic
from influcoder.core.errors import InflucoderError
from influcoder.core.jsonfile import read_json
from influcoder.encoder.run_record import TrainingRecord
from influcoder.evaluation.baselines.base import EvaluationData
from influcoder.evaluation.baselines.text import sample_text

METRICS = ("per_anchor_mean", "mean_aggregated", "query_specific_mean")
PROTOCOL_COLOURS = {"task": "tab:blue", "random": "tab:orange"}  # the same in every figure
PROTOCOL_MEANING = {"random": "seen tasks (held-out samples of training tasks)", "task": "unseen tasks"}


def summarize(runs: list[dict]) -> dict[str, dict[str, dict]]:
    """{protocol: {method: figures}}: each Spearman figure's mean and standard deviation over the runs (seeds)."""
    grouped: dict[str, dict[str, list[dict]]] = {}
    for run in runs:
        for method, row in run["rows"].items():
            grouped.setdefault(run.get("protocol") or "unrecorded", {}).setdefault(method, []).append(row)
    summary: dict[str, dict[str, dict]] = {}
    for protocol, methods in grouped.items():
        for method, rows in methods.items():
            entry: dict = {"n_runs": len(rows), "n_pool": rows[0]["n_pool"], "n_queries": rows[0]["n_queries"]}
            for metric in METRICS:
                values = np.array([r[metric] for r in rows], dtype=np.float64)
                entry[metric] = float(values.mean())
                entry[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            entry["ms_per_sample"] = float(np.median([r["encode_ms_per_sample"] for r in rows]))
            entry["bytes_per_sample"] = rows[0].get("bytes_per_sample")
            flops = [r["flops_per_sample"] for r in rows if r.get("flops_per_sample") is not None]
            entry["flops_per_sample"] = float(np.median(flops)) if flops else None
            entry["preconditioner"] = rows[0].get("preconditioner")
            entry["per_anchor"] = [x for r in rows for x in r.get("per_anchor", []) if x is not None]
            summary.setdefault(protocol, {})[method] = entry
    for protocol in summary:
        flags = [r["coverage"] for r in runs if (r.get("protocol") or "unrecorded") == protocol and r.get("coverage")]
        aurocs = [f["auroc_low_rho"] for f in flags if f["auroc_low_rho"] is not None]
        spread_aurocs = [f["auroc_low_rho_spread"] for f in flags if f.get("auroc_low_rho_spread") is not None]
        if flags and "distilled" in summary[protocol]:
            summary[protocol]["distilled"]["coverage_flag"] = {
                "auroc_low_rho": float(np.mean(aurocs)) if aurocs else None,
                "auroc_low_rho_spread": float(np.mean(spread_aurocs)) if spread_aurocs else None,
                "runs_with_both_classes": len(aurocs),
                "share_queries_covered": float(np.mean([f["share_queries_covered"] for f in flags])),
                "n_low_rho": int(sum(f["n_low_rho"] for f in flags)),
                "n_queries": int(sum(f["n_queries"] for f in flags)),
            }
    return summary


def markdown_tables(summary: dict[str, dict[str, dict]]) -> str:
    """One table per protocol, methods in the order they were evaluated."""
    out = []
    for protocol, methods in summary.items():
        first = next(iter(methods.values()))
        out.append(
            f"### protocol `{protocol}`: {PROTOCOL_MEANING.get(protocol, 'no recorded protocol')} - "
            f"{first['n_pool']} pool x {first['n_queries']} queries, {first['n_runs']} run(s)\n"
        )
        out.append(
            "| method | per-anchor rho | mean-aggregated rho | query-specific rho | ms/sample | GFLOP/sample "
            "| bytes/sample |"
        )
        out.append("|---|---|---|---|---|---|---|")
        for method, e in methods.items():
            cells = [f"{e[m]:.3f} +- {e[m + '_std']:.3f}" for m in METRICS]
            gflop = "-" if e["flops_per_sample"] is None else f"{e['flops_per_sample'] / 1e9:.3g}"
            stored = "-" if e["bytes_per_sample"] is None else f"{e['bytes_per_sample']:,.0f}"
            out.append(f"| {method} | {' | '.join(cells)} | {e['ms_per_sample']:.1f} | {gflop} | {stored} |")
        flag = methods.get("distilled", {}).get("coverage_flag")
        if flag:
            area = "undefined (one class)" if flag["auroc_low_rho"] is None else f"{flag['auroc_low_rho']:.3f}"
            out.append(
                f"\nout-of-coverage flag: {flag['share_queries_covered']:.0%} of the evaluated queries covered; "
                f"AUROC of low coverage for per-anchor rho < {LOW_RHO}: {area} ({flag['n_low_rho']} of "
                f"{flag['n_queries']} queries below, {flag['runs_with_both_classes']} run(s) with both classes)"
            )
            if flag.get("auroc_low_rho_spread") is not None:
                out.append(
                    f"AUROC of low spread (the query's scores over the pool): {flag['auroc_low_rho_spread']:.3f}"
                )
        out.append("")
    out.append("rho: Spearman against the gradient labels, mean +- standard deviation over runs (seeds).")
    return "\n".join(out)


def top_examples(data: EvaluationData, predictions: dict[str, np.ndarray], n_queries: int = 3, k: int = 5) -> list:
    """For the first `n_queries` evaluated queries: the ground truth's top-k pool samples and each method's."""
    pool, queries = data.eval_samples()
    truth = data.eval_truth()
    k = min(k, len(pool))
    examples = []
    for j in range(min(n_queries, len(queries))):
        ranked = {"ground truth": np.argsort(-truth[:, j], kind="stable")[:k]}
        ranked |= {name: np.argsort(-pred[:, j], kind="stable")[:k] for name, pred in predictions.items()}
        examples.append(
            {
                "query": {"id": queries[j].id, "text": sample_text(queries[j])[:300]},
                "top": {name: [pool[i].id for i in rows] for name, rows in ranked.items()},
                "texts": {pool[i].id: sample_text(pool[i])[:160] for rows in ranked.values() for i in rows},
            }
        )
    return examples


LOW_RHO = 0.3


def coverage_flag_report(encoder, encoder_dir, data: EvaluationData, record: TrainingRecord | None, per_anchor: list,
                         scored: tuple[np.ndarray, np.ndarray] | None = None) -> dict | None:  # fmt: skip
    """How well the out-of-coverage flag predicts where the encoder fails: AUROC of low query coverage for
    per-anchor rho < 0.3 on the evaluated queries. The reference is the encoder's saved one, or rebuilt from
    its training record (an encoder distilled before references were saved); None without either. `scored`:
    the (pool, query) vectors the encoder was evaluated with (`EncoderScorer.scored`), read as `attribute`
    reads them (a subspace encoder's queries by their exact coordinates); None: both sides encoded here."""
    from influcoder.encoder.coverage import CoverageReference, build_reference, query_spread
    from influcoder.metrics import auroc

    reference = CoverageReference.load(encoder_dir)
    if reference is None and record is not None and record.ids("train", "pool"):
        by_id = {s.id: s for s in [*data.pool, *data.queries]}
        train = [by_id[i] for i in record.ids("train", "pool") + record.ids("train", "query") if i in by_id]
        validation = [by_id[i] for i in record.ids("val", "pool") + record.ids("val", "query") if i in by_id]
        reference = build_reference(encoder, train, validation)
    if reference is None:
        return None
    if scored is None:
        pool, queries = data.eval_samples()
        scored = encoder.encode(pool), encoder.encode(queries)
    pool_vectors, embedded = (vectors[:, : encoder.dim] for vectors in scored)  # a length prior's column aside
    scores = reference.score(embedded)
    spreads = query_spread(embedded, pool_vectors)
    rho = np.array([np.nan if x is None else x for x in per_anchor], dtype=np.float64)
    known = ~np.isnan(rho)
    low = rho[known] < LOW_RHO
    return {
        "low_rho": LOW_RHO,
        "auroc_low_rho": auroc(-scores[known], low),
        "auroc_low_rho_spread": auroc(-spreads[known], low),
        "n_queries": int(known.sum()),
        "n_low_rho": int(low.sum()),
        "share_queries_covered": float(reference.covered(scores).mean()),
        "share_queries_confident": float(reference.confident(spreads).mean()),
        "threshold": reference.threshold,
        "query_coverage": [float(x) for x in scores],
        "query_spread": [float(x) for x in spreads],
    }


def pooled_coverage_flag(runs: list[dict]) -> dict | None:
    """The flag's AUROC over the queries of every run at once: with runs of both protocols this is the test
    that matters, whether coverage separates the queries an encoder fails on (mostly unseen tasks) from the
    rest. None when no run measured coverage or one class is empty."""
    from influcoder.metrics import auroc

    scores, spreads, low = [], [], []
    for run in runs:
        flag = run.get("coverage")
        if not flag:
            continue
        rho = run["rows"]["distilled"]["per_anchor"]
        spread = flag.get("query_spread", [np.nan] * len(rho))  # runs evaluated before spreads were measured
        for score, value, width in zip(flag["query_coverage"], rho, spread):
            if value is not None:
                scores.append(score)
                spreads.append(width)
                low.append(value < LOW_RHO)
    area = auroc(-np.array(scores), np.array(low)) if scores else None
    if area is None:
        return None
    measured = ~np.isnan(np.array(spreads, dtype=np.float64))
    spread_area = auroc(-np.array(spreads)[measured], np.array(low)[measured]) if measured.all() else None
    return {
        "auroc_low_rho": area,
        "auroc_low_rho_spread": spread_area,
        "n_queries": len(low),
        "n_low_rho": int(sum(low)),
        "low_rho": LOW_RHO,
    }


def figure_png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def figures(summary: dict[str, dict[str, dict]], runs: list[dict] | None = None) -> dict[str, str]:
    """Base64 PNGs: rho vs ms/sample (the paper's Fig. 2), per-anchor distributions, seen vs unseen bars, and
    the distilled encoder's per-task bars when the runs grouped their queries (`evaluate --by`)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InflucoderError('the HTML report needs matplotlib: pip install "influcoder[eval]"') from None

    def png(fig) -> str:
        try:
            return figure_png(fig)
        finally:
            plt.close(fig)

    out = {
        "tradeoff": png(_tradeoff_figure(plt, summary)),
        "distributions": png(_distribution_figure(plt, summary)),
        "protocols": png(_protocol_figure(plt, summary)),
    }
    tasks = per_task_means(runs or [], "distilled")
    if tasks:
        out["tasks"] = png(_task_figure(plt, tasks))
    return out


def _tradeoff_figure(plt, summary: dict[str, dict[str, dict]]):
    """Per-anchor Spearman against ms per sample, one marker per protocol (the paper's Fig. 2)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for marker, (protocol, methods) in zip("os^D", summary.items()):
        timed = {n: e for n, e in methods.items() if e["ms_per_sample"] >= 0.01}  # pool-mean reads stored labels
        xs = [e["ms_per_sample"] for e in timed.values()]
        ys = [e["per_anchor_mean"] for e in timed.values()]
        colour = PROTOCOL_COLOURS.get(protocol, "tab:gray")
        ax.scatter(xs, ys, marker=marker, color=colour, label=f"{protocol}: {PROTOCOL_MEANING.get(protocol, '')}")
        for name, x, y in zip(timed, xs, ys):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=8)
    ax.set(xscale="log", xlabel="ms per sample (log)", ylabel="per-anchor Spearman vs gradients")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _distribution_figure(plt, summary: dict[str, dict[str, dict]]):
    """Each method's per-anchor Spearman distribution, a panel per protocol."""
    fig, axes = plt.subplots(1, len(summary), figsize=(6 * len(summary), 4.5), squeeze=False)
    for ax, (protocol, methods) in zip(axes[0], summary.items()):
        ax.boxplot([e["per_anchor"] or [np.nan] for e in methods.values()], tick_labels=list(methods))
        ax.set(title=f"per-anchor Spearman, protocol {protocol}", ylabel="Spearman per query")
        ax.tick_params(axis="x", rotation=45)
        ax.grid(alpha=0.3)
    return fig


def _protocol_figure(plt, summary: dict[str, dict[str, dict]]):
    """Each method's mean per-anchor Spearman (sd over seeds) side by side per protocol: seen vs unseen."""
    methods = list(dict.fromkeys(m for per in summary.values() for m in per))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(methods)), 4.5))
    width = 0.8 / max(1, len(summary))
    for i, (protocol, per) in enumerate(summary.items()):
        means = [per[m]["per_anchor_mean"] if m in per else np.nan for m in methods]
        spread = [per[m]["per_anchor_mean_std"] if m in per else 0.0 for m in methods]
        colour = PROTOCOL_COLOURS.get(protocol, "tab:gray")
        ax.bar(np.arange(len(methods)) + i * width, means, width, yerr=spread, label=protocol, color=colour)
    ax.set_xticks(np.arange(len(methods)) + width * (len(summary) - 1) / 2, methods, rotation=45)
    ax.set(ylabel="per-anchor Spearman (mean over seeds)", title="seen (random) vs unseen (task) tasks")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return fig


def _task_figure(plt, tasks: list[tuple[str, str, float]]):
    """The distilled encoder's per-anchor Spearman per query task (`per_task_means`), coloured by protocol."""
    fig, ax = plt.subplots(figsize=(8, max(3, 0.22 * len(tasks))))
    labels = [f"{group} ({protocol})" for protocol, group, _ in tasks]
    colours = [PROTOCOL_COLOURS.get(protocol, "tab:gray") for protocol, _, _ in tasks]
    ax.barh(np.arange(len(tasks)), [v for _, _, v in tasks], color=colours)
    ax.set_yticks(np.arange(len(tasks)), labels, fontsize=7)
    ax.set(xlabel="per-anchor Spearman of the distilled encoder", title="per query task: seen (blue), unseen (orange)")
    ax.grid(alpha=0.3, axis="x")
    return fig


def per_task_means(runs: list[dict], method: str) -> list[tuple[str, str, float]]:
    """(protocol, query group, mean per-anchor rho over runs) for `method`, weakest first."""
    values: dict[tuple[str, str], list[float]] = {}
    for run in runs:
        for group, entry in run["rows"].get(method, {}).get("per_group", {}).items():
            values.setdefault((run.get("protocol") or "unrecorded", group), []).append(entry["per_anchor_mean"])
    return sorted(((p, g, float(np.mean(v))) for (p, g), v in values.items()), key=lambda x: x[2])


def html_table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_page(summary: dict, runs: list[dict], command: str) -> str:
    images = figures(summary, runs)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>influcoder evaluation</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px;vertical-align:top}"
        ".hit{background:#dfd}</style></head><body>",
        "<h1>influcoder evaluation</h1>",
        f"<p>command: <code>{html.escape(command)}</code><br>machine: {html.escape(machine())}</p>",
    ]
    for protocol, methods in summary.items():
        first = next(iter(methods.values()))
        parts.append(
            f"<h2>protocol {html.escape(protocol)}: {html.escape(PROTOCOL_MEANING.get(protocol, ''))}</h2>"
            f"<p>{first['n_pool']} pool x {first['n_queries']} queries per run, {first['n_runs']} run(s); "
            "Spearman mean &plusmn; std over runs</p>"
        )
        rows = []
        for name, e in methods.items():
            gflop = "-" if e["flops_per_sample"] is None else f"{e['flops_per_sample'] / 1e9:.3g}"
            stored = "-" if e["bytes_per_sample"] is None else f"{e['bytes_per_sample']:,.0f}"
            cells = [f"{e[m]:.3f} &plusmn; {e[m + '_std']:.3f}" for m in METRICS]
            rows.append([html.escape(name), *cells, f"{e['ms_per_sample']:.1f}", gflop, stored])
        header = ["method", "per-anchor", "mean-aggregated", "query-specific", "ms/sample", "GFLOP/sample", "bytes"]
        parts.append(html_table(rows, header))
    for key, caption in (
        (
            "tradeoff",
            "Per-anchor Spearman against time per sample (the paper's Fig. 2; pool-mean is left out: it reads "
            "stored labels, and its cost is the gradients of every pool sample)",
        ),
        ("protocols", "Seen tasks (random split) against unseen tasks (task split)"),
        ("distributions", "Per-anchor Spearman per query, all runs pooled"),
        ("tasks", "The distilled encoder per query task, seen and unseen"),
    ):
        if key in images:
            parts.append(f"<h2>{caption}</h2><img alt='{key}' src='data:image/png;base64,{images[key]}'>")
    for run in runs:
        for example in run.get("examples", [])[:3]:
            parts.append(
                f"<h3>query {html.escape(example['query']['id'])} (protocol {html.escape(str(run.get('protocol')))}"
                f", seed {run.get('seed')})</h3><p><code>{html.escape(example['query']['text'])}</code></p>"
            )
            truth = set(example["top"]["ground truth"])
            rows = [
                [html.escape(name)]
                + [
                    f"<span class='{'hit' if i in truth else ''}' title='{html.escape(example['texts'][i])}'>"
                    f"{html.escape(i)}</span>"
                    for i in ids
                ]
                for name, ids in example["top"].items()
            ]
            parts.append(html_table(rows, ["method"] + [f"#{r + 1}" for r in range(len(truth))]))
        break  # the examples of the first run are enough to see what each method retrieves
    parts.append("</body></html>")
    return "\n".join(parts)


def machine() -> str:
    import os

    import torch

    python, cores = platform.python_version(), os.cpu_count()
    return f"{platform.machine()}, {cores} CPU cores, {platform.system()}, Python {python}, torch {torch.__version__}"


def write_report(out_dir: str | Path, runs: list[dict], command: str) -> dict:
    """Write results.json (runs + summary), results.md and report.html into `out_dir`; returns the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(runs)
    pooled = pooled_coverage_flag(runs)
    write_json_atomic(
        out / "results.json",
        {"command": command, "machine": machine(), "summary": summary, "coverage_flag_pooled": pooled, "runs": runs},
    )
    table = markdown_tables(summary)
    if pooled is not None:
        table += (
            f"\n\nout-of-coverage flag over all runs' queries (seen and unseen tasks together): AUROC of low coverage "
            f"for per-anchor rho < {LOW_RHO}: {pooled['auroc_low_rho']:.3f} ({pooled['n_low_rho']} of "
            f"{pooled['n_queries']} queries below)"
        )
        if pooled.get("auroc_low_rho_spread") is not None:
            table += f"; AUROC of low spread: {pooled['auroc_low_rho_spread']:.3f}"
    write_text_atomic(out / "results.md", f"command: `{command}`\n\nmachine: {machine()}\n\n{table}\n")
    write_text_atomic(out / "report.html", html_page(summary, runs, command))
    return summary


def load_runs(path: str | Path) -> list[dict]:
    """The runs of a results.json written by `write_report` (to merge or redraw reports)."""
    return read_json(Path(path))["runs"]
