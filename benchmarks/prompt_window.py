"""Reading less of each text: the decoder's pass over a window of the prompt (transfer issue, scoring target).

A pass through the decoder costs about blocks x tokens. The prompt holds five sixths of the tokens of the
transfer labels' texts, and reading fewer blocks alone (decoder_layers.py) did not reach the scoring target
(>= 20x cheaper than an exact gradient at >= 0.60 per-anchor rho on unseen tasks). This measures the other
factor: each text cut to its first few tokens (the chat template's opening, where the model's attention
rests), the last P tokens of its prompt, and its whole response, read by the first blocks of the labels'
decoder exactly as `distill` reads a text; `distill`'s kernel head fitted on the states of the blocks kept, on
the training texts of `distill`'s own `task` runs (their training.json and eval_split.json), scored on their
held-out pool and queries; the states pooled as `distill --pooling response` and `mean+response` pool them.
Optionally with lexical features beside the states (TF-IDF of the training texts, reduced by a truncated SVD):
nearly free to compute, they carry some of what the cut prompt loses.

Cost is estimated, not timed: the committed 20-block ratio (benchmarks/results/scoring_cost_kernel) scaled by
blocks x mean tokens, the model its own cut figures follow within a few percent (the record shows them).

    python benchmarks/prompt_window.py --labels /work/runs/transfer/labels --features
    python benchmarks/prompt_window.py --labels /work/runs/transfer/labels \\
        --runs /work/runs/transfer/k4-task-{0,1,2} --out benchmarks/results/prompt_window
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from decoder_layers import DEFAULT_K, kernel_predict, layer_encoder, layer_states  # noqa: E402
from influcoder.core.atomic import write_json_atomic, write_text_atomic  # noqa: E402
from influcoder.data.formats import load_file  # noqa: E402
from transfer import Subspace, load_square_labels, log_lengths, report  # noqa: E402

WINDOWS = (None, 64, 32, 16)
"""Prompt tokens kept (the last ones, nearest the response); None: the whole text."""
POOLINGS = ("response", "mean+response")
SINK = 4
"""Leading tokens always kept: the chat template's opening, on which a decoder's attention rests."""
BLOCKS = (4, 6, 8, 10, 12)
LEXICAL_DIMS = 128
COST = "benchmarks/results/scoring_cost_kernel/scoring_cost.json"


def cut_prompt(encoded: dict[str, list], window: int | None, sink: int = SINK) -> dict[str, list]:
    """Each text's tokens without its prompt's middle: the first `sink`, the last `window` before the first
    response token, and every token from there on (None: unchanged)."""
    if window is None:
        return encoded
    out: dict[str, list] = {"input_ids": [], "attention_mask": [], "response_mask": []}
    for ids, mask in zip(encoded["input_ids"], encoded["response_mask"]):
        start = mask.index(1) if 1 in mask else len(mask)
        lead = min(sink, start)
        keep = list(range(lead)) + list(range(max(lead, start - window), len(ids)))
        out["input_ids"].append([ids[i] for i in keep])
        out["response_mask"].append([mask[i] for i in keep])
        out["attention_mask"].append([1] * len(keep))
    return out


def name(window: int | None) -> str:
    return "full" if window is None else str(window)


def states_path(labels: Path, window: int | None) -> Path:
    """Blocks 1..max(BLOCKS), mean+response pooled: the mean over every token, then over the response's."""
    return labels.parent / f"decoder-window-{name(window)}-mean+response.npy"


def compute_features(labels: Path) -> dict[str, float]:
    """Blocks 1..max(BLOCKS) of every all-pairs text under each window (one pass each, both poolings); the
    mean token count per window."""
    import torch

    from influcoder.data.models import keep_blocks

    samples = load_file(labels.parent / "samples.jsonl")
    encoder = layer_encoder(labels)
    keep_blocks(encoder.backbone, max(BLOCKS))
    torch.set_num_threads(2)
    encoded = encoder.tokenize_unpadded(samples)
    tokens = {}
    for window in WINDOWS:
        cut = cut_prompt(encoded, window)
        tokens[name(window)] = float(np.mean([len(ids) for ids in cut["input_ids"]]))
        if not states_path(labels, window).exists():
            print(f"window {name(window)}: {tokens[name(window)]:.1f} tokens per text", flush=True)
            np.save(states_path(labels, window), layer_states(encoder, samples, cut, "mean+response"))
    write_json_atomic(labels.parent / "decoder-window-tokens.json", tokens)
    return tokens


def lexical(samples, train: np.ndarray) -> np.ndarray:
    """TF-IDF of each text (fitted on the training texts only), reduced to LEXICAL_DIMS by a truncated SVD."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [f"{s.prompt}\n{s.response}" for s in samples]
    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2).fit([texts[i] for i in train])
    svd = TruncatedSVD(LEXICAL_DIMS, random_state=0).fit(vectorizer.transform([texts[i] for i in train]))
    return svd.transform(vectorizer.transform(texts))


def run_split(run: Path, ids: dict[str, int]) -> dict[str, np.ndarray]:
    """Rows of a `distill` run's training texts and held-out pool and queries."""
    training = json.loads((run / "training.json").read_text(encoding="utf-8"))
    held = json.loads((run / "eval_split.json").read_text(encoding="utf-8"))
    return {"train": np.array(sorted(ids[i] for i in training["train_pool_ids"])),
            "pool": np.array([ids[i] for i in held["pool_ids"]]),
            "queries": np.array([ids[i] for i in held["query_ids"]])}  # fmt: skip


def sweep(labels: Path, runs: list[Path]) -> list[dict]:
    S, samples = load_square_labels(labels)
    ids = {s.id: n for n, s in enumerate(samples)}
    lengths = log_lengths(samples)
    reads = {name(w): np.load(states_path(labels, w), mmap_mode="r") for w in WINDOWS}
    rows = []
    for run in runs:
        split = run_split(run, ids)
        train, pool, queries = split["train"], split["pool"], split["queries"]
        truth = S[np.ix_(pool, queries)].astype(np.float64)
        sub = Subspace(S, train, DEFAULT_K)
        target, query_c = sub.coordinates(train, DEFAULT_K), sub.coordinates(queries, DEFAULT_K)
        words = lexical(samples, train)
        for window, states in reads.items():
            half = states.shape[2] // 2  # mean, then response
            for block, pooling in ((b, p) for b in BLOCKS for p in POOLINGS):
                pooled = states[block - 1, :, half:] if pooling == "response" else states[block - 1]
                X = np.hstack([np.asarray(pooled, dtype=np.float64), lengths])
                for lex in (False, True):
                    Z = np.hstack([X, words]) if lex else X
                    scores = kernel_predict(Z[train], target, Z[pool]) @ query_c.T
                    rows.append({"run": run.name, "window": window, "block": block, "pooling": pooling,
                                 "lexical": lex, **report(scores, truth)})  # fmt: skip
                print(json.dumps(rows[-2]), json.dumps(rows[-1]), flush=True)
    return rows


def summary(rows: list[dict], tokens: dict[str, float], ratio_20: float) -> list[dict]:
    """Mean and sd over the runs of each window, block, pooling and feature set, with its estimated cost."""
    out = []
    for key in ((w, b, p, x) for w in map(name, WINDOWS) for b in BLOCKS for p in POOLINGS for x in (False, True)):
        window, block, pooling, lex = key
        mine = [r for r in rows if (r["window"], r["block"], r["pooling"], r["lexical"]) == key]
        cost = ratio_20 * (20 * tokens["full"]) / (block * tokens[window])
        out.append({"window": window, "block": block, "pooling": pooling, "lexical": lex, "runs": len(mine),
                    "tokens": tokens[window], "gradient_over_input (estimated)": cost,
                    **{m: {"mean": float(np.mean([r[m] for r in mine])),
                           "sd": float(np.std([r[m] for r in mine], ddof=1))}
                       for m in ("per_anchor", "query_specific", "mean_aggregated")}})  # fmt: skip
    return out


def markdown(record: dict) -> str:
    def cell(window: str, block: int, pooling: str, lex: bool) -> str:
        row = next(r for r in record["summary"] if (r["window"], r["block"], r["pooling"], r["lexical"]) ==
                   (window, block, pooling, lex))  # fmt: skip
        return f"{row['per_anchor']['mean']:.3f} ({row['per_anchor']['sd']:.3f})"

    lines = ["# Reading a window of the prompt (unseen tasks, kernel head)", "", f"command: `{record['command']}`", "",
             f"Per-anchor rho, mean (sd) over `distill`'s {record['summary'][0]['runs']} `task` runs; the prompt cut "
             f"to its first {SINK} and last N tokens; `+ lexical`: TF-IDF SVD {LEXICAL_DIMS} beside the states. "
             "Cost: exact gradient / input, estimated from the 20-block ratio by blocks x tokens.", "",
             "| prompt window, block | tokens | exact gradient / input (est.) | response | + lexical | mean+response "
             "| + lexical |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in record["summary"]:
        if row["lexical"] or row["pooling"] != POOLINGS[0]:
            continue
        key = (row["window"], row["block"])
        cells = [cell(*key, pooling, lex) for pooling in POOLINGS for lex in (False, True)]
        lines.append(f"| {row['window']}, {row['block']} | {row['tokens']:.0f} | "
                     f"{row['gradient_over_input (estimated)']:.1f} | " + " | ".join(cells) + " |")  # fmt: skip
    lines += [
        "",
        "The cost model against the timed cuts (full text):",
        "",
        "| cut, blocks | timed | blocks x tokens from 20 blocks |",
        "|---|---|---|",
    ]
    for blocks, (timed, model) in record["cost_model_check"].items():
        lines.append(f"| {blocks} | {timed:.1f} | {model:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, required=True, help="the all-pairs transfer labels directory")
    parser.add_argument("--features", action="store_true", help="compute the windowed states only")
    parser.add_argument("--runs", type=Path, nargs="+", help="distill run directories (task protocol)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.features:
        compute_features(args.labels)
        return 0
    if not args.runs or args.out is None:
        parser.error("--runs and --out are required unless --features")
    tokens = json.loads((args.labels.parent / "decoder-window-tokens.json").read_text(encoding="utf-8"))
    timed = json.loads((Path(__file__).resolve().parents[1] / COST).read_text(encoding="utf-8"))["gradient_over_input"]
    ratio_20 = timed["decoder, 20 blocks (float32)"]
    check = {str(b): (timed[f"decoder, {b} blocks (float32)"], ratio_20 * 20 / b) for b in (6, 4, 3, 2)}
    rows = sweep(args.labels, args.runs)
    record = {"command": "python benchmarks/prompt_window.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "sink": SINK, "lexical_dims": LEXICAL_DIMS, "tokens": tokens, "cost_record": COST,
              "cost_model_check": check, "summary": summary(rows, tokens, ratio_20), "rows": rows}  # fmt: skip
    print(write(args.out, record))
    return 0


def write(out: Path, record: dict) -> str:
    """prompt_window.json and its markdown into `out`; the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "prompt_window.json", record)
    text = markdown(record)
    write_text_atomic(out / "prompt_window.md", text)
    return text


if __name__ == "__main__":
    raise SystemExit(main())
