"""Building an index directory (`EmbeddingIndex.build`): its options as one record, a new index's manifest, and
what a rerun on an existing index has left to do.

A build either starts a new index (an --overwrite removes only a directory that is recognisably an index) or
finds the one at its path and picks the segment to encode: none (the same build finished: FAISS is only
brought up to date), the segment an interruption left incomplete (resumed only with the same samples), or a
new one (--append, new ids only). A rerun with other options or another encoder than the index was built with
is refused, never answered 'done' from the old index.
"""

from __future__ import annotations

import fnmatch
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from influcoder.attribution.index_manifest import COVERAGE, MANIFEST, IndexManifest, ScoringRecord
from influcoder.core.atomic import sweep_stale_temporaries
from influcoder.core.errors import ArtifactMismatchError, InflucoderError, SettingError
from influcoder.core.locks import LOCK_NAME
from influcoder.core.store import FeatureStore
from influcoder.data.records import Sample, fingerprint
from influcoder.data.stream import sample_ids

if TYPE_CHECKING:
    from influcoder.core.ray import RayOptions

log = logging.getLogger(__name__)

INDEX_FILES = (MANIFEST, "index.faiss*", f"{COVERAGE}*", "segment-*", "spread-sample-*", "config.yaml", ".*.tmp")
"""What an index directory holds that influcoder wrote (fnmatch patterns): all that --overwrite removes."""


@dataclass(frozen=True)
class IndexBuildOptions:
    """How `EmbeddingIndex.build` writes an index: its keyword arguments (but `progress`) as one record."""

    append: bool = False
    """Add the samples as a new segment of the existing index (their ids must be new to it)."""
    dtype: str = "float16"
    """How the embeddings are stored (float16 or float32); FAISS searches float32 either way."""
    index_factory: str = "Flat"
    """The FAISS index factory string; a trained one (IVF, PQ) is trained on the pool's own embeddings."""
    shard_size: int = 1024
    """Samples per stored shard: what an interrupted build resumes from."""
    batch_size: int = 32
    """Samples per encoder forward pass."""
    overwrite: bool = False
    """Replace the index at the path (only a directory that is an influcoder index, or empty)."""
    encoder_path: str | Path | None = None
    """The encoder's directory: recorded in the manifest (queries are embedded with it) and needed on Ray."""
    ray: RayOptions | None = None
    """Encode the shards on a Ray cluster (`influcoder.core.ray`); None encodes in this process."""


def encoder_fingerprint(encoder) -> str:
    """An index only answers queries of the same encoder on the same backend (`InfluenceEncoder.fingerprint`)."""
    return encoder.fingerprint()


def scoring_record(encoder_path) -> ScoringRecord | None:
    """How this index's rows are scored, for a reader of the manifest: a subspace encoder's rows are predicted
    gradient coordinates, scored against each query's exact ones by default (`Influcoder.query_side`); a
    cosine encoder's rows against the encoded query. None when the encoder's directory is not known."""
    if not encoder_path:
        return None
    from influcoder.encoder.subspace import GradientSubspace

    subspace = GradientSubspace.load(encoder_path)
    if subspace is None:
        return ScoringRecord(objective="cosine", query_side="encoded")
    return ScoringRecord(objective="subspace", query_side="exact", subspace_k=subspace.k)


def new_manifest(encoder, options: IndexBuildOptions) -> IndexManifest:
    """The manifest of a new index of `encoder`'s embeddings, before its first segment is registered."""
    return IndexManifest(
        encoder_fingerprint=encoder_fingerprint(encoder),
        encoder_backend=encoder.backend,
        encoder_config={k: v for k, v in encoder.config.__dict__.items() if k != "label_config"},
        label_config=encoder.config.label_config,
        dim=encoder.score_dim,
        prior_columns=encoder.score_dim - encoder.dim,  # a length prior's column after the embedding
        dtype=options.dtype,
        index_factory=options.index_factory,
        encoder_path=str(Path(options.encoder_path).resolve()) if options.encoder_path else None,
        scoring=scoring_record(options.encoder_path),
    )


def start_index(path: Path, encoder, options: IndexBuildOptions) -> None:
    """Write a new index's manifest at `path` (a first build, or --overwrite of the index there)."""
    if options.append:
        raise SettingError("append", f"needs an existing index at {path}")
    if options.overwrite and path.exists():
        remove_index(path)
    path.mkdir(parents=True, exist_ok=True)
    new_manifest(encoder, options).save(path)


def remove_index(path: Path) -> None:
    """Delete an index directory for --overwrite, but only one that is recognisably an influcoder index (or
    empty): --overwrite once deleted whatever directory --out named, a folder of notes included."""
    entries = [p for p in path.iterdir() if p.name != LOCK_NAME] if path.is_dir() else []
    if path.is_dir() and not entries:
        return
    if not IndexManifest.names_an_index(path):
        raise InflucoderError(
            f"refusing to overwrite {path}: it is not an influcoder index (no {MANIFEST} of one); "
            "pick an empty or new index directory (`out`)"
        )
    foreign = [e.name for e in entries if not any(fnmatch.fnmatch(e.name, p) for p in INDEX_FILES)]
    for entry in entries:  # what an index writes; the lock this run holds and a user's own files stay
        if entry.name not in foreign:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    if foreign:
        log.warning("overwriting kept files that influcoder did not write in %s: %s", path, ", ".join(sorted(foreign)))


def next_segment(index, encoder, samples: Sequence[Sample], options: IndexBuildOptions) -> str | None:
    """The segment a build on the existing `index` (an `EmbeddingIndex`) encodes `samples` into, or None when
    the same build finished already; refuses another encoder, other options, or samples that do not fit."""
    manifest, path = index.manifest, index.path
    sweep_stale_temporaries(path)  # a manifest or FAISS file a killed build was writing
    _check_encoder(manifest, path, encoder)
    ids = sample_ids(samples)
    last = manifest.segments[-1] if manifest.segments else None
    last_store = FeatureStore(path / last.name) if last else None
    _check_options(manifest, path, last_store, options)
    if last is None:  # killed between writing the manifest and registering the first segment
        return "segment-00000"
    if not last_store.complete:
        if last_store.ids != ids:  # an interrupted build or append: resume it only with the same data
            raise InflucoderError(
                f"{path / last.name} is an interrupted build of other samples; rerun it with the same data, or "
                "set `overwrite`"
            )
        return last.name
    if not options.append:
        if len(manifest.segments) == 1 and last_store.config.get("data_fingerprint") == fingerprint(samples):
            return None  # the same build finished already: only make sure FAISS is in sync
        raise InflucoderError(f"{path} already holds an index; set `append` to add to it or `overwrite`")
    known = set(index.ids())
    dup = next((i for i in ids if i in known), None)
    if dup is not None:
        raise InflucoderError(f"id {dup!r} is already in {path}; appended samples need new ids")
    return f"segment-{len(manifest.segments):05d}"


def _check_encoder(manifest: IndexManifest, path: Path, encoder) -> None:
    if manifest.encoder_backend != encoder.backend:
        raise ArtifactMismatchError(
            f"{path} was built with the {manifest.encoder_backend} encoder backend, not {encoder.backend}; set "
            f"`backend` {manifest.encoder_backend} or use another index directory (`out`)"
        )
    if manifest.encoder_fingerprint != encoder_fingerprint(encoder):
        raise ArtifactMismatchError(f"{path} was built with another encoder; use another index directory (`out`)")


def _check_options(manifest: IndexManifest, path: Path, last_store: FeatureStore | None, options) -> None:
    """A rerun with other options used to answer 'done' and keep the old index untouched."""
    asked = (("dtype", options.dtype), ("index_factory", options.index_factory))
    differ = [f"{key} {getattr(manifest, key)!r}" for key, value in asked if getattr(manifest, key) != value]
    if not options.append and last_store is not None and last_store.manifest["shard_size"] != options.shard_size:
        differ.append(f"shard size {last_store.manifest['shard_size']}")
    if differ:
        raise ArtifactMismatchError(
            f"{path} holds an index built with {', '.join(differ)}, not what this run asks for; "
            "use the same options, another index directory (`out`), or set `overwrite`"
        )


def encode_on_ray(store: FeatureStore, samples_file: Path, missing: list[int], encoder, options) -> None:
    """Encode the `missing` shards of `store` on Ray actors, each streaming `samples_file` itself (the driver
    ships paths, never the pool's texts)."""
    from influcoder.attribution.distributed import EncodeShardJob
    from influcoder.core.ray import run_shards_on_ray

    if options.encoder_path is None:
        raise InflucoderError("indexing on Ray needs the encoder as a directory (encoder_path)")
    job = EncodeShardJob(
        str(Path(options.encoder_path).resolve()),
        str(samples_file.resolve()),
        str(store.path.resolve()),
        options.batch_size,
        backend=encoder.backend,
    )
    ray = options.ray
    run_shards_on_ray(job, missing, ray.address, ray.num_actors, ray.gpus_per_actor)
    left = FeatureStore(store.path).missing_shards()
    if left:
        raise InflucoderError(f"Ray run left shards {left[:5]} of {store.path} unwritten; rerun")
