"""LESS (Xia et al. 2024): per-example LoRA gradients, Rademacher-projected to 8,192 dimensions, cosine.

`less`: per-example LoRA gradients of the response-only loss, projected, cosine. LESS preconditions the
training gradients with the Adam state of a warm-up run; with no optimizer state given (a fresh adapter, as the
labels use), the gradients are plain SGD ones, and the report says so (`preconditioner: sgd`). Same decoder,
adapter seed and text view as the labels, so on the labels' own data it differs from the ground truth only by
its projection. `less-ckpts` (`LessCheckpoints`): LESS as its authors run it, over a warm-up run's checkpoints.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from influcoder.core.jsonfile import read_json
from influcoder.core.progress import progress_bar
from influcoder.data.records import Sample
from influcoder.evaluation.baselines.base import Scorer
from influcoder.labels.influence import normalize_rows
from influcoder.labels.settings import LabelSettings

DESCRIPTIONS = {
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
        desc: str = "less gradients",
        passes: str | Path | None = None,
    ):
        from influcoder.labels.featurizer import GradientFeaturizer
        from influcoder.labels.projectors import Rademacher

        self.featurizer = GradientFeaturizer(replace(settings, projector="identity"), model, tokenizer)
        self.projector = Rademacher(dim, settings.seed)
        self.rows_per_pass = rows_per_pass
        self.desc = desc
        self.passes = Path(passes) if passes is not None else None
        """Where each finished projection pass is kept (`PassCache`): a pass over 256 samples takes minutes on
        a CPU and a whole pool an hour, so a stopped run redoes only the pass it was in."""
        self.settings = settings
        self.kept_seconds = 0.0
        """Seconds that the passes read back from `passes` took when they ran (0 when none were kept)."""
        self.adam = None
        self.optimizer_state = str(Path(optimizer_state).resolve()) if optimizer_state is not None else None
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
        import time

        out: list[list[np.ndarray]] = [[] for _ in lists]
        layout = pass_layout([len(samples) for samples, _ in lists], self.rows_per_pass)
        total = sum(len(samples) for samples, _ in lists)
        cache = PassCache(self.passes, self._cache_key(lists)) if self.passes is not None else None
        buffer: np.ndarray | None = None
        self.kept_seconds = 0.0
        bar = progress_bar(total=total, desc=self.desc, unit="sample")
        try:
            for number, segments in enumerate(layout):
                kept = cache.read(number) if cache is not None else None
                if kept is not None:
                    rows, seconds = kept
                    self.kept_seconds += seconds
                    bar.update(len(rows))
                else:
                    started = time.perf_counter()
                    if buffer is None:  # the exact gradients of one pass, 10 MB a sample for SmolLM2's LoRA
                        width = self.featurizer.projector.out_dim
                        buffer = np.empty((min(self.rows_per_pass, total), width), dtype=np.float32)
                    used = 0
                    for which, start, stop in segments:
                        samples, precondition = lists[which]
                        self.featurizer.preconditioner = self.adam if precondition else None
                        tokenized = self.featurizer.tokenize(list(samples[start:stop]))
                        self.featurizer.featurize_tokenized(tokenized, bar, out=buffer[used : used + stop - start])
                        used += stop - start
                    rows = self.projector.project_matrix(torch.from_numpy(buffer[:used])).numpy()
                    if cache is not None:
                        cache.write(number, rows, time.perf_counter() - started)
                used = 0
                for which, start, stop in segments:
                    out[which].append(rows[used : used + stop - start])
                    used += stop - start
        finally:
            self.featurizer.preconditioner = None
            bar.close()
        dim = self.projector.out_dim
        return [normalize_rows(np.concatenate(p)).astype(np.float64) if p else np.zeros((0, dim)) for p in out]

    def _cache_key(self, lists: Sequence[tuple[Sequence[Sample], bool]]) -> dict:
        """What a kept pass must have been computed from: the samples, which lists are preconditioned, the adapter
        and its optimizer state, the projection and the pass size."""
        from influcoder.data.records import fingerprint

        return {
            "lists": [
                [fingerprint(samples), bool(precondition and self.adam is not None)] for samples, precondition in lists
            ],
            "adapter": str(Path(self.settings.adapter).resolve()) if self.settings.adapter else None,
            "optimizer_state": self.optimizer_state,
            "model": self.settings.model,
            "max_length": self.settings.max_length,
            "projection": self.projector.config(),
            "rows_per_pass": self.rows_per_pass,
        }

    def score(self, pool: Sequence[Sample], queries: Sequence[Sample]) -> np.ndarray:
        """Pool gradients as Adam updates (when a state is loaded), query gradients plain, as LESS does."""
        query_features, pool_features = self.projected([(list(queries), False), (list(pool), True)])
        return pool_features @ query_features.T


def pass_layout(lengths: Sequence[int], rows_per_pass: int) -> list[list[tuple[int, int, int]]]:
    """Which rows each projection pass takes: (list, start, stop) segments filling `rows_per_pass` rows, the
    lists in order, a pass continuing into the next list where one ends. Deterministic in the lengths, so a
    resumed run knows which rows a kept pass holds."""
    passes: list[list[tuple[int, int, int]]] = []
    current: list[tuple[int, int, int]] = []
    used = 0
    for which, n in enumerate(lengths):
        start = 0
        while start < n:
            stop = start + min(n - start, rows_per_pass - used)
            current.append((which, start, stop))
            used += stop - start
            start = stop
            if used == rows_per_pass:
                passes.append(current)
                current, used = [], 0
    if current:
        passes.append(current)
    return passes


class PassCache:
    """Finished projection passes of one LESS scoring, kept as ``pass-NNNNN.npy`` (the pass's projected rows)
    with ``pass-NNNNN.json`` (its seconds) under a directory whose ``key.json`` says what they were computed
    from; a directory with another key is emptied first, so a kept pass is never read for other samples."""

    def __init__(self, directory: Path, key: dict):
        from influcoder.core.atomic import write_json_atomic

        self.directory = directory
        key_path = directory / "key.json"
        if key_path.exists() and read_json(key_path) != json.loads(json.dumps(key)):
            for stale in directory.glob("pass-*"):
                stale.unlink()
        directory.mkdir(parents=True, exist_ok=True)
        write_json_atomic(key_path, key)

    def read(self, number: int) -> tuple[np.ndarray, float] | None:
        rows, record = self.directory / f"pass-{number:05d}.npy", self.directory / f"pass-{number:05d}.json"
        if not (rows.exists() and record.exists()):
            return None
        return np.load(rows), float(read_json(record)["seconds"])

    def write(self, number: int, rows: np.ndarray, seconds: float) -> None:
        from influcoder.core.atomic import atomic_output, write_json_atomic

        path = self.directory / f"pass-{number:05d}.npy"
        with atomic_output(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, rows, allow_pickle=False)
        write_json_atomic(path.with_suffix(".json"), {"seconds": seconds})  # written last: marks the pass done


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
    ):
        from influcoder.labels.finetune import read_snapshots

        self.settings, self.dim, self.rows_per_pass = settings, dim, rows_per_pass
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
            desc=desc,
            passes=self.parts / f"{adapter.name}.passes" if self.parts is not None else None,
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
            record = read_json(kept.with_suffix(".json"))
            if {k: record.get(k) for k in key} == key:
                return np.load(kept), record.get("seconds")
        started = time.perf_counter()
        scorer = self.checkpoint_scorer(adapter, desc)  # one decoder loaded at a time
        matrix = scorer.score(pool, queries)
        seconds = time.perf_counter() - started + scorer.kept_seconds  # passes an earlier run finished count too
        if kept is not None:
            kept.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(kept) as tmp, open(tmp, "wb") as handle:
                np.save(handle, matrix, allow_pickle=False)
            write_json_atomic(kept.with_suffix(".json"), {**key, "seconds": seconds})
            if scorer.passes is not None:
                shutil.rmtree(scorer.passes, ignore_errors=True)  # the matrix holds them now
        return matrix, seconds
