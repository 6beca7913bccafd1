"""One registry of attribution methods: name -> how its scorer is built from one `MethodContext`.

`evaluate` and the toxicity experiment both compare methods by name; each used to hold its own list of names
and its own if-chain building the same scorers, and one method had two names ("semantic" / "untrained",
"influcoder" / "distilled"). Here each method has one name, the old names are accepted as aliases (with a
deprecation note), and the commands derive their choices from `method_names()`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from influcoder.core.errors import InflucoderError
from influcoder.evaluation.baselines.base import Scorer


@dataclass
class MethodContext:
    """What building a scorer may need; each method reads the fields it uses."""

    labels: Any = None
    """`LabelSettings` of the decoder and adapter the decoder methods run (None: no decoder method)."""
    encoder_dir: Path | None = None
    """The distilled encoder (``influcoder``, ``semantic``, ``airrep``)."""
    encoder: Any = None
    """That encoder already loaded (else loaded from `encoder_dir`)."""
    labels_dir: Path | None = None
    """The labels scored against (a subspace encoder reads its queries' gradients there)."""
    scratch: Path | None = None
    """Where long methods keep partial work between runs (the toxicity experiment's scores directory)."""
    optimizer_state: Path | None = None
    """A fine-tuned adapter's Adam state: LESS's pool gradients become Adam updates."""
    distill_settings: Any = None
    """`DistillSettings` that ``airrep`` trains with."""
    device: str = "auto"


@dataclass(frozen=True)
class Method:
    name: str
    build: Callable[[MethodContext], Scorer]
    aliases: tuple[str, ...] = ()


def _encoder(ctx: MethodContext):
    from influcoder.encoder.model import InfluenceEncoder

    if ctx.encoder is None:
        if ctx.encoder_dir is None:
            raise InflucoderError("this method needs a distilled encoder")
        ctx.encoder = InfluenceEncoder.from_pretrained(ctx.encoder_dir, device=ctx.device)
    return ctx.encoder


def _distilled(ctx: MethodContext) -> Scorer:
    from influcoder.encoder.subspace import GradientSubspace
    from influcoder.evaluation.baselines.text import Distilled, SubspaceDistilled

    subspace = GradientSubspace.load(ctx.encoder_dir) if ctx.encoder_dir is not None else None
    if subspace is not None and ctx.labels_dir is not None:
        return SubspaceDistilled(_encoder(ctx), subspace, ctx.labels_dir)
    return Distilled(_encoder(ctx))


def _semantic(ctx: MethodContext) -> Scorer:
    from influcoder.encoder.model import InfluenceEncoder
    from influcoder.evaluation.baselines.text import Semantic

    config = _encoder(ctx).config
    fresh = InfluenceEncoder.from_backbone(
        config.backbone, pooling=config.pooling, max_length=config.max_length, device=ctx.device
    )
    return Semantic(fresh)


def _decoder(ctx: MethodContext):
    if ctx.labels is None:
        raise InflucoderError("this method runs the decoder: it needs the label settings")
    return ctx.labels


def _less(ctx: MethodContext) -> Scorer:
    from influcoder.evaluation.baselines.less import Less

    if ctx.scratch is None:
        return Less(_decoder(ctx), optimizer_state=ctx.optimizer_state)
    passes = ctx.scratch / "less.passes"
    return Less(_decoder(ctx), rows_per_pass=256, optimizer_state=ctx.optimizer_state, passes=passes)


def _less_sgd(ctx: MethodContext) -> Scorer:
    from influcoder.evaluation.baselines.less import Less

    passes = ctx.scratch / "less-sgd.passes" if ctx.scratch is not None else None
    return Less(_decoder(ctx), rows_per_pass=256, passes=passes)


def _less_checkpoints(ctx: MethodContext) -> Scorer:
    from influcoder.evaluation.baselines.less import LessCheckpoints

    if ctx.scratch is None or ctx.labels is None or not ctx.labels.adapter:
        raise InflucoderError("less-ckpts needs a toxicity run (its warm-up checkpoints live beside the adapter)")
    run = Path(ctx.labels.adapter).parent
    return LessCheckpoints(ctx.labels, run / "less-warmup", rows_per_pass=256, parts=ctx.scratch / "less-ckpts-parts")


def _datainf(ctx: MethodContext) -> Scorer:
    from influcoder.evaluation.baselines.gradients import DataInf

    return DataInf(_decoder(ctx), scratch=ctx.scratch)


def _logra(fisher: bool) -> Callable[[MethodContext], Scorer]:
    def build(ctx: MethodContext) -> Scorer:
        from influcoder.evaluation.baselines.logra import LoGra

        return LoGra(_decoder(ctx), fisher=fisher)

    return build


def _representation(name: str) -> Callable[[MethodContext], Scorer]:
    def build(ctx: MethodContext) -> Scorer:
        from influcoder.evaluation.baselines.representations import REPRESENTATIONS

        return REPRESENTATIONS[name](_decoder(ctx))

    return build


def _simple(module: str, cls: str) -> Callable[[MethodContext], Scorer]:
    def build(ctx: MethodContext) -> Scorer:
        import importlib

        return getattr(importlib.import_module(f"influcoder.evaluation.baselines.{module}"), cls)()

    return build


def _gradsim(ctx: MethodContext) -> Scorer:
    from influcoder.evaluation.baselines.gradients import GradSim

    return GradSim(_decoder(ctx))


def _airrep(ctx: MethodContext) -> Scorer:
    from influcoder.encoder.settings import DistillSettings
    from influcoder.evaluation.baselines.learned import AirRep

    return AirRep((ctx.distill_settings or DistillSettings()).resolved(), ctx.device)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("influcoder", _distilled, aliases=("distilled",)),
        Method("semantic", _semantic, aliases=("untrained",)),
        Method("tfidf", _simple("text", "TfIdf")),
        Method("pool-mean", _simple("reference", "PoolMean")),
        Method("lengths", _simple("reference", "LengthOffset")),
        Method("repsim", _representation("repsim")),
        Method("rds+", _representation("rds+")),
        Method("repsim-response", _representation("repsim-response")),
        Method("repsim-last", _representation("repsim-last")),
        Method("gradsim", _gradsim),
        Method("less", _less),
        Method("less-ckpts", _less_checkpoints),
        Method("less-sgd", _less_sgd),
        Method("datainf", _datainf),
        Method("logra", _logra(fisher=False)),
        Method("logra-fisher", _logra(fisher=True)),
        Method("airrep", _airrep),
    )
}
ALIASES = {alias: m.name for m in METHODS.values() for alias in m.aliases}


def canonical(name: str) -> str:
    """The method's one name (an old alias is accepted with a deprecation note)."""
    if name in METHODS:
        return name
    if name in ALIASES:
        logging.getLogger(__name__).warning("method %r is now called %r; the old name will go", name, ALIASES[name])
        return ALIASES[name]
    raise InflucoderError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")


def build_scorer(name: str, ctx: MethodContext) -> Scorer:
    """The scorer of method `name` (or an alias of it) built from `ctx`."""
    return METHODS[canonical(name)].build(ctx)


def method_names(*, aliases: bool = False) -> tuple[str, ...]:
    """Every method's name (and, with `aliases`, the old names still accepted)."""
    return (*METHODS, *ALIASES) if aliases else tuple(METHODS)
