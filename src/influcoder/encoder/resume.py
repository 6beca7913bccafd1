"""A distillation run's saved state: what a resumed run must match, and where it stopped.

`distill` writes ``out/resume.pt`` after every epoch and, inside an epoch, every `checkpoint_seconds`
(`Distiller.fit`); a rerun loads it here and continues, refusing a state written by other settings or labels
(naming what differs) so that later epochs never train a different model on top of an earlier one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from influcoder.core.atomic import atomic_output, sweep_stale_temporaries
from influcoder.core.errors import ArtifactMismatchError, InflucoderError
from influcoder.core.run_keys import same_run, with_added_defaults
from influcoder.data.records import Sample, fingerprint
from influcoder.encoder.run_record import DistillRun
from influcoder.encoder.settings import DistillSettings

RESUME_STATE = DistillRun.RESUME
CHECKPOINT_SECONDS = 600.0
"""Default time between mid-epoch saves of the training state: saving a MiniLM run's state (weights and Adam's
two moments, ~270 MB) is quick beside ten minutes of training, so a kill loses at most one interval of training
for a small share of its time."""


def run_key(settings: DistillSettings, scores: np.ndarray, pool: Sequence[Sample], queries: Sequence[Sample]) -> dict:
    """What a training run depends on: its settings and a fingerprint of its data (texts, ids and labels).

    A resumed run must match it exactly, or its later epochs would silently train a different model on top.
    """
    digest = hashlib.sha256(np.ascontiguousarray(scores, dtype=np.float32).tobytes())
    digest.update(fingerprint(pool).encode() + fingerprint(queries).encode())
    return {"settings": settings.key(), "data": digest.hexdigest()}


def _run_key_defaults() -> dict:
    """The run key's settings at their defaults: what runs written before a setting existed match. A run
    recorded before `objective` existed trained the cosine objective, and one recorded before `subspace_head`
    existed fitted the linear head, whatever the defaults are now."""
    defaults = DistillSettings(objective="influcoder").resolved().key()
    return {"settings": {**defaults, "objective": "influcoder", "subspace_head": "linear"}}


def _key_difference(stored: dict, wanted: dict) -> str:
    stored = with_added_defaults(stored, wanted, _run_key_defaults())
    changed = [k for k in wanted["settings"] if stored.get("settings", {}).get(k) != wanted["settings"][k]]
    parts = [f"{k}: stored {stored['settings'].get(k)!r}, requested {wanted['settings'][k]!r}" for k in changed]
    if stored.get("data") is None:
        parts.append("it records no fingerprint of its labels (made by an older influcoder)")
    elif stored["data"] != wanted["data"]:
        parts.append("the labels (pool, queries or scores) differ")
    return "; ".join(parts) or "unknown difference"


def load_state(out: Path, key: dict, overwrite: bool) -> dict | None:
    """The saved state to resume from, {"complete": True, "logs"} for a finished identical run, or None to
    start afresh."""
    run = DistillRun(out)
    sweep_stale_temporaries(out)  # an encoder or state a killed run was swapping in
    if overwrite:
        run.resume_path.unlink(missing_ok=True)
        return None
    if run.resume_path.exists():
        state = torch.load(run.resume_path, map_location="cpu", weights_only=True)
        if not same_run(state["key"], key, _run_key_defaults()):
            raise InflucoderError(
                f"{out} holds a partial distillation run of other settings or labels "
                f"({_key_difference(state['key'], key)}); rerun with `overwrite` to discard it, or pick "
                "another `out`"
            )
        return state
    if run.has_record():
        done = run.record()
        stored = done.run_key()
        if done.complete and same_run(stored, key, _run_key_defaults()):
            return {"complete": True, "logs": done.epochs}
        raise InflucoderError(
            f"{out} already holds a distillation run ({_key_difference(stored, key)}); rerun with "
            "`overwrite` to replace it, or pick another `out`"
        )
    return None


def save_state(out: Path, key: dict, parts: dict, position: dict | None) -> None:
    """Write `parts` (weights, optimizer, schedule, random generators, logs, best) and `position` (None at an
    epoch's end; inside one, its order of the pool, the steps done, their loss sums and seconds) atomically."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(DistillRun(out).resume_path) as tmp:
        torch.save({"key": key, **parts, "inside": position}, tmp)


def refuse_foreign_record(out: Path) -> None:
    """--overwrite replaces a distillation run, not a training.json in `out` that influcoder did not write."""
    run = DistillRun(out)
    if not run.written_by_distill():
        raise ArtifactMismatchError(
            f"{run.training_path} was not written by `influcoder distill` (no settings and epochs); `overwrite` "
            "replaces only a distillation run: move the file away or pick another `out`"
        )
