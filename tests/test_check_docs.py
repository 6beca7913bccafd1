"""scripts/check_docs.py (`make check-docs`): the published figures of docs/results and benchmarks/results agree
with their committed JSON, and the check itself fails, naming the cell, when one number of a page changes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def check_docs():
    name = "check_docs_under_test"
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "check_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


def changed_copy(tmp_path: Path, page: str, old: str, new: str) -> dict[str, Path]:
    """A temporary copy of `page` with the one occurrence of `old` replaced by `new`."""
    text = (ROOT / page).read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not unique in {page}"
    copy = tmp_path / Path(page).name
    copy.write_text(text.replace(old, new), encoding="utf-8")
    return {page: copy}


def test_every_published_figure_matches_its_json(check_docs):
    checker = check_docs.run(ROOT)
    assert not checker.mismatches, "\n".join(str(m) for m in checker.mismatches)
    assert "docs/results/ranking.md" in checker.covered and "docs/results/toxicity.md" in checker.covered


def test_a_changed_table_cell_fails_and_names_it(check_docs, tmp_path):
    page = "docs/results/ranking.md"
    swap = changed_copy(
        tmp_path,
        page,
        "| LESS (SGD, Rademacher 8,192) | 0.959 ± 0.014 |",
        "| LESS (SGD, Rademacher 8,192) | 0.958 ± 0.014 |",
    )
    mismatches = check_docs.run(ROOT, swap).mismatches
    assert len(mismatches) == 1, [str(m) for m in mismatches]
    (mismatch,) = mismatches
    assert mismatch.page == page and mismatch.shown == "0.958" and mismatch.expected.startswith("0.959")
    assert "LESS (SGD" in mismatch.where and "per-anchor ρ" in mismatch.where
    assert "0.958" in str(mismatch) and "0.959" in str(mismatch)


def test_a_changed_figure_in_prose_fails(check_docs, tmp_path):
    page = "docs/results/generalization.md"
    swap = changed_copy(tmp_path, page, "(coverage 0.465, spread 0.555)", "(coverage 0.462, spread 0.555)")
    (mismatch,) = check_docs.run(ROOT, swap).mismatches
    assert mismatch.page == page and mismatch.shown == "0.462" and mismatch.expected.startswith("0.465")


def test_a_re_rendered_table_fails_on_a_changed_cell(check_docs, tmp_path):
    page = "docs/results/toxicity-report/results.md"
    swap = changed_copy(tmp_path, page, "| influcoder | 0.459 ± 0.141 |", "| influcoder | 0.459 ± 0.142 |")
    (mismatch,) = check_docs.run(ROOT, swap).mismatches
    assert mismatch.page == page and "influcoder" in mismatch.where and "AUPRC (mean ± sd)" in mismatch.where
    assert mismatch.shown == "0.459 ± 0.142" and mismatch.expected.startswith("0.459 ± 0.141")


def test_a_page_without_a_check_fails(check_docs, tmp_path):
    root = tmp_path / "repo"
    (root / "docs" / "results").mkdir(parents=True)
    (root / "benchmarks" / "results").mkdir(parents=True)
    (root / "docs" / "results" / "new.md").write_text("| a | b |\n|---|---|\n| x | 1 |\n", encoding="utf-8")
    (mismatch,) = check_docs.run(root).mismatches
    assert mismatch.page == "docs/results/new.md" and mismatch.shown == "(no check)"


def test_numbers_are_compared_at_the_printed_precision(check_docs):
    (n,) = check_docs.numbers("0.46")
    assert n.accepts(0.455) and n.accepts(0.4649) and not n.accepts(0.4651) and not n.accepts(0.4549)
    (n,) = check_docs.numbers("~9,600 s")
    assert n.approx and n.accepts(9564) and not n.accepts(9540)
    (n,) = check_docs.numbers("from −0.16")
    assert n.value == -0.16 and n.accepts(-0.155693)
    assert [x.value for x in check_docs.numbers("0.13-0.14, 1,416 and 1.17e-06")] == [0.13, 0.14, 1416, 1.17e-06]
    (n,) = check_docs.numbers("1.17e-06")
    assert n.accepts(1.1731e-06) and not n.accepts(1.19e-06)
