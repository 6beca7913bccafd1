"""A `distill` output directory as typed objects: `TrainingRecord` (``training.json``), `EvalSplit`
(``eval_split.json``) and `DistillRun`, which names the directory's files in one place.

A distill run directory::

    out/
      best/  last/         the encoder of the best validation epoch, and of the last one
      training.json        settings, per-epoch logs, the ids of the training and validation split
      eval_split.json      the held-out evaluation ids, which `evaluate` scores (and `distill --eval-split` reuses)
      resume.pt            the training state while the run is unfinished
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from influcoder.core.errors import InflucoderError
from influcoder.core.jsonfile import read_json
from influcoder.core.versioned import NUMBER, VersionedRecord
from influcoder.encoder.epoch_log import EpochLog

Side = Literal["pool", "query"]
Part = Literal["train", "val"]
LEGACY_OBJECTIVE = "influcoder"
"""The objective of a run that records none: runs written before objectives existed trained the cosine one."""


@dataclass(kw_only=True)
class TrainingRecord(VersionedRecord):
    """``training.json``: what a distillation run trained (settings, data fingerprint), how each epoch went and
    which pool and query ids it trained and validated on. Rewritten after every epoch; `complete` once the
    last one is done."""

    FORMAT: ClassVar[str] = "influcoder.training"
    VERSION: ClassVar[int] = 1
    TYPES: ClassVar[dict[str, Any]] = {
        "objective": str, "settings": dict, "epochs": list, "best_val_per_anchor": NUMBER, "complete": bool,
        "data": str, "subspace": dict, "train_pool_ids": list, "val_pool_ids": list, "train_query_ids": list,
        "val_query_ids": list,
    }  # fmt: skip

    objective: str | None = None
    """Written by the subspace objective only; None: the run's settings say (cosine runs, and older runs)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """`DistillSettings.key()`: the settings a resumed run must match."""
    epochs: list[dict[str, Any]] = field(default_factory=list)
    """One `EpochLog` (as a dict) per finished epoch (`epoch_logs` gives them typed)."""
    best_val_per_anchor: float | None = None
    complete: bool = False
    data: str | None = None
    """sha256 of the labels trained on (scores, pool and query texts and ids): `resume.run_key`."""
    subspace: dict[str, Any] | None = None
    """A subspace run's directions: k, how many gradients they were fitted on, targets, singular values."""
    train_pool_ids: list[str] = field(default_factory=list)
    val_pool_ids: list[str] = field(default_factory=list)
    train_query_ids: list[str] = field(default_factory=list)
    val_query_ids: list[str] = field(default_factory=list)

    def ids(self, part: Part, side: Side) -> list[str]:
        """The ids of one part (train or val) of one side (pool or query) of the run's split."""
        return {
            ("train", "pool"): self.train_pool_ids,
            ("val", "pool"): self.val_pool_ids,
            ("train", "query"): self.train_query_ids,
            ("val", "query"): self.val_query_ids,
        }[(part, side)]

    def trained_ids(self) -> set[str]:
        """Every id the encoder was trained on (pool and queries): an evaluation must not score them."""
        return set(self.train_pool_ids) | set(self.train_query_ids)

    @property
    def trained_objective(self) -> str:
        """The objective the run trained: as recorded, else its settings', else the cosine one (older runs)."""
        return self.objective or self.settings.get("objective") or LEGACY_OBJECTIVE

    @property
    def is_subspace(self) -> bool:
        return self.trained_objective == "subspace"

    @property
    def val_group(self) -> str | None:
        """The meta field whose groups the validation split held out whole (None: random samples)."""
        return self.settings.get("val_group")

    @property
    def seed(self) -> int | None:
        return self.settings.get("seed")

    def run_key(self) -> dict[str, Any]:
        """The key a rerun is matched against (`resume.run_key`), as recorded."""
        return {"settings": self.settings, "data": self.data}

    def epoch_logs(self) -> list[EpochLog]:
        return [EpochLog(**x) for x in self.epochs]


@dataclass(kw_only=True)
class EvalSplit(VersionedRecord):
    """``eval_split.json``: the pool and query ids held out of a distillation for `evaluate`, the protocol
    that drew them (random samples, or whole groups of `group_field`: tasks never seen in training) and the
    labels directory they were drawn from. Also any hand-written file of ``pool_ids`` and ``query_ids``."""

    FORMAT: ClassVar[str] = "influcoder.eval-split"
    VERSION: ClassVar[int] = 1
    TYPES: ClassVar[dict[str, Any]] = {
        "labels": str, "protocol": str, "group_field": str, "pool_ids": list, "query_ids": list,
    }  # fmt: skip
    WRITE_NULLS: ClassVar[bool] = True

    labels: str | None = None
    """The labels directory the split was drawn from (resolved path)."""
    protocol: str | None = None
    """random or task; None for a split given as a file without one, or no split."""
    group_field: str | None = None
    """The meta field whose groups the task protocol held out whole."""
    pool_ids: list[str] = field(default_factory=list)
    query_ids: list[str] = field(default_factory=list)

    @staticmethod
    def ids_key(side: Side) -> str:
        """The key holding one side's held-out ids (``pool_ids``, ``query_ids``)."""
        return {"pool": "pool_ids", "query": "query_ids"}[side]


@dataclass(frozen=True)
class DistillRun:
    """The files of a `distill` output directory under `path`, named in one place."""

    TRAINING: ClassVar[str] = "training.json"
    EVAL_SPLIT: ClassVar[str] = "eval_split.json"
    RESUME: ClassVar[str] = "resume.pt"
    BEST: ClassVar[str] = "best"
    LAST: ClassVar[str] = "last"

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def training_path(self) -> Path:
        return self.path / self.TRAINING

    @property
    def eval_split_path(self) -> Path:
        return self.path / self.EVAL_SPLIT

    @property
    def resume_path(self) -> Path:
        return self.path / self.RESUME

    @property
    def best(self) -> Path:
        return self.path / self.BEST

    @property
    def last(self) -> Path:
        return self.path / self.LAST

    def has_record(self) -> bool:
        return self.training_path.exists()

    def record(self) -> TrainingRecord:
        """The run's ``training.json`` (refused naming the file when missing, damaged or newer than this code)."""
        if not self.has_record():
            raise InflucoderError(f"{self.path} is not a distill run (no {self.TRAINING}); run `influcoder distill`")
        return TrainingRecord.load(self.training_path)

    def eval_split(self) -> EvalSplit:
        """The run's ``eval_split.json`` (refused naming the file when missing, damaged or newer)."""
        if not self.eval_split_path.exists():
            raise InflucoderError(f"{self.path} holds no {self.EVAL_SPLIT}; run `influcoder distill`")
        return EvalSplit.load(self.eval_split_path)

    @property
    def is_subspace(self) -> bool:
        """Whether the run trained the subspace objective (its training.json says so)."""
        return self.has_record() and self.record().is_subspace

    def written_by_distill(self) -> bool:
        """Whether the training.json here is one `distill` wrote (it has settings and epochs): --overwrite
        replaces a run, not a user's file of that name. True when there is none."""
        return not self.has_record() or {"settings", "epochs"} <= set(read_json(self.training_path))

    @classmethod
    def around(cls, encoder_dir: str | Path, name: str = TRAINING) -> DistillRun | None:
        """The run directory holding the file `name` for an encoder directory: the directory itself (a run
        directory given for its encoder) or its parent (``out/best``), or None."""
        for candidate in (Path(encoder_dir), Path(encoder_dir).parent):
            if (candidate / name).exists():
                return cls(candidate)
        return None
