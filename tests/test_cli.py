"""Every command explains itself, and `influcoder data` validates and converts files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from influcoder.cli.main import COMMANDS as REGISTERED
from influcoder.cli.main import main

COMMANDS = [
    "assets",
    "data",
    "select",
    "finetune",
    "label",
    "merge-labels",
    "fidelity",
    "distill",
    "evaluate",
    "toxicity",
    "demo",
    "index",
    "attribute",
    "filter",
    "serve",
    "verify",
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
    assert sorted(REGISTERED) == sorted(COMMANDS)


def test_help_keeps_each_option_sentence_whole(capsys, monkeypatch):
    """A field docstring wrapped in the source reads as one paragraph in --help, not one line per source line."""
    monkeypatch.setenv("COLUMNS", "400")  # wide enough that rich wraps nothing: every break left is a forced one
    for command, phrase in [
        ("toxicity", "160 raised its AUPRC on the development set against the first replicates' 40"),
        ("label", "Seeded random subset of the pool."),
        ("toxicity", "The report (results.json, results.md, report.html, under --report) covers every"),
    ]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        lines = [" ".join(line.strip("│ ").split()) for line in capsys.readouterr().out.splitlines()]
        assert any(phrase in line for line in lines), (command, phrase)


def test_data_command_converts_and_reports_errors(tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text("question,answer\nwhy?,because\nhow?,so\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["data", str(src), "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["prompt"], r["response"]) for r in records] == [("why?", "because"), ("how?", "so")]
    assert main(["data", str(src), "--response-field", "nope"]) == 2
    assert "in.csv:1: missing response field: expected 'nope'" in capsys.readouterr().err


def test_old_flag_spellings_still_parse():
    from influcoder.cli.options import normalize_argv

    assert normalize_argv(["--cache-dir", "c", "label", "--ray"]) == ["label", "--cache-dir", "c", "--ray", "local"]
    assert normalize_argv(["index", "--ray", "--quiet"]) == ["index", "--ray", "local", "--quiet"]
    assert normalize_argv(["index", "--ray", "ray://head:10001"]) == ["index", "--ray", "ray://head:10001"]
    assert normalize_argv(["label", "--no-chat-template"]) == ["label", "--chat-template", "False"]
    assert normalize_argv(["label", "--chat-template", "--quiet"]) == ["label", "--chat-template", "True", "--quiet"]


def test_a_run_writes_its_config_and_the_config_reruns_it(tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text("question,answer\nwhy?,because\nhow?,so\nwho?,me\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["data", str(src), "--out", str(out), "--limit", "2", "--seed", "3"]) == 0
    config = tmp_path / "out.jsonl.config.yaml"
    import yaml

    recorded = yaml.safe_load(config.read_text())
    assert recorded["command"] == "data" and recorded["limit"] == 2 and recorded["seed"] == 3
    assert recorded["data"] == str(src) and "config" not in recorded["common"]
    first = out.read_text()
    out.unlink()
    assert main(["--config", str(config)]) == 0  # the whole run from the file
    assert out.read_text() == first
    again = tmp_path / "again.jsonl"
    assert main(["data", "--config", str(config), "--out", str(again), "--limit", "3"]) == 0  # flags win
    assert len(again.read_text().splitlines()) == 3
    capsys.readouterr()
    assert main(["--config"]) == 2
    assert "--config needs a FILE" in capsys.readouterr().err
    assert main(["label", "--config", str(config)]) == 2
    assert "a configuration of `influcoder data`, not of `influcoder label`" in capsys.readouterr().err
    config.write_text(config.read_text() + "nonsense: 1\n")
    assert main(["data", "--config", str(config)]) == 2
    assert f"{config}: unknown setting(s) nonsense" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("  encoder: 5", "the setting settings.encoder is 5; expected a string"),
        ("  epochs: ten", "the setting settings.epochs is 'ten'; expected an integer"),
        ("  lr: true", "the setting settings.lr is True; expected a number"),
        ("  objective: gradient", "the setting settings.objective is 'gradient'; expected one of 'influcoder'"),
        ("  head_dim: [3]", "the setting settings.head_dim is [3]; expected an integer or null"),
    ],
)
def test_a_config_value_of_the_wrong_type_is_named_not_a_traceback(tmp_path, capsys, line, message):
    """Each value a config.yaml gives is checked against its setting's type before anything runs (a
    hand-edited `encoder: 5` was a TypeError traceback from pathlib)."""
    config = tmp_path / "config.yaml"
    lines = ["command: distill", "labels: runs/labels", "out: runs/enc", "settings:", line]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}: {message}" in err and "Traceback" not in err


def test_label_config_nests_the_settings_and_reruns_identically(tiny_model_dir, tmp_path):
    import yaml

    pool = tmp_path / "pool.jsonl"
    pool.write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": f"a b {i}", "response": "c d"}) + "\n" for i in range(5))
    )
    args = ["label", "--pool", str(pool), "--queries", str(pool), "--model", str(tiny_model_dir), "--rank", "2"]
    args += ["--proj-dim", "16", "--max-length", "24", "--no-chat-template", "--quiet", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    recorded = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert recorded["settings"]["proj_dim"] == 16 and recorded["settings"]["chat_template"] is False
    assert recorded["settings"]["device"] == "cpu" and recorded["quiet"] is True
    assert main(["--config", str(tmp_path / "a" / "config.yaml"), "--out", str(tmp_path / "b")]) == 0
    first, second = (np.load(tmp_path / d / "influence" / "scores.npy") for d in "ab")
    np.testing.assert_array_equal(first, second)


def test_quiet_silences_third_party_output(tiny_model_dir, tmp_path, capfd):
    """`--quiet` hides transformers' load bars and warnings too, not only our progress bars."""
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"a {i}", "response": "b"}) + "\n" for i in range(3)))
    args = ["label", "--pool", str(pool), "--queries", str(pool), "--model", str(tiny_model_dir), "--rank", "2"]
    args += ["--proj-dim", "16", "--max-length", "16", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "loud")]) == 0
    loud = capfd.readouterr().err
    assert "Loading weights" in loud and "pool gradients" in loud  # what there is to silence
    assert main([*args, "--out", str(tmp_path / "quiet"), "--quiet"]) == 0
    assert capfd.readouterr().err == ""


def test_quiet_lasts_one_command_only(tiny_model_dir, tmp_path, capfd):
    """A quiet command run from Python does not silence the next one (it once switched transformers' bars
    and warnings off for the rest of the process)."""
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"a {i}", "response": "b"}) + "\n" for i in range(3)))
    args = ["label", "--pool", str(pool), "--queries", str(pool), "--model", str(tiny_model_dir), "--rank", "2"]
    args += ["--proj-dim", "16", "--max-length", "16", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "quiet"), "--quiet"]) == 0
    assert capfd.readouterr().err == ""
    assert main([*args, "--out", str(tmp_path / "loud")]) == 0
    loud = capfd.readouterr().err
    assert "Loading weights" in loud and "pool gradients" in loud


def test_every_public_name_resolves():
    import influcoder

    for name in influcoder.__all__:
        assert getattr(influcoder, name) is not None, name
    assert callable(influcoder.label) and callable(influcoder.fetch_asset)


def test_an_unwritable_output_is_one_line_not_a_traceback(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "p", "response": "r"}\n', encoding="utf-8")
    (tmp_path / "a-file").write_text("x")
    target = tmp_path / "a-file" / "out.jsonl"  # a file where a directory should be
    assert main(["data", str(src), "--out", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("influcoder: error: ") and "a-file" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "x.jsonl", "--limit", "-1"], "--limit must be at least 1, got -1"),
        (["attribute", "--index", "I", "--queries", "Q", "-k", "0"], "-k must be at least 1, got 0"),
        (["attribute", "--index", "I", "--queries", "Q", "-k", "-3"], "-k must be at least 1, got -3"),
        (["attribute", "--index", "I", "--queries", "Q", "--audit", "-1"], "--audit must be at least 0, got -1"),
        (["data", "x.jsonl", "--show", "-1"], "--show must be at least 0, got -1"),
        (["index", "--encoder", "E", "--pool", "P", "--out", "O", "--shard-size", "0"], "--shard-size must be at"),
        (["label", "--pool", "P", "--queries", "Q", "--out", "O", "--proj-dim", "0"], "--proj-dim must be at least"),
        (
            ["distill", "--labels", "L", "--out", "O", "--objective", "influcoder", "--epochs", "0"],
            "--epochs 0 is out of range: at least 1",
        ),
        (["distill", "--labels", "L", "--out", "O", "--val-fraction", "0"], "--val-fraction 0.0 is out of range"),
    ],
)
def test_out_of_range_options_are_refused_before_any_work(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing written (distill used to write eval_split.json first)


def test_ctrl_c_while_the_cli_is_still_importing_exits_130_without_a_traceback(monkeypatch, capsys):
    import builtins
    import sys

    from influcoder.cli import entry

    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "influcoder.cli.main":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "influcoder.cli.main")
    monkeypatch.setattr(builtins, "__import__", interrupted)
    assert entry.run() == 130
    assert "interrupted before the command started" in capsys.readouterr().err


def test_the_console_script_is_the_guarded_entry_point():
    from pathlib import Path

    import tomllib

    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"influcoder": "influcoder.cli.entry:run"}
