"""Transfer: which design ranks pool samples by gradient influence on tasks (and sources) it never saw?

    python benchmarks/transfer_samples.py --out runs/transfer/samples.jsonl
    influcoder label --pool runs/transfer/samples.jsonl --queries runs/transfer/samples.jsonl \
        --out runs/transfer/labels                                     # all pairs: N gradients, N x N labels
    python benchmarks/transfer.py --labels runs/transfer/labels --out docs/results/transfer.json

Everything here is computed from the all-pairs label matrix S (cosines of normalised, projected LoRA
gradients: S = G G^T with unit rows). The top-k singular directions V of the *training* gradients and any
sample's coordinates on them follow from S alone: with S_train = U diag(s^2) U^T, the coordinates of a sample
x are c(x) = diag(1/s) U^T S[train, x], i.e. V^T g(x). So "the query's exact gradient projected on the
subspace" needs only the query's labels against the training samples, which is what one exact gradient gives.

Protocols (held-out samples are split into disjoint pool and queries, evaluated pool x queries):
- ``task``: 20% of the tasks held out on both sides (unseen tasks);
- ``source``: one whole source held out on both sides (evals, bbh, bbh-cot, harmful-pairs, refusals);
- ``random``: 20% of the samples held out (their tasks are seen in training).

Methods:
- ``tfidf``, ``minilm``: text similarity (TF-IDF; untrained MiniLM-L6 mean-pooled cosine);
- ``lengths``: a query-agnostic pool score, ridge from four length features to the training row means;
- ``pool-mean (oracle)``: the true held-out row means (query-agnostic upper reference, not a method);
- ``subspace-ridge`` (design 2): ridge from frozen MiniLM + length features to a pool sample's coordinates on
  the top-k training directions, scored against the query's exact coordinates; k and the ridge chosen by
  task-grouped cross-validation on the training samples only;
- ``subspace ceiling``: the pool's *exact* coordinates on those k directions (what design 2 could reach);
- ``decoder-ridge`` (design 5, with --decoder-features): the same ridge on the labelling decoder's own
  response-averaged last-layer states (one forward pass, no backward) instead of MiniLM;
- rescore (design 3): recall of the labels' top 10 when a method's top K (a share of the pool) are rescored
  with exact gradients.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from influcoder.data.formats import load_file
from influcoder.data.records import Sample
from influcoder.metrics import mean_aggregated_spearman, per_anchor_spearman, query_specific_per_anchor

K_GRID = (4, 16, 64, 256)
RIDGE_GRID = (1.0, 10.0, 100.0, 1e3, 1e4)
RESCORE_SHARES = (0.02, 0.05, 0.1, 0.2)
"""Shares of the held-out pool rescored exactly (design 3), at least 10 samples."""
MAX_QUERIES = 200


# ----------------------------------------------------------------------------------------------- inputs
def load_square_labels(labels: Path, limit: int | None = None) -> tuple[np.ndarray, list[Sample]]:
    """(S, samples): the all-pairs matrix and the samples in its order. Without a finished matrix (a labelling
    still running), S is computed from the pool store's finished leading shards (`limit` rows at most)."""
    from influcoder.core.store import FeatureStore

    scores = labels / "influence" / "scores.npy"
    if scores.exists():
        pool = load_file(labels / "pool.jsonl")
        S = np.load(scores)
        if S.shape != (len(pool), len(pool)):
            sys.exit(f"{scores}: {S.shape} is not all pairs of the {len(pool)} pool samples")
        return (S[:limit, :limit] if limit else S).astype(np.float32), pool[:limit] if limit else pool
    store = FeatureStore(labels / "pool")
    blocks = []
    for index in range(store.n_shards):
        if not store.shard_path(index).exists() or (limit and sum(map(len, blocks)) >= limit):
            break
        blocks.append(store.read_shard(index).astype(np.float32))
    G = np.concatenate(blocks)[:limit]
    G /= np.linalg.norm(G, axis=1, keepdims=True)
    samples = load_file(labels.parent / "samples.jsonl")[: len(G)]
    return G @ G.T, samples


def log_lengths(samples: list[Sample]) -> np.ndarray:
    """(n, 4): log1p of characters and words of each sample's prompt and response."""
    return np.log1p(np.array(
        [[len(s.prompt), len(s.response), len(s.prompt.split()), len(s.response.split())] for s in samples]
    ))  # fmt: skip


def text_features(samples: list[Sample], backbone: str = "minilm-l6", cache: Path | None = None):
    """(mean-pooled unit embeddings of `backbone`, four log-length features) of every sample; the embeddings
    are kept in `cache` when given (a larger backbone takes minutes)."""
    import torch

    from influcoder.data.models import load_encoder_backbone

    lengths = log_lengths(samples)
    if cache is not None and cache.exists() and len(np.load(cache)) >= len(samples):
        cached_cost(backbone, cache)
        return np.load(cache)[: len(samples)], lengths
    started = time.perf_counter()
    model, tokenizer = load_encoder_backbone(backbone)
    texts = [f"{s.prompt}\n{s.response}" for s in samples]
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), 64):
            batch = tokenizer(texts[start : start + 64], padding=True, truncation=True, max_length=256,
                              return_tensors="pt")  # fmt: skip
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1)
            out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy())
    embeddings = np.concatenate(out)
    FEATURE_COSTS[backbone] = cost_record(embeddings, time.perf_counter() - started)
    if cache is not None:
        np.save(cache, embeddings)
        cache.with_suffix(".cost.json").write_text(json.dumps(FEATURE_COSTS[backbone]) + "\n", encoding="utf-8")
    return embeddings, lengths


FEATURE_COSTS: dict[str, dict] = {}
"""What featurizing a pool sample costs per input (seconds per sample on this machine, floats per sample), from
the run that computed the features (a cached run reads the record kept beside its cache)."""


def cost_record(features: np.ndarray, seconds: float) -> dict:
    return {"seconds_per_sample": round(seconds / len(features), 5), "dim": int(features.shape[1]),
            "n": len(features)}  # fmt: skip


def cached_cost(name: str, cache: Path) -> None:
    record = cache.with_suffix(".cost.json")
    if name not in FEATURE_COSTS and record.exists():
        FEATURE_COSTS[name] = json.loads(record.read_text(encoding="utf-8"))


DECODER_CACHE = "decoder-response-states.npy"


def decoder_features(samples: list[Sample], cache: Path) -> np.ndarray:
    """The labelling decoder's last-layer states averaged over each response (Rep-Sim's response pooling),
    read exactly as the labels read the text; kept in `cache` (one forward pass per sample)."""
    if cache.exists():
        states = np.load(cache)
        if len(states) >= len(samples):  # the whole sample file's states; a --limit run reads its leading rows
            cached_cost("decoder", cache)
            return states[: len(samples)]
    from influcoder.evaluation.baselines.representations import RepSimResponse
    from influcoder.labels.settings import LabelSettings

    started = time.perf_counter()
    states = RepSimResponse(LabelSettings(), progress=True).embed(samples)
    FEATURE_COSTS["decoder"] = cost_record(states, time.perf_counter() - started)
    np.save(cache, states)
    cache.with_suffix(".cost.json").write_text(json.dumps(FEATURE_COSTS["decoder"]) + "\n", encoding="utf-8")
    return states


# ----------------------------------------------------------------------------------------------- splits
def split(samples: list[Sample], protocol: str, seed: int, source: str | None = None) -> dict[str, np.ndarray]:
    """Row indices: train, eval pool, eval queries (disjoint)."""
    rng = np.random.default_rng(seed)
    tasks = np.array([s.meta["task"] for s in samples])
    if protocol == "task":
        names = np.unique(tasks)
        held_tasks = set(rng.choice(names, size=max(2, len(names) // 5), replace=False))
        held = np.array([t in held_tasks for t in tasks])
    elif protocol == "source":
        held = np.array([s.meta["source"] == source for s in samples])
    else:
        held = np.zeros(len(samples), dtype=bool)
        held[rng.choice(len(samples), size=len(samples) // 5, replace=False)] = True
    eval_rows = np.flatnonzero(held)
    rng.shuffle(eval_rows)
    n_queries = min(MAX_QUERIES, max(4, len(eval_rows) // 4))
    return {"train": np.flatnonzero(~held), "queries": np.sort(eval_rows[:n_queries]),
            "pool": np.sort(eval_rows[n_queries:])}  # fmt: skip


# ----------------------------------------------------------------------------------------------- design 2
class Subspace:
    """Top singular directions of the training gradients, known through S: coordinates of any sample."""

    def __init__(self, S: np.ndarray, train: np.ndarray, k_max: int):
        values, vectors = np.linalg.eigh(S[np.ix_(train, train)].astype(np.float64))
        order = np.argsort(values)[::-1][:k_max]
        self.s = np.sqrt(np.clip(values[order], 1e-12, None))
        self.U = vectors[:, order]
        self.train = train
        self.S = S

    def coordinates(self, rows: np.ndarray, k: int) -> np.ndarray:
        """(len(rows), k): V^T g for each row, from its labels against the training samples."""
        return (self.S[np.ix_(rows, self.train)].astype(np.float64) @ self.U[:, :k]) / self.s[:k]


def ridge_fit(X: np.ndarray, Y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mu, sd = X.mean(0), X.std(0) + 1e-8
    Z = (X - mu) / sd
    Zb = np.hstack([Z, np.ones((len(Z), 1))])
    reg = lam * np.eye(Zb.shape[1])
    reg[-1, -1] = 0.0
    W = np.linalg.solve(Zb.T @ Zb + reg, Zb.T @ Y)
    return W, mu, sd


def ridge_predict(model: tuple[np.ndarray, np.ndarray, np.ndarray], X: np.ndarray) -> np.ndarray:
    W, mu, sd = model
    return np.hstack([(X - mu) / sd, np.ones((len(X), 1))]) @ W


def choose_k_and_ridge(S, X, samples, train, folds: int = 4, seed: int = 0) -> tuple[int, float, dict]:
    """k and lambda by task-grouped cross-validation on the training rows only (per-anchor rho of the
    held-out fold's pool against its own queries)."""
    rng = np.random.default_rng(seed)
    tasks = np.array([samples[i].meta["task"] for i in train])
    names = np.unique(tasks)
    fold_of = dict(zip(names, rng.permutation(len(names)) % folds))
    grid = {(k, lam): [] for k in K_GRID for lam in RIDGE_GRID}
    for fold in range(folds):
        inner = train[np.array([fold_of[t] != fold for t in tasks])]
        held = train[np.array([fold_of[t] == fold for t in tasks])]
        rng.shuffle(held)
        queries, pool = held[: min(60, len(held) // 4)], held[min(60, len(held) // 4) :]
        sub = Subspace(S, inner, max(K_GRID))
        truth = S[np.ix_(pool, queries)]
        for k in K_GRID:
            target, query_c = sub.coordinates(inner, k), sub.coordinates(queries, k)
            for lam in RIDGE_GRID:
                pred = ridge_predict(ridge_fit(X[inner], target, lam), X[pool]) @ query_c.T
                grid[(k, lam)].append(float(np.nanmean(per_anchor_spearman(pred, truth))))
    means = {f"k={k} lambda={lam:g}": float(np.mean(v)) for (k, lam), v in grid.items()}
    best = max(grid, key=lambda key: np.mean(grid[key]))
    return best[0], best[1], means


# ----------------------------------------------------------------------------------------------- scoring
def report(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Per-anchor, mean-aggregated (= rho of the row means: how much of the pool offset is recovered) and
    query-specific Spearman."""
    return {
        "per_anchor": float(np.nanmean(per_anchor_spearman(pred, truth))),
        "mean_aggregated": mean_aggregated_spearman(pred, truth),
        "query_specific": float(np.nanmean(query_specific_per_anchor(pred, truth))),
    }


def rescore_recall(pred: np.ndarray, truth: np.ndarray, K: int, top: int = 10) -> float:
    """Mean over queries of |top-`top` of exact scores among `pred`'s top K  intersect  true top-`top`| / top."""
    recalls = []
    for j in range(truth.shape[1]):
        candidates = np.argsort(-pred[:, j], kind="stable")[:K]
        chosen = candidates[np.argsort(-truth[candidates, j], kind="stable")[:top]]
        true_top = np.argsort(-truth[:, j], kind="stable")[:top]
        recalls.append(len(set(chosen) & set(true_top)) / top)
    return float(np.mean(recalls))


def interleaved_ranks(*preds: np.ndarray) -> np.ndarray:
    """One candidate ranking from several methods: their rankings interleaved (first of each, then second of
    each, ...), duplicates kept at their first place; returned as scores (higher = earlier) per query."""
    n, m = preds[0].shape
    out = np.empty((n, m))
    for j in range(m):
        orders = [np.argsort(-p[:, j], kind="stable") for p in preds]
        merged = list(dict.fromkeys(i for row in zip(*orders) for i in row))
        out[merged, j] = -np.arange(n)
    return out


def tfidf_scores(samples: list[Sample], pool: np.ndarray, queries: np.ndarray) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [f"{samples[i].prompt}\n{samples[i].response}" for i in (*pool, *queries)]
    vectors = TfidfVectorizer(sublinear_tf=True).fit_transform(texts)
    return np.asarray((vectors[: len(pool)] @ vectors[len(pool) :].T).todense())


ENCODER_QUERIES = 256
"""Training samples used as queries of the subspace encoder's score term."""


def train_subspace_encoder(S, samples, train, pool, queries, targets: np.ndarray, seed: int, epochs: int,
                           ridge: float):  # fmt: skip
    """Design 1 + 2: MiniLM-L6 with a k-wide head, started at the ridge solution on its pooled states and
    fine-tuned on the coordinates plus the per-query Pearson against 256 training queries' labels."""
    from influcoder.encoder.subspace import CoordinateFitSettings, fit_coordinates, subspace_encoder

    rng = np.random.default_rng(seed)
    query_rows = np.sort(rng.choice(len(train), size=min(ENCODER_QUERIES, len(train) // 4), replace=False))
    encoder = subspace_encoder("minilm-l6", targets.shape[1], seed=seed, max_length=512)
    settings = CoordinateFitSettings(epochs=epochs, seed=seed, ridge=ridge)
    labels = S[np.ix_(train, train[query_rows])]
    texts, targets = [samples[i] for i in train], targets.astype(np.float32)
    fit_coordinates(encoder, texts, targets, CoordinateFitSettings(epochs=0, seed=seed, ridge=ridge))  # ridge start
    start = {
        "pool": encoder.encode([samples[i] for i in pool]),
        "queries": encoder.encode([samples[i] for i in queries]),
    }
    encoder.history = fit_coordinates(encoder, texts, targets, settings, query_rows, labels, show_progress=True,
                                      start_at_ridge=False)  # fmt: skip
    return encoder, start


def run_split(S, samples, emb, lengths, rows: dict[str, np.ndarray], seed: int, decoder=None,
              encoder_epochs: int = 0, backbones: dict[str, np.ndarray] | None = None,
              cosine_epochs: int = 0) -> dict:  # fmt: skip
    train, pool, queries = rows["train"], rows["pool"], rows["queries"]
    truth = S[np.ix_(pool, queries)].astype(np.float64)
    X = np.hstack([emb, lengths])
    started = time.perf_counter()
    k, lam, cv = choose_k_and_ridge(S, X, samples, train, seed=seed)
    sub = Subspace(S, train, k)
    target, query_c = sub.coordinates(train, k), sub.coordinates(queries, k)
    model = ridge_fit(X[train], target, lam)
    fit_seconds = time.perf_counter() - started
    row_means = S[np.ix_(train, train)].mean(1)
    offset = ridge_predict(ridge_fit(lengths[train], row_means[:, None], 10.0), lengths[pool])
    scores = {
        "tfidf": tfidf_scores(samples, pool, queries),
        "minilm": emb[pool] @ emb[queries].T,
        "lengths": np.repeat(offset, len(queries), axis=1),
        "pool-mean (oracle)": np.repeat(truth.mean(1, keepdims=True), len(queries), axis=1),
        "subspace-ridge": ridge_predict(model, X[pool]) @ query_c.T,
        "subspace ceiling": sub.coordinates(pool, k) @ query_c.T,
    }
    scores["subspace-ridge, encoded queries"] = ridge_predict(model, X[pool]) @ ridge_predict(model, X[queries]).T
    for backbone, other in (backbones or {}).items():  # design 4: the same ridge on a larger frozen backbone
        Xb = np.hstack([other, lengths])
        kb, lamb, _ = choose_k_and_ridge(S, Xb, samples, train, seed=seed)
        subb = Subspace(S, train, kb)
        model_b = ridge_fit(Xb[train], subb.coordinates(train, kb), lamb)
        scores[f"subspace-ridge ({backbone})"] = ridge_predict(model_b, Xb[pool]) @ subb.coordinates(queries, kb).T
    if cosine_epochs:  # today's default: MiniLM distilled on the training labels (Pearson + KL over cosines)
        from influcoder.encoder.distill import Distiller
        from influcoder.encoder.settings import DistillSettings

        started = time.perf_counter()
        distiller = Distiller(DistillSettings(epochs=cosine_epochs, seed=seed, objective="influcoder"), device="cpu")
        texts = [samples[i] for i in train]
        distiller.fit(S[np.ix_(train, train)], texts, texts, progress=True)
        scores["cosine-distilled"] = (
            distiller.encoder.encode([samples[i] for i in pool])
            @ distiller.encoder.encode([samples[i] for i in queries]).T
        )
        fit_seconds_cosine = round(time.perf_counter() - started, 1)
    if encoder_epochs:  # design 1 + 2: MiniLM fine-tuned to regress the coordinates, from the ridge start
        started = time.perf_counter()
        trained, start = train_subspace_encoder(S, samples, train, pool, queries, sub.coordinates(train, k), seed,
                                                encoder_epochs, lam)  # fmt: skip
        scores["subspace-encoder (ridge start)"] = start["pool"] @ query_c.T
        pool_c = trained.encode([samples[i] for i in pool])
        query_pred = trained.encode([samples[i] for i in queries])
        scores["subspace-encoder"] = pool_c @ query_c.T
        scores["subspace-encoder, encoded queries"] = pool_c @ query_pred.T
        fit_seconds_encoder = time.perf_counter() - started
    if decoder is not None:  # design 5: the same ridge on the decoder's own response states (no backward)
        Xd = np.hstack([decoder, lengths])
        kd, lamd, _ = choose_k_and_ridge(S, Xd, samples, train, seed=seed)
        subd = Subspace(S, train, kd)
        model_d = ridge_fit(Xd[train], subd.coordinates(train, kd), lamd)
        scores["decoder-ridge"] = ridge_predict(model_d, Xd[pool]) @ subd.coordinates(queries, kd).T
        for backbone, other in (backbones or {}).items():  # designs 4 + 5: both inputs side by side
            Xc = np.hstack([decoder, other, lengths])
            kc, lamc, _ = choose_k_and_ridge(S, Xc, samples, train, seed=seed)
            subc = Subspace(S, train, kc)
            model_c = ridge_fit(Xc[train], subc.coordinates(train, kc), lamc)
            scores[f"decoder + {backbone} ridge"] = ridge_predict(model_c, Xc[pool]) @ subc.coordinates(queries, kc).T
    methods = {name: report(pred, truth) for name, pred in scores.items()}
    union = interleaved_ranks(scores["tfidf"], scores["subspace-ridge"])  # design 3 fed by text and design 2
    methods["tfidf + subspace-ridge, interleaved"] = {
        "rescore_recall@10": {
            f"{share:.0%}": rescore_recall(union, truth, max(10, int(np.ceil(share * len(pool)))))
            for share in RESCORE_SHARES
        }
    }
    rescored = ("subspace-ridge", "subspace-encoder", "decoder-ridge", *(f"subspace-ridge ({b})" for b in
                backbones or {}), *(f"decoder + {b} ridge" for b in backbones or {}), "minilm", "tfidf")  # fmt: skip
    for name in [n for n in rescored if n in scores]:
        methods[name]["rescore_recall@10"] = {
            f"{share:.0%}": rescore_recall(scores[name], truth, max(10, int(np.ceil(share * len(pool)))))
            for share in RESCORE_SHARES
        }
    return {
        "n_train": len(train), "n_pool": len(pool), "n_queries": len(queries),
        "tasks_train": len({samples[i].meta["task"] for i in train}),
        "tasks_eval": len({samples[i].meta["task"] for i in (*pool, *queries)}),
        "chosen": {"k": k, "ridge": lam, "fit_seconds": round(fit_seconds, 1)}, "cv": cv, "methods": methods,
        **({"cosine_distilled": {"epochs": cosine_epochs, "fit_seconds": fit_seconds_cosine}} if cosine_epochs else {}),
        **({"encoder": {"epochs": encoder_epochs, "fit_seconds": round(fit_seconds_encoder, 1),
                        "history": trained.history}} if encoder_epochs else {}),
    }  # fmt: skip


def summarise(runs: list[dict]) -> dict:
    """Mean and sample sd (ddof 1) over seeds of every method's figures."""
    out: dict[str, dict] = {}
    for name in runs[0]["methods"]:
        for metric in [m for m in ("per_anchor", "mean_aggregated", "query_specific") if m in runs[0]["methods"][name]]:
            values = [r["methods"][name][metric] for r in runs]
            out.setdefault(name, {})[metric] = {
                "mean": float(np.mean(values)),
                "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            }
        if "rescore_recall@10" in runs[0]["methods"][name]:
            out.setdefault(name, {})["rescore_recall@10"] = {
                K: float(np.mean([r["methods"][name]["rescore_recall@10"][K] for r in runs]))
                for K in runs[0]["methods"][name]["rescore_recall@10"]
            }
    return out


def merge(records: list[dict]) -> dict:
    """One record from runs on the same labels and splits that measured different designs: each split's
    methods united (a method measured in two runs must agree to 1e-9: the splits and the deterministic designs
    are the same), the summary recomputed."""
    out = json.loads(json.dumps(records[0]))
    for other in records[1:]:
        if (other["n"], other["tasks"], other["sources"]) != (out["n"], out["tasks"], out["sources"]):
            sys.exit("the runs to merge are not on the same labels")
        for key in ("encoder_epochs", "cosine_epochs"):
            out[key] = max(out.get(key, 0), other.get(key, 0))
        out["backbones"] = sorted({*out.get("backbones", []), *other.get("backbones", [])})
        out["feature_costs"] = {**other.get("feature_costs", {}), **out.get("feature_costs", {})}
        for protocol, runs in other["protocols"].items():
            mine = {r["seed"]: r for r in out["protocols"].setdefault(protocol, [])}
            for run in runs:
                if run["seed"] not in mine:
                    out["protocols"][protocol].append(run)
                    continue
                target = mine[run["seed"]]
                for name, figures in run["methods"].items():
                    if name in target["methods"]:
                        for metric, value in figures.items():
                            if metric != "rescore_recall@10" and abs(target["methods"][name][metric] - value) > 1e-9:
                                sys.exit(f"{protocol} seed {run['seed']}: {name} {metric} differs between the runs")
                    target["methods"].setdefault(name, figures)
                for key, value in run.items():
                    target.setdefault(key, value)
    source_runs = [r for key, runs in out["protocols"].items() if key.startswith("source:") for r in runs]
    out["summary"] = {key: summarise(runs) for key, runs in out["protocols"].items() if ":" not in key}
    if source_runs:
        out["summary"]["source (mean over held-out sources)"] = summarise(source_runs)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, help="an all-pairs labels directory (required unless --merge)")
    parser.add_argument("--out", type=Path, required=True, help="JSON to write (a .md table is written beside it)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--limit", type=int, default=None, help="first N samples only (a labelling still running)")
    parser.add_argument("--decoder-features", action="store_true", help="add design 5 (one decoder forward pass)")
    parser.add_argument("--encoder-epochs", type=int, default=0, help="add design 1 + 2: fine-tune MiniLM on the "
                        "coordinates for this many epochs per split (0: off)")  # fmt: skip
    parser.add_argument("--backbones", nargs="*", default=[], help="add design 4: the ridge on these frozen "
                        "embedded backbones too (e.g. mpnet-base)")  # fmt: skip
    parser.add_argument("--cosine-epochs", type=int, default=0, help="add today's default objective: MiniLM "
                        "distilled on the training labels for this many epochs per split (0: off)")  # fmt: skip
    parser.add_argument("--protocols", nargs="+", default=["task", "random", "source"],
                        choices=["task", "random", "source"])  # fmt: skip
    parser.add_argument("--features-only", action="store_true", help="only compute and keep the decoder states")
    parser.add_argument("--merge", type=Path, nargs="+", help="instead of measuring: merge these result JSONs "
                        "(runs of different designs on the same labels) into --out")  # fmt: skip
    args = parser.parse_args(argv)
    if args.merge:
        record = merge([json.loads(path.read_text(encoding="utf-8")) for path in args.merge])
        args.out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        args.out.with_suffix(".md").write_text(markdown(record), encoding="utf-8")
        return 0
    if args.labels is None:
        parser.error("--labels is required (unless --merge)")
    if args.features_only:  # precompute the decoder states while the labelling still runs
        decoder_features(load_file(args.labels.parent / "samples.jsonl"), args.labels.parent / DECODER_CACHE)
        return 0
    S, samples = load_square_labels(args.labels, args.limit)
    emb, lengths = text_features(samples)
    backbones = {
        name: text_features(samples, name, args.labels.parent / f"text-{name}.npy")[0] for name in args.backbones
    }
    decoder = decoder_features(samples, args.labels.parent / DECODER_CACHE) if args.decoder_features else None
    record: dict = {"labels": str(args.labels), "encoder_epochs": args.encoder_epochs, "backbones": args.backbones,
                    "cosine_epochs": args.cosine_epochs,
                    "n": len(samples),
                    "tasks": len({s.meta["task"] for s in samples}),
                    "sources": sorted({s.meta["source"] for s in samples}), "protocols": {}}  # fmt: skip
    plans = [("task", seed, None) for seed in args.seeds if "task" in args.protocols]
    plans += [("random", seed, None) for seed in args.seeds if "random" in args.protocols]
    plans += [("source", 0, source) for source in record["sources"] if "source" in args.protocols]
    for protocol, seed, source in plans:
        rows = split(samples, protocol, seed, source)
        if min(len(rows["pool"]), len(rows["queries"]), len(rows["train"])) < 4:
            continue
        key = f"{protocol}:{source}" if source else protocol
        result = run_split(
            S, samples, emb, lengths, rows, seed, decoder, args.encoder_epochs, backbones, args.cosine_epochs
        )
        record["protocols"].setdefault(key, []).append({"seed": seed, **result})
        for name in (
            "subspace-ridge",
            "subspace-encoder",
            "decoder-ridge",
            *(f"subspace-ridge ({b})" for b in backbones),
            *(f"decoder + {b} ridge" for b in backbones),
        ):
            if name in result["methods"]:
                m = result["methods"][name]
                print(f"{key} seed {seed}: {name} per-anchor {m['per_anchor']:.3f} query-specific "
                      f"{m['query_specific']:.3f} (k={result['chosen']['k']})", file=sys.stderr,
                      flush=True)  # fmt: skip
    source_runs = [r for key, runs in record["protocols"].items() if key.startswith("source:") for r in runs]
    record["summary"] = {key: summarise(runs) for key, runs in record["protocols"].items() if ":" not in key}
    if source_runs:
        record["summary"]["source (mean over held-out sources)"] = summarise(source_runs)
    record["feature_costs"] = dict(FEATURE_COSTS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(record), encoding="utf-8")
    print(markdown(record))
    return 0


def markdown(record: dict) -> str:
    lines = [
        f"All-pairs labels of {record['n']:,} samples, {record['tasks']} tasks, sources: "
        f"{', '.join(record['sources'])}. Mean (sample sd) over seeds; `source` is the mean over held-out sources.",
        "",
    ]
    for key, summary in record["summary"].items():
        lines += [f"### {key}", "", "| method | per-anchor | mean-aggregated (pool offset) | query-specific |",
                  "|---|---|---|---|"]  # fmt: skip
        for name, m in [(name, m) for name, m in summary.items() if "per_anchor" in m]:
            cells = [f"{m[x]['mean']:.3f} ({m[x]['sd']:.3f})" for x in
                     ("per_anchor", "mean_aggregated", "query_specific")]  # fmt: skip
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        recalls = {name: m["rescore_recall@10"] for name, m in summary.items() if "rescore_recall@10" in m}
        if recalls:
            ks = list(next(iter(recalls.values())))
            lines += ["", "| rescore recall@10, share of the pool rescored | " + " | ".join(ks) + " |",
                      "|---|" + "---|" * len(ks)]  # fmt: skip
            lines += [f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in ks) + " |" for name, r in recalls.items()]
        lines.append("")
    costs = record.get("feature_costs")
    if costs:
        lines += ["### What a pool sample's input costs", "",
                  "| input | seconds per sample (2 shared cores, as run) | floats per sample | samples timed |",
                  "|---|---|---|---|"]  # fmt: skip
        lines += [f"| {name} | {c['seconds_per_sample']:.4f} | {c['dim']} | {c['n']:,} |" for name, c in costs.items()]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
