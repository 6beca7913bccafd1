"""Which decoder layer should the default encoder read? Design 5 of the transfer issue, layer by layer.

The default `distill` reads the labelling decoder's last-layer states (after its final norm), averaged over
the response tokens, and fits a ridge from them to each text's gradient coordinates. A forward pass through
the first L of the decoder's blocks costs about L / N of the whole pass, so an earlier layer that predicts the
coordinates as well would make scoring a pool sample several times cheaper. This script measures it:

1. ``--features``: one pass of the decoder over the all-pairs samples, exactly as `distill` reads them
   (`subspace_encoder` on the labels' decoder, the labels' text view, response pooling), keeping every
   block's output passed through the decoder's final norm (what a decoder cut after block L returns as its
   last hidden state) averaged over the response tokens. Written in chunks, so a killed pass resumes.
2. The sweep: for each layer, the transfer benchmark's design-5 ridge (k and ridge by task-grouped
   cross-validation on the training rows) under its `task`, `random` and `source` protocols, plus the
   default path's fixed k = 256, ridge = 1,000, beside the layer's share of the decoder's block FLOPs.

    python benchmarks/decoder_layers.py --labels /work/runs/transfer/labels --features
    python benchmarks/decoder_layers.py --labels /work/runs/transfer/labels --out benchmarks/results/decoder_layers
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from influcoder.data.formats import load_file  # noqa: E402
from influcoder.data.records import Sample  # noqa: E402
from transfer import (  # noqa: E402
    RESCORE_SHARES,
    Subspace,
    choose_k_and_ridge,
    load_square_labels,
    log_lengths,
    report,
    rescore_recall,
    ridge_fit,
    ridge_predict,
    split,
)

STATES = "decoder-layer-states"
CHUNK = 256
DEFAULT_K, DEFAULT_RIDGE = 256, 1000.0
SOURCES = ("evals", "bbh", "bbh-cot", "harmful-pairs", "refusals")


def labels_features(labels: Path) -> dict:
    from influcoder.labels.labels_dir import LabelsDir

    return LabelsDir(labels).record().features or {}


def layer_encoder(labels: Path):
    """The encoder `distill` builds by default on these labels (frozen decoder, response pooling)."""
    from influcoder.encoder.settings import DistillSettings
    from influcoder.encoder.subspace import subspace_encoder

    settings = DistillSettings(objective="subspace").resolved(labels_features(labels))
    return subspace_encoder(settings.encoder, 1, pooling=settings.pooling, max_length=settings.max_length,
                            text_view=settings.text_view).eval()  # fmt: skip


def layer_states(encoder, items: list[Sample], encoded: dict | None = None, pooling: str = "response") -> np.ndarray:
    """(n_layers, n, hidden): each block's output through the final norm, pooled as `distill --pooling` pools
    (default: averaged over response tokens; ``mean+response``: twice as wide); `encoded`: the items' token lists
    as `encoder.tokenize_unpadded` gives them, or cut (prompt_window.py)."""
    import torch

    from influcoder.encoder.pooling import pool_hidden

    backbone = encoder.backbone
    captured: list[torch.Tensor] = []
    hooks = [layer.register_forward_hook(lambda _m, _i, out: captured.append(out[0] if isinstance(out, tuple)
                                                                            else out))  # fmt: skip
             for layer in backbone.layers]  # fmt: skip
    encoded = encoded or encoder.tokenize_unpadded(items)
    width = backbone.config.hidden_size * (2 if pooling == "mean+response" else 1)
    out = np.empty((len(backbone.layers), len(items), width), dtype=np.float32)
    order = sorted(range(len(items)), key=lambda i: -len(encoded["input_ids"][i]))
    try:
        for start in range(0, len(order), 16):
            index = order[start : start + 16]
            batch = encoder.pad(encoded, index)
            captured.clear()
            with torch.no_grad():
                backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                for layer, hidden in enumerate(captured):
                    normed = backbone.norm(hidden)
                    pooled = pool_hidden(normed, batch["attention_mask"], pooling, batch["response_mask"], None)
                    out[layer, index] = pooled.float().numpy()
    finally:
        for hook in hooks:
            hook.remove()
    return out


def compute_features(labels: Path) -> None:
    """Every layer's pooled states of the all-pairs samples, chunk by chunk (a killed pass resumes)."""
    import torch
    from tqdm import tqdm

    samples = load_file(labels.parent / "samples.jsonl")
    chunks = labels.parent / f"{STATES}-chunks"
    chunks.mkdir(exist_ok=True)
    encoder = layer_encoder(labels)
    torch.set_num_threads(2)
    for start in tqdm(range(0, len(samples), CHUNK), desc="layer states", unit="chunk"):
        path = chunks / f"{start:06d}.npy"
        if path.exists():
            continue
        began = time.perf_counter()
        states = layer_states(encoder, samples[start : start + CHUNK])
        np.save(path.with_suffix(".tmp.npy"), states)
        path.with_suffix(".tmp.npy").replace(path)
        print(f"chunk {start}: {time.perf_counter() - began:.0f} s", flush=True)
    parts = [np.load(chunks / f"{s:06d}.npy") for s in range(0, len(samples), CHUNK)]
    np.save(labels.parent / f"{STATES}.npy", np.concatenate(parts, axis=1))


def kernel_predict(X_train: np.ndarray, targets: np.ndarray, X_pool: np.ndarray) -> np.ndarray:
    """`distill`'s default head on these features: kernel ridge regression with every training row a landmark
    (`influcoder.encoder.heads.kernel_head`, its gamma and penalty), on states standardised by the training rows."""
    from influcoder.encoder.heads import gaussian_kernel, kernel_weights, standardisation
    from influcoder.encoder.settings import KERNEL_GAMMA, KERNEL_RIDGE

    mu, sd = standardisation(X_train)
    A, B = (X_train - mu) / sd, (X_pool - mu) / sd
    mean = targets.mean(0)
    return gaussian_kernel(B, A, KERNEL_GAMMA) @ kernel_weights(A, A, targets - mean, KERNEL_GAMMA, KERNEL_RIDGE) + mean


def sweep(labels: Path, layers: list[int], seeds: list[int], protocols: list[str], cv: bool,
          kernel: bool = False) -> dict:  # fmt: skip
    """{layer: {variant: {protocol: [one report per split]}}}; each split's subspace is computed once and
    shared by every layer (the eigendecomposition of the training block dominates a fixed-k ridge)."""
    S, samples = load_square_labels(labels)
    states = np.load(labels.parent / f"{STATES}.npy", mmap_mode="r")
    features = {layer: np.hstack([np.asarray(states[layer - 1], dtype=np.float64), log_lengths(samples)])
                for layer in layers}  # fmt: skip
    keys = []
    for protocol in protocols:
        keys += [(protocol, s, None) for s in seeds] if protocol != "source" else [("source", 0, s) for s in SOURCES]
    results: dict = {}
    for protocol, seed, source in keys:
        rows = split(samples, protocol, seed, source)
        train, pool, queries = rows["train"], rows["pool"], rows["queries"]
        truth = S[np.ix_(pool, queries)].astype(np.float64)
        shared = Subspace(S, train, DEFAULT_K)
        target, query_c = shared.coordinates(train, DEFAULT_K), shared.coordinates(queries, DEFAULT_K)
        for layer, X in features.items():
            began = time.perf_counter()
            pred = ridge_predict(ridge_fit(X[train], target, DEFAULT_RIDGE), X[pool]) @ query_c.T
            runs = {"linear" if kernel else "default": (pred, time.perf_counter() - began)}
            if kernel:
                began = time.perf_counter()
                runs["kernel"] = (kernel_predict(X[train], target, X[pool]) @ query_c.T, time.perf_counter() - began)
            if cv:
                began = time.perf_counter()
                k, lam = choose_k_and_ridge(S, X, samples, train, seed=seed)[:2]
                sub = Subspace(S, train, k)
                pred = ridge_predict(ridge_fit(X[train], sub.coordinates(train, k), lam), X[pool])
                runs["cv"] = (pred @ sub.coordinates(queries, k).T, time.perf_counter() - began)
            for variant, (pred, seconds) in runs.items():
                recall = {f"{share:.0%}": rescore_recall(pred, truth, max(10, int(np.ceil(share * len(pool)))))
                          for share in RESCORE_SHARES}  # fmt: skip
                row = report(pred, truth) | {"seconds": round(seconds, 1), "rescore_recall@10": recall}
                row |= {"source": source} if source else {"seed": seed}
                results.setdefault(f"{layer}", {}).setdefault(variant, {}).setdefault(protocol, []).append(row)
            print(f"{protocol} {seed if source is None else source} layer {layer}: " + ", ".join(
                f"{v} {results[f'{layer}'][v][protocol][-1]['per_anchor']:.3f}" for v in runs), flush=True)  # fmt: skip
    return results


def summary(results: dict, n_layers: int) -> dict:
    table = {}
    for layer, variants in results.items():
        for variant, protocols in variants.items():
            for protocol, rows in protocols.items():
                values = {m: [r[m] for r in rows] for m in ("per_anchor", "mean_aggregated", "query_specific")}
                table.setdefault(layer, {}).setdefault(variant, {})[protocol] = {
                    m: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
                    for m, v in values.items()
                } | {"rescore_recall@10": {share: float(np.mean([r["rescore_recall@10"][share] for r in rows]))
                                           for share in rows[0]["rescore_recall@10"]}}  # fmt: skip
        table[layer]["block_share"] = int(layer) / n_layers
    return table


def markdown(record: dict) -> str:
    protocols = record["protocols"]
    lines = [f"# Design 5 by decoder layer ({record['model']}, {record['n_layers']} blocks)", "",
             f"command: `{record['command']}`", "",
             "Per-anchor rho, mean (sd) over seeds (`source`: over the five held-out sources); " + (
                 f"`linear` = k {DEFAULT_K}, ridge {DEFAULT_RIDGE:g} (`distill --subspace-head linear`), `kernel` = "
                 f"k {DEFAULT_K}, `distill`'s default kernel head on the same states."
                 if "kernel" in record["variants"] else f"`default` = k {DEFAULT_K}, ridge {DEFAULT_RIDGE:g} as "
                 "`distill` fits it, `cv` = k and ridge cross-validated."),
             "", "| layer | share of the blocks | " + " | ".join(f"{v} {p}" for v in record["variants"]
                                                           for p in protocols) + " |",  # fmt: skip
             "|---|---|" + "---|" * (len(protocols) * len(record["variants"]))]  # fmt: skip
    for layer, row in record["summary"].items():
        cells = [f"{row[v][p]['per_anchor']['mean']:.3f} ({row[v][p]['per_anchor']['sd']:.3f})"
                 for v in record["variants"] for p in protocols]  # fmt: skip
        lines.append(f"| {layer} | {row['block_share']:.2f} | " + " | ".join(cells) + " |")
    variant = record["variants"][-1]  # default, or kernel
    first = next(iter(record["summary"].values()))[variant]
    if "rescore_recall@10" in first.get("task", {}):  # records written before recall was measured have none
        shares = list(first["task"]["rescore_recall@10"])
        lines += ["", f"Unseen tasks (`task`, `{variant}`): recall of the labels' top 10 when the layer's top K (a "
                  "share of the held-out pool) are rescored by exact gradients, mean over seeds.", "",
                  f"| {'layer' if variant == 'default' else 'layer, kernel head'} | "
                  + " | ".join(f"rescore {share}" for share in shares) + " |",
                  "|---|" + "---|" * len(shares)]  # fmt: skip
        for layer, row in record["summary"].items():
            recall = row[variant]["task"]["rescore_recall@10"]
            lines.append(f"| {layer} | " + " | ".join(f"{recall[share]:.3f}" for share in shares) + " |")
    return "\n".join(lines) + "\n"


def torch_version() -> str:
    import torch

    return torch.__version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, required=True, help="the all-pairs transfer labels directory")
    parser.add_argument("--features", action="store_true", help="compute (or resume) the layer states only")
    parser.add_argument("--out", type=Path, help="directory for decoder_layers.{json,md}")
    parser.add_argument("--layers", type=int, nargs="+", help="1-based block indices (default: every block)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--protocols", nargs="+", default=["task", "random", "source"])
    parser.add_argument("--cv", action="store_true", help="also cross-validate k and ridge per layer (slow)")
    parser.add_argument("--kernel", action="store_true", help="also distill's kernel head (variants: linear, kernel)")
    args = parser.parse_args(argv)
    if args.features:
        compute_features(args.labels)
        return 0
    if args.out is None:
        parser.error("--out is required unless --features")
    n_layers = int(np.load(args.labels.parent / f"{STATES}.npy", mmap_mode="r").shape[0])
    layers = args.layers or list(range(1, n_layers + 1))
    results = sweep(args.labels, layers, args.seeds, args.protocols, args.cv, args.kernel)
    record = {
        "command": "python benchmarks/decoder_layers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": labels_features(args.labels)["model"], "n_layers": n_layers,
        "protocols": args.protocols,
        "variants": (["cv"] if args.cv else []) + (["linear", "kernel"] if args.kernel else ["default"]),
        "machine": {"platform": platform.platform(), "torch": torch_version()},
        "summary": summary(results, n_layers), "runs": results,
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decoder_layers.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    (args.out / "decoder_layers.md").write_text(markdown(record), encoding="utf-8")
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
