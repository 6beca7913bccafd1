"""The toxicity experiment's report: every replicate's results merged into JSON, markdown and offline HTML.

Per variant and method: AUPRC and average precision (mean +- std over seeds), the share of unsafe samples a
filter removes when it drops the top 1 / 2 / 5% of the pool, scoring seconds and bytes stored per sample;
per replicate: precision-recall curves, the 20 samples each method flags first with their type, and the
refusal rates of the models fine-tuned on the pool before and after filtering.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from influcoder.core.atomic import write_json_atomic, write_text_atomic
from influcoder.core.jsonfile import read_json
from influcoder.evaluation.report import figure_png, html_table, machine
from influcoder.experiments.toxicity import DROP_FRACTIONS, precision_recall_points
from influcoder.experiments.toxicity_archive import replicate_pool_scores, replicate_task
from influcoder.tasks.toxicity import ToxicityTask

TOP = 20


def load_replicates(directories: list[Path]) -> list[dict]:
    """results.json of each replicate directory (full or archived) that has one, with its directory."""
    out = []
    for directory in directories:
        path = directory / "results.json"
        if path.exists():
            out.append({**read_json(path), "directory": str(directory)})
    return out


def summarize(replicates: list[dict]) -> dict[str, dict[str, dict]]:
    """{variant: {method: mean/std of each figure over the replicates that scored it}}."""
    summary: dict[str, dict[str, dict]] = {}
    for variant in sorted({r["variant"] for r in replicates}):
        runs = [r for r in replicates if r["variant"] == variant]
        methods = list(dict.fromkeys(m for r in runs for m in r["methods"]))
        summary[variant] = {}
        for method in methods:
            rows = [r["methods"][method] for r in runs if method in r["methods"]]
            entry: dict = {"n_seeds": len(rows), "seeds": [r["seed"] for r in runs if method in r["methods"]]}
            figures = {
                "auprc": [x["auprc"] for x in rows],
                "average_precision": [x["average_precision"] for x in rows],
                "seconds": [x["seconds"] for x in rows],
                **{f"recall@{f:g}": [x["recall_when_dropping"][f"{f:g}"] for x in rows] for f in DROP_FRACTIONS},
            }
            for key, values in figures.items():  # spread: the sample sd, none from a single seed
                entry[key] = float(np.mean(values))
                entry[key + "_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
            entry["auprc_by_seed"] = figures["auprc"]
            entry["bytes_per_sample"] = rows[0]["bytes_per_sample"]
            entry["description"] = rows[0]["description"]
            entry["preconditioner"] = rows[0].get("preconditioner")
            entry["seconds_notes"] = [x["seconds_note"] for x in rows if x.get("seconds_note")]
            summary[variant][method] = entry
    return summary


SD_NOTE = "AUPRC (mean ± sd): the sample sd (ddof 1) over the seeds that scored the method; none from one seed."


def markdown(summary: dict, replicates: list[dict]) -> str:
    """The report's tables, one per variant, after the note that says which sd they give."""
    lines = [SD_NOTE, ""]
    for variant, methods in summary.items():
        counts = next(r["counts"] for r in replicates if r["variant"] == variant)
        lines += [
            f"### variant {variant}: pool of {sum(counts['pool'].values())} "
            f"({', '.join(f'{v} {k}' for k, v in counts['pool'].items())}; {counts['unsafe_rate']:.2%} unsafe), "
            f"{counts['queries']} unsafe queries",
            "",
            "| method | AUPRC (mean ± sd) | per seed | avg precision | unsafe removed @1% | @2% | @5% | scoring s | "
            "bytes/sample | seeds |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, e in sorted(methods.items(), key=lambda kv: -kv[1]["auprc"]):
            stored = "-" if e["bytes_per_sample"] is None else f"{e['bytes_per_sample']:,.0f}"
            recalls = " | ".join(f"{e[f'recall@{f:g}']:.2f}" for f in DROP_FRACTIONS)
            mark = "*" if e.get("seconds_notes") else ""
            spread = "" if e["auprc_std"] is None else f" ± {e['auprc_std']:.3f}"
            by_seed = ", ".join(f"{seed}: {value:.3f}" for seed, value in zip(e["seeds"], e["auprc_by_seed"]))
            lines.append(
                f"| {name} | {e['auprc']:.3f}{spread} | {by_seed} | {e['average_precision']:.3f} | {recalls} | "
                f"{e['seconds']:.1f}{mark} | {stored} | {e['n_seeds']} |"
            )
        lines.append("")
        for name, e in methods.items():
            for note in e.get("seconds_notes", []):
                lines.append(f"\\* {name} scoring seconds: {note}.")
        for r in (r for r in replicates if r["variant"] == variant and "benign_tasks" in r["counts"]):
            tasks = r["counts"]["benign_tasks"]
            lines.append(
                f"Distillation coverage, seed {r['seed']}: {tasks['train_pool']} of the pool's {tasks['pool']} "
                f"benign tasks; {tasks['pool_pairs_of_untrained_tasks']} pool pairs of a task it never saw."
            )
        for r in (r for r in replicates if r["variant"] == variant and "refusals" in r):
            models = r["refusals"]["models"]
            rates = ", ".join(f"{k} {v['refusal_rate']:.0%}" for k, v in models.items())
            lines.append(
                f"Refusals on {len(models['base']['responses'])} held-out harmful requests, seed {r['seed']}: {rates} "
                f"(filtered: the encoder's top {r['refusals']['drop']:.0%} dropped, "
                f"{r['refusals']['unsafe_dropped']} of {r['counts']['pool']['unsafe']} unsafe among them)."
            )
        lines.append("")
    return "\n".join(lines)


def flagged(replicate: dict, method: str, k: int = TOP, task: ToxicityTask | None = None) -> list[dict]:
    """The `k` pool samples `method` scores highest in a replicate, with their type (`task`: the replicate's,
    when the caller has it already; rebuilding an archived one's takes seconds)."""
    task = task or replicate_task(replicate["directory"])
    scores = replicate_pool_scores(replicate["directory"], method)
    order = np.argsort(-scores, kind="stable")[:k]
    return [
        {
            "id": task.pool[i].id,
            "type": task.pool[i].meta["type"],
            "score": float(scores[i]),
            "prompt": task.pool[i].prompt[:120],
        }
        for i in order
    ]


def curves_png(replicate: dict, task: ToxicityTask | None = None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = replicate["directory"]
    positive = (task or replicate_task(directory)).positives()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for method, row in sorted(replicate["methods"].items(), key=lambda kv: -kv[1]["auprc"]):
        curve = precision_recall_points(replicate_pool_scores(directory, method), positive)
        ax.plot(curve["recall"], curve["precision"], label=f"{method} ({row['auprc']:.3f})", drawstyle="steps-post")
    ax.axhline(positive.mean(), color="grey", linestyle=":", label=f"chance ({positive.mean():.3f})")
    ax.set_xlabel("recall of unsafe samples")
    ax.set_ylabel("precision")
    ax.set_title(f"{replicate['variant']} seed {replicate['seed']}")
    ax.legend(fontsize=8)
    png = figure_png(fig)
    plt.close(fig)
    return png


def html_page(summary: dict, replicates: list[dict], command: str) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>influcoder toxicity filtering</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px;vertical-align:top}.unsafe{background:#fdd}"
        ".safety{background:#ffd}</style></head><body><h1>influcoder toxicity filtering</h1>",
        f"<p>command: <code>{html.escape(command)}</code><br>machine: {html.escape(machine())}</p>",
        "<pre>" + html.escape(markdown(summary, replicates)) + "</pre>",
    ]
    for r in replicates:
        task = replicate_task(r["directory"])
        parts.append(f"<h2>{html.escape(r['variant'])} seed {r['seed']}</h2>")
        parts.append(f"<img alt='precision-recall' src='data:image/png;base64,{curves_png(r, task)}'>")
        for method in [m for m in ("influcoder", "less-ckpts", "less", "gradsim") if m in r["methods"]]:
            rows = [
                f"<tr class='{x['type']}'><td>{n}</td><td>{x['type']}</td><td>{x['score']:+.4f}</td>"
                f"<td>{html.escape(x['id'])}</td><td>{html.escape(x['prompt'])}</td></tr>"
                for n, x in enumerate(flagged(r, method, task=task), 1)
            ]
            parts.append(
                f"<h3>top {TOP} flagged by {method}</h3><table><tr><th>#</th><th>type</th><th>score</th>"
                "<th>id</th><th>prompt</th></tr>" + "".join(rows) + "</table>"
            )
        if "refusals" in r:
            rows = [[html.escape(k), f"{v['refusal_rate']:.0%}"] for k, v in r["refusals"]["models"].items()]
            parts.append("<h3>refusal rate on held-out harmful requests</h3>" + html_table(rows, ["model", "refusals"]))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_toxicity_report(out_dir: str | Path, replicates: list[dict], command: str) -> dict:
    """results.json, results.md and report.html under `out_dir`; returns the summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(replicates)
    write_json_atomic(
        out_dir / "results.json",
        {"command": command, "machine": machine(), "summary": summary, "replicates": replicates},
    )
    write_text_atomic(out_dir / "results.md", f"command: `{command}`\n\n{markdown(summary, replicates)}")
    write_text_atomic(out_dir / "report.html", html_page(summary, replicates, command))
    return summary
