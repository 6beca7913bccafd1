"""Hostile inputs, as a new user would try them: each case's command, exit code and first error line.

Cases a command must refuse should exit 2 with one line that names the file (and line) and what was expected;
cases that are valid but unusual (Unicode line separators, '#' lines in a CSV, a .tsv) must succeed and read
the data exactly (what `data --out` writes is compared with the texts). A case passes only with the exit code
wanted, no traceback and the message it is about (`MUST_SAY`): a refusal for another reason fails. Built on
the tiny offline models of the tests, so it runs anywhere in about two minutes.

    python benchmarks/hostile_inputs.py --out runs/hostile

writes benchmarks/results/hostile_inputs.json and .md (the table of docs/reliability.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from kill_resume import influcoder, setup

RESULTS = Path(__file__).parent / "results"


def prepare(work: Path, paths: dict[str, Path]) -> dict[str, Path]:
    """Files of each hostile case, plus one small labels directory, encoder and index to misuse."""
    files = {}

    def write(name: str, text: str | bytes) -> None:
        path = work / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        files[name] = path

    write("malformed.jsonl", '{"prompt": "a", "response": "b"}\n{"prompt": "c", "response"\n')
    write("list_prompt.jsonl", '{"prompt": ["a", "b"], "response": "c"}\n')
    write("empty_response.jsonl", '{"prompt": "a", "response": "  "}\n')
    write("no_response_field.jsonl", '{"prompt": "a", "answer_text": "b"}\n')
    write(
        "duplicate_ids.jsonl", '{"id": 1, "prompt": "a", "response": "b"}\n{"id": 1, "prompt": "c", "response": "d"}\n'
    )
    write("latin1.jsonl", '{"prompt": "caf\u00e9", "response": "b"}\n'.encode("latin-1"))
    write(
        "separators.jsonl", json.dumps({"prompt": "a\u2028b\u2029c\x85d", "response": "e"}, ensure_ascii=False) + "\n"
    )
    write("hash_lines.csv", 'prompt,response\n"first\n# kept line",one\n#starts with hash,two\n')
    write("tabs.tsv", "prompt\tresponse\nx, with a comma\ty\n")
    write("bad_row.csv", 'prompt,response\na,b\n"unclosed,c\n')
    notes = work / "notes"
    notes.mkdir(exist_ok=True)
    (notes / "results.txt").write_text("a week of results\n")
    files["notes"] = notes
    out = work / "artifacts"
    if not (out / "index" / "manifest.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        for argv in (
            [
                "label",
                "--pool",
                str(paths["pool"]),
                "--queries",
                str(paths["queries"]),
                "--out",
                str(out / "labels"),
                "--model",
                str(paths["decoder"]),
                "--rank",
                "2",
                "--proj-dim",
                "64",
                "--max-length",
                "24",
                "--pool-limit",
                "40",
                "--query-limit",
                "8",
                "--shard-size",
                "8",
                "--quiet",
            ],
            [
                "distill",
                "--labels",
                str(out / "labels"),
                "--out",
                str(out / "encoder"),
                "--encoder",
                str(paths["encoder"]),
                "--epochs",
                "1",
                "--max-length",
                "24",
                "--quiet",
            ],
            [
                "index",
                "--encoder",
                str(out / "encoder"),
                "--pool",
                str(paths["pool"]),
                "--limit",
                "40",
                "--out",
                str(out / "index"),
                "--shard-size",
                "8",
                "--quiet",
            ],
        ):
            subprocess.run(influcoder(*argv), check=True, capture_output=True)
    files.update({"labels": out / "labels", "encoder": out / "encoder", "index": out / "index"})
    return files


MUST_SAY = {
    "a file that does not exist": "missing.jsonl: no such file or directory",
    "malformed JSON on line 2": "malformed.jsonl:2: malformed JSON",
    "a list-valued prompt": "list_prompt.jsonl:1: field 'prompt' must be a string",
    "a blank response": "empty_response.jsonl:1: empty response",
    "no response field": "no_response_field.jsonl:1: missing response field",
    "duplicate ids": "duplicate_ids.jsonl:2: duplicate id '1'",
    "a Latin-1 file": "latin1.jsonl:1: not valid UTF-8",
    "a CSV row with an unclosed quote": "bad_row.csv:2: row has 1 field(s), the header 2",
    "--limit -1": "--limit must be at least 1, got -1",
    "U+2028 / U+2029 / U+0085 inside a text (valid)": "wrote 1 samples to",
    "'#' lines that are CSV data (valid)": "wrote 2 samples to",
    "a .tsv with a comma inside a field (valid)": "wrote 1 samples to",
    "an unknown built-in source": "evalz: no such file or directory, nor a built-in source",
    "prompt-only samples as a pool": "empty response (a prompt-only source",
    "--shard-size 0": "--shard-size must be at least 1, got 0",
    "--epochs 0": "--epochs 0 is out of range",
    "--val-fraction 0": "--val-fraction 0.0 is out of range",
    "a directory that is not labels": "notes is not a labels directory (no labels.json)",
    "-k 0": "-k must be at least 1, got 0",
    "a directory that is not an index": "notes is not an influcoder index (no manifest.json)",
    "index --overwrite onto a folder of notes": "refusing to overwrite",
    "index rerun with another dtype": "built with dtype 'float16', not what this run asks for",
    "label rerun with another projection": "config.projector.dim: stored 64, requested 128",
    "an unknown command": "unknown command 'lable'",
}
"""A piece of what each case must print: a refusal for another reason (an asset error offline, a renamed
flag's usage error) is not the refusal the case is about."""
READS = {
    "U+2028 / U+2029 / U+0085 inside a text (valid)": ("read-separators.jsonl", [("a\u2028b\u2029c\x85d", "e")]),
    "'#' lines that are CSV data (valid)": (
        "read-hash.jsonl",
        [("first\n# kept line", "one"), ("#starts with hash", "two")],
    ),
    "a .tsv with a comma inside a field (valid)": ("read-tabs.jsonl", [("x, with a comma", "y")]),
}
"""What a valid case must read, exactly: (the file its `data --out` writes, its (prompt, response) pairs)."""


def cases(f: dict[str, Path], paths: dict[str, Path], work: Path) -> list[tuple[str, list[str], int]]:
    """(what, argv, expected exit code). What each must print is `MUST_SAY`; what a valid one must read,
    `READS`."""
    q = str(paths["queries"])
    return [
        ("a file that does not exist", ["data", str(work / "missing.jsonl")], 2),
        ("malformed JSON on line 2", ["data", str(f["malformed.jsonl"])], 2),
        ("a list-valued prompt", ["data", str(f["list_prompt.jsonl"])], 2),
        ("a blank response", ["data", str(f["empty_response.jsonl"])], 2),
        ("no response field", ["data", str(f["no_response_field.jsonl"])], 2),
        ("duplicate ids", ["data", str(f["duplicate_ids.jsonl"])], 2),
        ("a Latin-1 file", ["data", str(f["latin1.jsonl"])], 2),
        ("a CSV row with an unclosed quote", ["data", str(f["bad_row.csv"])], 2),
        ("--limit -1", ["data", str(paths["pool"]), "--limit", "-1"], 2),
        (
            "U+2028 / U+2029 / U+0085 inside a text (valid)",
            ["data", str(f["separators.jsonl"]), "--out", str(work / "read-separators.jsonl")],
            0,
        ),
        (
            "'#' lines that are CSV data (valid)",
            ["data", str(f["hash_lines.csv"]), "--out", str(work / "read-hash.jsonl")],
            0,
        ),
        (
            "a .tsv with a comma inside a field (valid)",
            ["data", str(f["tabs.tsv"]), "--out", str(work / "read-tabs.jsonl")],
            0,
        ),
        ("an unknown built-in source", ["data", "evalz"], 2),
        (
            "prompt-only samples as a pool",
            [
                "label",
                "--pool",
                "harmbench",
                "--pool-limit",
                "3",
                "--queries",
                q,
                "--out",
                str(work / "l2"),
                "--model",
                str(paths["decoder"]),
            ],
            2,
        ),
        ("--shard-size 0", ["label", "--pool", q, "--queries", q, "--out", str(work / "l3"), "--shard-size", "0"], 2),
        ("--epochs 0", ["distill", "--labels", str(f["labels"]), "--out", str(work / "e2"), "--epochs", "0"], 2),
        (
            "--val-fraction 0",
            ["distill", "--labels", str(f["labels"]), "--out", str(work / "e3"), "--val-fraction", "0"],
            2,
        ),
        ("a directory that is not labels", ["distill", "--labels", str(f["notes"]), "--out", str(work / "e4")], 2),
        ("-k 0", ["attribute", "--index", str(f["index"]), "--queries", q, "-k", "0"], 2),
        ("a directory that is not an index", ["attribute", "--index", str(f["notes"]), "--queries", q], 2),
        (
            "index --overwrite onto a folder of notes",
            ["index", "--encoder", str(f["encoder"]), "--pool", q, "--out", str(f["notes"]), "--overwrite"],
            2,
        ),
        (
            "index rerun with another dtype",
            [
                "index",
                "--encoder",
                str(f["encoder"]),
                "--pool",
                str(paths["pool"]),
                "--limit",
                "40",
                "--out",
                str(f["index"]),
                "--shard-size",
                "8",
                "--dtype",
                "float32",
            ],
            2,
        ),
        (
            "label rerun with another projection",
            [
                "label",
                "--pool",
                str(paths["pool"]),
                "--queries",
                q,
                "--out",
                str(f["labels"]),
                "--model",
                str(paths["decoder"]),
                "--rank",
                "2",
                "--proj-dim",
                "128",
                "--max-length",
                "24",
                "--pool-limit",
                "40",
                "--query-limit",
                "8",
                "--shard-size",
                "8",
            ],
            2,
        ),
        ("an unknown command", ["lable"], 2),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/hostile"))
    args = parser.parse_args()
    work = args.out.resolve()
    paths = setup(work)
    files = prepare(work, paths)
    rows = []
    for what, argv, expected in cases(files, paths, work):
        done = subprocess.run(influcoder(*argv), capture_output=True, text=True, timeout=300)
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        message = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else "")
        traceback = "Traceback" in done.stderr
        said = MUST_SAY[what] in (done.stdout or "") + (done.stderr or "")
        read_back = None
        if what in READS:
            name, pairs = READS[what]
            written = work / name
            text = written.read_text(encoding="utf-8") if written.exists() else ""
            records = [json.loads(line) for line in text.split("\n") if line]  # not splitlines(): U+2028 is text
            read_back = [(r.get("prompt"), r.get("response")) for r in records] == pairs
        rows.append(
            {
                "case": what,
                "command": "influcoder " + " ".join(argv).replace(str(work), "$W"),
                "expected": expected,
                "rc": done.returncode,
                "traceback": traceback,
                "must_say": MUST_SAY[what],
                "said_it": said,
                "read_back": read_back,
                "message": message.replace(str(work), "$W")[:220],
            }
        )
        print(f"rc {done.returncode} (want {expected}) {what}: {rows[-1]['message'][:100]}", flush=True)
    notes_intact = (files["notes"] / "results.txt").exists()
    ok = all(as_expected(r) for r in rows) and notes_intact
    result = {
        "command": "python " + " ".join(sys.argv),
        "cases": rows,
        "notes_intact": notes_intact,
        "all_as_expected": ok,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hostile_inputs.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    lines = [
        f"# Hostile inputs: {sum(as_expected(r) for r in rows)} of {len(rows)} "
        f"as expected (the folder of notes {'survived' if notes_intact else 'was DELETED'})",
        "",
        f"command: `{result['command']}` ($W = the work directory; tiny offline models)",
        "",
        *table(rows),
    ]
    (RESULTS / "hostile_inputs.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(lines[0])
    return 0 if ok else 1


def as_expected(row: dict) -> bool:
    """The exit code wanted, no traceback, the message the case is about, and (valid cases) the data read."""
    return row["rc"] == row["expected"] and not row["traceback"] and row["said_it"] and row["read_back"] in (None, True)


def table(rows: list[dict]) -> list[str]:
    """The markdown table of the cases (scripts/check_docs.py re-renders it from the JSON)."""
    lines = ["| case | exit (expected) | says what it must | read back exactly | what the user reads |",
             "|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        flag = "" if as_expected(r) else " **unexpected**"
        message = r["message"].replace("|", "\\|")
        read = {None: "-", True: "yes", False: "**no**"}[r["read_back"]]
        said = "yes" if r["said_it"] else "**no**"
        lines.append(f"| {r['case']} | {r['rc']} ({r['expected']}){flag} | {said} | {read} | {message} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
