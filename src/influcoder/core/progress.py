"""One switch for every progress bar influcoder draws, instead of a ``progress`` flag on every function.

A user running a long stage in a notebook or a terminal wants to see it move, so bars are on by default. A
``--quiet`` command, a CI log or a batch job's log file should not get them (a redrawn bar there is a wall of
carriage returns). Whether a bar shows is decided in one place, as Hugging Face does it
(``transformers.utils.logging.disable_progress_bar()``, ``HF_HUB_DISABLE_PROGRESS_BARS``):

- ``INFLUCODER_DISABLE_PROGRESS_BARS`` (set, and not ``0``/``false``/``no``/``off``): off by default, e.g. in CI;
- `disable_progress_bars()` / `enable_progress_bars()`: the process-wide default (every thread);
- ``with progress_bars(False):``: off for the code inside the block only (this thread or asyncio task), nesting
  and restoring; the CLI's ``--quiet`` and the public entry points' ``progress=`` keyword are this block.

Every bar of ours is made by `progress_bar`; messages that are not bars go through `logging` (its level decides).
Third-party bars (transformers' "Loading weights") keep their own switches; ``--quiet`` turns those off too
(`influcoder.core.verbosity`).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from tqdm.auto import tqdm

ENVIRONMENT_VARIABLE = "INFLUCODER_DISABLE_PROGRESS_BARS"
_OFF_WORDS = ("", "0", "false", "no", "off")

F = TypeVar("F", bound=Callable[..., Any])

_default: bool | None = None  # enable_/disable_progress_bars(); None: the environment decides
_scoped: ContextVar[bool | None] = ContextVar("influcoder_progress_bars", default=None)  # progress_bars(...)


def _environment_default() -> bool:
    """On unless ``INFLUCODER_DISABLE_PROGRESS_BARS`` is set to something other than an off word."""
    return os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower() in _OFF_WORDS


def progress_bars_enabled() -> bool:
    """Whether a bar made now would show: the innermost `progress_bars` block, else the process-wide switch,
    else the environment."""
    scoped = _scoped.get()
    if scoped is not None:
        return scoped
    return _default if _default is not None else _environment_default()


def enable_progress_bars() -> None:
    """Show progress bars from now on, in every thread (a `progress_bars` block still overrides it inside)."""
    global _default
    _default = True


def disable_progress_bars() -> None:
    """Hide progress bars from now on, in every thread (a `progress_bars` block still overrides it inside)."""
    global _default
    _default = False


@contextmanager
def progress_bars(enabled: bool | None) -> Iterator[None]:
    """Bars on (True) or off (False) for the code inside the block, restored when it ends, however it ends.
    Blocks nest (the innermost wins) and are local to the thread or asyncio task that opened them. ``None``
    changes nothing: a public entry point's ``progress: bool | None = None`` passes straight through."""
    if enabled is None:
        yield
        return
    token = _scoped.set(bool(enabled))
    try:
        yield
    finally:
        _scoped.reset(token)


def progress_bar(
    iterable: Iterable | None = None, *, desc: str, total: float | None = None, unit: str = "it", **kwargs: Any
) -> tqdm:
    """A `tqdm.auto.tqdm` bar (a widget in a notebook, text on stderr elsewhere), disabled when the switch is
    off; the other keywords go to tqdm as they are (``initial``, ``leave``, ``smoothing``...). A disabled bar
    still counts and iterates, so callers use it the same way either way."""
    disable = bool(kwargs.pop("disable", False)) or not progress_bars_enabled()
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, **kwargs)


def renamed_keyword(old: str, new: str) -> Callable[[F], F]:
    """Let a function still take a keyword under its former name `old` (with a DeprecationWarning naming `new`),
    so that keyword callers of a public signature keep working after a rename (``show_progress`` ->
    ``show_progress_bar``)."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{function.__qualname__}() got both {old!r} and its new name {new!r}")
                message = f"{function.__qualname__}({old}=...) is now {new}=..."
                warnings.warn(message, DeprecationWarning, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
