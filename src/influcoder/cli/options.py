"""What every command shares: option groups, the run configuration file, and the old flag spellings.

Commands are dataclasses; tyro turns their fields into flags (``pool_limit`` -> ``--pool-limit``) and their
field docstrings into ``--help`` lines with defaults. Each run writes its full configuration as
``config.yaml`` beside its outputs, and ``--config FILE`` starts from such a file (flags given on the command
line still win), so any run can be repeated in one line.
"""

from __future__ import annotations

import ast
import collections.abc
import dataclasses
import inspect
import os
import sys
import textwrap
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import tyro

from influcoder.core.atomic import atomic_output
from influcoder.core.errors import InflucoderError

SOURCES_HELP = (
    "DATA is a file (.jsonl, .csv, .parquet), a saved Hugging Face dataset directory, or a built-in source: "
    "evals, bbh, bbh-cot, harmful-pairs, refusals, adv-bench, donotanswer, harmbench (optionally name:task, "
    "e.g. bbh:navigate)."
)
CONFIG_NAME = "config.yaml"


@dataclass
class CommonOptions:
    """Options of every command."""

    config: Path | None = None
    """Start from a config.yaml that an earlier run wrote (flags given here override it)."""
    cache_dir: str | None = None
    """Where embedded models and data are cached (default: $INFLUCODER_CACHE or the user cache dir)."""


@dataclass
class InputOptions:
    """How records of a user's file become prompt/response pairs."""

    prompt_field: str | None = None
    """Record field of the prompt (default: first of prompt/instruction/question/query/input, or chat
    'messages')."""
    response_field: str | None = None
    """Record field of the response (default: first of response/completion/output/answer/target/ideal, or the
    last assistant turn)."""

    def load(self, source: str, limit: int | None = None, seed: int = 0, stream: bool = False):
        """Samples of DATA `source` (a file or a built-in source), a seeded subset of `limit` when given; with
        `stream`, a JSONL file is read from disk on access (`influcoder.data.stream`)."""
        from influcoder.data.loading import load_samples

        return load_samples(
            source,
            limit=limit,
            seed=seed,
            prompt_field=self.prompt_field,
            response_field=self.response_field,
            stream=stream,
        )


@dataclass
class RayFlags:
    """Beyond one process: the shards on Ray Data actors (pip install "influcoder[ray]")."""

    ray: str | None = None
    """A Ray cluster ADDRESS, or 'local' (a bare --ray) for a local Ray; default: no Ray."""
    ray_actors: int | None = None
    """Number of model-holding actors (default: one per GPU, else one per CPU)."""
    ray_gpus_per_actor: float = 0.0
    """GPUs per actor."""

    def options(self):
        """The library's `RayOptions`, or None when --ray is not given."""
        if not self.ray:
            return None
        from influcoder.core.ray import RayOptions

        return RayOptions(None if self.ray == "local" else self.ray, self.ray_actors, self.ray_gpus_per_actor)


Quiet = Annotated[bool, tyro.conf.arg(help="No progress bars, previews, third-party warnings or load bars.")]
Device = Annotated[str, tyro.conf.arg(help="Where the models run: auto (CUDA when present), cpu, cuda or cuda:N.")]
Common = Annotated[CommonOptions, tyro.conf.OmitArgPrefixes]
Input = Annotated[InputOptions, tyro.conf.OmitArgPrefixes]
Distributed = Annotated[RayFlags, tyro.conf.OmitArgPrefixes]


@dataclass(kw_only=True)
class Command(ABC):
    """A command: its own options, then groups (`common`, and `input` / `distributed` where they apply)."""

    common: Common = field(default_factory=CommonOptions)
    positive: ClassVar[tuple[str, ...]] = ()
    """Integer options that must be at least 1 when given (a count, a limit, a size)."""
    non_negative: ClassVar[tuple[str, ...]] = ()
    """Integer options where 0 means none and a negative value is a mistake (``--audit -1`` once ran a full
    audit, ``data --show -1`` showed all but one sample)."""

    def __post_init__(self) -> None:
        for names, least in ((self.positive, 1), (self.non_negative, 0)):
            for name in names:
                value = getattr(self, name)
                if isinstance(value, int) and not isinstance(value, bool) and value < least:
                    flag = "-k" if name == "k" else f"--{name.replace('_', '-')}"
                    raise InflucoderError(f"{flag} must be at least {least}, got {value}")

    @abstractmethod
    def run(self) -> int:
        """Call the library and print; the exit status (0: done)."""

    def config_path(self) -> Path | None:
        """Where this run's configuration is written (None: a command without outputs writes none)."""
        return None


# ------------------------------------------------------------------------------------- help text


def paragraphs(text: str) -> str:
    """`text` with each paragraph on one line (blank lines kept), for a help screen to wrap as it likes.

    Why: tyro keeps a docstring's line break wherever the next line starts with something other than a letter
    (an indented continuation line, "(", "--"), so help wrapped in the source came out ragged.
    """
    blocks = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(block.split()) for block in blocks if block.strip())


def field_docstrings(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass `cls` and its bases (the string after `name: type = ...`)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass.__module__ == "builtins":
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # no source (a frozen app): tyro's own reading still applies
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for statement, following in zip(body, body[1:]):
            if (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[statement.target.id] = following.value.value
    return docs


def tidy_help(cls: type) -> None:
    """Hand tyro each field's help of `cls` (and of its nested option groups) as whole paragraphs.

    The help goes into the field's ``metadata["help"]``, the Hugging Face convention tyro reads first; a help
    given with ``tyro.conf.arg`` (Quiet, Device) still wins. Idempotent.
    """
    hints = typing.get_type_hints(cls, include_extras=True)
    docs = field_docstrings(cls)
    for f in dataclasses.fields(cls):
        if f.name in docs and "help" not in f.metadata:
            f.metadata = types.MappingProxyType({**f.metadata, "help": paragraphs(docs[f.name])})
        hint = hints.get(f.name)
        if typing.get_origin(hint) is Annotated:
            hint = typing.get_args(hint)[0]
        if dataclasses.is_dataclass(hint):
            tidy_help(hint)


def description(cls: type) -> str:
    """A command's --help description: its docstring, one line per paragraph (the terminal wraps it; tyro
    would re-join any wrapping of ours, except before lines such as "(results.json", which made it ragged)."""
    return paragraphs(cls.__doc__ or "")


# ------------------------------------------------------------------------------------- old flag spellings


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """Accept the flag forms of the argparse CLI that tyro spells differently, so old commands keep working.

    ``influcoder --cache-dir DIR COMMAND`` (a global option before the command) moves behind the command;
    a bare ``--ray`` means a local Ray (``--ray local``); ``--chat-template`` / ``--no-chat-template`` set the
    three-valued chat-template switch.
    """
    args = list(argv)
    head: list[str] = []
    while args and args[0].startswith("--cache-dir"):
        take = 1 if "=" in args[0] else 2
        head, args = head + args[:take], args[take:]
    if args:
        args = args[:1] + head + args[1:]
    out: list[str] = []
    for i, arg in enumerate(args):
        following = args[i + 1] if i + 1 < len(args) else None
        if arg == "--ray" and (following is None or following.startswith("-")):
            out += ["--ray", "local"]
        elif arg == "--chat-template" and (following is None or following.startswith("-")):
            out += ["--chat-template", "True"]
        elif arg == "--no-chat-template":
            out += ["--chat-template", "False"]
        else:
            out.append(arg)
    return out


# ------------------------------------------------------------------------------------- configuration files


def config_file_in(argv: Sequence[str]) -> Path | None:
    """The value of ``--config`` among `argv`, if any (read before parsing: it supplies the defaults)."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--config="):
            return Path(arg.split("=", 1)[1])
    return None


def _matches(value: Any, hint: Any) -> bool:
    """Whether a YAML value fits a field's type hint (an unknown kind of hint is not checked)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return _matches(value, args[0])
    if hint is Any:
        return True
    if origin is Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arm) for arm in args)
    if hint is type(None):
        return value is None
    if origin in (list, tuple, collections.abc.Sequence):
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value) if args else True
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (str, Path):
        return isinstance(value, str)
    if dataclasses.is_dataclass(hint) or hint is dict or origin is dict:
        return isinstance(value, dict)
    return True


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return _describe(args[0])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    names = {str: "a string", Path: "a path", int: "an integer", float: "a number", bool: "true or false",
             type(None): "null"}  # fmt: skip
    if origin in (list, tuple, collections.abc.Sequence):
        return f"a list of {_describe(args[0])}" if args else "a list"
    return names.get(hint, "a mapping" if dataclasses.is_dataclass(hint) else getattr(hint, "__name__", str(hint)))


def _build(cls: type, values: dict[str, Any], path: Path, prefix: str = "") -> Any:
    """An instance of dataclass `cls` from a mapping, nested dataclasses included; missing fields stay unset.
    A value of the wrong type is refused naming the setting (`settings.encoder: 5`), not left to fail later."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise InflucoderError(f"{path}: unknown setting(s) {', '.join(unknown)} for {cls.__name__}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in values:
            hint = hints[name]
            if typing.get_origin(hint) is Annotated:
                hint = typing.get_args(hint)[0]
            value = values[name]
            if not _matches(value, hint):
                raise InflucoderError(f"{path}: the setting {prefix}{name} is {value!r}; expected {_describe(hint)}")
            nested = dataclasses.is_dataclass(hint) and isinstance(value, dict)
            kwargs[name] = _build(hint, value, path, f"{prefix}{name}.") if nested else value
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kwargs[name] = tyro.MISSING
    return cls(**kwargs)


def load_config_file(path: Path) -> dict[str, Any]:
    """The mapping a config.yaml holds, or one clear error naming the file."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InflucoderError(f"{path}: cannot read the configuration ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise InflucoderError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise InflucoderError(f"{path}: expected a mapping of settings")
    return data


def read_config(path: Path, command: str, cls: type) -> Any:
    """The defaults a config.yaml gives `command`; refused when it was written by another command."""
    data = load_config_file(path)
    written_by = data.pop("command", command)
    if written_by != command:
        raise InflucoderError(f"{path}: a configuration of `influcoder {written_by}`, not of `influcoder {command}`")
    if isinstance(data.get("common"), dict):
        data["common"].pop("config", None)
    return _build(cls, data, path)


def write_config(command: str, cmd: Command) -> Path | None:
    """Write `cmd`'s full configuration to its `config_path()` (atomically); returns the path written."""
    import yaml

    path = cmd.config_path()
    if path is None:
        return None
    values = _plain(dataclasses.asdict(cmd))
    values["common"].pop("config", None)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        text = f"# influcoder {command}: rerun with `influcoder {command} --config {path}`\n"
        tmp.write_text(text + yaml.safe_dump({"command": command, **values}, sort_keys=False), encoding="utf-8")
    return path


def _plain(value: Any) -> Any:
    """YAML-safe values: paths as strings, containers walked."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def configured(cmd: Command) -> None:
    """Apply the option that acts on the process rather than on one call: the asset cache (--quiet is scoped to
    the command: `influcoder.core.verbosity.quiet_scope`)."""
    if cmd.common.cache_dir:
        os.environ["INFLUCODER_CACHE"] = cmd.common.cache_dir


def err(message: str) -> None:
    print(f"influcoder: error: {message}", file=sys.stderr)
