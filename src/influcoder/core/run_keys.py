"""Whether a stored run may be resumed by this code: its key (the settings it was made with) against ours.

Code grows settings after runs were written. A new setting's default reproduces what the code did before it
existed (the rule for adding one), so an older run whose key lacks it matches while this run keeps it at that
default, and is refused once it is changed. One helper for every resumable job (distillation, the toxicity
experiment), so no job keeps its own list of late settings to forget to update.
"""

from __future__ import annotations

from typing import Any


def with_added_defaults(stored: dict[str, Any], current: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """A copy of `stored` given every key it lacks that `current` holds at its value in `defaults`
    (recursively, into nested sections): the key an older run would have written had the setting existed."""
    filled = dict(stored)
    for name, value in current.items():
        default = defaults.get(name) if isinstance(defaults, dict) else None
        if name not in stored:
            if name in defaults and value == default:
                filled[name] = value
        elif isinstance(value, dict) and isinstance(stored[name], dict) and isinstance(default, dict):
            filled[name] = with_added_defaults(stored[name], value, default)
    return filled


def same_run(stored: dict[str, Any], current: dict[str, Any], defaults: dict[str, Any]) -> bool:
    """`stored` equals `current` once the settings added since it was written are filled at their default."""
    return with_added_defaults(stored, current, defaults) == current
