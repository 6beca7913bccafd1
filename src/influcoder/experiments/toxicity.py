"""The toxicity-filtering experiment (DATE-LM's XSTest-response task; the paper's second experiment).

One replicate (a variant and a seed) runs in its own directory, step by step, each step skipped when its
output is already there, so a stopped run continues where it stopped:

    task/              the seeded pools and queries (`influcoder.tasks.toxicity`)
    adapter/           LoRA fine-tuned on the evaluation pool, with its Adam state (`labels.finetune`)
    train-labels/      gradient labels of that adapter, training pool x training queries
    encoder/           the encoder distilled from them (no text shared with the evaluation side)
    scores/M.npy       each method's pool x query scores, with M.json: seconds, bytes per sample
    filtered-adapter/  LoRA fine-tuned on the pool minus the encoder's top `drop` share
    refusals.json      refusal rates on held-out harmful requests: base model, adapter, filtered adapter
    results.json       AUPRC, average precision and recall when dropping 1/2/5%, per method

A pool sample's filtering score is its mean over the queries; positives are the unsafe samples.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from influcoder.core.atomic import write_json_atomic
from influcoder.core.errors import ArtifactMismatchError, InflucoderError
from influcoder.core.jsonfile import read_json
from influcoder.core.progress import progress_bars
from influcoder.core.run_keys import with_added_defaults
from influcoder.data.records import Sample
from influcoder.encoder.settings import DistillSettings
from influcoder.labels.finetune import FinetuneSettings
from influcoder.labels.settings import LabelSettings
from influcoder.metrics import auprc, average_precision, precision_recall_curve, recall_when_dropping
from influcoder.tasks.toxicity import ToxicitySettings, ToxicityTask, build_toxicity_task

METHODS = ("influcoder", "semantic", "tfidf", "repsim", "rds+", "repsim-response", "gradsim", "less")
"""Default methods: the distilled encoder, text and representation baselines, and two gradient methods:
`gradsim` (the labels' own CountSketch gradient cosine, what the encoder imitates) and `less` (Adam)."""
DROP_FRACTIONS = (0.01, 0.02, 0.05)
LESS_WARMUP = {"share": 0.05, "epochs": 4}
"""LESS's warm-up run (Xia et al.: 5% of the training pool, 4 epochs, a checkpoint per epoch), for `less-ckpts`."""


@dataclass
class ToxicityRun:
    """Everything that shapes one replicate; written to ``run.json`` and checked on resume."""

    task: ToxicitySettings = field(default_factory=ToxicitySettings)
    labels: LabelSettings = field(default_factory=lambda: LabelSettings(max_length=192))
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    distill: DistillSettings = field(default_factory=lambda: DistillSettings(epochs=5, lr=1e-4, objective="influcoder"))
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    drop: float = 0.05
    """Share of the pool the filter drops before the second fine-tuning (the refusal check)."""
    refusal_check: bool = True
    max_new_tokens: int = 48

    def key(self) -> dict:
        """What must match to resume (the method list may grow)."""
        d = asdict(self)
        d.pop("methods")
        d.pop("refusal_check")  # whether the last step runs changes nothing before it
        d["distill"].pop("device", None)
        d["distill"]["subspace_ridge"] = self.distill.head_ridge()  # as resolved: what keys held before it was None
        return without_work_settings(d)


WORK_SETTINGS = ("device", "batch_size", "batch_tokens", "max_memory", "attention")
"""Label settings that say how the gradients are computed, not what they are: per-example gradients do not
depend on which samples share a batch, and eager and sdpa attention agree to float rounding (both tested). A
replicate may resume under other values, e.g. a smaller memory budget on another machine."""


def without_work_settings(key: dict) -> dict:
    """`key` without its labels' WORK_SETTINGS (run.json written before they left the key has them)."""
    labels = {k: v for k, v in key.get("labels", {}).items() if k not in WORK_SETTINGS}
    return {**key, "labels": labels} if "labels" in key else key


def pool_scores(matrix: np.ndarray) -> np.ndarray:
    """A pool sample's filtering score: its mean over the queries."""
    return np.asarray(matrix, dtype=np.float64).mean(axis=1)


def filtering_metrics(scores: np.ndarray, positive: np.ndarray) -> dict:
    return {
        "auprc": auprc(scores, positive),
        "average_precision": average_precision(scores, positive),
        "recall_when_dropping": recall_when_dropping(scores, positive, DROP_FRACTIONS),
    }


def run_toxicity(
    out: str | Path,
    run: ToxicityRun,
    *,
    sources=None,
    progress: bool | None = None,
    device: str = "auto",
    log=print,
) -> dict:
    """Run (or continue) one replicate under `out`; returns its results (also written to results.json).
    `progress`: the stages' bars on (True) or off (False); None leaves them to `influcoder.core.progress`."""
    with progress_bars(progress):
        return _run_toxicity(Path(out), run, sources, device, log)


def _run_toxicity(out: Path, run: ToxicityRun, sources, device: str, log) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    _check_run(out, run)
    task = _task(out / "task", run.task, sources, log)
    labels = replace(run.labels, adapter=str((out / "adapter").resolve()), device=device)
    _finetune(out / "adapter", task.pool, run, log)
    encoder_dir = _encoder(out, task, labels, run, device, log)
    positive = task.positives()
    results: dict = {"variant": run.task.variant, "seed": run.task.seed, "counts": task.counts, "methods": {}}
    if "less-ckpts" in run.methods:
        _less_warmup(out / "less-warmup", task, run, log)
    _joint_gradient_scores(out / "scores", run.methods, task, labels, log)
    _joint_representation_scores(out / "scores", run.methods, task, labels, log)
    # a rerun for some methods keeps what earlier runs scored here (their scores files) in results.json
    kept = [m for m in SCORABLE if m not in run.methods and _scored(out / "scores", m)]
    # one order whatever the runs' order: reruns and re-archives then rewrite results.json byte for byte
    for method in sorted([*run.methods, *kept], key=_method_rank):
        matrix, info = _scores(out / "scores", method, task, labels, encoder_dir, device, log)
        scores = pool_scores(matrix)
        results["methods"][method] = {**info, **filtering_metrics(scores, positive)}
    earlier = read_json(out / "results.json") if (out / "results.json").exists() else {}
    if "refusals" in earlier:  # until this run's own check replaces it
        results["refusals"] = earlier["refusals"]
    write_json_atomic(out / "results.json", results)  # the scores' figures stand before the refusal check
    if run.refusal_check and "influcoder" in run.methods:
        results["refusals"] = _refusals(out, task, run, labels, log)
        write_json_atomic(out / "results.json", results)
    return results


def _method_rank(method: str) -> int:
    """A method's place in results.json: SCORABLE's order (an unknown name last, where `_scores` refuses it)."""
    return SCORABLE.index(method) if method in SCORABLE else len(SCORABLE)


def _scored(directory: Path, method: str) -> bool:
    """Whether `method`'s scores and their record are both written under `directory`."""
    return (directory / f"{method}.npy").exists() and (directory / f"{method}.json").exists()


def _check_run(out: Path, run: ToxicityRun) -> None:
    path = out / "run.json"
    if path.exists():
        stored = without_work_settings(read_json(path))
        stored.pop("refusal_check", None)  # recorded by runs before it left the key
        current = json.loads(json.dumps(run.key()))
        stored = with_added_defaults(stored, current, json.loads(json.dumps(ToxicityRun().key())))
        if stored != current:
            differ = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
            raise InflucoderError(
                f"{out} holds a toxicity run with other {', '.join(differ)} settings; use another `out`"
            )
    else:
        write_json_atomic(path, run.key())


def _task(directory: Path, settings: ToxicitySettings, sources, log) -> ToxicityTask:
    if (directory / "task.json").exists():
        return ToxicityTask.load(directory)
    task = build_toxicity_task(settings, sources)
    log(f"task {settings.variant} seed {settings.seed}: pool {task.counts['pool']}, {len(task.queries)} queries")
    task.save(directory)
    return ToxicityTask.load(directory)  # what later steps and resumed runs read: one code path


def _finetune(directory: Path, samples: Sequence[Sample], run: ToxicityRun, log) -> None:
    from influcoder.data.records import fingerprint
    from influcoder.labels.finetune import finetune, read_manifest

    done = read_manifest(directory)
    if done is not None:
        if done.get("data_fingerprint") != fingerprint(samples):
            raise ArtifactMismatchError(
                f"{directory} holds an adapter fine-tuned on other samples ({done.get('n_samples')} of them, "
                f"against {len(samples)} now); delete it to fine-tune again"
            )
        return
    log(f"fine-tuning a LoRA adapter on {len(samples)} samples -> {directory}")
    settings = replace(run.finetune, max_length=run.labels.max_length)
    lora = replace(run.labels, adapter=None).lora()
    finetune(samples, directory, run.labels.model, lora, settings, chat_template=run.labels.chat_template)


def _less_warmup(directory: Path, task: ToxicityTask, run: ToxicityRun, log) -> None:
    """LESS's warm-up: the fine-tune on a seeded share of the pool, a snapshot kept after every epoch."""
    from influcoder.labels.finetune import finetune, read_manifest

    if read_manifest(directory) is not None:
        return
    rng = np.random.default_rng(run.task.seed)
    n = max(1, round(LESS_WARMUP["share"] * len(task.pool)))
    subset = [task.pool[i] for i in sorted(rng.choice(len(task.pool), size=n, replace=False).tolist())]
    epochs = LESS_WARMUP["epochs"]
    log(f"LESS warm-up: fine-tuning on {n} pool samples for {epochs} epochs -> {directory}")
    settings = replace(run.finetune, max_length=run.labels.max_length, epochs=epochs, snapshots=epochs)
    lora = replace(run.labels, adapter=None).lora()
    finetune(subset, directory, run.labels.model, lora, settings, chat_template=run.labels.chat_template)


def _encoder(out: Path, task: ToxicityTask, labels: LabelSettings, run: ToxicityRun, device, log) -> Path:
    from influcoder.encoder.distill import distill_labels
    from influcoder.encoder.run_record import DistillRun
    from influcoder.labels.labelling import label
    from influcoder.labels.labels_dir import LabelsDir

    if not LabelsDir(out / "train-labels").exists():
        log(f"labelling the training pool ({len(task.train_pool)} x {len(task.train_queries)}) with the adapter")
        label(task.train_pool, task.train_queries, out / "train-labels", labels)
    encoder_dir = out / "encoder"
    run_dir = DistillRun(encoder_dir)
    if not (encoder_dir / DistillRun.BEST / "config.json").exists() or not run_dir.has_record():
        log(f"distilling {run.distill.encoder} on the training labels -> {encoder_dir}")
        distill_labels(out / "train-labels", encoder_dir, run.distill, device=device)
    return encoder_dir / "best"


def make_scorer(method: str, labels: LabelSettings, encoder_dir: Path, device: str):
    """The scorer of `method` (`evaluation.baselines.registry`), built on the run's fine-tuned adapter (decoder
    methods, their partial work kept in the run's scores directory) or encoder."""
    from influcoder.evaluation.baselines.registry import MethodContext, build_scorer

    if method not in SCORABLE:
        raise InflucoderError(f"unknown method {method!r}; choose from {', '.join(SCORABLE)}")
    run = Path(labels.adapter).parent
    state = Path(labels.adapter) / "optimizer.pt"
    ctx = MethodContext(labels=labels, encoder_dir=encoder_dir, scratch=run / "scores", optimizer_state=state,
                        device=device)  # fmt: skip
    return build_scorer(method, ctx)


SCORABLE = (
    *METHODS,
    "repsim-last",
    "less-ckpts",
    "less-sgd",
    "datainf",
    "logra",
    "logra-fisher",
)


def _scores(directory: Path, method: str, task, labels, encoder_dir, device, log) -> tuple[np.ndarray, dict]:
    """A method's pool x query matrix and what it cost, computed once and kept (`scores/METHOD.npy`)."""
    matrix_path, info_path = directory / f"{method}.npy", directory / f"{method}.json"
    if matrix_path.exists() and info_path.exists():
        return np.load(matrix_path), read_json(info_path)
    log(f"scoring {len(task.pool)} x {len(task.queries)} with {method}")
    scorer = make_scorer(method, labels, encoder_dir, device)
    started = time.perf_counter()
    matrix = scorer.score(task.pool, task.queries)
    seconds, note = time.perf_counter() - started + getattr(scorer, "kept_seconds", 0.0), None
    if hasattr(scorer, "cost_seconds"):  # parts kept from an earlier run: their own time, not this run's
        seconds, note = scorer.cost_seconds()
    info = {
        "method": method,
        "description": scorer.description,
        "preconditioner": getattr(scorer, "preconditioner", None),
        "seconds": seconds,
        "ms_per_sample": 1000 * seconds / (len(task.pool) + len(task.queries)),
        "bytes_per_sample": scorer.bytes_per_sample(),
    }
    if note is not None:
        info["seconds_note"] = note
    _save_scores(directory, method, matrix, info)
    if getattr(scorer, "passes", None) is not None:
        shutil.rmtree(scorer.passes, ignore_errors=True)  # the scores hold the kept passes now
    return matrix, info


def _joint_gradient_scores(directory: Path, methods: Sequence[str], task: ToxicityTask, labels, log) -> None:
    """Score the gradient methods still missing in one pass of the decoder (`GradientSuite`) when there are
    several; each gets its own scores file, with the shared pass's time and the methods it served."""
    from influcoder.evaluation.baselines.gradients import DESCRIPTIONS, JOINT, GradientSuite

    missing = [m for m in methods if m in JOINT and not (directory / f"{m}.npy").exists()]
    if len(missing) < 2:
        return
    log(f"scoring {len(task.pool)} x {len(task.queries)} with {', '.join(missing)} from one gradient pass")
    state = Path(labels.adapter) / "optimizer.pt" if "less" in missing else None
    # 256 exact gradients (2.5 GB) per generation of LESS's dense signs, as the LESS scorers below
    passes = directory / "gradients.passes"  # each finished pass, so a stopped run redoes only the one it was in
    suite = GradientSuite(labels, missing, optimizer_state=state, rows_per_pass=256, passes=passes)
    _save_shared_pass(
        directory, task, missing, suite.score_all, DESCRIPTIONS, suite.bytes_per_sample, lambda m: m == "less", suite
    )
    shutil.rmtree(passes, ignore_errors=True)  # the scores hold them now


def _joint_representation_scores(directory: Path, methods: Sequence[str], task: ToxicityTask, labels, log):
    """The representation methods pool the same last-layer states: when several are missing, one decoder pass
    scores them all (and only them: a method scored earlier keeps its scores and its recorded time)."""
    from influcoder.evaluation.baselines.representations import DESCRIPTIONS, RepSim

    missing = [m for m in methods if m in DESCRIPTIONS and not (directory / f"{m}.npy").exists()]
    if len(missing) < 2:
        return
    log(f"scoring {len(task.pool)} x {len(task.queries)} with {', '.join(missing)} from one decoder pass")
    scorer = RepSim(labels)
    _save_shared_pass(
        directory,
        task,
        missing,
        lambda pool, queries: scorer.score_all(pool, queries, missing),
        DESCRIPTIONS,
        lambda _: scorer.bytes_per_sample(),
    )


def _save_shared_pass(
    directory, task, missing, score_all, descriptions, bytes_per_sample, adam=None, scorer=None
) -> None:
    """Run one pass that scores several methods; each gets its scores file with the pass's time and the methods
    it served (`adam(method)`: whether the method is Adam-preconditioned; None: no gradients, no preconditioner).
    The time includes what parts an earlier run finished took (`scorer.kept_seconds`)."""
    started = time.perf_counter()
    matrices = score_all(task.pool, task.queries)
    seconds = time.perf_counter() - started + getattr(scorer, "kept_seconds", 0.0)
    for method, matrix in matrices.items():
        info = {
            "method": method,
            "description": descriptions[method],
            "preconditioner": None if adam is None else ("adam" if adam(method) else "sgd"),
            "seconds": seconds,
            "ms_per_sample": 1000 * seconds / (len(task.pool) + len(task.queries)),
            "bytes_per_sample": bytes_per_sample(method),
            "shared_pass": missing,
        }
        _save_scores(directory, method, matrix, info)


def _save_scores(directory: Path, method: str, matrix: np.ndarray, info: dict) -> None:
    from influcoder.core.atomic import atomic_output

    if not np.isfinite(matrix).all():
        raise InflucoderError(f"{method} produced non-finite scores; nothing was saved")
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_output(directory / f"{method}.npy") as tmp, open(tmp, "wb") as handle:
        np.save(handle, matrix, allow_pickle=False)
    write_json_atomic(directory / f"{method}.json", info)


def _refusals(out: Path, task: ToxicityTask, run: ToxicityRun, labels: LabelSettings, log) -> dict:
    """Refusal rates on the held-out harmful requests of the base model, the model fine-tuned on the pool,
    and the model fine-tuned on the pool the encoder filtered (its top `run.drop` share removed)."""
    from influcoder.data.models import load_decoder
    from influcoder.labels.lora import attach_lora
    from influcoder.tasks.refusal import generate_responses, refusal_rate

    path = out / "refusals.json"
    if path.exists():
        return read_json(path)
    scores = pool_scores(np.load(out / "scores" / "influcoder.npy"))
    n_drop = int(round(run.drop * len(task.pool)))
    dropped = set(np.argsort(-scores, kind="stable")[:n_drop].tolist())
    kept = [s for i, s in enumerate(task.pool) if i not in dropped]
    _finetune(out / "filtered-adapter", kept, run, log)
    result: dict = {"drop": run.drop, "n_dropped": n_drop, "unsafe_dropped": 0, "models": {}}
    result["unsafe_dropped"] = sum(task.pool[i].meta["type"] == "unsafe" for i in dropped)
    for name, adapter in (("base", None), ("pool", out / "adapter"), ("filtered", out / "filtered-adapter")):
        model, tokenizer = load_decoder(run.labels.model)
        if adapter is not None:
            model = attach_lora(model, replace(labels, adapter=str(adapter)).lora())
        log(f"generating answers of the {name} model to {len(task.heldout_requests)} held-out harmful requests")
        responses = generate_responses(model, tokenizer, task.heldout_requests, run.max_new_tokens)
        result["models"][name] = {
            "refusal_rate": refusal_rate(responses),
            "responses": [
                {"id": r.id, "request": r.prompt, "response": x} for r, x in zip(task.heldout_requests, responses)
            ],
        }
    write_json_atomic(path, result)
    return result


def precision_recall_points(scores: np.ndarray, positive: np.ndarray) -> dict[str, list[float]]:
    """The curve for the report's plot."""
    precision, recall = precision_recall_curve(scores, positive)
    return {"precision": precision.tolist(), "recall": recall.tolist()}
