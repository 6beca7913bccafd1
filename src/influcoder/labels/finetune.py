"""Fine-tune a LoRA adapter on a pool: the model whose behaviour a toxicity-filtering run attributes.

DATE-LM's filtering tasks attribute a model *fine-tuned on the pool* (harmful answers learned from the few
unsafe samples in it), so labels and gradient baselines must use that adapter, and LESS needs its Adam state
to precondition. This is a short torch loop rather than the transformers Trainer: the same response-only
loss, prompt masking and truncation as the labels (`SampleFormatter`), the same seeded adapter initialisation
(`attach_lora`), and nothing else to configure.

The output directory is a peft adapter directory (``adapter_config.json``, ``adapter_model.safetensors``)
that ``label --adapter DIR`` loads, plus ``optimizer.pt`` (Adam's first and second moments by parameter
name, see `adam`) and ``finetune.json`` (settings, data fingerprint, the loss of every step). A run saves a
checkpoint every ``checkpoint_every`` steps; rerunning the same command continues from it, and a run with
other settings or data is refused instead of mixed in.

With ``snapshots`` = K it also keeps K adapters along the way (the end of each K-th of the steps, with Adam's
moments and the mean learning rate of the steps before it) under ``snapshots/step-N``: LESS scores with
several checkpoints of a warm-up run, weighting each by its learning rate (`read_snapshots`).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from influcoder.core.atomic import write_json_atomic
from influcoder.core.errors import ArtifactMismatchError, InflucoderError, NonFiniteValueError, SettingError
from influcoder.core.jsonfile import read_json
from influcoder.core.locks import exclusive_directory
from influcoder.core.progress import progress_bar, progress_bars
from influcoder.data.formatting import SampleFormatter, collate_left_padded
from influcoder.data.records import Sample, fingerprint
from influcoder.labels.fused_lora import fused_training
from influcoder.labels.gradients import forward_response_loss
from influcoder.labels.lora import LoraSettings, attach_lora, lora_parameters

MANIFEST = "finetune.json"
OPTIMIZER = "optimizer.pt"
CHECKPOINT = "checkpoint"
SNAPSHOTS = "snapshots"


@dataclass
class FinetuneSettings:
    """How the adapter is trained; recorded in ``finetune.json``."""

    epochs: int = 1
    """Passes over the pool (DATE-LM: one)."""
    lr: float = 2e-4
    """AdamW peak learning rate (linear warm-up, then linear decay to zero)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_ratio: float = 0.03
    """Share of the steps spent warming the learning rate up."""
    batch_size: int = 8
    """Samples per optimizer step."""
    max_length: int = 192
    """Token budget per sample (the prompt is cut from the left first, as for the labels)."""
    seed: int = 0
    """Seed of the data order (the adapter's initialisation has its own seed in the LoRA settings)."""
    checkpoint_every: int = 50
    """Steps between checkpoints a rerun continues from."""
    snapshots: int = 0
    """Adapters (with Adam state) kept at the end of each of this many equal parts of training, for LESS."""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_length", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise SettingError(name, f"must be at least 1, got {getattr(self, name)}")
        if self.snapshots < 0:
            raise SettingError("snapshots", f"must be 0 or more, got {self.snapshots}")
        if not self.lr > 0:
            raise SettingError("lr", f"must be positive, got {self.lr}")


@dataclass
class FinetuneResult:
    out: Path
    steps: int
    losses: list[float]
    resumed_from: int


def step_order(lengths: Sequence[int], settings: FinetuneSettings, group: int = 16) -> list[list[int]]:
    """Sample indices of every optimizer step, all epochs, seeded, so a resumed run sees exactly the batches
    the interrupted one would have.

    Per epoch: a random permutation, cut into windows of `group` batches; within a window samples are sorted by
    length before they are batched, and the batches are then shuffled (the Trainer's group_by_length). A batch
    is padded to its longest sample, and a pool mixes 30-token answers with 190-token ones, so random batches
    would spend most of their time on padding.
    """
    rng = np.random.default_rng(settings.seed)
    size = settings.batch_size
    steps = []
    for _ in range(settings.epochs):
        order = rng.permutation(len(lengths)).tolist()
        epoch = []
        for start in range(0, len(order), size * group):
            window = sorted(order[start : start + size * group], key=lambda i: lengths[i])
            epoch += [window[i : i + size] for i in range(0, len(window), size)]
        steps += [epoch[i] for i in rng.permutation(len(epoch))]
    return steps


def learning_rate(step: int, total: int, settings: FinetuneSettings) -> float:
    warmup = max(1, math.ceil(settings.warmup_ratio * total))
    if step < warmup:
        return settings.lr * (step + 1) / warmup
    return settings.lr * max(0.0, (total - step) / max(1, total - warmup))


def finetune(
    samples: Sequence[Sample],
    out: str | Path,
    model_name: str,
    lora: LoraSettings,
    settings: FinetuneSettings,
    *,
    chat_template: bool | None = None,
    model=None,
    tokenizer=None,
    progress: bool | None = None,
    fused_layers: bool = True,
) -> FinetuneResult:
    """Train a LoRA adapter on `samples` (response-only loss) and save it with its Adam state under `out`.
    `progress`: the step bar on (True) or off (False); None: the switch in `influcoder.core.progress`.

    `fused_layers` computes plain peft LoRA layers as one autograd node each (`fused_lora.fused_training`):
    the same gradients to float rounding, in less time, as peft's four nodes per layer."""
    from influcoder.data.models import load_decoder

    _check_trainable(samples)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with exclusive_directory(out, "fine-tuning"), progress_bars(progress):
        if model is None:
            model, tokenizer = load_decoder(model_name)
        peft_model = attach_lora(model, lora)
        formatter = SampleFormatter(tokenizer, settings.max_length, chat_template)
        tokenized = formatter.encode_all(samples)
        manifest = {
            "format": "influcoder.finetune",
            "version": 1,
            "model": model_name,
            "lora": lora.to_dict(),
            "settings": asdict(settings),
            "text_view": formatter.view,
            "data_fingerprint": fingerprint(samples),
            "n_samples": len(samples),
        }
        params = lora_parameters(peft_model)
        optimizer = torch.optim.AdamW(params.values(), lr=settings.lr, weight_decay=settings.weight_decay)
        run = _Run(out, peft_model, params, optimizer, manifest, settings)
        steps = step_order([len(t.input_ids) for t in tokenized], settings)
        losses, start = _resume(out, manifest, peft_model, params, optimizer)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        peft_model.train()
        with fused_training(peft_model) if fused_layers else nullcontext():
            _train(run, tokenized, steps, start, losses, pad_id or 0)
        peft_model.eval()
        _save(out, peft_model, params, optimizer, {**manifest, "losses": losses, "steps": len(steps), "done": True})
        shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
        return FinetuneResult(out, len(steps), losses, start)


def _check_trainable(samples: Sequence[Sample]) -> None:
    """Refuse an empty pool, or samples without a response (they carry no loss)."""
    if not samples:
        raise InflucoderError("nothing to fine-tune on: the pool is empty")
    empty = [s.id for s in samples if not s.response]
    if empty:
        raise InflucoderError(f"samples without a response cannot be trained on: {', '.join(empty[:5])}")


@dataclass
class _Run:
    """What each training step updates and each save writes: the adapter, its parameters and optimizer."""

    out: Path
    model: Any
    params: dict[str, torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    manifest: dict[str, Any]
    settings: FinetuneSettings

    def save(self, directory: Path, manifest: dict[str, Any]) -> None:
        _save(directory, self.model, self.params, self.optimizer, manifest)


def _train(run: _Run, tokenized, steps: list[list[int]], start: int, losses: list[float], pad_id: int):
    """Steps `start`, ... of `steps` (batches of `tokenized` indices), each loss appended to `losses`; snapshots
    and checkpoints saved on the way (a snapshot before the checkpoint of its step)."""
    settings, total = run.settings, len(steps)
    bar = progress_bar(total=total, initial=start, desc="fine-tune", unit="step")
    snapshot_ends = snapshot_steps(total, settings.snapshots)
    for step in range(start, total):
        batch = collate_left_padded([tokenized[i] for i in steps[step]], pad_id)
        for group in run.optimizer.param_groups:
            group["lr"] = learning_rate(step, total, settings)
        loss = _batch_loss(run.model, batch)
        if not torch.isfinite(loss):
            ids = [tokenized[i].id for i in steps[step]]
            raise NonFiniteValueError(f"non-finite loss at step {step} (samples {', '.join(ids)})")
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if step + 1 in snapshot_ends:
            _save_snapshot(run, step + 1, snapshot_ends, total)
        if (step + 1) % settings.checkpoint_every == 0 and step + 1 < total:
            run.save(run.out / CHECKPOINT, {**run.manifest, "losses": losses, "done": False})
    bar.close()


def snapshot_steps(total: int, snapshots: int) -> list[int]:
    """The steps (1-based, ascending, distinct) that end each of `snapshots` equal parts of `total` steps."""
    return sorted({max(1, round(total * (i + 1) / snapshots)) for i in range(snapshots)}) if snapshots else []


def _save_snapshot(run: _Run, step: int, ends: list[int], total: int) -> None:
    """A snapshot after `step`, with the mean learning rate of the steps since the previous one (LESS's weight).

    Saved before the checkpoint of the same step, so a complete checkpoint implies every snapshot before it is
    complete; a run resumed from an earlier checkpoint redoes (and rewrites) the same snapshot."""
    first = max([e for e in ends if e < step], default=0)
    rates = [learning_rate(s, total, run.settings) for s in range(first, step)]
    manifest = {"format": "influcoder.finetune-snapshot", "step": step, "lr": float(np.mean(rates)), "done": True}
    run.save(run.out / SNAPSHOTS / f"step-{step:06d}", manifest)


def read_snapshots(directory: str | Path) -> list[tuple[Path, float]]:
    """(adapter directory, mean learning rate) of every snapshot a finished run kept, in training order."""
    run = read_manifest(directory)
    if run is None:
        raise InflucoderError(f"{directory} holds no finished fine-tuning run (finetune.json)")
    found = []
    for path in sorted((Path(directory) / SNAPSHOTS).glob("step-*")):
        manifest = read_manifest(path)
        if manifest is None:
            raise InflucoderError(f"{path}: an incomplete snapshot (no finished finetune.json); rerun the fine-tune")
        found.append((path, float(manifest["lr"])))
    expected = len(snapshot_steps(run["steps"], run["settings"].get("snapshots", 0)))
    if not found or len(found) != expected:
        raise InflucoderError(
            f"{directory} keeps {len(found)} snapshots, its settings {expected}: fine-tune it with "
            "snapshots (FinetuneSettings.snapshots)"
        )
    return found


def _batch_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over the batch of each sample's mean response-token loss: every sample weighs the same, as in
    the labels' per-example loss."""
    device = next(model.parameters()).device
    return forward_response_loss(model, {k: v.to(device) for k, v in batch.items()}).mean()


def _save(directory: Path, model, params: dict[str, torch.nn.Parameter], optimizer, manifest: dict) -> None:
    """Adapter, Adam moments by parameter name, then the manifest last: a directory whose manifest says
    done holds everything."""
    from influcoder.labels.adam import save_adam_state

    directory.mkdir(parents=True, exist_ok=True)
    if (directory / MANIFEST).exists():
        (directory / MANIFEST).unlink()  # a crash mid-save must not leave an old "done" manifest beside new files
    model.save_pretrained(directory)
    save_adam_state(directory / OPTIMIZER, params, optimizer)
    write_json_atomic(directory / MANIFEST, manifest)


def _resume(out: Path, manifest: dict, model, params, optimizer) -> tuple[list[float], int]:
    """Losses so far and the step to continue from: 0 for a new run; refuses another run's directory."""
    from influcoder.labels.adam import load_adam_state_into

    for directory in (out, out / CHECKPOINT):
        path = directory / MANIFEST
        if not path.exists():
            continue
        saved = read_json(path)
        differing = [k for k in manifest if saved.get(k) != manifest[k]]
        if differing:
            raise ArtifactMismatchError(
                f"{out} holds a fine-tuning run with other {', '.join(differing)}; use another `out` or delete it"
            )
        if saved.get("done"):
            raise InflucoderError(f"{out} already holds a finished adapter ({saved['steps']} steps); nothing to do")
        _load_adapter_weights(model, directory)
        load_adam_state_into(directory / OPTIMIZER, params, optimizer)
        return list(saved["losses"]), len(saved["losses"])
    return [], 0


def _load_adapter_weights(model, directory: Path) -> None:
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(directory / "adapter_model.safetensors")))


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    """The ``finetune.json`` of a finished run, or None when `directory` is not one."""
    path = Path(directory) / MANIFEST
    if not path.exists():
        return None
    manifest = read_json(path)
    return manifest if manifest.get("done") else None
