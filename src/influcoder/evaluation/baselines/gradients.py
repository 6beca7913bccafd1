"""Gradient baselines: what the encoder is distilled to imitate, at their own cost.

`gradsim`: the labels' own features (CountSketch of the plain LoRA gradients), cosine. `GradientSuite` scores
it with LESS (`less`: its own module) from one pass of exact gradients.

`datainf` (DataInf, Kwon et al. 2024): the same exact LoRA gradients, preconditioned by a closed-form
inverse of each LoRA matrix's damped empirical Fisher. Per block l, DataInf swaps the inverse of a mean of
rank-one terms for the mean of their inverses (Sherman-Morrison on each),

    (F_l + lam_l I)^-1  ~=  1/(n lam_l) sum_i (I - g_il g_il^T / (lam_l + |g_il|^2)),

so a query's preconditioned inner product with a pool gradient needs only Gram matrices:
q^T H^-1 g_k = 1/lam_l (q.g_k - 1/n sum_i (q.g_i)(g_i.g_k) / (lam_l + |g_i|^2)), summed over blocks. The
Fisher is that of the pool being scored (DataInf's "training set"); lam_l = 0.1 x the mean squared gradient
entry of the block, the damping of the paper's experiments. DataInf's influence is the loss change, whose
sign is flipped here so that higher means more helpful, as for every other method.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from influcoder.core.progress import progress_bar
from influcoder.data.records import Sample
from influcoder.evaluation.baselines.base import Scorer
from influcoder.evaluation.baselines.less import DESCRIPTIONS as LESS_DESCRIPTIONS
from influcoder.evaluation.baselines.less import Less
from influcoder.labels.influence import normalize_rows
from influcoder.labels.settings import LabelSettings

DESCRIPTIONS = {"gradsim": "LoRA gradients, CountSketch (the labels' features), cosine", **LESS_DESCRIPTIONS}


class GradSim(Scorer):
    """The labels' own features (CountSketch of the plain LoRA gradients), cosine: the gradient-similarity
    baseline of DATE-LM, and exactly what the encoder is distilled to imitate."""

    name = "gradsim"
    description = DESCRIPTIONS["gradsim"]
    preconditioner = "sgd"

    def __init__(self, settings: LabelSettings, model=None, tokenizer=None):
        from influcoder.labels.featurizer import GradientFeaturizer

        self.featurizer = GradientFeaturizer(settings, model, tokenizer)
        self.itemsize = 2.0 if settings.dtype == "float16" else 4.0

    def models(self) -> list:
        return [self.featurizer.model]

    def bytes_per_sample(self) -> float:
        return self.itemsize * self.featurizer.projector.out_dim

    def score(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> np.ndarray:
        pool_features = normalize_rows(self.featurizer.featurize(list(pool)).astype(np.float64))
        return pool_features @ normalize_rows(self.featurizer.featurize(list(queries)).astype(np.float64)).T


def datainf_scores(pool: np.ndarray, queries: np.ndarray, blocks: Sequence[int], damping: float = 0.1) -> np.ndarray:
    """(n_pool, n_queries) DataInf scores of exact gradients whose columns are `blocks` consecutive blocks.

    Blocks that are zero on the whole pool (a fresh adapter's A matrices) carry no signal and are skipped.
    """
    if sum(blocks) != pool.shape[1] or pool.shape[1] != queries.shape[1]:
        raise ValueError(f"blocks cover {sum(blocks)} columns; pool has {pool.shape[1]}, queries {queries.shape[1]}")
    n = len(pool)
    out = np.zeros((n, len(queries)))
    start = 0
    for size in blocks:
        p = np.asarray(pool[:, start : start + size], dtype=np.float64)  # block by block: the exact gradients
        q = np.asarray(queries[:, start : start + size], dtype=np.float64)  # are ~10 MB per sample in float32
        start += size
        norms = np.einsum("ij,ij->i", p, p)
        lam = damping * norms.mean() / size
        if lam <= 0:
            continue
        cross = p @ q.T  # g_k . q, pool x queries
        gram = p @ p.T
        out += (cross - gram @ (cross / (lam + norms)[:, None]) / n) / lam
    return out


class DataInf(Less):
    name = "datainf"
    description = "exact LoRA gradients, DataInf closed-form inverse Fisher per LoRA matrix"
    preconditioner = "datainf"

    def __init__(
        self,
        settings: LabelSettings,
        model=None,
        tokenizer=None,
        damping: float = 0.1,
        scratch: str | Path | None = None,
    ):
        super().__init__(settings, model, tokenizer, desc="datainf gradients")
        from influcoder.labels.lora import lora_parameters

        self.blocks = [p.numel() for p in lora_parameters(self.featurizer.model).values()]
        self.damping = damping
        self.scratch = scratch
        """Folder for the temporary file of the pool's exact gradients (default: the system's temporary
        folder). It needs `bytes_per_sample()` x pool size of disk: 9.8 MB per sample for SmolLM2-135M, rank 8,
        so ~20 GB for a 2,000-sample pool, more than most machines can hold in memory."""

    def bytes_per_sample(self) -> float:
        return 4.0 * sum(self.blocks)  # the exact float32 gradient: DataInf does not project

    def exact(self, samples: Sequence[Sample], out: np.ndarray | None = None, bar=None) -> np.ndarray:
        """(n, sum(blocks)) exact float32 gradients, written pass by pass into `out` (e.g. a disk-backed array)
        when given, so at most one pass of them is ever in memory; `bar` (a `progress_bar`) advances per sample."""
        out = np.empty((len(samples), sum(self.blocks)), dtype=np.float32) if out is None else out
        for i in range(0, len(samples), self.rows_per_pass):
            tokenized = self.featurizer.tokenize(samples[i : i + self.rows_per_pass])
            self.featurizer.featurize_tokenized(tokenized, bar, out=out[i : i + len(tokenized)])
        return out

    def score(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> np.ndarray:
        pool, queries = list(pool), list(queries)
        if self.scratch is not None:
            Path(self.scratch).mkdir(parents=True, exist_ok=True)
        # one decoder backward pass per sample: on a CPU a pool of thousands runs for many minutes
        bar = progress_bar(total=len(pool) + len(queries), desc=self.desc, unit="sample")
        with bar, tempfile.TemporaryDirectory(prefix="influcoder-datainf-", dir=self.scratch) as scratch:
            gradients = np.lib.format.open_memmap(
                Path(scratch) / "pool.npy", mode="w+", dtype=np.float32, shape=(len(pool), sum(self.blocks))
            )
            pool_gradients = self.exact(pool, out=gradients, bar=bar)
            scores = datainf_scores(pool_gradients, self.exact(queries, bar=bar), self.blocks, self.damping)
            del gradients, pool_gradients  # the memory map closes before its folder is removed
        return scores


JOINT = ("gradsim", "less", "less-sgd")
"""Gradient methods `GradientSuite` scores from one pass."""


class GradientSuite:
    """`gradsim`, `less` (Adam) and `less-sgd` from one pass of exact per-example gradients.

    Each method's features are a different linear map of the same exact LoRA gradients (the labels'
    CountSketch; a Rademacher projection of the gradient or of its Adam update), and computing the gradients is
    nearly all of the cost: one pass instead of one per method saves a whole decoder backward pass per pool
    sample per extra method. Results equal the separate scorers' (tested).
    """

    def __init__(
        self,
        settings: LabelSettings,
        methods: Sequence[str],
        optimizer_state: str | Path | None = None,
        dim: int = 8192,
        rows_per_pass: int = 128,
        model=None,
        tokenizer=None,
        passes: str | Path | None = None,
    ):
        from influcoder.labels.featurizer import GradientFeaturizer
        from influcoder.labels.lora import lora_parameters
        from influcoder.labels.projectors import CountSketch, Rademacher

        self.passes = Path(passes) if passes is not None else None
        """Where each finished pass is kept, per side and method (`less.PassCache`): a stopped run redoes only
        the pass it was in."""
        self.kept_seconds = 0.0
        """Seconds that the passes read back from `passes` took when they ran."""
        self.settings, self.optimizer_state = settings, optimizer_state
        unknown = sorted(set(methods) - set(JOINT))
        if unknown:
            raise ValueError(f"GradientSuite scores {', '.join(JOINT)}, not {', '.join(unknown)}")
        self.methods = list(methods)
        self.featurizer = GradientFeaturizer(replace(settings, projector="identity"), model, tokenizer)
        params = lora_parameters(self.featurizer.model)
        self.shapes = {name: tuple(p.shape) for name, p in params.items()}
        self.sketch = CountSketch(settings.proj_dim, settings.seed)
        self.rademacher = Rademacher(dim, settings.seed)
        self.rows_per_pass = rows_per_pass
        self.adam = None
        if "less" in self.methods:
            from influcoder.labels.adam import AdamPreconditioner

            if optimizer_state is None:
                raise ValueError("less needs the adapter's optimizer state; less-sgd is LESS without it")
            self.adam = AdamPreconditioner.from_file(optimizer_state, list(params))
        self.sketch_itemsize = 2.0 if settings.dtype == "float16" else 4.0

    def bytes_per_sample(self, method: str) -> float:
        return self.sketch_itemsize * self.sketch.out_dim if method == "gradsim" else 4.0 * self.rademacher.out_dim

    def _blocks(self, exact: torch.Tensor) -> dict[str, torch.Tensor]:
        """The exact gradient matrix as named per-parameter blocks (views), in the identity projector's order."""
        blocks, start = {}, 0
        for name, shape in self.shapes.items():
            size = int(np.prod(shape))
            blocks[name] = exact[:, start : start + size].reshape(len(exact), *shape)
            start += size
        return blocks

    def features(self, samples: Sequence[Sample], pool: bool) -> dict[str, np.ndarray]:
        """Unit-norm features of every method; LESS preconditions pool gradients only, as `Less` does.

        The rows every generation of LESS's signs projects live in one preallocated buffer, filled in place: the
        exact gradients (2.4M floats, ~10 MB a sample), then beneath them the Adam updates, block by block. A
        pass of 256 samples then holds 2.5 GB per kind of row instead of several concatenated copies."""
        parts: dict[str, list[np.ndarray]] = {m: [] for m in self.methods}
        what = f"{' + '.join(self.methods)} {'pool' if pool else 'query'} gradients"
        plain = "less-sgd" in self.methods or ("less" in self.methods and not pool)
        adam = "less" in self.methods and pool
        caches = self._caches(samples, pool)
        rows = min(self.rows_per_pass, len(samples))
        buffer: torch.Tensor | None = None
        bar = progress_bar(total=len(samples), desc=what, unit="sample")
        for number, start in enumerate(range(0, len(samples), self.rows_per_pass)):
            kept = [caches[m].read(number) for m in self.methods] if caches else []
            if kept and all(k is not None for k in kept):
                for method, (matrix, _) in zip(self.methods, kept):
                    parts[method].append(matrix)
                self.kept_seconds += kept[0][1]
                bar.update(len(kept[0][0]))
                continue
            started = time.perf_counter()
            if buffer is None:
                width = sum(int(np.prod(shape)) for shape in self.shapes.values())
                buffer = torch.empty((2 * rows if adam else rows, width), dtype=torch.float32)
            chunk = self.featurizer.tokenize(list(samples[start : start + self.rows_per_pass]))
            n = len(chunk)
            exact = buffer[:n]  # the Adam updates, when wanted, right beneath: buffer[n : 2n]
            self.featurizer.featurize_tokenized(chunk, bar, out=exact.numpy())
            new: dict[str, np.ndarray] = {}
            if "gradsim" in self.methods:
                new["gradsim"] = self.sketch.project(self._blocks(exact)).numpy()
            if plain or adam:
                if adam:
                    column = 0
                    with torch.no_grad():
                        for name, block in self._blocks(exact).items():  # one block's update at a time
                            size = block[0].numel()
                            update = self.adam({name: block})[name].reshape(n, size)
                            buffer[n : 2 * n, column : column + size] = update
                            column += size
                # one generation of the signs projects every kind of row wanted
                dense = buffer[: 2 * n] if plain and adam else buffer[n : 2 * n] if adam else exact
                projected = self.rademacher.project_matrix(dense).numpy()
                by_kind = {"plain": projected[:n], "adam": projected[-n:]}
                if "less-sgd" in self.methods:
                    new["less-sgd"] = by_kind["plain"]
                if "less" in self.methods:
                    new["less"] = by_kind["adam" if pool else "plain"]
            for method in self.methods:
                parts[method].append(new[method])
                if caches:
                    caches[method].write(number, new[method], time.perf_counter() - started)
        bar.close()
        return {m: normalize_rows(np.concatenate(p)).astype(np.float64) for m, p in parts.items()}

    def _caches(self, samples: Sequence[Sample], pool: bool) -> dict:
        """One `PassCache` per method for this side, or {} without `passes`."""
        if self.passes is None:
            return {}
        from influcoder.data.records import fingerprint
        from influcoder.evaluation.baselines.less import PassCache

        key = {
            "samples": fingerprint(samples),
            "pool": pool,
            "methods": self.methods,
            "adapter": str(Path(self.settings.adapter).resolve()) if self.settings.adapter else None,
            "optimizer_state": str(Path(self.optimizer_state).resolve()) if self.optimizer_state else None,
            "model": self.settings.model,
            "max_length": self.settings.max_length,
            "projections": [self.sketch.config(), self.rademacher.config()],
            "rows_per_pass": self.rows_per_pass,
        }
        side = self.passes / ("pool" if pool else "queries")
        return {method: PassCache(side / method, key) for method in self.methods}

    def score_all(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> dict[str, np.ndarray]:
        """{method: pool x query matrix}. gradsim's features are float32 like the labels'."""
        self.kept_seconds = 0.0
        p, q = self.features(pool, pool=True), self.features(queries, pool=False)
        return {m: p[m] @ q[m].T for m in self.methods}
