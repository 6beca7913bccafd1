"""Fuzz every artifact file: each damage of each file read by each command ends in one line naming the file.

One tiny pipeline per module (labels, a 1-epoch distilled encoder, an index over it), then for every file of
its three directories and every damage (cut to half, emptied, one byte inverted in the middle, replaced by
invalid JSON) a copy of the directory is damaged and each command that reads that file is run on it once:

* a reading command (`evaluate`, `distill`, `index`, `attribute`, `filter`) must exit 2 with exactly one line
  on stderr that names the damaged file, never a traceback;
* `verify` must exit 1 and name the damaged file in its report (exit 1 is its "problems found"), never 0;
* a damage that cannot change the answer (`HARMLESS`: a file the command does not read for this answer) must
  give exit 0 and exactly the intact artifact's output (timings and paths aside).

Every binary file carries a checksum record (``NAME.sha256``, `influcoder.core.checksums`); JSON and JSON Lines
check themselves (a cut or a flipped byte no longer parses). Files read whole (encoder weights, coverage
arrays, the label matrix) are hashed on every read; a same-size change of the files read in parts
(feature-store shards, ``index.faiss``) is seen by the full check only (`verify`, `--verify`), as documented:
the reading commands run with ``--verify`` for those, and under --verify no damage is harmless. `XFAIL` would
list known gaps, each with its reason (none at present).
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import re
import shutil
from pathlib import Path

import pytest

from influcoder.cli.main import main

from .test_labels import samples

DISTILL = [
    "--objective",
    "influcoder",
    "--epochs",
    "1",
    "--max-length",
    "16",
    "--head-dim",
    "8",
    "--length-prior",
    "--seed",
    "0",
]
SKIPPED = {".influcoder.lock", "config.yaml"}
"""Not artifacts: the writers' advisory lock (its content is informational) and the run's config (read only by
``--config``)."""

ARTIFACTS = {
    "labels": [
        "labels.json", "pool.jsonl", "queries.jsonl", "influence/ids.json", "influence/scores.npy",
        "pool/manifest.json", "pool/shard-00000.npy", "pool/shard-00000.npy.sha256", "pool/shard-00001.npy",
        "pool/shard-00001.npy.sha256", "queries/manifest.json", "queries/shard-00000.npy",
        "queries/shard-00000.npy.sha256",
    ],
    "enc": [
        "training.json", "eval_split.json",
        *(f"{side}/{name}" for side in ("best", "last") for name in (
            "config.json", "head.safetensors", "head.safetensors.sha256", "modules.json", "1_Pooling/config.json",
            "2_Dense/config.json", "2_Dense/model.safetensors", "2_Dense/model.safetensors.sha256",
            "backbone/config.json", "backbone/model.safetensors", "backbone/model.safetensors.sha256",
            "backbone/sentence_bert_config.json", "backbone/tokenizer.json", "backbone/tokenizer_config.json",
        )),
        "best/coverage.npz", "best/coverage.npz.sha256", "best/length_prior.json",
    ],
    "index": [
        "manifest.json", "index.faiss", "index.faiss.sha256", "coverage.npy", "coverage.npy.sha256",
        "segment-00000.jsonl", "segment-00000/manifest.json", "segment-00000/shard-00000.npy",
        "segment-00000/shard-00000.npy.sha256", "segment-00000/shard-00001.npy", "segment-00000/shard-00001.npy.sha256",
        "spread-sample-12-4096-0.npy", "spread-sample-12-4096-0.npy.sha256",
    ],
}  # fmt: skip
"""Every file the pipeline writes, per directory (a test checks the walk finds exactly these)."""

CORRUPTIONS = {
    "half": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "flip": lambda data: data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1 :],
    "invalid-json": lambda data: b'{"format": "influcoder\n',
}
CHECKSUMMED = ("*/shard-*.npy", "index.faiss")
"""Files whose same-size change only the full (sha256) check sees: read under --verify when flipped."""

COMMANDS = {
    "verify": ["verify", "{work}"],
    "evaluate": ["evaluate", "--encoder", "{enc}", "--labels", "{labels}", "--quiet"],
    "distill": ["distill", "--labels", "{labels}", "--out", "{enc_out}", "--encoder", "{bert}", *DISTILL, "--quiet"],
    "index": ["index", "--encoder", "{enc}", "--pool", "{root}/pool.jsonl", "--out", "{out}/index", "--quiet"],
    "attribute": ["attribute", "--index", "{index}", "--encoder", "{enc}", "--queries", "{root}/q.jsonl", "-k", "4",
                  "--format", "jsonl", "--quiet"],
    "filter": ["filter", "--index", "{index}", "--encoder", "{enc}", "--queries", "{root}/q.jsonl", "--drop-top", "3",
               "--kept", "{out}/kept.jsonl", "--dropped", "{out}/dropped.jsonl", "--quiet"],
}  # fmt: skip
VERIFY_FLAG = {"evaluate", "distill", "attribute", "filter"}

READERS = {
    "labels": [
        (("labels.json", "pool.jsonl", "queries.jsonl", "influence/*"), ("verify", "evaluate", "distill")),
        (("pool/*", "queries/*"), ("verify",)),  # the gradient stores: read again only by `label` (a writer)
    ],
    "enc": [
        (("training.json", "eval_split.json"), ("verify", "evaluate")),
        (("best/config.json", "best/head.safetensors*", "best/length_prior.json", "best/coverage.npz*",
          "best/backbone/config.json", "best/backbone/model.safetensors*", "best/backbone/tokenizer*.json"),
         ("verify", "evaluate", "index", "attribute")),
        (("*",), ("verify",)),  # last/ and the sentence-transformers files: no influcoder command reads them
    ],
    "index": [
        (("*",), ("verify", "attribute", "filter")),
    ],
}  # fmt: skip

HARMLESS = {
    ("index", "index.faiss", "filter"): "filter scores every stored embedding, not the FAISS file",
    ("index", "index.faiss.sha256", "filter"): "filter scores every stored embedding, not the FAISS file",
    ("index", "coverage.npy*", "filter"): "filter reports no coverage",
    ("index", "spread-sample-*", "filter"): "filter draws no spread sample",
    ("index", "spread-sample-*", "attribute"): "a damaged spread-sample cache is drawn again from the shards",
    ("index", "segment-00000/shard-*", "attribute"): "attribute reads the FAISS file and its spread-sample cache",
}
"""(directory, file pattern, command): damages that leave the answer unchanged, so exit 0 and the intact
output are the right result (every corruption of the file). Not under --verify, which reads every file."""

XFAIL: dict[tuple[str, str, str, str], str] = {}
"""(directory, file pattern, corruption pattern, command): known gaps, each marked xfail(strict=True)."""


def applies(directory: str, rel: str, corruption: str, command: str) -> bool:
    if corruption == "invalid-json" and not rel.endswith((".json", ".jsonl")):
        return False
    for patterns, commands in READERS[directory]:
        if any(fnmatch.fnmatch(rel, p) for p in patterns):
            return command in commands
    return False


def _lookup(table: dict, key: tuple[str, ...]):
    for pattern, value in table.items():
        if len(pattern) == len(key) and all(fnmatch.fnmatch(k, p) for k, p in zip(key, pattern)):
            return value
    return None


def cases():
    for directory, files in ARTIFACTS.items():
        for rel in files:
            for corruption in CORRUPTIONS:
                for command in COMMANDS:
                    if not applies(directory, rel, corruption, command):
                        continue
                    marks = []
                    reason = _lookup(XFAIL, (directory, rel, corruption, command))
                    if reason:
                        marks.append(pytest.mark.xfail(strict=True, reason=reason))
                    yield pytest.param(directory, rel, corruption, command, marks=marks,
                                       id=f"{directory}/{rel}-{corruption}-{command}")  # fmt: skip


@pytest.fixture(scope="module")
def pipeline(tiny_model_dir, tiny_bert_dir, tmp_path_factory):
    """labels/, enc/ (distilled 1 epoch, with a coverage reference and a length prior) and index/ (with its
    coverage scores and spread-sample cache), built once per module."""
    from influcoder.labels.labelling import label
    from influcoder.labels.settings import LabelSettings

    root = tmp_path_factory.mktemp("fuzz")
    pool, queries = samples(12), samples(6, seed=5, prefix="q")
    for j, query in enumerate(queries):
        query.meta["task"] = "even" if j % 2 == 0 else "odd"
    settings = LabelSettings(model=str(tiny_model_dir), rank=2, proj_dim=32, max_length=24, shard_size=8, batch_size=4)
    label(pool, queries, root / "labels", settings, progress=False)
    (root / "pool.jsonl").write_text("".join(json.dumps(s.to_record()) + "\n" for s in pool), encoding="utf-8")
    (root / "q.jsonl").write_text("".join(json.dumps(s.to_record()) + "\n" for s in queries[:2]), encoding="utf-8")
    distill = ["distill", "--labels", str(root / "labels"), "--out", str(root / "enc"), "--encoder", str(tiny_bert_dir)]
    assert main([*distill, *DISTILL, "--eval-pool", "3", "--eval-queries", "2", "--quiet"]) == 0
    index = ["index", "--encoder", str(root / "enc"), "--pool", str(root / "pool.jsonl"), "--out", str(root / "index")]
    assert main([*index, "--shard-size", "8", "--quiet"]) == 0
    attribute = ["attribute", "--index", str(root / "index"), "--queries", str(root / "q.jsonl"), "--quiet"]
    assert main([*attribute, "--format", "jsonl"]) == 0  # draws the spread-sample cache
    return {"root": root, "bert": tiny_bert_dir, "intact": {}}


def run(argv: list[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of one in-process command; an exception escaping `main` is a traceback."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def command_line(pipeline, directory: str, command: str, work: Path, out: Path, verify: bool) -> list[str]:
    root = pipeline["root"]
    paths = {"labels": root / "labels", "enc": root / "enc", "index": root / "index"}
    paths[directory] = work
    values = {
        "root": root, "bert": pipeline["bert"], "out": out, "work": work, "labels": paths["labels"],
        "enc": paths["enc"], "index": paths["index"],
        # a rerun into the damaged run directory when the damage is in it, else a fresh one
        "enc_out": work if directory == "enc" else out / "enc",
    }  # fmt: skip
    argv = [a.format(**values) for a in COMMANDS[command]]
    if command == "evaluate" and directory == "labels":  # the encoder's split names the intact labels' path
        argv += ["--split", str(root / "enc" / "eval_split.json")]
    return [*argv, "--verify"] if verify and command in VERIFY_FLAG else argv


def answer(code: int, stdout: str, stderr: str, out: Path, places: list[Path]) -> str:
    """What a command answered, without timings and the run's own paths: its output and the files it wrote."""
    text = stdout + "\n--stderr--\n" + stderr
    for path in out.rglob("*.jsonl") if out.exists() else ():
        text += f"\n--{path.name}--\n" + path.read_text(encoding="utf-8")
    for place in places:
        text = text.replace(str(place), "<DIR>")
    text = re.sub(r"\d+\.\d s\)", "<s>)", text)  # index's seconds
    return f"exit {code}\n" + re.sub(r"\| [\d.]+ \| ([\d,\-]+) \|$", r"| <ms> | \1 |", text, flags=re.M)


def intact_answer(pipeline, directory: str, command: str, tmp_path: Path) -> str:
    key = (directory, command)
    if key not in pipeline["intact"]:
        work, out = tmp_path / "intact" / directory, tmp_path / "intact-out"
        shutil.copytree(pipeline["root"] / directory, work)
        out.mkdir()
        argv = command_line(pipeline, directory, command, work, out, verify=False)
        pipeline["intact"][key] = answer(*run(argv), out, [work, out, pipeline["root"] / directory])
        assert pipeline["intact"][key].startswith("exit 0"), pipeline["intact"][key]
    return pipeline["intact"][key]


def test_the_walk_finds_every_artifact_file(pipeline):
    root = pipeline["root"]
    for directory, files in ARTIFACTS.items():
        found = sorted(
            p.relative_to(root / directory).as_posix()
            for p in (root / directory).rglob("*")
            if p.is_file() and p.name not in SKIPPED
        )
        assert found == sorted(files), f"{directory}: the pipeline writes other files than ARTIFACTS lists"


@pytest.mark.parametrize("directory, rel, corruption, command", list(cases()))
def test_a_damaged_artifact_is_named_never_crashed_on(pipeline, tmp_path, directory, rel, corruption, command):
    root = pipeline["root"]
    work, out = tmp_path / directory, tmp_path / "out"
    shutil.copytree(root / directory, work)
    out.mkdir()  # filter writes into an existing folder (it refuses a missing one, naming it)
    damaged = work / rel
    damaged.write_bytes(CORRUPTIONS[corruption](damaged.read_bytes()))
    verify = corruption == "flip" and any(fnmatch.fnmatch(rel, p) for p in CHECKSUMMED)
    argv = command_line(pipeline, directory, command, work, out, verify)
    code, stdout, stderr = run(argv)
    assert "Traceback" not in stdout + stderr
    if not verify and _lookup(HARMLESS, (directory, rel, command)):
        intact = intact_answer(pipeline, directory, command, tmp_path)
        assert answer(code, stdout, stderr, out, [work, out, root / directory]) == intact
        return
    if command == "verify":
        assert code == 1, f"verify exited {code} on a damaged {rel}:\n{stdout}{stderr}"
        assert str(damaged) in stdout, f"verify did not name {damaged}:\n{stdout}"
        return
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, f"{command} exited {code} on a damaged {rel}:\n{stdout}{stderr}"
    assert len(lines) == 1, f"not one line:\n{stderr}"
    assert str(damaged) in lines[0], f"the damaged file is not named: {lines[0]}"
