"""scripts/check_docs.py on the figures #36 backed: the labelling guide's memory table and figures
(docs/labels.md, from benchmarks/results/labels-memory.json), scale.md's targets, toxicity.md's Rep-Sim
figures, the kill-and-resume page re-rendered whole from its JSON, and `--prose`, which lists what no sentence
check compares. Each check must fail, naming the figure, when one number of its page changes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def check_docs():
    name = "check_docs_backing_under_test"
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "check_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


def changed(tmp_path: Path, page: str, old: str, new: str) -> dict[str, Path]:
    text = (ROOT / page).read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not unique in {page}"
    copy = tmp_path / Path(page).name
    copy.write_text(text.replace(old, new), encoding="utf-8")
    return {page: copy}


@pytest.mark.parametrize(
    "page, old, new, shown",
    [
        ("docs/labels.md", "| 512 | sdpa | 1.77 | 2,487 |", "| 512 | sdpa | 1.77 | 2,497 |", "2,497"),
        ("docs/labels.md", "measured 1.98 in the same run", "measured 1.96 in the same run", "1.96"),
        ("docs/results/scale.md", "at 1.07x the throughput", "at 1.01x the throughput", "1.01"),
        ("docs/results/scale.md", "the rank-8 ones 0.16)", "the rank-8 ones 0.17)", "0.17"),
        ("docs/results/toxicity.md", "at 2,304 bytes and one", "at 2,048 bytes and one", "2,048"),
    ],
)
def test_a_changed_backed_figure_fails_and_names_it(check_docs, tmp_path, page, old, new, shown):
    (mismatch,) = check_docs.run(ROOT, changed(tmp_path, page, old, new)).mismatches
    assert mismatch.page == page and mismatch.shown == shown


def test_a_figure_of_the_labels_guide_without_a_record_is_refused(check_docs, tmp_path):
    """A table added to docs/labels.md with no check behind it fails, as on the results pages."""
    page = "docs/labels.md"
    swap = changed(
        tmp_path,
        page,
        "## Memory: `--max-memory GB`\n",
        "## Memory: `--max-memory GB`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
    )
    (mismatch,) = check_docs.run(ROOT, swap).mismatches
    assert mismatch.page == page and mismatch.shown == "(not checked)"


def kill_resume_record(check_docs) -> dict:
    """A small record of benchmarks/kill_resume.py's format: one resumed kill, one restart."""
    trial = {
        "stage": "label",
        "wait_for_parts": 2,
        "then_s": 0.1,
        "kill_after_s": 9.5,
        "killed": True,
        "parts_at_kill": 3,
        "parts_total": 15,
        "mid_output": True,
        "position_at_kill": None,
        "kept_files": 6,
        "rerun_rc": 0,
        "resumed": True,
        "resume_problems": [],
        "identical": True,
        "problems": [],
        "temporaries_left": [],
    }
    restart = {
        **trial,
        "stage": "distill-subspace",
        "parts_at_kill": 1,
        "parts_total": 2,
        "resumed": False,
        "resume_problems": ["rerun did not resume (restarted from scratch)"],
    }
    return {
        "command": "python benchmarks/kill_resume.py --kills 1",
        "machine": "x86_64, 2 cores, Python 3.11",
        "date": "2026-12-07",
        "pool": 96,
        "queries": 24,
        "epochs": 4,
        "stages": ["label", "distill-subspace"],
        "kills_wanted": 1,
        "finished": True,
        "reference": {"label": {"seconds": 12.0}, "distill-subspace": {"seconds": 10.0}},
        "trials": [trial, restart],
    }


def test_the_kill_resume_page_is_its_json_re_rendered(check_docs, tmp_path):
    root = tmp_path / "repo"
    for folder in ("benchmarks/results", "docs/results", "scripts"):
        (root / folder).mkdir(parents=True)
    (root / "benchmarks" / "kill_resume.py").write_text((ROOT / "benchmarks" / "kill_resume.py").read_text())
    record = kill_resume_record(check_docs)
    (root / "benchmarks/results/kill_resume.json").write_text(json.dumps(record))
    page = check_docs.script_functions(ROOT / "benchmarks" / "kill_resume.py", {})["markdown"](record)
    assert page.startswith("# Kill and resume: 1 of 2 mid-output SIGKILLs resumed")
    assert "| distill-subspace | 1 | 1 | 0 | 1 | 0 | 1-1 of 2 files |" in page
    (root / "benchmarks/results/kill_resume.md").write_text(page)
    assert not check_docs.run(root).mismatches
    for old, new in (("| label | 1 | 1 | 1 |", "| label | 1 | 1 | 0 |"), ("1 of 2 mid-output", "2 of 2 mid-output")):
        (root / "benchmarks/results/kill_resume.md").write_text(page.replace(old, new))
        (mismatch,) = check_docs.run(root).mismatches
        assert mismatch.page == "benchmarks/results/kill_resume.md"


def test_prose_lists_the_numbers_no_sentence_compares(check_docs, tmp_path):
    page = "docs/labels.md"
    checker = check_docs.run(
        ROOT, changed(tmp_path, page, "## Memory:", "A figure nobody checks: 4.25 s.\n\n## Memory:")
    )
    (guide,) = [p for p in checker.pages if p.name == page]
    listed = check_docs.unchecked_prose_numbers(guide)
    assert any("4.25" in context for context in listed)
    assert not any("measured 1.98" in context and context.index("1.98") < 60 for context in listed)
