"""Run keys of resumable jobs: a run written before a setting existed resumes only at that setting's default."""

from __future__ import annotations

from influcoder.core.run_keys import same_run, with_added_defaults

DEFAULTS = {"seed": 0, "labels": {"rank": 8, "max_memory": None}, "methods": ["a"]}


def test_a_setting_added_since_matches_only_at_its_default():
    older = {"seed": 1, "labels": {"rank": 8}, "methods": ["a"]}
    current = {"seed": 1, "labels": {"rank": 8, "max_memory": None}, "methods": ["a"], "drop": 0.05}
    assert not same_run(older, current, DEFAULTS)  # drop has no default on record: not filled
    assert same_run(older, current, {**DEFAULTS, "drop": 0.05})
    assert with_added_defaults(older, current, {**DEFAULTS, "drop": 0.05}) == current
    changed = {**current, "labels": {"rank": 8, "max_memory": 4.0}}
    assert not same_run(older, changed, {**DEFAULTS, "drop": 0.05})  # the new setting moved off its default


def test_a_stored_setting_is_never_overridden_or_dropped():
    stored = {"seed": 1, "labels": {"rank": 4}, "gone": True}
    current = {"seed": 1, "labels": {"rank": 8}}
    assert with_added_defaults(stored, current, DEFAULTS) == stored  # rank differs; a removed setting stays
    assert not same_run(stored, current, DEFAULTS)
    assert with_added_defaults({"labels": 3}, current, DEFAULTS)["labels"] == 3  # a section stored as a value
