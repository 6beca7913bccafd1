"""Convert BIG-Bench Hard (suzgunmirac/BIG-Bench-Hard, MIT) into the package data behind the `bbh` source.

Run once per source commit; the output is committed and read with no network and no cache:

    python scripts/build_bbh_data.py --repo PATH/TO/BIG-Bench-Hard [--commit 9ee07bd]

`--repo` is a git repository (bare or with a work tree) holding the upstream history; the files are read
from the named commit with `git show`, so a dirty work tree cannot leak into the package. It writes, into
`src/influcoder/data/bundled/`:

- `bbh.json.gz`: ``{"tasks": {task: [[input, target], ...]}}``, tasks and items in upstream order, gzip with a
  fixed header (mtime 0), so a rerun on the same commit rewrites the same bytes;
- `bbh.LICENSE`: the upstream licence text, verbatim;
- `bbh.source.json`: repository, full commit, folder, item counts and the sha256 of `bbh.json.gz`.

Why shipped and not fetched: the `bigbench==1.0.0` sdist that carried the tasks vanished from the package
registry (only 0.0.1 is served), which broke every `bbh` user on a fresh machine.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import subprocess
from pathlib import Path

REPOSITORY = "https://github.com/suzgunmirac/BIG-Bench-Hard"
FOLDER = "bbh"
OUT = Path(__file__).resolve().parents[1] / "src" / "influcoder" / "data" / "bundled"


def _git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True).stdout


def read_tasks(repo: Path, commit: str) -> tuple[str, dict[str, list[list[str]]], str]:
    """(full commit, {task: [[input, target], ...]}, licence text) read from `commit` of `repo`."""
    full = _git(repo, "rev-parse", f"{commit}^{{commit}}").decode().strip()
    names = _git(repo, "ls-tree", "--name-only", full, f"{FOLDER}/").decode().split()
    tasks: dict[str, list[list[str]]] = {}
    for name in sorted(n for n in names if n.endswith(".json")):
        record = json.loads(_git(repo, "show", f"{full}:{name}"))
        items = [[str(x["input"]), str(x["target"])] for x in record["examples"]]
        tasks[Path(name).stem] = items
    licence = _git(repo, "show", f"{full}:LICENSE").decode()
    return full, tasks, licence


def gzip_bytes(payload: bytes) -> bytes:
    """gzip with mtime 0 and no file name: the same input gives the same bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as out:
        out.write(payload)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, required=True, help="a git repository of BIG-Bench-Hard")
    parser.add_argument("--commit", default="9ee07bd", help="the upstream commit to read (default: 9ee07bd)")
    parser.add_argument("--out", type=Path, default=OUT, help="the package data folder")
    args = parser.parse_args()
    full, tasks, licence = read_tasks(args.repo, args.commit)
    data = gzip_bytes(json.dumps({"tasks": tasks}, ensure_ascii=False, separators=(",", ":")).encode())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bbh.json.gz").write_bytes(data)
    (args.out / "bbh.LICENSE").write_text(licence, encoding="utf-8")
    source = {
        "name": "BIG-Bench Hard (Suzgun et al., 2022)",
        "repository": REPOSITORY,
        "commit": full,
        "folder": FOLDER,
        "license": "MIT (bbh.LICENSE)",
        "tasks": len(tasks),
        "items": sum(len(v) for v in tasks.values()),
        "items_per_task": {k: len(v) for k, v in tasks.items()},
        "sha256": hashlib.sha256(data).hexdigest(),
        "built_by": "scripts/build_bbh_data.py",
    }
    (args.out / "bbh.source.json").write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
    print(f"{source['tasks']} tasks, {source['items']:,} items, {len(data):,} bytes -> {args.out}")


if __name__ == "__main__":
    main()
