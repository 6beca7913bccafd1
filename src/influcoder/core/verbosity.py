"""`--quiet`: silence what third-party libraries print, not only our own progress bars.

Our own bars answer one switch (`influcoder.core.progress`, which the CLI turns off for a --quiet command);
transformers, peft and Ray add load bars, advisory warnings and FutureWarnings of their own that a quiet run
should not print either.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

_QUIET = False
_ENVIRONMENT = ("TRANSFORMERS_VERBOSITY", "TRANSFORMERS_NO_ADVISORY_WARNINGS", "HF_HUB_DISABLE_PROGRESS_BARS",
                "HF_DATASETS_DISABLE_PROGRESS_BARS", "TQDM_DISABLE", "RAY_DEDUP_LOGS")  # fmt: skip
_LOGGERS = ("transformers", "peft", "datasets", "huggingface_hub", "ray", "faiss")


def is_quiet() -> bool:
    """Whether this process runs quietly (for tools we start ourselves, e.g. pip)."""
    return _QUIET


def set_quiet(quiet: bool) -> None:
    """When `quiet`, hide third-party warnings, log chatter and progress bars for the rest of the process."""
    global _QUIET
    if not quiet:
        return
    _QUIET = True
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["RAY_DEDUP_LOGS"] = "0"
    warnings.filterwarnings("ignore")
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:  # transformers may already be imported: its own switches, not only the environment
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


@contextmanager
def quiet_scope(quiet: bool) -> Iterator[None]:
    """`set_quiet` for one command only: what it switched off is switched back on afterwards, so that a quiet
    command run from Python (or a test) does not silence the commands that follow it in the same process."""
    global _QUIET
    if not quiet:
        yield
        return
    environment = {name: os.environ.get(name) for name in _ENVIRONMENT}
    levels = {name: logging.getLogger(name).level for name in _LOGGERS}
    before = _QUIET
    hf = sys.modules.get("transformers.utils.logging")
    hf_state = (hf.get_verbosity(), hf.is_progress_bar_enabled()) if hf else (logging.WARNING, True)
    with warnings.catch_warnings():
        set_quiet(True)
        try:
            yield
        finally:
            for name, value in environment.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
            _QUIET = before
            hf = sys.modules.get("transformers.utils.logging")
            if hf is not None:
                hf.set_verbosity(hf_state[0])
                if hf_state[1]:
                    hf.enable_progress_bar()
