"""Every command explains itself, and `influcoder data` validates and converts files."""

from __future__ import annotations

import json

import pytest

from influcoder.cli.main import build_parser, main

COMMANDS = [
    "assets",
    "data",
    "label",
    "merge-labels",
    "fidelity",
    "distill",
    "evaluate",
    "demo",
    "index",
    "attribute",
    "filter",
]


def test_every_command_is_listed_and_has_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    top = capsys.readouterr().out
    for command in COMMANDS:
        assert command in top
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        text = capsys.readouterr().out
        assert len(text) > 300 and "usage: influcoder " + command in text
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(COMMANDS)


def test_data_command_converts_and_reports_errors(tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text("question,answer\nwhy?,because\nhow?,so\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["data", str(src), "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["prompt"], r["response"]) for r in records] == [("why?", "because"), ("how?", "so")]
    assert main(["data", str(src), "--response-field", "nope"]) == 2
    assert "in.csv:1: missing response field: expected 'nope'" in capsys.readouterr().err
