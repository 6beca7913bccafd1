"""Progress bars answer one switch (`influcoder.core.progress`), not a `progress` flag threaded through calls.

The switch: on by default, off from ``INFLUCODER_DISABLE_PROGRESS_BARS``, `disable_progress_bars()` /
`enable_progress_bars()` for the process, ``with progress_bars(False):`` for one block (nesting, restoring).
Every bar in the library is a `progress_bar`; only the public entry points keep a keyword (None: the switch),
and `--quiet` turns bars off for one command.
"""

from __future__ import annotations

import ast
import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from influcoder.cli.main import main
from influcoder.core import progress
from influcoder.core.progress import (
    ENVIRONMENT_VARIABLE,
    disable_progress_bars,
    enable_progress_bars,
    progress_bar,
    progress_bars,
    progress_bars_enabled,
)
from influcoder.data.records import Sample
from influcoder.experiments import demo

SRC = Path(__file__).resolve().parents[1] / "src" / "influcoder"

# the public entry points that keep a bars keyword, and why: users call them directly (docs/api.md) and expect
# one there (sentence-transformers' `encode(show_progress_bar=...)`); `fit_coordinates` and a representation
# scorer's `embed` are called on their own by the benchmarks. Everything below them reads the switch.
KEYWORDS = {
    "labels/labelling.py": {"label"},
    "labels/fidelity.py": {"projection_fidelity"},
    "labels/finetune.py": {"finetune"},
    "encoder/model.py": {"encode", "encode_pool", "encode_queries"},
    "encoder/distill.py": {"fit", "distill_labels"},
    "encoder/subspace.py": {"fit_coordinates"},
    "attribution/index.py": {"build"},
    "attribution/audit.py": {"audit_attribution"},
    "attribution/influcoder.py": {"rescore"},
    "evaluation/evaluate.py": {"evaluate_scorers", "evaluate_encoder"},
    "evaluation/baselines/representations.py": {"__init__"},
    "experiments/toxicity.py": {"run_toxicity"},
    "experiments/demo.py": {"run_demo"},
}
FLAG_NAMES = {"progress", "show_progress", "show_progress_bar"}


@pytest.fixture(autouse=True)
def _default_switch(monkeypatch):
    """Each test starts from the default (no environment variable, no process-wide choice) and leaves it."""
    monkeypatch.delenv(ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setattr(progress, "_default", None)


def words(n: int) -> list[Sample]:
    return [Sample(f"s{i}", f"a b {i}", "c d") for i in range(n)]


# ------------------------------------------------------------------------------------------------ the switch
def test_bars_are_on_by_default_and_the_environment_turns_them_off(monkeypatch):
    assert progress_bars_enabled()
    for value in ("1", "true", "yes", "anything"):
        monkeypatch.setenv(ENVIRONMENT_VARIABLE, value)
        assert not progress_bars_enabled(), value
    for value in ("", "0", "false", "No", "off"):
        monkeypatch.setenv(ENVIRONMENT_VARIABLE, value)
        assert progress_bars_enabled(), value


def test_the_process_wide_switch_overrides_the_environment_in_every_thread(monkeypatch):
    disable_progress_bars()
    assert not progress_bars_enabled()
    seen = []
    worker = threading.Thread(target=lambda: seen.append(progress_bars_enabled()))  # e.g. a server's executor
    worker.start()
    worker.join()
    assert seen == [False]
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "1")
    enable_progress_bars()
    assert progress_bars_enabled()


def test_the_block_nests_and_restores_even_on_an_error():
    with progress_bars(False):
        assert not progress_bars_enabled()
        with progress_bars(True):
            assert progress_bars_enabled()
            with progress_bars(None):  # a public entry point's default: changes nothing
                assert progress_bars_enabled()
        assert not progress_bars_enabled()
        with pytest.raises(RuntimeError), progress_bars(True):
            raise RuntimeError("a stage failed")
        assert not progress_bars_enabled()
    assert progress_bars_enabled()
    disable_progress_bars()
    with progress_bars(True):  # the block wins over the process-wide choice inside it
        assert progress_bars_enabled()
    assert not progress_bars_enabled()


def test_a_disabled_bar_draws_nothing_and_still_iterates(capsys):
    with progress_bars(False):
        bar = progress_bar(range(5), desc="quiet stage", unit="sample")
    assert bar.disable and list(bar) == [0, 1, 2, 3, 4]
    assert capsys.readouterr().err == ""
    assert list(progress_bar(range(5), desc="loud stage", unit="sample")) == [0, 1, 2, 3, 4]
    assert "loud stage" in capsys.readouterr().err
    assert progress_bar(range(2), desc="asked off", disable=True).disable  # tqdm's own keyword still works


# ------------------------------------------------------------------------------------------- real stages
def test_label_draws_its_bars_only_when_the_switch_is_on(tiny_model_dir, tmp_path, capfd):
    from influcoder.labels.featurizer import GradientFeaturizer
    from influcoder.labels.labelling import label
    from influcoder.labels.settings import LabelSettings

    settings = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=16, max_length=24, device="cpu")
    featurizer = GradientFeaturizer(settings)  # loaded here: transformers' own load bars are not ours
    pool, queries = words(6), words(3)
    capfd.readouterr()
    with progress_bars(False):
        label(pool, queries, tmp_path / "off", settings, featurizer=featurizer)
    assert capfd.readouterr().err == ""
    disable_progress_bars()
    label(pool, queries, tmp_path / "also-off", settings, featurizer=featurizer)
    assert capfd.readouterr().err == ""
    label(pool, queries, tmp_path / "asked", settings, featurizer=featurizer, progress=True)  # the keyword wins
    err = capfd.readouterr().err
    assert "pool gradients" in err and "6/6" in err and "query gradients" in err
    assert not progress_bars_enabled()  # the keyword lasted the call


def test_encode_follows_the_switch_and_its_sentence_transformers_keyword(tiny_bert_dir, capfd):
    from influcoder.encoder.model import InfluenceEncoder

    encoder = InfluenceEncoder.from_backbone(str(tiny_bert_dir), max_length=16)
    texts = ["a b c", "d e", "f"]
    capfd.readouterr()
    on = encoder.encode(texts)
    assert "encode" in capfd.readouterr().err
    off = encoder.encode(texts, show_progress_bar=False)
    assert capfd.readouterr().err == ""
    with progress_bars(False):
        encoder.encode_pool(words(3))
        encoder.encode_queries(words(2))
    assert capfd.readouterr().err == ""
    np.testing.assert_array_equal(on, off)
    with pytest.warns(DeprecationWarning, match="show_progress_bar"):  # the former keyword still works
        encoder.encode(texts, show_progress=False)
    assert capfd.readouterr().err == ""
    with pytest.raises(TypeError, match="both"):
        encoder.encode(texts, show_progress=False, show_progress_bar=True)


def test_fit_coordinates_keeps_its_keyword_for_callers_of_its_own(tiny_bert_dir, capfd):
    """benchmarks/transfer.py fits a subspace encoder directly with `show_progress=True`."""
    from influcoder.encoder.subspace import CoordinateFitSettings, fit_coordinates, subspace_encoder

    encoder = subspace_encoder(str(tiny_bert_dir), 2, max_length=16)
    targets = np.random.default_rng(0).normal(size=(6, 2)).astype(np.float32)
    fit = CoordinateFitSettings(epochs=1, batch_size=3)
    capfd.readouterr()
    fit_coordinates(encoder, words(6), targets, fit, show_progress=False)
    assert "subspace epoch" not in capfd.readouterr().err
    disable_progress_bars()
    fit_coordinates(encoder, words(6), targets, fit, show_progress=True)
    assert "subspace epoch 1" in capfd.readouterr().err


# ---------------------------------------------------------------------------------------------- the CLI
def _bar_drawing_demo(monkeypatch, seen: list) -> None:
    """`run_demo` replaced by one that logs a line, draws a bar and notes whether bars were on."""

    def run_demo(out, *args, **kwargs):
        seen.append(progress_bars_enabled())
        logging.getLogger("influcoder.experiments.demo").info("[demo] a stage line")
        for _ in progress_bar(range(3), desc="a demo stage", unit="step"):
            pass
        return demo.DemoReport(Path(out), {})

    monkeypatch.setattr(demo, "run_demo", run_demo)
    monkeypatch.setattr(demo.DemoReport, "summary", lambda self: "[demo] report")


def test_quiet_turns_bars_off_for_its_command_only(monkeypatch, tmp_path, capfd):
    seen: list = []
    _bar_drawing_demo(monkeypatch, seen)
    assert main(["demo", "--out", str(tmp_path / "q"), "--quiet"]) == 0
    quiet = capfd.readouterr()
    assert quiet.err == "" and quiet.out.startswith("[demo] report")
    assert seen == [False] and progress_bars_enabled()  # restored after the command
    assert main(["demo", "--out", str(tmp_path / "loud")]) == 0
    loud = capfd.readouterr().err
    assert "a demo stage" in loud and "3/3" in loud and "[demo] a stage line" in loud
    assert seen == [False, True]


def test_without_quiet_the_command_leaves_the_choice_to_the_switch(monkeypatch, tmp_path, capfd):
    """A CI job sets INFLUCODER_DISABLE_PROGRESS_BARS and gets messages without bars (no --quiet needed)."""
    seen: list = []
    _bar_drawing_demo(monkeypatch, seen)
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "1")
    assert main(["demo", "--out", str(tmp_path / "ci")]) == 0
    err = capfd.readouterr().err
    assert "[demo] a stage line" in err and "a demo stage" not in err and seen == [False]


def test_a_real_quiet_command_prints_no_bar_and_restores_the_switch(tiny_model_dir, tmp_path, capfd):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(f'{{"id": "p{i}", "prompt": "a {i}", "response": "b"}}\n' for i in range(3)))
    args = ["label", "--pool", str(pool), "--queries", str(pool), "--model", str(tiny_model_dir), "--rank", "2"]
    args += ["--proj-dim", "16", "--max-length", "16", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "quiet"), "--quiet"]) == 0
    assert "gradients" not in capfd.readouterr().err and progress_bars_enabled()


# -------------------------------------------------------------------------------------------- the layout
def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_only_the_public_entry_points_take_a_bars_keyword_and_it_defaults_to_the_switch():
    found: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        for function in _functions(ast.parse(path.read_text(encoding="utf-8"))):
            args = function.args
            named = [*args.posonlyargs, *args.args, *args.kwonlyargs]
            defaults = dict(zip([a.arg for a in [*args.posonlyargs, *args.args]][::-1], args.defaults[::-1]))
            defaults.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults)})
            for arg in named:
                if arg.arg in FLAG_NAMES:
                    where = str(path.relative_to(SRC))
                    found.setdefault(where, set()).add(function.name)
                    default = defaults.get(arg.arg)
                    assert isinstance(default, ast.Constant) and default.value is None, f"{where}:{function.name}"
    assert found == KEYWORDS


def test_every_bar_is_made_by_progress_bar():
    """A bare tqdm(...) would ignore the switch (and --quiet): only `progress_bar` constructs one."""
    makers = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "core" / "progress.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name == "tqdm":
                    makers.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert makers == []
