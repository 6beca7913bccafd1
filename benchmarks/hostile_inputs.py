"""Hostile inputs, as a new user would try them: each case's command, exit code and first error line.

Cases a command must refuse should exit 2 with one line that names the file (and line) and what was expected;
cases that are valid but unusual (Unicode line separators, '#' lines in a CSV, a .tsv) must succeed and read
the data exactly. Built on the tiny offline models of the tests, so it runs anywhere in about two minutes.

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


def cases(f: dict[str, Path], paths: dict[str, Path], work: Path) -> list[tuple[str, list[str], int]]:
    """(what, argv, expected exit code)."""
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
        ("U+2028 / U+2029 / U+0085 inside a text (valid)", ["data", str(f["separators.jsonl"])], 0),
        ("'#' lines that are CSV data (valid)", ["data", str(f["hash_lines.csv"])], 0),
        ("a .tsv with a comma inside a field (valid)", ["data", str(f["tabs.tsv"])], 0),
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
        rows.append(
            {
                "case": what,
                "command": "influcoder " + " ".join(argv).replace(str(work), "$W"),
                "expected": expected,
                "rc": done.returncode,
                "traceback": traceback,
                "message": message.replace(str(work), "$W")[:220],
            }
        )
        print(f"rc {done.returncode} (want {expected}) {what}: {rows[-1]['message'][:100]}", flush=True)
    notes_intact = (files["notes"] / "results.txt").exists()
    ok = all(r["rc"] == r["expected"] and not r["traceback"] for r in rows) and notes_intact
    result = {
        "command": "python " + " ".join(sys.argv),
        "cases": rows,
        "notes_intact": notes_intact,
        "all_as_expected": ok,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hostile_inputs.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    lines = [
        f"# Hostile inputs: {sum(r['rc'] == r['expected'] and not r['traceback'] for r in rows)} of {len(rows)} "
        f"as expected (the folder of notes {'survived' if notes_intact else 'was DELETED'})",
        "",
        f"command: `{result['command']}` ($W = the work directory; tiny offline models)",
        "",
        "| case | exit (expected) | what the user reads |",
        "|---|---|---|",
    ]
    for r in rows:
        flag = "" if r["rc"] == r["expected"] and not r["traceback"] else " **unexpected**"
        message = r["message"].replace("|", "\\|")
        lines.append(f"| {r['case']} | {r['rc']} ({r['expected']}){flag} | {message} |")
    (RESULTS / "hostile_inputs.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(lines[0])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
