"""The `influcoder` entry point: pick the command, parse its dataclass with tyro, run it, map errors to exit 2.

Every command is a library call first (see the module of each command class); errors caused by input are
`InflucoderError`s, printed as one line on stderr with exit status 2. A run writes its configuration as
``config.yaml`` beside its outputs; ``influcoder COMMAND --config FILE`` repeats it.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import tyro

from influcoder import __version__
from influcoder.cli.attribution import Attribute, Filter, Index
from influcoder.cli.data import Assets, Data, Select, Verify
from influcoder.cli.encoder import Distill
from influcoder.cli.evaluation import Demo, Evaluate
from influcoder.cli.labels import Fidelity, Finetune, Label, MergeLabels
from influcoder.cli.options import (
    SOURCES_HELP,
    Command,
    config_file_in,
    configured,
    description,
    err,
    load_config_file,
    normalize_argv,
    read_config,
    tidy_help,
    write_config,
)
from influcoder.cli.serve import Serve
from influcoder.cli.toxicity import Toxicity
from influcoder.core.errors import InflucoderError, cli_message
from influcoder.core.progress import progress_bars
from influcoder.core.verbosity import quiet_scope

COMMANDS: dict[str, type[Command]] = {
    "assets": Assets,
    "data": Data,
    "select": Select,
    "finetune": Finetune,
    "label": Label,
    "merge-labels": MergeLabels,
    "fidelity": Fidelity,
    "distill": Distill,
    "evaluate": Evaluate,
    "toxicity": Toxicity,
    "demo": Demo,
    "index": Index,
    "attribute": Attribute,
    "filter": Filter,
    "serve": Serve,
    "verify": Verify,
}


def summary(cls: type) -> str:
    """A command's one-line summary: the first line of its docstring."""
    return (cls.__doc__ or "").strip().splitlines()[0].rstrip(".")


def root_help() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: influcoder [--cache-dir DIR] COMMAND [OPTIONS]   (influcoder COMMAND --help for its options)",
        "",
        "Influence-based training-data attribution for LLMs. Step 1 (`label`) computes gradient influence labels of",
        "a decoder; step 2 (`distill`) distils them into a small text encoder; step 3 (`index`, `attribute`,",
        "`filter`) scores millions of samples with it.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {summary(cls)}" for name, cls in COMMANDS.items()),
        "",
        "options:",
        "  -h, --help        show this help and exit",
        "  --version         print the version and exit",
        "  --cache-dir DIR   where embedded models and data are cached (also an option of every command)",
        "  --config FILE     rerun from a config.yaml that a run wrote (its command is read from the file)",
        "",
        *textwrap.wrap(SOURCES_HELP, 110),
    ]
    return "\n".join(lines)


def parse(argv: Sequence[str]) -> tuple[str, Command]:
    """The command name and its parsed settings (`SystemExit` on --help or a usage error, as argparse does)."""
    args = normalize_argv(argv)
    if not args or args[0] in ("-h", "--help"):
        print(root_help())
        raise SystemExit(0 if args else 2)
    if args[0] == "--version":
        print(f"influcoder {__version__}")
        raise SystemExit(0)
    if args[0] == "--config" or args[0].startswith("--config="):
        args = [_command_in_config(config_file_in(args)), *args]
    name = args[0]
    if name not in COMMANDS:
        err(f"unknown command {name!r}; choose from {', '.join(COMMANDS)} (influcoder --help)")
        raise SystemExit(2)
    cls = COMMANDS[name]
    path = config_file_in(args[1:])
    default = read_config(path, name, cls) if path else None
    tidy_help(cls)
    cmd = tyro.cli(cls, args=args[1:], prog=f"influcoder {name}", default=default, description=description(cls))
    return name, cmd


def _command_in_config(path) -> str:
    if path is None:
        raise InflucoderError("--config needs a FILE: a config.yaml that an earlier run wrote")
    command = load_config_file(path).get("command")
    if command not in COMMANDS:
        raise InflucoderError(f"{path}: no influcoder command recorded (expected a 'command:' line)")
    return command


def _exit_status(result: object) -> int:
    """A command's exit status. A command returns it, or the result the user asked for (an object with a
    ``summary()``, e.g. the demo's report): that is printed on stdout here, since library code never prints."""
    if hasattr(result, "summary"):
        print(result.summary())  # type: ignore[attr-defined]
        return 0
    return int(result or 0)  # type: ignore[call-overload]


def _check_device(cmd: Command) -> None:
    """Refuse a --device this machine lacks before the command writes anything (a lock, a split, a store)."""
    settings = getattr(cmd, "settings", None)
    device = getattr(cmd, "device", None) or getattr(settings, "device", None)
    if isinstance(device, str) and device != "auto":
        from influcoder.core.devices import resolve_device

        try:
            resolve_device(device)
        except InflucoderError as exc:
            raise InflucoderError(f"--{exc}") from None


class _CommandMessages(logging.StreamHandler):
    """The one stderr handler a running command puts on the ``influcoder`` logger (`messages_to_stderr`)."""


@contextmanager
def messages_to_stderr(quiet: bool) -> Iterator[None]:
    """Show the library's log messages (`logging.getLogger("influcoder")`) on stderr for one command: INFO and
    up, WARNING and up under --quiet. The handler and the logger's level are restored afterwards, so a command
    run from Python (or a test) leaves no handler behind, and a command run inside another adds none."""
    logger = logging.getLogger("influcoder")
    if any(isinstance(h, _CommandMessages) for h in logger.handlers):
        yield
        return
    handler = _CommandMessages(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def command_fields(cmd: object) -> set[str]:
    """The settings fields of a parsed command, its option groups' included (their flags carry no prefix):
    which backticked words of an error message are flags of this command."""
    fields: set[str] = set()
    for item in dataclasses.fields(cmd) if dataclasses.is_dataclass(cmd) else ():
        fields.add(item.name)
        value = getattr(cmd, item.name, None)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields |= command_fields(value)
    return fields


def main(argv: Sequence[str] | None = None) -> int:
    try:
        name, cmd = parse(sys.argv[1:] if argv is None else argv)
    except InflucoderError as exc:
        err(cli_message(exc))
        return 2
    configured(cmd)
    try:
        quiet = bool(getattr(cmd, "quiet", False))
        # --quiet: no bars for this command (restored after it, as the log handler is); else the switch decides
        with quiet_scope(quiet), messages_to_stderr(quiet), progress_bars(False if quiet else None):
            _check_device(cmd)
            code = _exit_status(cmd.run())
    except InflucoderError as exc:
        err(cli_message(exc, command_fields(cmd)))
        return 2
    except OSError as exc:  # an unreadable input or unwritable output: one line naming the file, not a traceback
        err(f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc))
        return 2
    except KeyboardInterrupt:
        write_config(name, cmd)
        print("influcoder: interrupted; finished shards are kept and a rerun resumes", file=sys.stderr)
        return 130
    write_config(name, cmd)
    return code


if __name__ == "__main__":
    sys.exit(main())
