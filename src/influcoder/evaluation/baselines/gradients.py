"""Gradient baselines: what the encoder is distilled to imitate, at their own cost.

`less` (LESS, Xia et al. 2024): per-example LoRA gradients of the response-only loss, Rademacher-projected
to 8,192 dimensions, cosine. LESS preconditions the training gradients with the Adam state of a warm-up
run; with no optimizer state given (a fresh adapter, as the labels use), the gradients are plain SGD ones,
and the report says so (`preconditioner: sgd`). Same decoder, adapter seed and text view as the labels, so
on the labels' own data it differs from the ground truth only by its projection.

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

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from influcoder.data.records import Sample
from influcoder.evaluation.baselines.base import Scorer
from influcoder.labels.influence import normalize_rows
from influcoder.labels.settings import LabelSettings

DESCRIPTIONS = {
    "gradsim": "LoRA gradients, CountSketch (the labels' features), cosine",
    "less": "LoRA gradients, Adam-preconditioned pool (LESS), Rademacher 8,192, cosine",
    "less-sgd": "LoRA gradients, Rademacher 8,192, cosine (SGD: no optimizer state)",
    "less-ckpts": "LESS over a warm-up run's checkpoints: Adam-preconditioned cosine per checkpoint, lr-weighted",
}


class Less(Scorer):
    name = "less"
    description = DESCRIPTIONS["less-sgd"]
    preconditioner = "sgd"

    def __init__(
        self,
        settings: LabelSettings,
        model=None,
        tokenizer=None,
        dim: int = 8192,
        rows_per_pass: int = 128,
        optimizer_state: str | Path | None = None,
        progress: bool = False,
        desc: str = "less gradients",
    ):
        from influcoder.labels.featurizer import GradientFeaturizer
        from influcoder.labels.projectors import Rademacher

        self.featurizer = GradientFeaturizer(replace(settings, projector="identity"), model, tokenizer)
        self.projector = Rademacher(dim, settings.seed)
        self.rows_per_pass = rows_per_pass
        self.progress, self.desc = progress, desc
        self.adam = None
        if optimizer_state is not None:
            from influcoder.labels.adam import AdamPreconditioner
            from influcoder.labels.lora import lora_parameters

            names = list(lora_parameters(self.featurizer.model))
            self.adam = AdamPreconditioner.from_file(optimizer_state, names)
            self.preconditioner = "adam"
            self.description = DESCRIPTIONS["less"]

    def models(self) -> list:
        return [self.featurizer.model]

    def bytes_per_sample(self) -> float:
        return 4.0 * self.projector.out_dim  # one float32 projected gradient

    def features(self, samples: Sequence[Sample], precondition: bool = False) -> np.ndarray:
        """Unit-norm projected gradients (of LESS's Adam update when `precondition` and a state is loaded)."""
        return self.projected([(list(samples), precondition)])[0]

    def projected(self, lists: Sequence[tuple[Sequence[Sample], bool]]) -> list[np.ndarray]:
        """`features` of several sample lists, (samples, precondition) each, sharing the projection's passes.

        A dense projection of 2.4M LoRA coordinates is 20G random signs, generated on the fly: each generation
        projects up to `rows_per_pass` exact gradients at once instead of one labelling batch (<= 8), which makes
        it affordable on a CPU, and a pass is filled from whichever list comes next, so ten queries ride along
        with the first pool gradients instead of paying for a generation of their own."""
        from tqdm.auto import tqdm

        out: list[list[np.ndarray]] = [[] for _ in lists]
        total = sum(len(samples) for samples, _ in lists)
        width = self.featurizer.projector.out_dim  # the exact gradient's length
        buffer = np.empty((min(self.rows_per_pass, total), width), dtype=np.float32)
        filled: list[tuple[int, int]] = []  # (list, rows) in buffer order

        def project_buffer() -> None:
            rows = self.projector.project_matrix(torch.from_numpy(buffer[: sum(n for _, n in filled)]))
            start = 0
            for which, n in filled:
                out[which].append(rows[start : start + n].numpy())
                start += n
            filled.clear()

        bar = tqdm(total=total, desc=self.desc, unit="sample", disable=not self.progress)
        try:
            for which, (samples, precondition) in enumerate(lists):
                self.featurizer.preconditioner = self.adam if precondition else None
                start = 0
                while start < len(samples):
                    used = sum(n for _, n in filled)
                    chunk = list(samples[start : start + self.rows_per_pass - used])
                    tokenized = self.featurizer.tokenize(chunk)
                    self.featurizer.featurize_tokenized(tokenized, bar, out=buffer[used : used + len(chunk)])
                    filled.append((which, len(chunk)))
                    start += len(chunk)
                    if used + len(chunk) == len(buffer):
                        project_buffer()
            if filled:
                project_buffer()
        finally:
            self.featurizer.preconditioner = None
            bar.close()
        dim = self.projector.out_dim
        return [normalize_rows(np.concatenate(p)).astype(np.float64) if p else np.zeros((0, dim)) for p in out]

    def score(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> np.ndarray:
        """Pool gradients as Adam updates (when a state is loaded), query gradients plain, as LESS does."""
        query_features, pool_features = self.projected([(list(queries), False), (list(pool), True)])
        return pool_features @ query_features.T


class LessCheckpoints(Scorer):
    """LESS as Xia et al. run it: a short warm-up fine-tune keeps several checkpoints, and a pool sample's
    influence on a query is the sum over checkpoints of the checkpoint's mean learning rate times the cosine of
    its Adam update and the query's gradient, both at that checkpoint (their eq. 2). Divided here by the sum of
    the rates, which ranks the same and keeps the cosine's scale. One decoder pass per checkpoint, the
    warm-up's checkpoints from `finetune(..., FinetuneSettings(snapshots=K))` (`read_snapshots`)."""

    name = "less-ckpts"
    description = DESCRIPTIONS["less-ckpts"]
    preconditioner = "adam"

    def __init__(
        self,
        settings: LabelSettings,
        warmup: str | Path,
        dim: int = 8192,
        rows_per_pass: int = 128,
        parts: str | Path | None = None,
        progress: bool = False,
    ):
        from influcoder.labels.finetune import read_snapshots

        self.settings, self.dim, self.rows_per_pass = settings, dim, rows_per_pass
        self.progress = progress
        self.snapshots = read_snapshots(warmup)
        self.parts = Path(parts) if parts is not None else None
        """Where each checkpoint's matrix is kept as it finishes (a pass over a large pool takes an hour on a
        CPU: an interrupted run redoes only the checkpoint it was in)."""

    def bytes_per_sample(self) -> float:
        return 4.0 * self.dim * len(self.snapshots)  # one projected update per checkpoint

    def checkpoint_scorer(self, adapter: Path, desc: str = "less gradients") -> Less:
        from influcoder.labels.finetune import OPTIMIZER

        settings, state = replace(self.settings, adapter=str(adapter)), adapter / OPTIMIZER
        return Less(
            settings,
            dim=self.dim,
            rows_per_pass=self.rows_per_pass,
            optimizer_state=state,
            progress=self.progress,
            desc=desc,
        )

    def score(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> np.ndarray:
        total, weights = None, 0.0
        self.checkpoint_seconds = []
        for number, (adapter, lr) in enumerate(self.snapshots, 1):
            desc = f"less checkpoint {number}/{len(self.snapshots)} gradients"
            matrix, seconds = self._checkpoint_matrix(adapter, pool, queries, desc)
            self.checkpoint_seconds.append(seconds)
            total = lr * matrix if total is None else total + lr * matrix
            weights += lr
        return total / weights

    checkpoint_seconds: list[float | None]
    """What each checkpoint's pass took, kept with its matrix: a run that resumed with some checkpoints done
    spent less than the method costs (None: kept by a version that did not time it). `cost_seconds`."""

    def cost_seconds(self) -> tuple[float, str | None]:
        """The scoring time of all checkpoints, from each one's own pass, and a note when some were untimed
        (their cost is then taken as the timed ones' mean, and the note says so)."""
        timed = [s for s in self.checkpoint_seconds if s is not None]
        if len(timed) == len(self.checkpoint_seconds):
            return float(sum(timed)), None
        if not timed:
            return float("nan"), "no checkpoint pass was timed (all kept from a version that did not time them)"
        k, n = len(timed), len(self.checkpoint_seconds)
        return float(np.mean(timed) * n), f"{k} of {n} checkpoint passes timed; the others taken at their mean"

    def _checkpoint_matrix(
        self, adapter: Path, pool: Sequence[Sample], queries: Sequence[Sample], desc: str
    ) -> tuple[np.ndarray, float | None]:
        """One checkpoint's LESS matrix and the seconds its pass took, from `parts` when an earlier run finished
        it for the same samples."""
        import time

        from influcoder.core.atomic import atomic_output, write_json_atomic
        from influcoder.data.records import fingerprint

        key = {"adapter": str(Path(adapter).resolve()), "pool": fingerprint(pool), "queries": fingerprint(queries)}
        kept = self.parts / f"{adapter.name}.npy" if self.parts is not None else None
        if kept is not None and kept.exists() and kept.with_suffix(".json").exists():
            record = json.loads(kept.with_suffix(".json").read_text(encoding="utf-8"))
            if {k: record.get(k) for k in key} == key:
                return np.load(kept), record.get("seconds")
        started = time.perf_counter()
        matrix = self.checkpoint_scorer(adapter, desc).score(pool, queries)  # one decoder loaded at a time
        seconds = time.perf_counter() - started
        if kept is not None:
            kept.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(kept) as tmp, open(tmp, "wb") as handle:
                np.save(handle, matrix, allow_pickle=False)
            write_json_atomic(kept.with_suffix(".json"), {**key, "seconds": seconds})
        return matrix, seconds


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

    def __init__(self, settings: LabelSettings, model=None, tokenizer=None, damping: float = 0.1):
        super().__init__(settings, model, tokenizer)
        from influcoder.labels.lora import lora_parameters

        self.blocks = [p.numel() for p in lora_parameters(self.featurizer.model).values()]
        self.damping = damping

    def bytes_per_sample(self) -> float:
        return 4.0 * sum(self.blocks)  # the exact float32 gradient: DataInf does not project

    def exact(self, samples: Sequence[Sample]) -> np.ndarray:
        return np.concatenate(
            [
                self.featurizer.featurize(samples[i : i + self.rows_per_pass])
                for i in range(0, len(samples), self.rows_per_pass)
            ]
        )

    def score(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> np.ndarray:
        return datainf_scores(self.exact(list(pool)), self.exact(list(queries)), self.blocks, self.damping)


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
        progress: bool = False,
    ):
        from influcoder.labels.featurizer import GradientFeaturizer
        from influcoder.labels.lora import lora_parameters
        from influcoder.labels.projectors import CountSketch, Rademacher

        self.progress = progress
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
        from tqdm.auto import tqdm

        parts: dict[str, list[np.ndarray]] = {m: [] for m in self.methods}
        what = f"{' + '.join(self.methods)} {'pool' if pool else 'query'} gradients"
        plain = "less-sgd" in self.methods or ("less" in self.methods and not pool)
        adam = "less" in self.methods and pool
        rows = min(self.rows_per_pass, len(samples))
        width = sum(int(np.prod(shape)) for shape in self.shapes.values())
        buffer = torch.empty((2 * rows if adam else rows, width), dtype=torch.float32)
        bar = tqdm(total=len(samples), desc=what, unit="sample", disable=not self.progress)
        for start in range(0, len(samples), self.rows_per_pass):
            chunk = self.featurizer.tokenize(list(samples[start : start + self.rows_per_pass]))
            n = len(chunk)
            exact = buffer[:n]  # the Adam updates, when wanted, right beneath: buffer[n : 2n]
            self.featurizer.featurize_tokenized(chunk, progress=bar, out=exact.numpy())
            if "gradsim" in self.methods:
                parts["gradsim"].append(self.sketch.project(self._blocks(exact)).numpy())
            if not (plain or adam):
                continue
            if adam:
                column = 0
                with torch.no_grad():
                    for name, block in self._blocks(exact).items():  # one block's update at a time
                        size = block[0].numel()
                        buffer[n : 2 * n, column : column + size] = self.adam({name: block})[name].reshape(n, size)
                        column += size
            # one generation of the signs projects every kind of row wanted
            dense = buffer[: 2 * n] if plain and adam else buffer[n : 2 * n] if adam else exact
            projected = self.rademacher.project_matrix(dense).numpy()
            by_kind = {"plain": projected[:n], "adam": projected[-n:]}
            if "less-sgd" in self.methods:
                parts["less-sgd"].append(by_kind["plain"])
            if "less" in self.methods:
                parts["less"].append(by_kind["adam" if pool else "plain"])
        bar.close()
        return {m: normalize_rows(np.concatenate(p)).astype(np.float64) for m, p in parts.items()}

    def score_all(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> dict[str, np.ndarray]:
        """{method: pool x query matrix}. gradsim's features are float32 like the labels'."""
        p, q = self.features(pool, pool=True), self.features(queries, pool=False)
        return {m: p[m] @ q[m].T for m in self.methods}
