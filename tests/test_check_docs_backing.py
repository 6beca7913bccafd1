"""scripts/check_docs.py on the figures #36 backed: the labelling guide's memory table and figures
(docs/labels.md, from benchmarks/results/labels-memory.json), its figures in prose from labels.json,
labels-fused.json, finetune-speed.json and labels-gemm-bound.json, scale.md's targets and memory units,
toxicity.md's Rep-Sim figures (the last-token pooling's ranks from fixture pools), the kill-and-resume page
re-rendered whole from its JSON, and `--prose`, which lists what no sentence check compares. Each check must
fail, naming the figure, when one number of its page changes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
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
        ("docs/labels.md", "cost ~6% over", "cost ~8% over", "~8"),
        ("docs/labels.md", "330 GFLOP/s at 2048, against 158", "330 GFLOP/s at 2048, against 168", "168"),
        ("docs/labels.md", "faster per step (2.86 s", "faster per step (2.76 s", "2.76"),
        ("docs/labels.md", "(8,152 calls", "(8,150 calls", "8,150"),
        ("docs/labels.md", "spread 227-323 GFLOP/s", "spread 227-330 GFLOP/s", "330"),
        ("docs/labels.md", "products alone **0.77**", "products alone **0.75**", "0.75"),
        ("docs/labels.md", "(0.67-0.95 against", "(0.67-0.93 against", "0.93"),
        ("docs/labels.md", "(head dim 64) at 0.56;", "(head dim 64) at 0.59;", "0.59"),
        ("docs/labels.md", "at 0.79 of the ceiling", "at 0.85 of the ceiling", "0.85"),
        ("docs/results/scale.md", "2.43 GiB but 2.61 GB", "2.43 GiB but 2.43 GB", "2.43"),
        ("docs/results/scale.md", "(7,465 to 7,705 MB", "(7,465 to 7,805 MB", "7,805"),
        ("docs/results/scale.md", "~1,200 MB", "~1,300 MB", "~1,300"),
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
    for name in check_docs.KILL_RESUME_RUNS[1:]:  # the other runs the same check renders, as committed
        for suffix in (".json", ".md"):
            file = f"benchmarks/results/{name}{suffix}"
            (root / file).write_text((ROOT / file).read_text())
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


def test_the_last_token_pooling_ranks_come_from_the_pools(check_docs, tmp_path):
    """toxicity.md's last-token pooling sentence (checked with --tasks, from the rebuilt pools) on fixture pools:
    het seed 2's unsafe pairs at the ranks the page prints pass; one rank moved, or one unsafe pair less, fails."""
    page = "docs/results/toxicity.md"
    het0 = np.array(["unsafe"] * 2 + ["benign"] * 2 + ["safety"] * 2)
    het0_scores = np.array([0.657, 0.657, 0.698, 0.698, 0.745, 0.745])
    ranks = [0, 1, 2, 325, 774, *range(1912, 1921), 2044]

    def figures(types2: np.ndarray, substitutes: dict[str, Path] | None = None) -> list:
        checker = check_docs.Checker(ROOT, substitutes or {})
        scores = {"het-seed0": het0_scores, "het-seed2": -np.arange(len(types2), dtype=float)}
        check_docs.repsim_pool_figures(
            checker.page(page), {"het-seed0": het0, "het-seed2": types2}, lambda n, m: scores[n]
        )
        return checker.mismatches

    types = np.array(["benign"] * 2045, dtype=object)
    types[ranks] = "unsafe"
    assert figures(types) == []
    (mismatch,) = figures(types, changed(tmp_path, page, "325 and 774", "325 and 775"))
    assert mismatch.page == page and mismatch.shown == "775"
    types[2044] = "benign"
    assert [m.shown for m in figures(types)] == ["15", "2,044", "15"]  # of 15, up to rank 2,044, 15 in all
