"""Pooled backbone states of texts a frozen backbone has already read, kept on disk.

The default subspace encoder reads the labels' decoder frozen and fits only its head in closed form, so the
backbone pass is nearly all of `distill`'s time (13 of 15 minutes on 4,300 texts at 20 blocks here), and of
`evaluate`'s. A second run on the same labels (another seed, split, protocol, head) reads the same texts with
the same backbone: the cache hands back the states instead. Only a frozen backbone may use it (`distill`
attaches it to runs that do not fine-tune, `evaluate` to the encoders it loads).

A state is keyed by what the backbone saw (token ids, response mask, length features) under a directory keyed
by the backbone itself (a digest of its weights, and of the pooling's own parameters) and how it is read
(pooling, token budget, text view, blocks kept, the backbone's config and device type): a fine-tuned or cut
backbone, another pooling or another tokenisation never meets another's states, and a backbone changed after
the cache was attached is read again. States are written in parts, each atomically; a part that does
not read is named in a warning and read around (its texts are computed again).
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from influcoder.core.atomic import atomic_output
from influcoder.core.progress import progress_bar
from influcoder.data.records import Sample

log = logging.getLogger(__name__)
CACHE_NAME = "pooled-states"
InfluenceEncoder = torch.nn.Module
"""What the functions here take: an `influcoder.encoder.model.InfluenceEncoder` (not imported: the model reads
its states through this module)."""


class PooledStatesCache:
    """The states one backbone, read one way, gave for the texts it has seen (`directory`/part-*.npz)."""

    def __init__(self, directory: Path, version: int | None = None):
        self.directory = Path(directory)
        self.version = version
        """The backbone's parameter versions when the cache was attached (`backbone_version`): a backbone
        changed in place since (a training step, a loaded state) no longer reads through this cache."""
        self._known: dict[str, np.ndarray] | None = None

    @classmethod
    def for_encoder(cls, encoder: InfluenceEncoder, root: Path | None = None) -> PooledStatesCache:
        """The cache of `encoder`'s backbone as it is now, under `root` (default: the asset cache's
        ``pooled-states/``)."""
        if root is None:
            from influcoder.data.assets import cache_dir

            root = cache_dir() / CACHE_NAME
        return cls(Path(root) / reader_digest(encoder), backbone_version(encoder))

    def serves(self, encoder: InfluenceEncoder) -> bool:
        """Whether `encoder` reads as it did when this cache was attached (no parameter changed in place)."""
        return self.version is None or self.version == backbone_version(encoder)

    def known(self) -> dict[str, np.ndarray]:
        """Every kept state by text key, read once (all parts in memory: meant for labelled sets, not a pool of
        millions)."""
        if self._known is None:
            self._known = {}
            for part in sorted(self.directory.glob("part-*.npz")):
                try:
                    with np.load(part) as data:
                        self._known.update(zip(data["keys"].tolist(), data["states"], strict=True))
                except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                    log.warning("%s: not a readable part of the states cache (%s); its texts are read again", part, exc)
        return self._known

    def add(self, keys: Sequence[str], states: np.ndarray) -> None:
        """Keep `states` (n, width) of the texts `keys`, as one new part."""
        if not len(keys):
            return
        self.known().update(zip(keys, np.asarray(states, dtype=np.float32), strict=True))
        name = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:24]
        try:  # a cache that cannot be written (full disk, a file in its place) must not cost the states just read
            self.directory.mkdir(parents=True, exist_ok=True)
            with atomic_output(self.directory / f"part-{name}.npz") as tmp, open(tmp, "wb") as handle:
                np.savez(handle, keys=np.array(keys), states=np.asarray(states, dtype=np.float32))
        except OSError as exc:
            log.warning("could not keep %d texts' states in %s (%s); this run goes on without them", len(keys),
                        self.directory, exc)  # fmt: skip


def backbone_version(encoder: InfluenceEncoder) -> int:
    """The sum of the in-place version counters of what shapes a pooled state (the backbone's parameters and a
    learned pooling query; not the head, which the fit sets after reading the states): any optimizer step or
    loaded state raises it."""
    query = [encoder.attention_query] if getattr(encoder, "attention_query", None) is not None else []
    return sum(p._version for p in [*encoder.backbone.parameters(), *query])


def reader_digest(encoder: InfluenceEncoder) -> str:
    """sha256 over everything before the head that shapes a pooled state: the backbone's weights (only the
    blocks it keeps), the pooling's parameters, and the reading settings."""
    config = encoder.config
    digest = hashlib.sha256(json.dumps({
        "backbone": config.backbone, "pooling": config.pooling, "max_length": config.max_length,
        "text_view": config.text_view, "backbone_layers": config.backbone_layers,
        "length_features": config.length_features, "tokenizer": type(encoder.tokenizer).__name__,
        "backbone_config": encoder.backbone.config.to_json_string(), "device": encoder.device.type,
    }, sort_keys=True).encode())  # fmt: skip
    for name, tensor in sorted(encoder.state_dict().items()):
        if name.startswith("head") and not name.startswith("head_"):  # the head reads states, it does not shape them
            continue
        if name in ("head_shift", "head_scale"):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def text_keys(encoded: dict[str, list]) -> list[str]:
    """One key per text: a digest of what the backbone and pooling read of it."""
    fields = [name for name in ("input_ids", "response_mask", "length_features") if name in encoded]
    return [
        hashlib.sha256(json.dumps([encoded[name][i] for name in fields]).encode()).hexdigest()
        for i in range(len(encoded["input_ids"]))
    ]


@torch.no_grad()
def pooled_states(encoder: InfluenceEncoder, items: Sequence[Sample | str], batch_size: int = 64) -> np.ndarray:
    """(n, width) pooled backbone states before the head, in input order; through the encoder's
    `states_cache` when it has one (the texts it holds are not read again)."""
    encoded = encoder.tokenize_unpadded(items)
    cache: PooledStatesCache | None = getattr(encoder, "states_cache", None)
    if cache is not None and not cache.serves(encoder):
        log.warning("the backbone changed since its states cache was attached; reading it again, not the cache")
        cache = None
    if cache is None or not items:
        return _backbone_pass(encoder, encoded, list(range(len(items))), batch_size)
    keys, known = text_keys(encoded), cache.known()
    missing = [i for i, k in enumerate(keys) if k not in known]
    if missing:
        cache.add([keys[i] for i in missing], _backbone_pass(encoder, encoded, missing, batch_size))
        log.info("states cache %s: %d texts read, %d reused", cache.directory, len(missing), len(items) - len(missing))
    return np.stack([known[k] for k in keys])


def _backbone_pass(encoder: InfluenceEncoder, encoded: dict[str, list], rows: list[int], batch_size: int) -> np.ndarray:
    """(len(rows), width) states of the texts at `rows`, in that order, read in length-sorted batches."""
    order = sorted(range(len(rows)), key=lambda j: -len(encoded["input_ids"][rows[j]]))
    out = None
    was_training = encoder.training
    encoder.eval()
    with progress_bar(total=len(rows), desc="pooled states", unit="text") as bar:
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            states = encoder.pool(**encoder.pad(encoded, [rows[j] for j in index])).float().cpu().numpy()
            if out is None:
                out = np.empty((len(rows), states.shape[1]), dtype=np.float32)
            out[index] = states
            bar.update(len(index))
    encoder.train(was_training)
    if out is None:
        return np.zeros((0, 0), dtype=np.float32)
    return out
