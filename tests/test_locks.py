"""One writer per output directory: a live second writer is refused by name, a killed one leaves no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from influcoder.cli.main import main
from influcoder.core.locks import LOCK_NAME, LockedError, exclusive_directory

from .test_labels import samples


def test_a_second_writer_is_refused_and_told_who_holds_the_directory(tmp_path):
    with exclusive_directory(tmp_path / "out", "labels"):
        with pytest.raises(LockedError, match=f"being written by pid {os.getpid()}") as refused:
            with exclusive_directory(tmp_path / "out", "labels"):
                pass
        assert "--overwrite" not in str(refused.value)
    with exclusive_directory(tmp_path / "out"):  # released when the block ends
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from influcoder.core.locks import exclusive_directory\n"
            "with exclusive_directory(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)",
            str(tmp_path / "out"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(LockedError):
        with exclusive_directory(tmp_path / "out"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    started = time.perf_counter()
    with exclusive_directory(tmp_path / "out"):  # the kernel released the dead process's lock
        assert (tmp_path / "out" / LOCK_NAME).exists()
    assert time.perf_counter() - started < 5


def test_label_and_index_refuse_a_directory_another_run_writes(tiny_model_dir, tiny_bert_dir, tmp_path, capsys):
    from influcoder.encoder.model import InfluenceEncoder

    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(__import__("json").dumps(s.to_record()) + "\n" for s in samples(4)))
    out = tmp_path / "labels"
    args = ["label", "--pool", str(pool), "--queries", str(pool), "--out", str(out), "--model", str(tiny_model_dir)]
    with exclusive_directory(out, "labels"):
        assert main([*args, "--quiet", "--proj-dim", "16"]) == 2
    err = capsys.readouterr().err
    assert "is being written by" in err and "--overwrite" not in err
    assert not (out / "pool").exists()  # refused before any work
    InfluenceEncoder.from_backbone(str(tiny_bert_dir), max_length=16).save_pretrained(tmp_path / "enc")
    args = ["index", "--encoder", str(tmp_path / "enc"), "--pool", str(pool), "--out", str(tmp_path / "idx"), "--quiet"]
    with exclusive_directory(tmp_path / "idx", "index"):
        assert main(args) == 2
    assert "is being written by" in capsys.readouterr().err
    assert main(args) == 0  # free again: the lock file alone does not make the directory "not an index"
    assert main([*args, "--overwrite"]) == 0


def test_an_output_that_is_a_file_is_named_as_such(tmp_path, capsys):
    from influcoder.cli.main import main

    target = tmp_path / "out.txt"
    target.write_text("my file\n")
    pool = tmp_path / "p.jsonl"
    pool.write_text('{"prompt": "p", "response": "r"}\n')
    assert main(["label", "--pool", str(pool), "--queries", str(pool), "--out", str(target), "--quiet"]) == 2
    assert f"{target} is a file; the labels output must be a directory" in capsys.readouterr().err
    assert target.read_text() == "my file\n"


def test_distill_and_finetune_refuse_a_directory_another_run_writes(tiny_model_dir, tiny_bert_dir, tmp_path, capsys):
    """The distill and finetune locks (never run before): a second writer is refused before any work, and the
    directory is usable again once the holder lets go."""
    import json

    from influcoder.labels.labelling import label
    from influcoder.labels.settings import LabelSettings

    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(s.to_record()) + "\n" for s in samples(8)))
    adapter = tmp_path / "adapter"
    finetune = ["finetune", "--data", str(pool), "--model", str(tiny_model_dir), "--rank", "2", "--epochs", "1",
                "--batch-size", "4", "--max-length", "16", "--out", str(adapter), "--quiet"]  # fmt: skip
    with exclusive_directory(adapter, "fine-tuning"):
        assert main(finetune) == 2
    assert "is being written by" in capsys.readouterr().err
    assert not (adapter / "adapter_config.json").exists()
    assert main(finetune) == 0 and (adapter / "adapter_config.json").exists()

    settings = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=16, max_length=16)
    label(samples(8), samples(4, seed=3, prefix="q"), tmp_path / "labels", settings, progress=False)
    out = tmp_path / "enc"
    distill = ["distill", "--labels", str(tmp_path / "labels"), "--out", str(out), "--encoder", str(tiny_bert_dir),
               "--objective", "influcoder", "--epochs", "1", "--max-length", "16", "--quiet"]  # fmt: skip
    with exclusive_directory(out, "encoder"):
        assert main(distill) == 2
    assert "is being written by" in capsys.readouterr().err
    assert not (out / "eval_split.json").exists() and not (out / "training.json").exists()
    assert main(distill) == 0 and (out / "training.json").exists()
