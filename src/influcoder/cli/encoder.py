"""`influcoder distill`: step 2, distil a labels directory into an influence encoder."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from influcoder.cli.options import Command, Device, Quiet
from influcoder.core.errors import InflucoderError
from influcoder.encoder.settings import DistillSettings


@dataclass(kw_only=True)
class Distill(Command):
    """Step 2: distil a labels directory into an influence encoder.

    Trains an encoder (default: the embedded MiniLM-L6) so that cosines of its embeddings reproduce the
    gradient influence of a labels directory: alpha * (1 - Pearson) + (1 - alpha) * tempered-softmax KL over
    B queries x C candidates per step. A validation part of the training pool and queries selects the best
    epoch; --eval-pool/--eval-queries hold out a test split it never sees. Rerunning the same command after an
    interruption resumes from the last saved state: every epoch's end, and every --checkpoint-minutes inside an
    epoch.
    """

    labels: Path
    """A directory written by `influcoder label`."""
    out: Path
    """Output directory (best/, last/, training.json)."""
    overwrite: bool = False
    """Discard a run of other settings or labels found in --out."""
    eval_pool: int = 0
    """Pool samples held out for evaluation."""
    eval_queries: int = 0
    """Queries held out for evaluation."""
    eval_protocol: Literal["random", "task"] = "random"
    """How --eval-pool/--eval-queries are drawn: random samples (of tasks training also sees), or whole groups
    of --group-field (tasks never seen in training; users' pools are mostly of this kind)."""
    group_field: str = "task"
    """The meta field whose groups the task protocol holds out whole."""
    eval_split: Path | None = None
    """Hold out exactly these items: a JSON file with pool_ids and query_ids (e.g. an earlier eval_split.json)."""
    settings: Annotated[DistillSettings, tyro.conf.OmitArgPrefixes] = field(default_factory=DistillSettings)
    verify: bool = False
    """Check every file of the artifacts it reads before reading, each against its recorded sha256 (as
    `influcoder verify`); the check on every read compares sizes (and hashes only small files read whole)."""
    low_memory: bool = False
    """Give every allocation of 1 MB or more its own memory mapping (glibc): each step's activations then leave
    the process when freed instead of staying as heap fragments, which otherwise pile up step after step.
    The memory between steps then stays flat in the steps, at more time per step (a step's own activations
    remain; docs/results/scale.md). Results are the same."""
    activation_checkpointing: bool = False
    """Keep only each encoder layer's input for the backward pass and recompute the rest there: the same
    training (dropout masks replayed), a smaller working set per step, more time per step; with --low-memory
    as well, less memory still (docs/results/scale.md)."""
    checkpoint_minutes: float = 10.0
    """Inside an epoch, save the training state for a resume at the first step this long after the last save
    (0: every step). An epoch over 100K pool samples takes hours on a CPU; saving a MiniLM run is quick."""
    quiet: Quiet = False
    device: Device = "auto"

    def config_path(self) -> Path:
        return Path(self.out) / "config.yaml"

    def run(self) -> int:
        from influcoder.attribution.verify import require_intact
        from influcoder.encoder.distill import distill_labels
        from influcoder.encoder.run_record import DistillRun

        if not self.checkpoint_minutes >= 0:
            raise InflucoderError(f"--checkpoint-minutes must be 0 or more, got {self.checkpoint_minutes}")
        if self.verify:
            require_intact([self.labels])
        if self.low_memory:
            from influcoder.core.allocator import fix_mmap_threshold

            if not fix_mmap_threshold():
                print("--low-memory has no effect here: it needs glibc's mallopt (Linux)", file=sys.stderr)
        logs = distill_labels(
            self.labels,
            self.out,
            self.settings,
            self.eval_pool,
            self.eval_queries,
            eval_split=self.eval_split,
            overwrite=self.overwrite,
            device=self.device,
            eval_protocol=self.eval_protocol,
            group_field=self.group_field,
            checkpoint_seconds=self.checkpoint_minutes * 60,
            activation_checkpointing=self.activation_checkpointing,
        )
        best, run = max(logs, key=lambda log: log.val_per_anchor), DistillRun(self.out)
        print(
            f"best epoch {best.epoch}: validation per-anchor rho {best.val_per_anchor:.4f}, mean-aggregated rho "
            f"{best.val_mean_aggregated:.4f}; encoder saved to {run.best} (last epoch: {run.last})"
        )
        if self.eval_pool or self.eval_queries or self.eval_split:
            print(f"held-out split for `influcoder evaluate`: {run.eval_split_path}")
        return 0
