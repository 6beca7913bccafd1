"""`--quiet`: silence what third-party libraries print, not only our own progress bars.

Our long stages take a ``progress`` flag (tqdm bars); transformers, peft and Ray add load bars, advisory
warnings and FutureWarnings of their own that a quiet run should not print either.
"""

from __future__ import annotations

import logging
import os
import warnings

_QUIET = False


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
    for name in ("transformers", "peft", "datasets", "huggingface_hub", "ray", "faiss"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:  # transformers may already be imported: its own switches, not only the environment
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
