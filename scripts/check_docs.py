"""`make check-docs`: every figure table of docs/results/*.md, and of benchmarks/results/*.md where a committed
JSON backs it (and of docs/labels.md, whose measurements have records too), recomputed from that JSON; any
difference fails, naming the page, the table row and cell, the value the page prints and the value recomputed.

    python scripts/check_docs.py               # exit 1 on a mismatch
    python scripts/check_docs.py --unbacked    # also list the figures that no committed JSON backs
    python scripts/check_docs.py --coverage    # say how each page's tables are checked
    python scripts/check_docs.py --prose       # also list the numbers in prose no sentence check compares
    python scripts/check_docs.py --tasks       # also the toxicity page's unsafe ranks (rebuilds six pools:
                                               # minutes, and the embedded data assets)

Two kinds of check:

- **re-render**: where the script that wrote a page has a function that renders its tables from the JSON
  (`markdown(record)`, `table(rows)`, ...), that function runs again on the committed JSON and each table it
  produces must equal the page's table with the same header (cells compared with whitespace normalised; the
  prose around the tables is free). The function is read out of the script's source with its literal
  constants, without the script's other imports, so the check needs neither torch nor a model;
- **explicit**: a page whose tables were written by hand gets its own recomputation below (`Page.table`), and
  its figures in prose a sentence check (`Page.text`). Numbers are compared at the decimals the page prints
  (a printed 0.46 accepts 0.455 to 0.465; `~9,600` accepts what rounds to its two significant digits).

A cell whose figure has no committed JSON behind it is written `unbacked("why")`: it is not compared, and
`--unbacked` lists it. Every markdown page of docs/results, and every benchmarks/results page with a JSON of
the same name beside it, must have a check here: a new page without one fails too.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import re
import shlex
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOCS = "docs/results"
BENCH = "benchmarks/results"
CLEAN_PROTOCOLS = ("task", "random")
"""The linear head's clean-split records on transfer.md (docs/results/transfer-default-<protocol>.json)."""
KERNEL_PROTOCOLS = ("task", "random", "source")
"""The kernel head's (today's default) records on transfer.md (docs/results/transfer-kernel-<protocol>.json)."""


# ----------------------------------------------------------------------------------------------------------------
# markdown tables and numbers


@dataclass
class Table:
    line: int  # 1-based line of the header row in its page
    header: list[str]
    rows: list[list[str]]

    def title(self) -> str:
        return " | ".join(self.header)[:70]


def normalise(text: str) -> str:
    return " ".join(text.replace("\u2212", "-").split())


def split_row(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") else inner
    return [normalise(cell) for cell in re.split(r"(?<!\\)\|", inner)]


def tables(text: str) -> list[Table]:
    """Every pipe table of a markdown text (header row, separator row, body rows); fenced code is skipped."""
    lines = text.splitlines()
    found, i, fenced = [], 0, False
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("```"):
            fenced = not fenced
        elif (
            not fenced
            and stripped.startswith("|")
            and i + 1 < len(lines)
            and re.fullmatch(r"\|?(\s*:?-{3,}:?\s*\|)+\s*:?(-{3,})?:?\s*", lines[i + 1].strip())
        ):
            table = Table(i + 1, split_row(lines[i]), [])
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                table.rows.append(split_row(lines[i]))
                i += 1
            found.append(table)
            continue
        i += 1
    return found


NUMBER = re.compile(
    r"(?P<approx>~)?(?P<sign>(?<![\w.)])[-+])?(?<![\w.,/])(?P<int>\d{1,3}(?:,\d{3})+(?![\d])|\d+)(?P<frac>\.\d+)?"
    r"(?P<exp>e[-+]?\d+)?"
)


@dataclass(frozen=True)
class Number:
    text: str
    value: float
    decimals: int
    approx: bool
    scientific: bool

    def step(self) -> float:
        """The unit of the last digit printed: 0.01 for 0.46, 100 for ~9,600, 1e-8 for 1.17e-06."""
        if self.scientific or (self.approx and "." not in self.text):
            magnitude = math.floor(math.log10(abs(self.value))) if self.value else 0
            if self.scientific:
                significant = self.decimals + 1
            else:
                significant = len(self.text.lstrip("~+-").replace(",", "").rstrip("0")) or 1
            return 10.0 ** (magnitude - significant + 1)
        return 10.0**-self.decimals

    def accepts(self, expected: float | None) -> bool:
        """Whether `expected` prints as this number: a correct rounding at the printed precision (a value at the
        exact half may round either way)."""
        if expected is None or not math.isfinite(expected):
            return False
        return abs(expected - self.value) <= 0.5 * self.step() * (1 + 1e-9) + 1e-12


def prose_lines(text: str) -> list[str]:
    """The lines of a markdown text outside tables and fenced code."""
    out, fenced = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
        elif not fenced and not stripped.startswith("|") and not line.startswith("    "):
            out.append(line)
    return out


NOT_A_FIGURE = re.compile(
    r"`[^`]*`|\[[^\]]*\]\([^)]*\)|\(\.\./[^)]*\)|https?://\S+|\b\d{4}-\d{2}-\d{2}\b|\b(?:session|sessions|issue|issues|seed|"
    r"seeds|run|runs|step|steps|section|epoch|epochs|replicate|#)\s*\d+(?:\s*(?:,|and|-|/|to)\s*\d+)*|\b\d+(?:st|nd|rd|th)\b",
    re.IGNORECASE,
)


def unchecked_prose_numbers(page: Page) -> list[str]:
    """Numbers in a page's prose that no sentence check compared (dates, session / issue / seed / run numbers,
    code spans and links left out), each with a little context."""
    hidden = [m.span() for m in NOT_A_FIGURE.finditer(page.prose)]
    out = []
    for m in NUMBER.finditer(page.prose):
        at = m.start()
        if any(a <= at < b for a, b in page.prose_checked + hidden):
            continue
        out.append(page.prose[max(0, at - 40) : m.end() + 25])
    return out


TEXT_NUMBER = r"(~?[-+]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:e[-+]?\d+)?)"


def numbers(text: str) -> list[Number]:
    out = []
    for m in NUMBER.finditer(normalise(text)):
        digits = m["int"].replace(",", "") + (m["frac"] or "") + (m["exp"] or "")
        value = float(digits) * (-1 if m["sign"] == "-" else 1)
        out.append(Number(m.group(0), value, len(m["frac"] or ".") - 1, bool(m["approx"]), bool(m["exp"])))
    return out


def shown_as(number: Number, expected: float) -> str:
    """`expected` printed the way the page prints `number` (for messages)."""
    if expected is None:
        return "None"
    if number.scientific:
        return f"{expected:.{number.decimals}e}"
    if number.approx and "." not in number.text:
        digits = len(number.text.lstrip("~+-").replace(",", "").rstrip("0")) or 1
        rounded = float(f"{expected:.{digits}g}")
        return f"~{rounded:,.0f}"
    return f"{expected:,.{number.decimals}f}" if "," in number.text else f"{expected:.{number.decimals}f}"


# ----------------------------------------------------------------------------------------------------------------
# what a cell must hold


@dataclass(frozen=True)
class Unbacked:
    """A figure no committed JSON backs: not compared, listed by --unbacked."""

    why: str


def unbacked(why: str) -> Unbacked:
    return Unbacked(why)


SKIP = object()  # a cell that holds no figure of the page's JSON (a label, a unit, a command): not compared


@dataclass(frozen=True)
class Each:
    """One printed number that must be a correct rounding of each of several JSON values (a row of the page
    that stands for several methods with the same figure)."""

    values: tuple[float, ...]


Spec = Any  # float | int | Each | tuple/list of those | str (exact text) | SKIP | Unbacked | None (=> "-")


def as_list(spec: Spec) -> list:
    return list(spec) if isinstance(spec, (tuple, list)) else [spec]


# ----------------------------------------------------------------------------------------------------------------
# pages


@dataclass(frozen=True)
class Mismatch:
    page: str
    where: str
    shown: str
    expected: str

    def __str__(self) -> str:
        return f"{self.page}: {self.where}: the page shows {self.shown!r}, recomputed from the JSON: {self.expected!r}"


@dataclass
class Checker:
    root: Path
    substitutes: dict[str, Path] = field(default_factory=dict)
    mismatches: list[Mismatch] = field(default_factory=list)
    unbacked: list[tuple[str, str, str]] = field(default_factory=list)  # page, where, why
    covered: dict[str, list[str]] = field(default_factory=dict)  # page -> how its tables are checked
    _json: dict[str, Any] = field(default_factory=dict)
    _scripts: dict[str, dict] = field(default_factory=dict)
    pages: list[Page] = field(default_factory=list)

    def path(self, relative: str) -> Path:
        return self.substitutes.get(relative, self.root / relative)

    def read(self, relative: str) -> str:
        return self.path(relative).read_text(encoding="utf-8")

    def json(self, relative: str) -> Any:
        if relative not in self._json:
            self._json[relative] = json.loads(self.read(relative))
        return self._json[relative]

    def page(self, relative: str) -> Page:
        page = Page(self, relative)
        self.pages.append(page)
        return page

    def script(self, relative: str, **extra: Any) -> dict:
        """The top-level functions and literal constants of a script, without running its other imports."""
        key = relative + repr(sorted(extra))
        if key not in self._scripts:
            self._scripts[key] = script_functions(self.root / relative, extra)
        return self._scripts[key]


LIGHT_IMPORTS = {"__future__", "json", "math", "re", "shlex", "statistics", "itertools", "functools", "numpy"}
LIGHT_IMPORTS |= {"pathlib", "collections", "dataclasses", "typing", "platform", "os", "sys", "time"}


def script_functions(path: Path, extra: dict) -> dict:
    """Execute only the light imports, literal constants and function definitions of `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    kept: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            kept.append(node)
        elif isinstance(node, ast.Import) and all(a.name.split(".")[0] in LIGHT_IMPORTS for a in node.names):
            kept.append(node)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIGHT_IMPORTS:
            kept.append(node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            try:
                ast.literal_eval(node.value)
            except ValueError:
                continue
            kept.append(node)
    namespace: dict = {"__name__": f"check_docs:{path.name}", **extra}
    exec(compile(ast.Module(body=kept, type_ignores=[]), str(path), "exec"), namespace)
    return namespace


class Page:
    """One markdown page under check: its tables and text, and the checks run on it."""

    def __init__(self, checker: Checker, relative: str) -> None:
        self.checker, self.name = checker, relative
        self.text_raw = checker.read(relative)
        self.lines = self.text_raw.splitlines()
        self.tables = tables(self.text_raw)
        self.flat = normalise(self.text_raw)
        self.checked_tables: set[int] = set()
        self.sentences = 0
        self.prose = normalise("\n".join(prose_lines(self.text_raw)))
        self.prose_checked: list[tuple[int, int]] = []  # spans of `prose` that sentence checks compared

    def fail(self, where: str, shown: str, expected: str) -> None:
        self.checker.mismatches.append(Mismatch(self.name, where, shown, expected))

    def note(self, how: str) -> None:
        self.checker.covered.setdefault(self.name, []).append(how)

    # -- locating tables --------------------------------------------------------------------------------------

    def table_after(self, anchor: str, nth: int = 0) -> Table | None:
        """The `nth` table (0: the first) below the first line holding `anchor`."""
        start = next((i for i, line in enumerate(self.lines) if anchor in line), None)
        if start is None:
            self.fail(f"table after {anchor!r}", "(no such line)", "a table below it")
            return None
        below = [t for t in self.tables if t.line > start]
        if len(below) <= nth:
            self.fail(f"table after {anchor!r}", "(no table)", "a table below it")
            return None
        return below[nth]

    # -- explicit checks ----------------------------------------------------------------------------------------

    def table(
        self,
        anchor: str,
        rows: Sequence[tuple[str, Sequence[Spec]]],
        *,
        nth: int = 0,
        label: str = "",
        header: Sequence[Spec] | None = None,
    ) -> None:
        """The table below `anchor`: one (row key, cell specs) per row, in order; the key must occur in the
        row's first cell, the specs describe the cells after it. `header`: specs of the header's cells, where
        it holds figures too."""
        table = self.table_after(anchor, nth)
        if table is None:
            return
        self.checked_tables.add(table.line)
        self.note(f"table at line {table.line} ({label or table.header[0] or anchor}): explicit")
        if header is not None:
            if len(header) != len(table.header):
                self.fail(f"table at line {table.line}: header", f"{len(table.header)} columns", f"{len(header)}")
            for column, (cell, spec) in enumerate(zip(table.header, header)):
                self.cell(f"table at line {table.line}, header column {column + 1}", cell, spec)
        if len(table.rows) != len(rows):
            shown = [r[0] for r in table.rows]
            self.fail(f"table at line {table.line}: rows", f"{len(shown)} rows {shown}", f"{len(rows)} rows")
        for number, (row, (key, specs)) in enumerate(zip(table.rows, rows)):
            where = f"table at line {table.line}, row {number + 1} ({row[0][:50]!r})"
            if key not in row[0]:
                self.fail(where, row[0], f"a row of {key!r}")
                continue
            if len(row) - 1 != len(specs):
                self.fail(where, f"{len(row) - 1} cells after the label", f"{len(specs)} cells")
                continue
            for column, (cell, spec) in enumerate(zip(row[1:], specs), start=1):
                heading = table.header[column] if column < len(table.header) else str(column)
                self.cell(f"{where}, column {heading!r}", cell, spec)

    def cell(self, where: str, cell: str, spec: Spec) -> None:
        if spec is SKIP:
            return
        if isinstance(spec, Unbacked):
            self.checker.unbacked.append((self.name, f"{where}: {cell}", spec.why))
            return
        if spec is None:
            spec = "-"
        if isinstance(spec, str):
            if normalise(cell).strip("*") != normalise(spec):
                self.fail(where, cell, spec)
            return
        self.compare(where, cell, as_list(spec))

    def compare(self, where: str, shown_text: str, expected: list) -> None:
        shown = numbers(shown_text)
        if len(shown) != len(expected):
            self.fail(where, shown_text, f"{len(expected)} figure(s): {expected}")
            return
        for number, value in zip(shown, expected):
            if isinstance(value, Unbacked):
                self.checker.unbacked.append((self.name, f"{where}: {number.text}", value.why))
                continue
            values = value.values if isinstance(value, Each) else (value,)
            for v in values:
                if v is None or not number.accepts(float(v)):
                    full = "None" if v is None else f"{float(v):.6g}"
                    self.fail(where, number.text, f"{shown_as(number, v)} ({full})")

    def text(self, template: str, *values: Any, label: str = "") -> None:
        """A sentence of the page: `template` with `{}` where a number stands; each number must be a correct
        rounding of its value (an `unbacked(...)` value is only listed)."""
        self.sentences += 1
        template = template.replace("~{}", "{}")  # the number's own "~" is part of what is compared
        pieces = [re.escape(re.sub(r"\s+", " ", piece)) for piece in template.split("{}")]
        pattern = TEXT_NUMBER.join(pieces)
        match = re.search(pattern, self.flat)
        self.prose_checked += [m.span() for m in re.finditer(pattern, self.prose)]
        where = f"sentence {label or template[:60]!r}"
        if match is None:
            self.fail(where, "(not found)", template.replace("{}", "#"))
            return
        for group, value in zip(match.groups(), values):
            self.compare(where, group, [value])

    # -- re-render ----------------------------------------------------------------------------------------------

    def rendered(self, text: str, source: str, *, strict: bool = True) -> None:
        """Every table of `text` (a renderer's output) must be in the page, equal cell for cell; with `strict`,
        every table of the page must come from it."""
        produced = tables(text)
        by_header: dict[str, list[Table]] = {}
        for table in self.tables:
            by_header.setdefault(" | ".join(table.header), []).append(table)
        used: dict[str, int] = {}
        for table in produced:
            key = " | ".join(table.header)
            candidates = by_header.get(key, [])
            index = used.get(key, 0)
            used[key] = index + 1
            if index >= len(candidates):
                self.fail(f"table {table.title()!r}", "(missing)", f"the table {source} renders")
                continue
            mine = candidates[index]
            self.checked_tables.add(mine.line)
            self.note(f"table at line {mine.line} ({mine.header[0] or table.title()}): re-rendered by {source}")
            if len(mine.rows) != len(table.rows):
                self.fail(
                    f"table at line {mine.line}: rows", f"{len(mine.rows)} rows", f"{len(table.rows)} rows ({source})"
                )
            for number, (row, want) in enumerate(zip(mine.rows, table.rows)):
                for column, (cell, expected) in enumerate(zip(row, want)):
                    if cell != expected:
                        heading = mine.header[column] if column < len(mine.header) else str(column)
                        self.fail(
                            f"table at line {mine.line}, row {number + 1} ({row[0][:50]!r}), column {heading!r}",
                            cell,
                            f"{expected} ({source})",
                        )
                if len(row) != len(want):
                    self.fail(f"table at line {mine.line}, row {number + 1}", f"{len(row)} cells", f"{len(want)}")
        if strict:
            for table in self.tables:
                if table.line not in self.checked_tables:
                    self.fail(f"table at line {table.line} ({table.title()!r})", "(a table)", f"none from {source}")

    def done(self, unchecked: dict[int, str] | None = None) -> None:
        """Every table of the page must have been checked, or be named in `unchecked` (line-independent: by its
        first header cell) with the reason no JSON backs it."""
        reasons = dict(unchecked or {})
        for table in self.tables:
            if table.line in self.checked_tables:
                continue
            why = next((w for key, w in reasons.items() if key == table.header[0] or key in table.title()), None)
            if why is None:
                self.fail(
                    f"table at line {table.line} ({table.title()!r})", "(not checked)", "a check in check_docs.py"
                )
            else:
                self.checker.unbacked.append((self.name, f"table at line {table.line} ({table.title()})", why))
        if self.sentences:
            self.note(f"{self.sentences} sentence(s) in prose: explicit")


# ----------------------------------------------------------------------------------------------------------------
# helpers shared by the pages


def mean_sd(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1)."""
    array = np.asarray(list(values), dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1))


def sample_sd(population_sd: float, n: int) -> float:
    """The sample sd (ddof 1) of `n` values whose population sd (ddof 0) is what a JSON keeps."""
    return population_sd * math.sqrt(n / (n - 1))


def pct(x: float) -> float:
    return 100.0 * x


CHECKS: dict[str, Callable[[Checker], None]] = {}


def check(*pages: str) -> Callable:
    def register(function: Callable[[Checker], None]) -> Callable[[Checker], None]:
        for page in pages:
            CHECKS[page] = function
        return function

    return register


# ----------------------------------------------------------------------------------------------------------------
# docs/results/ranking.md: written by hand from ranking.json (benchmarks/ranking.py), ranking-flops.json and
# benchmarks/results/flag_signals/flag_signals.json

RANKING_ROWS = [
    ("influcoder (distilled MiniLM)", "distilled"),
    ("untrained MiniLM", "untrained"),
    ("TF-IDF", "tfidf"),
    ("pool-mean", "pool-mean"),
    ("Rep-Sim", "repsim"),
    ("RDS+", "rds+"),
    ("LESS", "less"),
    ("DataInf", "datainf"),
    ("LoGRA (16", "logra"),
    ("LoGRA + empirical Fisher", "logra-fisher"),
    ("AirRep-style", "airrep"),
]


@check(f"{DOCS}/ranking.md")
def ranking(checker: Checker) -> None:
    page = checker.page(f"{DOCS}/ranking.md")
    record = checker.json(f"{DOCS}/ranking.json")
    summary = record["summary"]
    for anchor, protocol in (("**Unseen tasks**", "task"), ("**Seen tasks**", "random")):
        rows = []
        for key, method in RANKING_ROWS:
            e = summary[protocol][method]
            cells: list[Spec] = [(e[m], e[m + "_std"]) for m in ("per_anchor_mean", "mean_aggregated")]
            if method == "pool-mean":  # query-agnostic: its query-specific rho is 0, and it is not timed
                cells += [(e["query_specific_mean"],), "-"]
            else:
                cells += [(e["query_specific_mean"], e["query_specific_mean_std"]), e["ms_per_sample"]]
            rows.append((key, [*cells, e["bytes_per_sample"]]))
        page.table(anchor, rows, label=f"{protocol} protocol")
        n_runs = {e["n_runs"] for e in summary[protocol].values()}
        page.text(f"{anchor} (`{protocol}`, {{}} runs,", *n_runs, label=f"{protocol}: runs")
    pools = sorted({run["rows"]["distilled"]["n_pool"] for run in record["runs"] if run["protocol"] == "task"})
    page.text(
        "(`task`, 3 runs, {}-{} pool × {} queries each)", pools[0], pools[-1], summary["task"]["distilled"]["n_queries"]
    )
    page.text(
        "(`random`, 3 runs, {} pool × {} queries each)",
        *(summary["random"]["distilled"][k] for k in ("n_pool", "n_queries")),
    )
    page.text("Spearman mean ± sample standard deviation (ddof 1) over the {} runs of a protocol", 3)

    # the flag: coverage from ranking.json, the within-protocol AUROCs pooled over runs as flag_signals.py does
    flags = checker.json(f"{BENCH}/flag_signals/flag_signals.json")["aurocs"]
    covered = {p: summary[p]["distilled"]["coverage_flag"]["share_queries_covered"] for p in ("random", "task")}
    page.text(
        "{}% of the seen-task queries but {}% of the unseen-task queries lie inside its coverage",
        pct(covered["random"]),
        pct(covered["task"]),
    )
    pooled = record["coverage_flag_pooled"]
    page.text(
        "over all {} evaluated queries of the six runs, low coverage predicts per-anchor ρ < {} with AUROC **{}**",
        pooled["n_queries"],
        pooled["low_rho"],
        pooled["auroc_low_rho"],
    )
    unseen, seen = flags["unseen tasks (task)"], flags["seen tasks (random)"]
    page.text(
        "within the unseen tasks alone it has no signal ({}, the queries of its three runs pooled), within "
        "the seen tasks "
        "{} (only {} of {} queries below {};",
        unseen["coverage"],
        seen["coverage"],
        seen["n_low_rho"],
        seen["n_queries"],
        0.3,
    )
    page.text(
        "predicts ρ < 0.3 with AUROC **{}** over the {} queries (target met), {} within the unseen tasks and {} within "
        "the seen ones",
        flags["all queries"]["spread"],
        flags["all queries"]["n_queries"],
        unseen["spread"],
        seen["spread"],
    )

    flops = checker.json(f"{DOCS}/ranking-flops.json")
    gflop = {m: r["flops_per_sample"] / 1e9 for m, r in flops.items() if r.get("flops_per_sample")}
    page.table(
        "**FLOPs per scored sample**",
        [
            ("influcoder, untrained, AirRep-style", [Each((gflop["distilled"], gflop["untrained"])), SKIP]),
            ("Rep-Sim, RDS+", [Each((gflop["repsim"], gflop["rds+"])), SKIP]),
            ("LoGRA, LoGRA + Fisher", [Each((gflop["logra"], gflop["logra-fisher"])), SKIP]),
            ("DataInf", [gflop["datainf"], SKIP]),
            ("LESS", [gflop["less"], SKIP]),
            ("TF-IDF", ["not counted", SKIP]),
        ],
        label="FLOPs",
    )
    page.text("The encoder needs {}× fewer FLOPs than LESS per sample", gflop["less"] / gflop["distilled"])
    less_ratio = {p: summary[p]["less"]["ms_per_sample"] / summary[p]["distilled"]["ms_per_sample"] for p in summary}
    page.text("the measured time ratio on the ranking runs is ~{}×", less_ratio["task"])

    # "What this says"
    def s(protocol: str, method: str, metric: str = "per_anchor_mean") -> float:
        return summary[protocol][method][metric]

    def seeds(protocol: str, method: str) -> list[float]:
        return [
            r["rows"][method]["per_anchor_mean"]
            for r in sorted(record["runs"], key=lambda r: r["seed"])
            if r["protocol"] == protocol
        ]

    page.text(
        "{} ± {} per-anchor ρ, against {} for the same MiniLM untrained and ≤ {} for every other non-gradient method",
        s("random", "distilled"),
        s("random", "distilled", "per_anchor_mean_std"),
        s("random", "untrained"),
        max(s("random", m) for m in ("tfidf", "repsim", "rds+")),
    )
    page.text("at {}-{}× less time per sample than LESS", less_ratio["task"], less_ratio["random"])
    page.text(
        "(AirRep's objective: {}). Its query-specific ρ ({})",
        s("random", "airrep"),
        s("random", "distilled", "query_specific_mean"),
    )
    page.text("training queries reaches {} (seen) and {} (unseen)", s("random", "pool-mean"), s("task", "pool-mean"))
    tfidf, distilled, repsim = seeds("task", "tfidf"), seeds("task", "distilled"), seeds("task", "repsim")
    page.text(
        "the distilled encoder falls to {} ± {}, above the untrained MiniLM ({}) but level with TF-IDF ({} ± {}, which "
        "is ahead on two of three seeds: {} and {} against {} and {}) and, on seed 2, behind Rep-Sim ({}). "
        "AirRep's objective "
        "fares no better ({})",
        s("task", "distilled"),
        s("task", "distilled", "per_anchor_mean_std"),
        s("task", "untrained"),
        s("task", "tfidf"),
        s("task", "tfidf", "per_anchor_mean_std"),
        tfidf[1],
        tfidf[2],
        distilled[1],
        distilled[2],
        repsim[2],
        s("task", "airrep"),
    )
    page.text("the gradient methods did not (LESS {}, LoGRA {})", s("task", "less"), s("task", "logra"))
    page.text("so its {}-{} is an upper bound", s("task", "less"), s("random", "less"))
    page.text("still agrees at {}-{}", s("task", "logra"), s("random", "logra"))
    page.text(
        "track the labels weakly on seen tasks ({}-{}) and erratically on unseen ones ({} ± {}: from {} to {} by seed)",
        s("random", "repsim"),
        s("random", "rds+"),
        s("task", "repsim"),
        s("task", "repsim", "per_anchor_mean_std"),
        min(repsim),
        max(repsim),
    )
    page.text(
        "separates seen from unseen queries (AUROC {} for per-anchor ρ < 0.3; target 0.75)", pooled["auroc_low_rho"]
    )
    page.text(
        "not met ({} behind on seen tasks, {} on unseen)",
        s("random", "less") - s("random", "distilled"),
        s("task", "less") - s("task", "distilled"),
    )
    page.text("met ({}-{}×, contended timings)", less_ratio["task"], less_ratio["random"])
    page.done()


# ----------------------------------------------------------------------------------------------------------------
# benchmarks/results/flag_signals/flag_signals.md and the same table in docs/results/generalization.md


def flag_signal_rows(checker: Checker) -> tuple[list[str], list[tuple[str, list[Spec]]]]:
    record = checker.json(f"{BENCH}/flag_signals/flag_signals.json")
    names = list(record["runs"][0]["signals"])
    rows = [
        (label, [(row["n_low_rho"], row["n_queries"]), *[row[n] for n in names]])
        for label, row in record["aurocs"].items()
    ]
    return names, rows


@check(f"{BENCH}/flag_signals/flag_signals.md")
def flag_signals(checker: Checker) -> None:
    page = checker.page(f"{BENCH}/flag_signals/flag_signals.md")
    names, rows = flag_signal_rows(checker)
    page.table("AUROC of each signal", rows, label="flag signals (the script writes it in main(): replicated)")
    table = page.table_after("AUROC of each signal")
    if table is not None and table.header[2:] != names:
        page.fail(f"table at line {table.line}: header", " | ".join(table.header[2:]), " | ".join(names))
    page.done()


# ----------------------------------------------------------------------------------------------------------------
# docs/results/generalization.md: regrouped by hand from benchmarks/results/generalization/results.json (whose own
# results.md is written by benchmarks/generalization.py; both give sample sds)


@check(f"{DOCS}/generalization.md")
def generalization(checker: Checker) -> None:
    page = checker.page(f"{DOCS}/generalization.md")
    record = checker.json(f"{BENCH}/generalization/results.json")
    summary, runs = record["summary"], record["runs"]

    def seeds(selection: str) -> list[int]:
        return [run["seed"] for name, run in runs.items() if name.rsplit("-s", 1)[0] == selection]

    def seed_text(selection: str) -> str:
        return ",".join(str(s) for s in seeds(selection))

    def ms(selection: str, kind: str, metric: str, method: str = "influcoder") -> tuple[float, float]:
        return mean_sd(summary[selection][kind][method][metric])

    def flag(selection: str, key: str) -> tuple[float, float]:
        return mean_sd(summary[selection][key])

    rows: list[tuple[str, list[Spec]]] = []
    for selection in ("concentrated", "random", "kmeans", "farthest"):
        cells: list[Spec] = [seed_text(selection), int(np.median(summary[selection]["n_groups"]))]
        cells += [ms(selection, k, m) for k in ("unseen", "seen") for m in ("per_anchor", "query_specific")]
        cells += [flag(selection, "coverage_auroc"), flag(selection, "spread_auroc")]
        rows.append((selection, cells))
    for key, method in (
        ("*lengths only*", "lengths"),
        ("*untrained MiniLM*", "untrained"),
        ("*pool-mean*", "pool-mean"),
    ):
        cells = [seed_text("random"), "-"]
        for kind in ("unseen", "seen"):
            cells.append(ms("random", kind, "per_anchor", method))
            qs = ms("random", kind, "query_specific", method)
            cells.append(qs if qs[0] else (0.0,))  # "0 (by construction)"
        rows.append((key, [*cells, "-", "-"]))
    page.table("**Which samples to label**", rows, label="selections")

    plain = ms("random", "unseen", "per_anchor")[0], ms("random", "seen", "per_anchor")[0]
    variants = [
        ("plain (random validation split)", "random"),
        ("query-centred Pearson", "random+qcenter"),
        ("task-disjoint validation", "random+taskval"),
        ("length prior, weight on the random validation split", "random+prior"),
        ("length prior, weight on task-disjoint validation", "random+taskval+prior"),
    ]
    rows = []
    for key, selection in variants:
        if seeds(selection) != seeds("random"):
            page.fail(f"training variant {selection}", seed_text(selection), "the seeds of the plain runs")
        unseen, seen = ms(selection, "unseen", "per_anchor"), ms(selection, "seen", "per_anchor")
        rows.append(
            (
                key,
                [
                    seed_text(selection),
                    unseen,
                    unseen[0] - plain[0],
                    seen,
                    seen[0] - plain[1],
                    ms(selection, "unseen", "query_specific"),
                    flag(selection, "spread_auroc"),
                ],
            )
        )
    page.table("**Training choices**", rows, label="training variants")

    rows = []
    for key in ("continued", "continued+replay"):
        found = [(run["seed"], run["forgetting"]) for name, run in runs.items() if name.rsplit("-s", 1)[0] == key]
        a = [np.mean([f["tasks_a"][w]["per_anchor"] for _, f in found]) for w in ("before", "after")]
        b = [np.mean([f["tasks_b"][w]["per_anchor"] for _, f in found]) for w in ("before", "after")]
        rows.append((key, [",".join(str(s) for s, _ in found), tuple(a), a[1] - a[0], tuple(b), b[1] - b[0]]))
    page.table("**Continued distillation**", rows, label="continued distillation")

    names, flag_rows = flag_signal_rows(checker)
    page.table("`benchmarks/flag_signals.py`", flag_rows, label="flag signals (flag_signals.json)")

    # prose
    def m(selection: str, kind: str = "unseen", metric: str = "per_anchor", method: str = "influcoder") -> float:
        return ms(selection, kind, metric, method)[0]

    page.text("mean ± sample sd (ddof 1) over seeds")
    page.text("is worst on both evaluations (unseen {}, seen {})", m("concentrated"), m("concentrated", "seen"))
    others = ("random", "kmeans", "farthest")
    page.text(
        "raises both (unseen {}-{}, seen {}-{})",
        min(m(s) for s in others),
        max(m(s) for s in others),
        min(m(s, "seen") for s in others),
        max(m(s, "seen") for s in others),
    )
    page.text(
        "The best plain encoder reaches {} ± {} per-anchor ρ; a ridge on five length features fitted on "
        "the same 400 rows "
        "reaches {} ± {}, and pool-mean (which needs every evaluated sample's gradients) {}",
        *ms("random", "unseen", "per_anchor"),
        *ms("random", "unseen", "per_anchor", "lengths"),
        m("random", method="pool-mean"),
    )
    page.text(
        "query-specific ρ on unseen tasks ({}) is barely above the untrained MiniLM's ({})",
        m("random", metric="query_specific"),
        m("random", metric="query_specific", method="untrained"),
    )
    page.text(
        "({} against {} and {})",
        m("random", "seen"),
        m("random", "seen", method="lengths"),
        m("random", "seen", method="untrained"),
    )
    page.text(
        "{} unseen ({} ± {}) and {} seen ({}) over the same three seeds",
        m("random+prior") - plain[0],
        *ms("random+prior", "unseen", "per_anchor"),
        m("random+prior", "seen") - plain[1],
        m("random+prior", "seen"),
    )
    page.text(
        "unseen {} but seen {}, a trade",
        m("random+taskval+prior") - plain[0],
        m("random+taskval+prior", "seen") - plain[1],
    )
    page.text(
        "did not help** ({} unseen, {} seen)", m("random+taskval") - plain[0], m("random+taskval", "seen") - plain[1]
    )
    page.text(
        "(`--pearson-center query`): unseen {}, seen {}: no help",
        m("random+qcenter") - plain[0],
        m("random+qcenter", "seen") - plain[1],
    )
    forgetting = {name.rsplit("-s", 1)[0]: run["forgetting"] for name, run in runs.items() if "forgetting" in run}

    def change(variant: str, part: str) -> float:
        f = forgetting[variant][part]
        return f["after"]["per_anchor"] - f["before"]["per_anchor"]

    page.text("tasks A {} while tasks B gain {})", change("continued", "tasks_a"), change("continued", "tasks_b"))
    page.text(
        "keeps tasks A within {} and still gains {} on tasks B (seed 0 only)",
        -change("continued+replay", "tasks_a"),
        change("continued+replay", "tasks_b"),
    )

    offset = checker.json(f"{BENCH}/pool_offset/pool_offset.json")
    shares = offset["variance"]
    page.text(
        "**{}% of the labels' variance is a query-independent pool offset**",
        pct(shares["pool_offset_share_within_queries"]),
    )
    page.text("and **{}% of that offset lies between tasks**", pct(shares["between_group_share_of_pool_offset"]))
    pool_mean = [s["per_anchor_pool_mean"] for s in offset["splits"]]
    page.text("reaches per-anchor ρ {}-{} on unseen tasks", min(pool_mean), max(pool_mean))
    lengths = [p["lengths"] for p in offset["predictors"]]
    ranking_record = checker.json(f"{DOCS}/ranking.json")
    page.text(
        "ranks unseen tasks' pools at per-anchor ρ {} (seeds 0-2 of the ranking splits: {} / {} / {}), "
        "above the distilled "
        "encoder on the same splits ({})",
        np.mean(lengths),
        *lengths,
        ranking_record["summary"]["task"]["distilled"]["per_anchor_mean"],
    )
    worse = [np.mean([p[k] for p in offset["predictors"]]) for k in offset["predictors"][0] if k != "lengths"]
    page.text("transfers worse ({}-{}, negative on some splits)", min(worse), max(worse))
    mixed = {
        protocol: [np.mean([r[w] for r in runs_]) for w in ("0", "0.25", "0.5", "1")]
        for protocol, runs_ in offset["mixed"].items()
    }
    page.text(
        "unseen ρ {} (w = 0) -> {} (0.25) -> {} (0.5) -> {} (1); seen {} -> {} -> {} -> {}",
        *mixed["task"],
        *mixed["random"],
    )

    flags = checker.json(f"{BENCH}/flag_signals/flag_signals.json")["aurocs"]
    page.text(
        "predicts a query's per-anchor ρ < 0.3 with AUROC {} over the ranking runs' {} queries",
        flags["all queries"]["coverage"],
        flags["all queries"]["n_queries"],
    )
    spread = [mean_sd(summary[s]["spread_auroc"])[0] for s in ("concentrated", "random", "kmeans", "farthest")]
    coverage = [mean_sd(summary[s]["coverage_auroc"])[0] for s in ("concentrated", "random", "kmeans", "farthest")]
    page.text(
        "spread {}-{} against coverage {}-{} for each selection's mean over seeds",
        min(spread),
        max(spread),
        min(coverage),
        max(coverage),
    )
    page.text(
        "(coverage {}, spread {})", flags["unseen tasks (task)"]["coverage"], flags["unseen tasks (task)"]["spread"]
    )
    page.text(
        "The best measured here is {} ± {} (length prior, task-disjoint weight) / {} ± {} (length prior, "
        "usual validation); "
        "plain distillation {}",
        *ms("random+taskval+prior", "unseen", "per_anchor"),
        *ms("random+prior", "unseen", "per_anchor"),
        plain[0],
    )
    page.text("The **stretch, above pool-mean** ({})", m("random", method="pool-mean"))
    page.text(
        "**met by the spread flag** ({} over the ranking runs' {} queries; {}-{} per selection here); "
        "the coverage score "
        "alone reaches {} (ranking runs) and {}-{} here",
        flags["all queries"]["spread"],
        flags["all queries"]["n_queries"],
        min(spread),
        max(spread),
        flags["all queries"]["coverage"],
        min(coverage),
        max(coverage),
    )
    page.text(
        "forgetting ≤ 0.02**: {} with replay of half the earlier samples (seed 0); {} without",
        -change("continued+replay", "tasks_a"),
        -change("continued", "tasks_a"),
    )
    page.done()


# ----------------------------------------------------------------------------------------------------------------
# docs/results/scale.md: by hand from benchmarks/results/scale.json, scale-distill.json and distill-memory.json
# (benchmarks/scale.py renders its own scale.md / scale-distill.md, checked below by re-rendering)


def scale_cell(step: dict, n: int, anon: bool = False) -> Spec:
    r = step["by_size"][str(n)]
    return (r["seconds"], r["peak_rss_mb"], *([r["peak_anon_mb"]] if anon else []))


def extrapolated(step: dict, n: int) -> float:
    return step["fit"]["a"] * n ** step["fit"]["exponent"]


@check(f"{DOCS}/scale.md")
def scale_page(checker: Checker) -> None:
    page = checker.page(f"{DOCS}/scale.md")
    steps = checker.json(f"{BENCH}/scale.json")["steps"]
    stand_in = checker.json(f"{BENCH}/scale-distill.json")["steps"]["distill-epoch (stand-in labels)"]
    index, attribute, label, distill = (steps[k] for k in ("index", "attribute", "label", "distill-epoch"))

    def between(m: dict) -> tuple[float, float]:
        return tuple(n / 1000 if n >= 1000 else n for n in m["between"])

    im, am, lm, dm = (s["marginal"] for s in (index, attribute, label, distill))
    rows = [
        (
            "index",
            [
                "-",
                *(scale_cell(index, n) for n in (1000, 10000, 100000)),
                index["fit"]["exponent"],
                im["ms_per_sample"],
                (im["peak_mb_change"], *between(im)),
            ],
        ),
        (
            "attribute (100 queries)",
            [
                "-",
                *(scale_cell(attribute, n, True) for n in (1000, 10000, 100000)),
                attribute["fit"]["exponent"],
                am["ms_per_sample"],
                (am["peak_mb_change"], am["peak_anon_mb_change"], *between(am)),
            ],
        ),
        (
            "label (x 32 queries)",
            [
                scale_cell(label, 250),
                scale_cell(label, 1000),
                extrapolated(label, 10000),
                extrapolated(label, 100000),
                label["fit"]["exponent"],
                lm["ms_per_sample"],
                (lm["peak_mb_change"], *between(lm)),
            ],
        ),
        (
            "distill, one epoch",
            [
                scale_cell(distill, 250),
                scale_cell(distill, 1000),
                "(labels extrapolated)",
                "",
                distill["fit"]["exponent"],
                dm["ms_per_sample"],
                (dm["peak_mb_change"], *between(dm)),
            ],
        ),
        (
            "distill, one epoch, stand-in labels",
            [
                "-",
                scale_cell(stand_in, 1000, True),
                scale_cell(stand_in, 10000, True),
                "not reported (run once, record not kept: below)",
                stand_in["fit"]["exponent"],
                stand_in["marginal"]["ms_per_sample"],
                (stand_in["marginal"]["peak_anon_mb_change"], *between(stand_in["marginal"])),
            ],
        ),
    ]
    page.table("table [`scale.md`]", rows, label="scale steps")
    labels_run = checker.json(f"{BENCH}/labels.json")
    clean = next(m for m in labels_run["modes"] if m["mode"] == "batched")
    page.text(
        "(its absolute seconds are slow: {} s per pool sample against {} s in the clean labels benchmark)",
        lm["ms_per_sample"] / 1000,
        1 / clean["samples_per_s"],
    )
    page.text("100K labels at this rate take ~{} h on 2 cores", extrapolated(label, 100000) / 3600)
    page.text(
        "Real labels for 10K pool samples take ~{} h here (100K: ~{} h)",
        *(extrapolated(label, n) / 3600 for n in (10000, 100000)),
    )

    page.table(
        "--out benchmarks/results/scale-distill",
        [
            (f"{n:,}", [stand_in["by_size"][str(n)][k] for k in ("seconds", "peak_rss_mb", "peak_anon_mb")])
            for n in (1000, 10000)
        ],
        label="stand-in distillation 1K/10K",
    )
    sm = stand_in["marginal"]
    page.text("Exponent {}, {} ms per added sample", stand_in["fit"]["exponent"], sm["ms_per_sample"])
    page.text(
        "linear, as the epoch's design says, so 100K would take ~{} h per epoch here",
        10 * stand_in["by_size"]["10000"]["seconds"] / 3600,
    )
    page.text("The first run's {} ms per sample", dm["ms_per_sample"])
    page.text(
        "Memory is *not* flat: +{} MB of anonymous memory from 1K to 10K ({} KB per added sample)",
        sm["peak_anon_mb_change"],
        sm["peak_anon_mb_change"] * 1000 / 9000,
    )

    runs = checker.json(f"{BENCH}/distill-memory.json")["runs"]

    def trace(name: str) -> list[float]:
        return [mb for _, mb in runs[name]["trace"]]

    def at(name: str, step: int) -> float:
        return dict((s_, mb) for s_, mb in runs[name]["trace"])[step]

    def row(*names: str, seconds: bool = True) -> list[Spec]:
        cells: list[Spec] = [tuple(trace(n)[-1] for n in names), tuple(max(trace(n)) for n in names)]
        return cells + ([tuple(runs[n]["seconds_per_step"] for n in names)] if seconds else ["not kept"])

    page.text(
        "on the 10K stand-in labels it climbs from ~{} MB at step 5 to ~{} MB at step 145",
        at("plain-10000", 5),
        at("plain-10000", 145),
    )
    page.text(
        "the peak over those steps is the same ({} MB plain, {} MB trimmed)",
        max(trace("plain-10000")),
        max(trace("trim-10000")),
    )
    page.text(
        "(2.5 epochs of 60 steps; {} MB already at step 40, inside the first) climb to {}-{} MB, *more* "
        "than the 10K run's "
        "{} MB at the same step",
        at("plain-1000", 40),
        trace("plain-1000b")[-1],
        trace("plain-1000")[-1],
        trace("plain-10000")[-1],
    )
    page.table(
        "([distill-memory.md]",
        [
            ("1K, as it is (two runs)", row("plain-1000", "plain-1000b")),
            ("1K, threshold fixed at 16 MB", row("mmap16-1000")),
            ("1K, threshold fixed at 4 MB", row("mmap4-1000")),
            ("1K, threshold fixed at 1 MB", row("mmap-1000")),
            ("10K, as it is (session 15)", row("plain-10000", seconds=False)),
            ("10K, threshold fixed at 1 MB", row("mmap-10000")),
        ],
        label="distill-memory traces",
    )
    page.text("nearly so in the pool (+{} MB for 9,000 more samples", trace("mmap-10000")[-1] - trace("mmap-1000")[-1])

    page.text("attribute {} (its cost is start-up", attribute["fit"]["exponent"])
    page.text("label {} (250 to 1K), index {} over 1K-100K", label["fit"]["exponent"], index["fit"]["exponent"])
    page.text(
        "met for index (+{} MB from 10K to 100K) and attribute (anonymous memory {} / {} / {} MB at 1K / 10K / 100K)",
        im["peak_mb_change"],
        *(attribute["by_size"][str(n)]["peak_anon_mb"] for n in (1000, 10000, 100000)),
    )
    page.text(
        "the table's `index` row is the run after that fix ({} MB at 100K)", index["by_size"]["100000"]["peak_rss_mb"]
    )
    page.text(
        "the label's peak is set by its batch, not by N ({} to {} MB from 250 to 1K",
        *(label["by_size"][str(n)]["peak_rss_mb"] for n in (250, 1000)),
    )
    page.text(
        "confirm that its after-step memory stays near the ~{} MB of its first 150 steps",
        max(trace("mmap-10000")),
    )
    page.text(
        "(1M: ~{} h of int8 encoding on these 2 cores at the table's {} ms per sample)",
        im["ms_per_sample"] * 1e6 / 1000 / 3600,
        im["ms_per_sample"],
    )
    page.text("rises with a search that reads them all (+{} MB)", am["peak_mb_change"])
    search = {s_["factory"]: s_ for s_ in checker.json(f"{BENCH}/index.json")["search"]}
    flat, ivf, sq, pq = (search[k] for k in ("Flat", "IVF1024,Flat", "SQfp16", "IVF1024,PQ32"))
    page.text(
        "Flat {} ms/query loaded vs {} mapped, IVF1024,Flat {} vs {} at recall {}, same hits",
        flat["ms_per_query"],
        flat["ms_per_query_mapped"],
        ivf["ms_per_query"],
        ivf["ms_per_query_mapped"],
        ivf["recall_at_10"],
    )
    page.text(
        "halves the file ({} MB at 1M) but searches at {}-{} ms/query",
        sq["index_mb"],
        sq["ms_per_query_mapped"],
        sq["ms_per_query"],
    )
    page.text("an IVF-PQ one holds ~{} bytes per sample at recall {}", pq["index_mb"] * 2**20 / 1e6, pq["recall_at_10"])
    speed = checker.json(f"{BENCH}/encoder_speed.json")["backends"]["int8"]
    page.text(
        "{}x at rho {} x float (`benchmarks/results/encoder_speed.md`)", speed["vs_gradients"], speed["rho_vs_float"]
    )
    fused = checker.json(f"{BENCH}/labels-fused.json")
    fused_modes = {r["mode"]: r for r in fused["modes"]}
    page.text(
        "not met** ({}-{} measured;",
        checker.json(f"{BENCH}/labels-memory.json")["batched_fraction_of_ceiling"],
        checker.json(f"{BENCH}/labels.json")["batched_fraction_of_ceiling"],
    )
    page.text(
        "{}x faster than the hooked path in one run, {}x a plain forward+backward",
        fused["batched_over_hooks"],
        fused["batched_over_plain"],
    )
    page.text(
        "(fp32 matmul {} GFLOP/s, not the {} of the earlier one) {} of the ceiling, up from {}",
        fused["matmul_gflops_fp32"],
        checker.json(f"{BENCH}/labels.json")["matmul_gflops_fp32"],
        fused["batched_fraction_of_ceiling"],
        fused_modes["hooks"]["samples_per_s"] / fused["ceiling_samples_per_s"],
    )
    page.text(
        "{}% less peak memory", pct(1 - fused_modes["batched"]["peak_rss_mb"] / fused_modes["hooks"]["peak_rss_mb"])
    )
    labels_run = checker.json(f"{BENCH}/labels.json")
    plain = next(r for r in labels_run["modes"] if r["mode"] == "plain")
    page.text(
        "a plain forward+backward of the same decoder reaches {} in the same run",
        plain["achieved_gflops"] / labels_run["matmul_gflops_fp32"],
    )
    memory = {r["label"]: r for r in checker.json(f"{BENCH}/labels-memory.json")["modes"]}
    low, default_then = memory["batched@512 tokens sdpa"], memory["batched"]
    page.text("the default is now 512 tokens, {} MB", memory["batched@512 tokens"]["peak_rss_mb"])
    gib, gb = low["peak_rss_mb"] / 1024, low["peak_rss_mb"] * 2**20 / 1e9  # ru_maxrss KiB / 1024: MiB
    page.text(
        "SDPA attention peak at {} MiB (the benchmark's ru_maxrss, printed as MB there), which is {} GiB but {} GB "
        "in decimal units, over 2.5 GB, at {}x the throughput of the 2,048-token batches that were the default "
        "then ({} MiB)",
        low["peak_rss_mb"],
        gib,
        gb,
        low["samples_per_s"] / default_then["samples_per_s"],
        default_then["peak_rss_mb"],
    )
    fast_enough = low["samples_per_s"] >= 0.9 * default_then["samples_per_s"]
    if not (gib <= 2.5 < gb and fast_enough):
        page.fail(
            "sentence 'Labelling peak memory <= 2.5 GB ...: met only if GB is read as GiB'",
            "met in GiB, not in GB",
            f"{gib:.2f} GiB, {gb:.2f} GB, {'at' if fast_enough else 'below'} 0.9x throughput (labels-memory.json)",
        )
    bound = checker.json(f"{BENCH}/labels-gemm-bound.json")

    def alone(kind: str) -> float:
        k = bound["by_kind"][kind]
        return k["gflop"] / k["seconds"] / bound["matmul_gflops_fp32"]

    page.text(
        "reach {} of the ceiling (the decoder's own linear layers {}, attention's {}, the rank-8 ones {})",
        bound["bound_fraction_of_ceiling"],
        alone("decoder linear layers"),
        alone("attention (scores and values)"),
        alone("LoRA and per-example gradients (rank-r side)"),
    )
    page.text("the pass itself reached {} in that run", bound["pass_fraction_of_ceiling"])
    embedding = checker.json(f"{BENCH}/index.json")["bytes_per_sample"]["influcoder_embedding_fp16"]
    dim = embedding // 2
    page.text(
        "every embedding as float32 ({} x 4 = {} KB per sample, {} MB at 100K, ~{} GB at a million)",
        dim,
        dim * 4 / 1000,
        dim * 4 * 100_000 / 1e6,
        dim * 4 * 1_000_000 / 1e9,
    )
    page.done()


# ----------------------------------------------------------------------------------------------------------------
# docs/results/toxicity.md: by hand from the archived replicates (toxicity-runs/*/results.json), their report
# (toxicity-report/results.json), session 12's 40-pair report (toxicity.json) and the toxicity benchmarks' JSON

REPLICATES = [f"{v}-seed{s}" for v in ("het", "hom") for s in (0, 1, 2)]
DRAWS = 200  # benchmarks/toxicity_dev*.py: draws of 15 positives; their JSON keeps the population sd over them


def toxicity_header(run: dict) -> list[Spec]:
    """The header of a replicate's table: the drop fractions, and the texts scored (pool and queries)."""
    texts = sum(run["counts"]["pool"].values()) + run["counts"]["queries"]
    fractions = tuple(pct(float(f)) for f in next(iter(run["methods"].values()))["recall_when_dropping"])
    return [SKIP, SKIP, SKIP, fractions, texts, SKIP]


def toxicity_cells(r: dict, seconds: Spec = None) -> list[Spec]:
    recalls = tuple(r["recall_when_dropping"][k] for k in ("0.01", "0.02", "0.05"))
    return [
        r["auprc"],
        r["average_precision"],
        recalls,
        r["seconds"] if seconds is None else seconds,
        r["bytes_per_sample"],
    ]


@check(f"{DOCS}/toxicity.md")
def toxicity(checker: Checker) -> None:
    page = checker.page(f"{DOCS}/toxicity.md")
    runs = {name: checker.json(f"{DOCS}/toxicity-runs/{name}/results.json") for name in REPLICATES}
    methods = {name: run["methods"] for name, run in runs.items()}
    summary = checker.json(f"{DOCS}/toxicity-report/results.json")["summary"]
    first = checker.json(f"{DOCS}/toxicity.json")  # session 12: het seed 0 with the 40-pair encoder
    first_methods = first["replicates"][0]["methods"]

    het, hom = summary["het"], summary["hom"]

    def auprc(variant: dict, method: str) -> tuple[float, float]:
        return variant[method]["auprc"], variant[method]["auprc_std"]

    def seconds(*method_names: str) -> Each:
        return Each(tuple(np.mean([v[m]["seconds"] for v in (het, hom)]) for m in method_names))

    def summary(method: str, bytes_per_sample: Spec = None) -> tuple[str, list[Spec]]:
        return (
            method,
            [
                auprc(het, method),
                auprc(hom, method),
                (het[method]["recall@0.05"], hom[method]["recall@0.05"]),
                seconds(method),
                het[method]["bytes_per_sample"] if bytes_per_sample is None else bytes_per_sample,
            ],
        )

    page.table(
        "## Summary (six replicates",
        [
            *(summary(m) for m in ("influcoder", "gradsim", "repsim-response", "semantic")),
            summary("tfidf", np.mean([het["tfidf"]["bytes_per_sample"], hom["tfidf"]["bytes_per_sample"]])),
            summary("less"),
            (
                "rds+ / repsim",
                [
                    (het["rds+"]["auprc"], het["repsim"]["auprc"]),
                    (hom["rds+"]["auprc"], hom["repsim"]["auprc"]),
                    (
                        het["rds+"]["recall@0.05"],
                        hom["rds+"]["recall@0.05"],
                        het["repsim"]["recall@0.05"],
                        hom["repsim"]["recall@0.05"],
                    ),
                    seconds("rds+", "repsim"),
                    het["rds+"]["bytes_per_sample"],
                ],
            ),
        ],
        label="summary over six replicates",
    )
    page.text("AUPRC, mean ± sample sd over seeds 0, 1 and 2 (chance {};", runs["het-seed0"]["counts"]["unsafe_rate"])

    # per replicate: who meets which target
    ratio_less = [methods[n]["influcoder"]["auprc"] / methods[n]["less"]["auprc"] for n in REPLICATES]
    speed = [methods[n]["gradsim"]["seconds"] / methods[n]["influcoder"]["seconds"] for n in REPLICATES]
    removed = {n: methods[n]["influcoder"]["recall_when_dropping"]["0.05"] for n in REPLICATES}
    met = [n for n in REPLICATES if removed[n] >= 0.8 - 1e-9]
    page.text("encoder AUPRC >= 0.9 x LESS's: **met on {} of 6**", sum(r >= 0.9 for r in ratio_less))
    page.text(
        ">= 20x less scoring time: **met on {} of 6** ({}-{}x, the encoder against the gradsim + LESS pass)",
        sum(x >= 20 for x in speed),
        min(speed),
        max(speed),
    )
    page.text(
        "above Rep-Sim: **met on {} of 6**",
        sum(
            methods[n]["influcoder"]["auprc"]
            > max(methods[n][m]["auprc"] for m in ("repsim", "rds+", "repsim-response", "repsim-last"))
            for n in REPLICATES
        ),
    )
    page.text(
        "**met on {} of 6** ({}-{}%; het seed 2: {}%, hom seed 2: {}%)",
        len(met),
        pct(min(removed[n] for n in met)),
        pct(max(removed[n] for n in met)),
        pct(removed["het-seed2"]),
        pct(removed["hom-seed2"]),
    )
    page.text("The encoder's AUPRC is {}-{}x LESS's here", min(ratio_less), max(ratio_less))

    page.table(
        "## Results (het, seed 0",
        [
            ("gradsim", toxicity_cells(methods["het-seed0"]["gradsim"], first_methods["gradsim"]["seconds"])),
            # the first 160-pair run's seconds were not kept: the cell gives the rerun's (archived)
            ("influcoder, 160 unsafe", toxicity_cells(methods["het-seed0"]["influcoder"])),
            ("influcoder, 40 unsafe", toxicity_cells(first_methods["influcoder"])),
            ("less (Adam", toxicity_cells(methods["het-seed0"]["less"], first_methods["less"]["seconds"])),
            ("less-ckpts", toxicity_cells(first_methods["less-ckpts"])),
            ("tfidf", toxicity_cells(first_methods["tfidf"])),
            ("semantic", toxicity_cells(first_methods["semantic"])),
            ("rds+", toxicity_cells(first_methods["rds+"])),
            ("repsim", toxicity_cells(first_methods["repsim"])),
        ],
        label="het seed 0",
        header=toxicity_header(runs["het-seed0"]),
    )
    for m in ("gradsim", "less", "tfidf", "semantic", "rds+", "repsim"):  # the rerun gave the same figures
        for key in ("auprc", "average_precision"):
            rerun, kept = methods["het-seed0"][m][key], first_methods[m][key]
            if round(rerun, 3) != round(kept, 3):
                page.fail(
                    f"het seed 0, {m} {key}: the rerun (toxicity-runs) against the first run (toxicity.json)",
                    f"{kept:.3f}",
                    f"{rerun:.3f}",
                )
    rerun = methods["het-seed0"]
    page.text(
        "The per-task distillation draw (`--train-draw per-task`, an ablation) reached AUPRC {}",
        checker.json(f"{BENCH}/toxicity_encoder.json")["replicates"][1]["evaluation"]["auprc"]["influcoder"],
    )
    page.text(
        "influcoder {} s and semantic {} s against the gradsim + LESS pass's {} s (**{}x**), Rep-Sim / "
        "RDS+ {} s, TF-IDF "
        "{} s",
        rerun["influcoder"]["seconds"],
        rerun["semantic"]["seconds"],
        rerun["gradsim"]["seconds"],
        rerun["gradsim"]["seconds"] / rerun["influcoder"]["seconds"],
        rerun["rds+"]["seconds"],
        rerun["tfidf"]["seconds"],
    )
    page.text("so the {} s is their joint cost", first_methods["gradsim"]["seconds"])
    page.text(
        "timed while the gradient pass ran beside them on the same 2 cores ({} s, {}x)",
        first_methods["influcoder"]["seconds"],
        first_methods["gradsim"]["seconds"] / first_methods["influcoder"]["seconds"],
    )
    page.text(
        "with the machine to itself the same network scores the pool in {} s (het seed 0's rerun",
        rerun["influcoder"]["seconds"],
    )

    orders = {
        "hom-seed0": ["gradsim", "influcoder", "semantic", "tfidf", "less", "rds+", "repsim"],
        "het-seed1": ["influcoder", "semantic", "gradsim", "tfidf", "rds+", "repsim", "less"],
        "hom-seed1": ["semantic", "influcoder", "gradsim", "logra", "tfidf", "less", "datainf", "rds+", "repsim"],
        "het-seed2": ["influcoder", "gradsim", "tfidf", "semantic", "less", "rds+", "repsim"],
        "hom-seed2": ["influcoder", "gradsim", "semantic", "tfidf", "less", "rds+", "repsim"],
    }
    for name, order in orders.items():
        variant, seed = name.split("-seed")
        page.table(
            f"## Results ({variant}, seed {seed}",
            [(m, toxicity_cells(methods[name][m])) for m in order],
            label=f"{variant} seed {seed}",
            header=toxicity_header(runs[name]),
        )
        counts = runs[name]["counts"]
        page.text(
            f"## Results ({variant}, seed {seed}, {{}} unsafe distillation pairs; {{}} unsafe of {{}}; "
            f"chance AUPRC {{}})",
            counts["train_pool"]["unsafe"],
            counts["pool"]["unsafe"],
            sum(counts["pool"].values()),
            counts["unsafe_rate"],
        )

    def a(name: str, method: str) -> float:
        return methods[name][method]["auprc"]

    def over(names: list[str], method: str) -> tuple[float, float]:
        return mean_sd(a(n, method) for n in names)

    page.text(
        "The encoder keeps {} of its teacher's AUPRC at {}x less scoring time ({} s against the gradient pass's {} s; "
        "on this faster machine the pass took {} of het seed 0's)",
        a("hom-seed0", "influcoder") / a("hom-seed0", "gradsim"),
        methods["hom-seed0"]["gradsim"]["seconds"] / methods["hom-seed0"]["influcoder"]["seconds"],
        methods["hom-seed0"]["influcoder"]["seconds"],
        methods["hom-seed0"]["gradsim"]["seconds"],
        methods["hom-seed0"]["gradsim"]["seconds"] / first_methods["gradsim"]["seconds"],
    )
    page.text(
        "Over hom's two seeds: influcoder {} ± {} (sample sd), gradsim {} ± {}, semantic {} ± {}",
        *over(["hom-seed0", "hom-seed1"], "influcoder"),
        *over(["hom-seed0", "hom-seed1"], "gradsim"),
        *over(["hom-seed0", "hom-seed1"], "semantic"),
    )
    page.text(
        "Over het seeds 1 and 2 (seed 0's 160-pair scores were lost then and rerun since): influcoder {} ± {} (sample "
        "sd), gradsim {} ± {}, semantic {} ± {}; over all three het seeds: influcoder {} ± {}, gradsim "
        "{} ± {}, semantic "
        "{} ± {}",
        *over(["het-seed1", "het-seed2"], "influcoder"),
        *over(["het-seed1", "het-seed2"], "gradsim"),
        *over(["het-seed1", "het-seed2"], "semantic"),
        *over(["het-seed0", "het-seed1", "het-seed2"], "influcoder"),
        *over(["het-seed0", "het-seed1", "het-seed2"], "gradsim"),
        *over(["het-seed0", "het-seed1", "het-seed2"], "semantic"),
    )
    homs = ["hom-seed0", "hom-seed1", "hom-seed2"]
    page.text(
        "Over hom's three seeds: influcoder {} ± {} (sample sd), gradsim {} ± {}, semantic {} ± {}, less {} ± {}",
        *over(homs, "influcoder"),
        *over(homs, "gradsim"),
        *over(homs, "semantic"),
        *over(homs, "less"),
    )
    page.text(
        "at {}x the encoder's scoring time",
        methods["hom-seed1"]["logra"]["seconds"] / methods["hom-seed1"]["influcoder"]["seconds"],
    )
    page.text("is at chance ({}; DATE-LM's anchor", a("hom-seed1", "datainf"))
    for name, phrase in (
        ("hom-seed1", "hom seed 1: {}x ({} s vs {} s)"),
        ("het-seed2", "het seed 2: {}x ({} s vs {} s)"),
        ("hom-seed2", "hom seed 2: {}x ({} s vs {} s)"),
    ):
        r = methods[name]
        page.text(
            phrase,
            r["gradsim"]["seconds"] / r["influcoder"]["seconds"],
            r["influcoder"]["seconds"],
            r["gradsim"]["seconds"],
        )
    for name, phrase in (
        ("het-seed2", "and {}x faster ({} s vs {} s)"),
        ("hom-seed2", "(0.302 vs 0.240) at {}x less scoring time ({} s vs {} s)"),
    ):
        r = methods[name]
        page.text(
            phrase,
            r["gradsim"]["seconds"] / r["influcoder"]["seconds"],
            r["influcoder"]["seconds"],
            r["gradsim"]["seconds"],
        )
    page.text(
        "het seed 0's rerun, alone: {}x ({} s vs {} s)",
        rerun["gradsim"]["seconds"] / rerun["influcoder"]["seconds"],
        rerun["influcoder"]["seconds"],
        rerun["gradsim"]["seconds"],
    )

    best = {n: max(a(n, m) for m in ("repsim", "rds+", "repsim-response", "repsim-last")) for n in REPLICATES}
    page.text(
        "het 0 / 1 / 2: {} / {} / {} against the best pooling's {} / {} / {}; hom 0 / 1 / 2: {} / {} / {} against {} / "
        "{} / {}",
        *(a(n, "influcoder") for n in REPLICATES[:3]),
        *(best[n] for n in REPLICATES[:3]),
        *(a(n, "influcoder") for n in REPLICATES[3:]),
        *(best[n] for n in REPLICATES[3:]),
    )
    plain = [a(n, "repsim") for n in REPLICATES]
    chance = {n: runs[n]["counts"]["unsafe_rate"] for n in REPLICATES}
    page.text(
        "The plain mean over every token (`repsim`, {}-{}) is *below chance* ({}) on four of six",
        min(plain),
        max(plain),
        chance["het-seed0"],
    )
    below = sum(a(n, "repsim") < chance[n] for n in REPLICATES)
    if below != 4:
        page.fail("sentence 'below chance (0.007) on four of six'", "four", f"{below} of six")
    response = [a(n, "repsim-response") for n in REPLICATES]
    page.text("Pooling over the response tokens only lifts it to {}-{}", min(response), max(response))

    pooling_rows = []
    for key, method in (
        ("repsim (every token)", "repsim"),
        ("rds+ (position-weighted)", "rds+"),
        ("repsim-response", "repsim-response"),
        ("repsim-last", "repsim-last"),
        ("influcoder (for reference)", "influcoder"),
    ):
        pooling_rows.append((key, [*(a(n, method) for n in REPLICATES), (het[method]["auprc"], hom[method]["auprc"])]))
    seeds_header = [int(n.rsplit("seed", 1)[1]) for n in REPLICATES]
    page.table("## Rep-Sim's pooling", pooling_rows, label="Rep-Sim poolings", header=[SKIP, *seeds_header, SKIP])
    ratio = [a(n, "repsim-response") / a(n, "influcoder") for n in REPLICATES]
    page.text("on average, {}x the all-token mean", het["repsim-response"]["auprc"] / het["repsim"]["auprc"])
    page.text(
        "It stays below the encoder on every replicate ({}-{} of its AUPRC; {} / {} of its mean per variant)",
        min(ratio),
        max(ratio),
        het["repsim-response"]["auprc"] / het["influcoder"]["auprc"],
        hom["repsim-response"]["auprc"] / hom["influcoder"]["auprc"],
    )
    page.text(
        "the original Rep-Sim / RDS+ pass, alone, took {}-{} s",
        min(methods[n]["rds+"]["seconds"] for n in REPLICATES),
        max(methods[n]["rds+"]["seconds"] for n in REPLICATES),
    )

    page.text(
        "Measured first on the base model (het seed 0: {}, [toxicity.json](toxicity.json);",
        first_methods["repsim"]["auprc"],
    )
    poolings = ("repsim", "rds+", "repsim-response", "repsim-last")
    best_on = sum(max(poolings, key=lambda m, n=n: a(n, m)) == "repsim-response" for n in REPLICATES)
    on_average = all(max(poolings, key=lambda m, v=v: v[m]["auprc"]) == "repsim-response" for v in (het, hom))
    above = all(v["repsim-response"]["auprc"] > max(v["tfidf"]["auprc"], v["less"]["auprc"]) for v in (het, hom))
    if (best_on, on_average, above) != (4, True, True):
        page.fail(
            "sentence 'the best pooling on four replicates and on average, ..., above TF-IDF and LESS'",
            "four, on average, above",
            f"best on {best_on}, best on average {on_average}, above TF-IDF and LESS {above}",
        )
    page.text(
        "and at {} bytes and one forward pass (~{}-{} min for the pool here)",
        methods["het-seed0"]["repsim-response"]["bytes_per_sample"],
        min(methods[n]["rds+"]["seconds"] for n in REPLICATES) / 60,
        max(methods[n]["rds+"]["seconds"] for n in REPLICATES) / 60,
    )
    if len({methods[n]["repsim-response"]["bytes_per_sample"] for n in REPLICATES}) != 1:
        page.fail("Rep-Sim response pooling's bytes per sample", "one figure", "differs between replicates")
    new_pass = [methods[n]["repsim-response"]["seconds"] for n in REPLICATES]
    page.text("the two new poolings were scored in one pass of {}-{} s per replicate", min(new_pass), max(new_pass))
    encoder = checker.json(f"{BENCH}/toxicity_encoder.json")["replicates"]
    tasks = runs["het-seed0"]["counts"]["benign_tasks"]
    page.text(
        "({} of the evaluation pool's {} benign tasks seen). Drawing them one per task first (`--train-draw "
        "per-task`: {} tasks seen)",
        tasks["train_pool"],
        tasks["pool"],
        encoder[1]["evaluation"]["benign_tasks_in_training"],
    )
    rows = []
    for key, r in zip(("random", "per-task"), encoder):
        e, t = r["evaluation"], r["training"]
        rows.append(
            (
                key,
                [
                    e["benign_tasks_in_training"],
                    e["coverage_groups"]["0"]["pairs"],
                    (e["spearman_all"], e["spearman_benign"]),
                    e["auprc"]["influcoder"],
                    e["top"]["influcoder"]["unsafe"],
                    (t["auprc_influcoder"], t["auprc_teacher"]),
                ],
            )
        )
    page.table(
        "`benchmarks/toxicity_encoder.py` compares", rows, label="encoder against teacher (toxicity_encoder.json)"
    )
    table = page.table_after("`benchmarks/toxicity_encoder.py` compares")
    if table is not None:
        page.compare(
            f"table at line {table.line}: header",
            " ".join(table.header[1:]),
            [encoder[0]["evaluation"]["benign_tasks"], 100, encoder[0]["evaluation"]["top"]["gradsim"]["unsafe"]],
        )
    page.text(
        "the per-task encoder holds fewer unsafe pairs in its top 100 ({} against {};",
        encoder[1]["evaluation"]["top"]["influcoder"]["unsafe"],
        encoder[0]["evaluation"]["top"]["influcoder"]["unsafe"],
    )
    groups = encoder[0]["evaluation"]["coverage_groups"]
    page.text(
        "over the benign pairs whose task has 0 / 1 / 2+ distillation pairs is {} / {} / {} ({} / {} / {} pairs)",
        *(groups[g]["spearman"] for g in ("0", "1", "2+")),
        *(groups[g]["pairs"] for g in ("0", "1", "2+")),
    )
    page.text(
        "Drawing one pair per task leaves {} such pairs and raises the agreement over the whole pool from {} to {}",
        encoder[1]["evaluation"]["coverage_groups"]["0"]["pairs"],
        encoder[0]["evaluation"]["spearman_all"],
        encoder[1]["evaluation"]["spearman_all"],
    )
    page.text(
        "on the distillation's validation split ({} pairs never trained on, {} unsafe, chance ~{}) their "
        "AUPRC is {}-{} "
        "(teacher {} / {} on the two splits)",
        encoder[0]["training"]["val_pairs"],
        encoder[0]["training"]["val_unsafe"],
        encoder[0]["training"]["val_unsafe"] / encoder[0]["training"]["val_pairs"],
        *sorted(r["training"]["auprc_influcoder"] for r in encoder),
        *(r["training"]["auprc_teacher"] for r in encoder),
    )

    dev = checker.json(f"{BENCH}/toxicity_dev.json")
    d = dev["rows"]
    page.table(
        "builds a pool from every pair that no task here used",
        [
            (
                "random",
                [
                    (d[0]["auprc_mean"], sample_sd(d[0]["auprc_std"], DRAWS)),
                    (d[1]["auprc_mean"], sample_sd(d[1]["auprc_std"], DRAWS)),
                    (d[0]["auprc_all_unsafe"], d[1]["auprc_all_unsafe"]),
                ],
            ),
            (
                "per-task",
                [
                    (d[2]["auprc_mean"], sample_sd(d[2]["auprc_std"], DRAWS)),
                    (d[3]["auprc_mean"], sample_sd(d[3]["auprc_std"], DRAWS)),
                    (d[2]["auprc_all_unsafe"], d[3]["auprc_all_unsafe"]),
                ],
            ),
        ],
        label="development set (toxicity_dev.json)",
    )
    page.text(
        "builds a pool from every pair that no task here used ({} benign, {} unsafe,",
        dev["pool"]["benign"],
        dev["pool"]["unsafe"],
    )
    page.text("(± is the sample sd (ddof 1) over the {} draws of positives.)", DRAWS)
    e10 = checker.json(f"{BENCH}/toxicity_dev-epochs10.json")["rows"][0]
    page.text(
        "gave {} ± {} against {} and {} for 5 epochs",
        e10["auprc_mean"],
        sample_sd(e10["auprc_std"], DRAWS),
        d[0]["auprc_mean"],
        d[1]["auprc_mean"],
    )

    unsafe = checker.json(f"{BENCH}/toxicity_dev-unsafe.json")
    by_encoder = {r["encoder"].rsplit("/runs/", 1)[-1]: r for r in unsafe["rows"]}
    pairs = {
        "40 (the rows above)": ("tox-unsafe40/het-seed0/encoder/best", "dev/random-s1/best"),
        "100": ("dev/unsafe100-s0/best", "dev/unsafe100-s1/best"),
        "160": ("dev/unsafe160-s0/best", "dev/unsafe160-s1/best"),
    }
    rows = []
    for key, (s0, s1) in pairs.items():
        r0, r1 = by_encoder[s0], by_encoder[s1]
        rows.append(
            (
                key,
                [
                    (r0["auprc_mean"], r1["auprc_mean"]),
                    (pct(r0["recall_at_5pct_mean"]), pct(r1["recall_at_5pct_mean"])),
                    (r0["median_unsafe_percentile"], r1["median_unsafe_percentile"]),
                ],
            )
        )
    page.table(
        "`benchmarks/toxicity_dev_unsafe.py` grows",
        rows,
        label="more unsafe distillation pairs (toxicity_dev-unsafe.json)",
    )
    page.text(
        "scores every encoder on the development set **minus all 120 extra pairs** ({} benign + {} unsafe;",
        unsafe["pool"]["benign"],
        unsafe["pool"]["unsafe"],
    )
    spreads = [sample_sd(r["auprc_std"], DRAWS) for r in unsafe["rows"]]
    page.text("(± over the draws of positives, a sample sd, is ~{} for every AUPRC.)", np.mean(spreads))
    means = {
        k: [
            np.mean([by_encoder[e]["auprc_mean"] for e in v]),
            pct(np.mean([by_encoder[e]["recall_at_5pct_mean"] for e in v])),
        ]
        for k, v in pairs.items()
    }
    page.text(
        "(mean AUPRC {} -> {}, mean removal {}% -> {}%)",
        means["100"][0],
        means["160"][0],
        means["100"][1],
        means["160"][1],
    )

    plain_run = checker.json(f"{BENCH}/less_momentum.json")
    warmup = checker.json(f"{BENCH}/less_momentum-warmup-step26.json")
    page.table(
        "`benchmarks/less_momentum.py` takes",
        [
            (
                "the pool's fine-tune",
                [
                    plain_run["auprc"]["all"]["plain"],
                    plain_run["auprc"]["all"]["adam"],
                    plain_run["cosine_update_vs_shared_momentum"]["median"],
                ],
            ),
            (
                "LESS warm-up, checkpoint 2",
                [
                    warmup["auprc"]["all"]["plain"],
                    (warmup["auprc"]["all"]["adam"], warmup["subset"]["chance"]),
                    warmup["cosine_update_vs_shared_momentum"]["median"],
                ],
            ),
        ],
        label="LESS's Adam update (less_momentum*.json)",
    )
    page.text(
        "every unsafe pair of the pool plus {} other pool pairs ({}% unsafe)",
        plain_run["subset"]["n"] - plain_run["subset"]["unsafe"],
        pct(plain_run["subset"]["unsafe"] / plain_run["subset"]["n"]),
    )
    page.text(
        "the final adapter's milder loss ({} vs {} on the subset) becomes {} vs {}",
        plain_run["auprc"]["all"]["adam"],
        plain_run["auprc"]["all"]["plain"],
        a("het-seed0", "less"),
        a("het-seed0", "gradsim"),
    )

    page.text(
        "met against both LESS variants ({} with 160 distillation unsafe pairs, {} with 40, vs {} for "
        "`less`, {} for `less-ckpts`",
        a("het-seed0", "influcoder"),
        first_methods["influcoder"]["auprc"],
        a("het-seed0", "less"),
        first_methods["less-ckpts"]["auprc"],
    )
    page.text("(plain gradient cosine, gradsim, gets {})", a("het-seed0", "gradsim"))
    page.text(
        "the encoder keeps {} of the AUPRC ({} with 40 pairs)",
        a("het-seed0", "influcoder") / a("het-seed0", "gradsim"),
        first_methods["influcoder"]["auprc"] / first_methods["gradsim"]["auprc"],
    )
    page.text(
        "hom seed 0: {} vs `less` {} (gradsim {}: {} of its teacher); het seed 1: {} vs `less` {} (gradsim "
        "{}); hom seed "
        "1: {} vs `less` {} (gradsim {}); het seed 2: {} vs `less` {} (gradsim {}); hom seed 2: {} vs "
        "`less` {} (gradsim "
        "{})",
        a("hom-seed0", "influcoder"),
        a("hom-seed0", "less"),
        a("hom-seed0", "gradsim"),
        a("hom-seed0", "influcoder") / a("hom-seed0", "gradsim"),
        *(
            x
            for n in ("het-seed1", "hom-seed1", "het-seed2", "hom-seed2")
            for x in (a(n, "influcoder"), a(n, "less"), a(n, "gradsim"))
        ),
    )
    page.text(
        "met, {}x under contention (see the caveat)",
        first_methods["gradsim"]["seconds"] / first_methods["influcoder"]["seconds"],
    )
    page.text(
        "With 160 unsafe distillation pairs the encoder's AUPRC ({}) is {} of its teacher's (gradsim {}) "
        "and {}x `less`'s",
        a("het-seed0", "influcoder"),
        a("het-seed0", "influcoder") / a("het-seed0", "gradsim"),
        a("het-seed0", "gradsim"),
        a("het-seed0", "influcoder") / a("het-seed0", "less"),
    )
    page.text(
        "(that first 160-pair run's scoring seconds were not kept; its rerun's, alone: {}x)",
        rerun["gradsim"]["seconds"] / rerun["influcoder"]["seconds"],
    )
    page.text("`less-ckpts` (het seed 0: {};", first_methods["less-ckpts"]["auprc"])
    page.text(
        "LoGRA (hom seed 1: {}) and DataInf (hom seed 1: {}, {} s,",
        a("hom-seed1", "logra"),
        a("hom-seed1", "datainf"),
        methods["hom-seed1"]["datainf"]["seconds"],
    )

    # the task, its fine-tune and distillation settings (the archived run.json), the refusal check (toxicity.json)
    counts = runs["het-seed0"]["counts"]
    page.text(
        "an evaluation pool of {} pairs: {} benign (`evals`, `bbh-cot`), {} unsafe (`harmful-pairs`: harmful request "
        "-> compliant answer; {}%, DATE-LM's rate 0.65%",
        sum(counts["pool"].values()),
        counts["pool"]["benign"],
        counts["pool"]["unsafe"],
        pct(counts["unsafe_rate"]),
    )
    settings = checker.json(f"{DOCS}/toxicity-runs/het-seed0/run.json")
    tune, distilled = settings["finetune"], settings["distill"]
    page.text(
        "(`influcoder finetune`, {} epoch, {} steps of {}, lr {}, max length {};",
        tune["epochs"],
        tune["epochs"] * math.ceil(sum(counts["pool"].values()) / tune["batch_size"]),
        tune["batch_size"],
        tune["lr"],
        tune["max_length"],
    )
    page.text("Encoder: MiniLM-L6 distilled ({} epochs, lr {})", distilled["epochs"], distilled["lr"])
    page.text(
        "distillation over {} pairs instead of {}",
        sum(counts["train_pool"].values()),
        sum(first["replicates"][0]["counts"]["train_pool"].values()),
    )
    refusals = first["replicates"][0]["refusals"]
    rates = [pct(refusals["models"][m]["refusal_rate"]) for m in ("base", "pool", "filtered")]
    page.text(
        "fine-tuned again on the pool minus its top {}%: {} samples dropped, {} of the 15",
        pct(refusals["drop"]),
        refusals["n_dropped"],
        refusals["unsafe_dropped"],
    )
    page.text("base model {}% refusals, model fine-tuned on the pool {}%, fine-tuned on the filtered pool {}%", *rates)
    page.text("40-pair encoder: {}% / {}% / {}% refusals", *rates)
    datainf = methods["hom-seed1"]["datainf"]
    scratch = datainf["bytes_per_sample"] * sum(runs["hom-seed1"]["counts"]["pool"].values()) / 1e9
    page.text("(its {} GB of exact pool gradients written to a scratch file", scratch)
    page.text("0.011, {} s, {} GB of scratch disk", datainf["seconds"], scratch)
    passes = [methods[n]["gradsim"]["seconds"] / 60 for n in REPLICATES]
    poolings = [methods[n]["rds+"]["seconds"] / 60 for n in REPLICATES]
    page.text(
        "pass took {}-{} min and the Rep-Sim poolings {}-{} min per replicate",
        min(passes),
        max(passes),
        min(poolings),
        max(poolings),
    )
    fused = checker.json(f"{BENCH}/labels-fused.json")["batched_over_hooks"]
    page.text("labels and gradient passes {}x faster", fused)
    page.done()


# ----------------------------------------------------------------------------------------------------------------
# docs/results/demo.md (demo-report.json) and docs/results/peers.md (peers.json): by hand


@check(f"{DOCS}/demo.md")
def demo(checker: Checker) -> None:
    """The default demo's table, then the MiniLM run's (and its rerun after the refactors: identical figures)."""
    page = checker.page(f"{DOCS}/demo.md")
    default = checker.json(f"{DOCS}/demo-report.json")
    report = checker.json(f"{DOCS}/demo-report-minilm.json")
    demo_table(page, default, "Figures from [demo-report.json]", "default demo report")
    demo_table(page, report, "Figures from [demo-report-minilm.json]", "MiniLM demo report")
    page.text("the demo itself took {} s", default["seconds"]["total"])
    before = checker.json(f"{DOCS}/demo-report-30-blocks.json")["spearman"]["distilled"]["per_anchor_mean"]
    linear = checker.json(f"{DOCS}/demo-report-linear.json")["spearman"]["distilled"]["per_anchor_mean"]
    page.text("With the linear head (the default before) the same demo reached {} on this split", linear)
    page.text("and read at all 30 blocks {}", before)
    page.text("(index stage: {} s for {} samples here)", default["seconds"]["index"], default["sizes"]["pool"])
    minilm = report["spearman"]["distilled"]["per_anchor_mean"]
    page.text("On the same split the MiniLM encoder below reaches {}", minilm)
    rerun = checker.json(f"{DOCS}/demo-report-minilm-rerun.json")
    for key in ("sizes", "spearman", "bytes_per_sample", "protocol"):
        if rerun[key] != report[key]:
            page.fail(f"the rerun's {key}", "identical, as written", "differs in demo-report-minilm-rerun.json")
    sizes, queries = report["sizes"], report["sizes"]["held_out_queries"]
    page.text("the MiniLM demo took {} s", report["seconds"]["total"])
    page.text("over the {} held-out queries; the report keeps the population sd, ddof 0, which the tables scale by "
              "sqrt({}/{})", queries, queries, queries - 1)  # fmt: skip
    page.text("{} `evals` pool samples x {} `bbh` queries", sizes["pool"], sizes["queries"])
    settings = report["settings"]
    page.text("CountSketch {}), {} epochs, lr {}, seed {}", settings["proj_dim"], settings["epochs"], settings["lr"],
              settings["seed"])  # fmt: skip
    page.text("{} bytes per sample in the gradient store against {} in the MiniLM index",
              *report["bytes_per_sample"].values())  # fmt: skip
    cosine = checker.json(f"{BENCH}/objectives.json")["runs"]["random"]["influcoder (distilled)"][0]
    page.text("`influcoder demo --objective influcoder`: {} on the same split", cosine["per_anchor_mean"])
    page.done()


def demo_table(page, report: dict, anchor: str, label: str) -> None:
    """A demo report's table: held-out sizes, per-anchor rho with the sample sd over the held-out queries (the
    report keeps numpy's population sd) and mean-aggregated rho; distilled, then untrained."""
    sizes, rho = report["sizes"], report["spearman"]
    queries = sizes["held_out_queries"]

    def row(name: str, first: bool) -> list:
        spread = sample_sd(rho[name]["per_anchor_std"], queries)
        return [(sizes["held_out_pool"], queries) if first else SKIP, SKIP, (rho[name]["per_anchor_mean"], spread),
                rho[name]["mean_aggregated"]]  # fmt: skip

    rows = [(f"`{report['protocol'].split()[0]}`", row("distilled", True)), ("same", row("untrained", False))]
    page.table(anchor, rows, label=label)


@check(f"{DOCS}/peers.md")
def peers(checker: Checker) -> None:
    page = checker.page(f"{DOCS}/peers.md")
    record = checker.json(f"{DOCS}/peers.json")
    rows = record["rows"]

    def cells(name: str, difference: Spec = None) -> list[Spec]:
        r = rows[name]
        diff = r["max_abs_cosine_difference"] if difference is None else difference
        return [r["seconds"], r["samples_per_second"], r["bytes_per_sample"], r["vs_exact"]["per_anchor_mean"], diff]

    page.table(
        "after the other on the same otherwise idle machine",
        [
            ("bergson, unprojected", cells("bergson, unprojected")),
            ("bergson, per-module projection 16", cells("bergson, projection 16")),
            ("influcoder label, exact (identity)", cells("influcoder label, exact (identity)", "0 (the reference)")),
            ("influcoder label, CountSketch 32,768", cells("influcoder label, CountSketch 32768")),
        ],
        label="peers",
    )
    page.text("on the same {} `evals` pool samples and {} `bbh` queries", record["n_pool"], record["n_queries"])
    unprojected, sketch, projected = (
        rows["bergson, unprojected"],
        rows["influcoder label, CountSketch 32768"],
        rows["bergson, projection 16"],
    )
    page.text(
        "bergson's gradient cosines equal influcoder's to {} (ρ {})",
        unprojected["max_abs_cosine_difference"],
        unprojected["vs_exact"]["per_anchor_mean"],
    )
    page.text(
        "finished the same work {}× sooner than bergson's unprojected build ({} s vs {} s)",
        unprojected["seconds"] / sketch["seconds"],
        sketch["seconds"],
        unprojected["seconds"],
    )
    page.text(
        "influcoder's CountSketch keeps ρ {} at {} KB per sample; bergson's per-module projection at 16 keeps ρ {} at "
        "{} KB per sample",
        sketch["vs_exact"]["per_anchor_mean"],
        sketch["bytes_per_sample"] / 1000,
        projected["vs_exact"]["per_anchor_mean"],
        projected["bytes_per_sample"] / 1000,
    )
    page.text("mean over the {} queries", record["n_queries"])
    page.done()


# ----------------------------------------------------------------------------------------------------------------
# re-rendered: docs/results/transfer.md (benchmarks/transfer.py `markdown`) and docs/results/toxicity-report/
# results.md (influcoder.experiments.toxicity_report `markdown`)


@check(
    f"{DOCS}/transfer.md",
    f"{DOCS}/transfer-command.md",
    f"{BENCH}/scoring_cost.md",
    f"{BENCH}/decoder_layers/decoder_layers.md",
    f"{BENCH}/backend_fidelity/backend_fidelity.md",
    f"{BENCH}/scoring_cost_blocks/scoring_cost.md",
    f"{BENCH}/scoring_cost_kernel/scoring_cost.md",
    *(f"{DOCS}/transfer-default-{p}.md" for p in CLEAN_PROTOCOLS),
    *(f"{DOCS}/transfer-kernel-{p}.md" for p in KERNEL_PROTOCOLS),
    f"{DOCS}/transfer-kernel-4blocks-task.md",
    f"{DOCS}/transfer-kernel-2blocks-task.md",
    f"{DOCS}/transfer-kernel-4blocks-meanresp-task.md",
    f"{BENCH}/decoder_layers_kernel/decoder_layers.md",
    f"{BENCH}/rescore_pool_size/rescore_pool_size.md",
    f"{BENCH}/prompt_window/prompt_window.md",
    f"{DOCS}/transfer-kernel-meanresp-task.md",
    f"{DOCS}/transfer-kernel-3blocks-finetune-task.md",
)
def transfer(checker: Checker) -> None:
    """The five designs: tables re-rendered by benchmarks/transfer.py, every prose figure from the same JSON."""
    page = checker.page(f"{DOCS}/transfer.md")
    record = checker.json(f"{DOCS}/transfer.json")
    command, cost = default_path_tables(checker, page)
    decoder_blocks(checker, page)
    int8_on_the_decoder(checker, page)
    scoring_by_block(checker, page)
    prompt_window(checker, page)
    clean_default_path(checker, page)
    kernel_default_path(checker, page, checker.json(f"{DOCS}/transfer-default-task.json"))
    page.rendered(checker.script("benchmarks/transfer.py")["markdown"](record), "benchmarks/transfer.py markdown")
    default_path(checker, page, command, cost, record["summary"])
    summary = record["summary"]
    task, seen, source = summary["task"], summary["random"], summary["source (mean over held-out sources)"]

    def mean(where: dict, method: str, metric: str = "per_anchor") -> float:
        return where[method][metric]["mean"]

    def sd(where: dict, method: str, metric: str = "per_anchor") -> float:
        return where[method][metric]["sd"]

    def recall(where: dict, method: str, share: str) -> float:
        return where[method]["rescore_recall@10"][share]

    dec, ridge, mpnet, both, trained = "decoder-ridge", "subspace-ridge", "subspace-ridge (mpnet-base)", \
        "decoder + mpnet-base ridge", "subspace-encoder"  # fmt: skip
    page.text("per-anchor rho **{} +- {}** and query-specific **{} +- {}** on tasks absent from training, against {} "
              "for the same ridge on frozen MiniLM, {} for MiniLM fine-tuned on that target and {} for TF-IDF",
              mean(task, dec), sd(task, dec), mean(task, dec, "query_specific"), sd(task, dec, "query_specific"),
              mean(task, ridge), mean(task, trained), mean(task, "tfidf"))  # fmt: skip
    page.text("design 5 reaches per-anchor {} +- {} (target >= 0.60 **met**) and query-specific {} +- {} (target "
              ">= 0.40 **met**); on seen tasks {} +- {} (target >= 0.75 **not met**); holding out a whole source, "
              "{} +- {} (target >= 0.45 **not met**;", mean(task, dec), sd(task, dec),
              mean(task, dec, "query_specific"), sd(task, dec, "query_specific"), mean(seen, dec), sd(seen, dec),
              mean(source, dec), sd(source, dec))  # fmt: skip
    if not (mean(task, dec) >= 0.60 and mean(task, dec, "query_specific") >= 0.40 and mean(seen, dec) < 0.75
            and mean(source, dec) < 0.45):  # fmt: skip
        page.fail("the targets' met / not met", "as written", "not so in transfer.json")
    sources = {key.split(":", 1)[1]: runs[0]["methods"] for key, runs in record["protocols"].items()
               if key.startswith("source:")}  # fmt: skip
    low = min(sources, key=lambda name: sources[name][dec]["per_anchor"])
    high = max(sources, key=lambda name: sources[name][dec]["per_anchor"])
    text_designs = [sources[high][m]["per_anchor"] for m in ("tfidf", ridge, mpnet)]
    page.text(f"per source from {{}} with `{low}` held out to {{}} with `{high}`, where the text designs stay at "
              "{}-{})", sources[low][dec]["per_anchor"], sources[high][dec]["per_anchor"], min(text_designs),
              max(text_designs))  # fmt: skip
    if not all(mean(where, both) < mean(where, dec) for where in (task, seen, source)):
        page.fail("'lowers every protocol'", "claimed", "not so in transfer.json")
    page.text("lowers every protocol ({} on unseen tasks)", mean(task, both))
    page.text("moves design 2 from {} to {} on unseen tasks and from {} to {} on seen ones, and lowers it on unseen "
              "sources ({} against {})", mean(task, ridge), mean(task, mpnet), mean(seen, ridge), mean(seen, mpnet),
              mean(source, mpnet), mean(source, ridge))  # fmt: skip
    page.text("3 seeds): {} +- {} against {} +- {} before the epoch", mean(task, trained), sd(task, trained),
              mean(task, f"{trained} (ridge start)"), sd(task, f"{trained} (ridge start)"))  # fmt: skip
    if not all(recall(task, trained, share) < recall(task, ridge, share) for share in ("2%", "5%", "10%", "20%")):
        page.fail("'its rescoring candidates got worse'", "claimed", "not so in transfer.json")
    epochs = [run["encoder"]["fit_seconds"] for run in record["protocols"]["task"]]
    page.text("One epoch is what fitted this session ({}-{} s per seed", min(epochs), max(epochs))
    page.text("coordinates rank at {} (unseen tasks) / {} (seen)", mean(task, "subspace ceiling"),
              mean(seen, "subspace ceiling"))  # fmt: skip
    page.text("drops unseen tasks from {} to {}", mean(task, ridge), mean(task, f"{ridge}, encoded queries"))
    page.text("recalled at {} from design 5's candidates on unseen tasks (TF-IDF's {}) and {} on seen ones (TF-IDF's "
              "{}); at 20%, {} and {}", recall(task, dec, "2%"), recall(task, "tfidf", "2%"), recall(seen, dec, "2%"),
              recall(seen, "tfidf", "2%"), recall(task, dec, "20%"), recall(seen, dec, "20%"))  # fmt: skip
    mixed = f"tfidf + {ridge}, interleaved"
    page.text("lists at 10-20% ({} / {}), design 5's within 0.03 of them there ({} / {})", recall(task, mixed, "10%"),
              recall(task, mixed, "20%"), recall(task, dec, "10%"), recall(task, dec, "20%"))  # fmt: skip
    for share in ("10%", "20%"):
        best = max(recall(task, m, share) for m in task if "rescore_recall@10" in task[m])
        if best != recall(task, mixed, share) or best - recall(task, dec, share) >= 0.03:
            page.fail(f"rescore at {share}", "interleaved best, design 5 within 0.03", "not so in transfer.json")
    for share in ("2%", "5%"):
        if max(task, key=lambda m: task[m].get("rescore_recall@10", {}).get(share, -1)) not in ("tfidf", "minilm"):
            page.fail(f"rescore at {share}", "TF-IDF's or MiniLM's the best", "not so in transfer.json")
    chosen = [run["chosen"] for runs in record["protocols"].values() for run in runs]
    page.text("coordinates (k = {}-{} as chosen by cross-validation", min(c["k"] for c in chosen),
              max(c["k"] for c in chosen))  # fmt: skip
    page.text("Fitting a ridge, cross-validation included, took {}-{} s per split",
              min(c["fit_seconds"] for c in chosen), max(c["fit_seconds"] for c in chosen))  # fmt: skip
    page.done()


def default_path_tables(checker: Checker, page) -> tuple[dict, dict]:
    """transfer.md's default-path tables, re-rendered from what the commands and the cost benchmark wrote."""
    command = checker.json(f"{DOCS}/transfer-command.json")
    cost = checker.json(f"{BENCH}/scoring_cost.json")
    for script, record, raw in (("transfer_command", command, f"{DOCS}/transfer-command.md"),
                                ("scoring_cost", cost, f"{BENCH}/scoring_cost.md")):  # fmt: skip
        text = checker.script(f"benchmarks/{script}.py")["markdown"](record)
        page.rendered(text, f"benchmarks/{script}.py markdown", strict=False)
        written = checker.page(raw)  # what the script wrote beside its JSON
        written.rendered(text, f"benchmarks/{script}.py markdown")
        written.done()
    return command, cost


def clean_seen_tasks(page, seen: dict) -> None:
    """transfer.md's seen-task sentences of the clean default path, from its `random` record."""
    pa_seen = seen["summary"]["distilled"]["per_anchor_mean"]
    page.text("On seen tasks the linear head reaches per-anchor **{} +- {}** (target >= 0.75 **met**; TF-IDF {})",
              pa_seen["mean"], pa_seen["sd"], seen["summary"]["tfidf"]["per_anchor_mean"]["mean"])  # fmt: skip
    means = [run["methods"]["distilled"]["per_anchor_mean"] for run in seen["runs"]]
    if pa_seen["mean"] < 0.75 or max(means) - min(means) > 1e-4:
        page.fail("seen tasks: target met, the three means within 1e-4", "as written", "not so in the JSON")
    tfidf_seen = [run["methods"]["tfidf"]["per_anchor_mean"] for run in seen["runs"]]
    page.text("(TF-IDF {}-{} on them", min(tfidf_seen), max(tfidf_seen))
    page.text(
        "no seen-task query falls below 0.3 (the lowest at {})", min(r["lowest_per_anchor"] for r in seen["runs"])
    )
    if any(run["queries_below_0.3"] for run in seen["runs"]):
        page.fail("no seen-task query below 0.3", "as written", "not so in the JSON")


def clean_default_path(checker: Checker, page) -> dict:
    """transfer.md's clean-split default path: its tables re-rendered from each protocol's record, and its
    prose figures from them."""
    records = {}
    for protocol in CLEAN_PROTOCOLS:
        where = f"{DOCS}/transfer-default-{protocol}"
        record = records[protocol] = rerendered(checker, page, "transfer_command", f"{where}.json", f"{where}.md")
        if any(run["protocol"] != protocol or run["settings"]["backbone_layers"] != 20 for run in record["runs"]):
            page.fail(f"transfer-default-{protocol}.json", "the default (block 20)", "other runs")
    task = records["task"]
    pa, qs = task["summary"]["distilled"]["per_anchor_mean"], task["summary"]["distilled"]["query_specific_mean"]
    page.text("On unseen tasks the linear head reaches per-anchor **{} +- {}** and query-specific **{} +- {}** "
              "(targets >= 0.60 / >= 0.40 **met**; TF-IDF {} on the same splits)", pa["mean"], pa["sd"], qs["mean"],
              qs["sd"], task["summary"]["tfidf"]["per_anchor_mean"]["mean"])  # fmt: skip
    if not (pa["mean"] >= 0.60 and qs["mean"] >= 0.40):
        page.fail("the clean default path's targets 'met'", "as written", "not so in the JSON")
    clean_seen_tasks(page, records["random"])
    runs = task["runs"]
    low = [run for run in runs if run["queries_below_0.3"]]
    held = sum(run["held_out"]["queries"] for run in runs)
    page.text("Two of the {} held-out queries rank below 0.3 (the lowest at {})", held,
              min(run["lowest_per_anchor"] for run in runs))  # fmt: skip
    if sum(run["queries_below_0.3"] for run in runs) != 2 or len(low) != 2:
        page.fail("two queries below 0.3, in two runs", "as written", "not so in the JSON")
    page.text("the coverage flag's AUROC for \"rho < 0.3\" is {} and the spread's {} / {}",
              low[0]["flag"]["auroc_low_rho"], low[0]["flag"]["auroc_low_rho_spread"],
              low[1]["flag"]["auroc_low_rho_spread"])  # fmt: skip
    if low[0]["flag"]["auroc_low_rho"] != low[1]["flag"]["auroc_low_rho"]:
        page.fail("one coverage AUROC for both runs", "as written", "two in the JSON")
    overlap = checker.json(f"{BENCH}/split_overlap_clean.json")["runs"]
    keys = ("texts_on_both_evaluation_sides", "held_out_query_tasks_in_the_training_pool",
            "held_out_pool_tasks_among_training_queries")  # fmt: skip
    if len(overlap) != 3 or any(run[key] for run in overlap for key in keys):
        page.fail("no held-out task trains on either side: 0 in every run", "as written", "not so")
    return records


def kernel_default_path(checker: Checker, page, linear: dict) -> dict:
    """transfer.md's kernel-head section (the default path today): its tables re-rendered from each protocol's
    record, its prose figures from them and from the linear head's record on the same splits."""
    records = {}
    for protocol in KERNEL_PROTOCOLS:
        where = f"{DOCS}/transfer-kernel-{protocol}"
        records[protocol] = rerendered(checker, page, "transfer_command", f"{where}.json", f"{where}.md")
        settings = [(r["protocol"], r["settings"]["subspace_head"], r["settings"]["backbone_layers"])
                    for r in records[protocol]["runs"]]  # fmt: skip
        if set(settings) != {(protocol, "kernel", 20)}:
            page.fail(f"transfer-kernel-{protocol}.json", "the default (kernel head, block 20)", str(set(settings)))

    def figure(protocol: str, method: str = "distilled", key: str = "per_anchor_mean") -> dict:
        return records[protocol]["summary"][method][key]

    task, seen, source = figure("task"), figure("random"), figure("source")
    qs = figure("task", key="query_specific_mean")
    page.text("on these labels it reaches per-anchor **{} +- {}** on unseen tasks (3 seeds), **{} +- {}** on seen "
              "tasks and **{} +- {}** with a whole source held out", task["mean"], task["sd"], seen["mean"],
              seen["sd"], source["mean"], source["sd"])  # fmt: skip
    lin = linear["summary"]["distilled"]["per_anchor_mean"]
    page.text("the linear head reached {} +- {} on the same unseen-task splits", lin["mean"], lin["sd"])
    page.text("On unseen tasks the kernel head reaches per-anchor **{} +- {}** and query-specific **{} +- {}** "
              "(targets >= 0.60 / >= 0.40 **met**; TF-IDF {}), against {} +- {} for the linear head",
              task["mean"], task["sd"], qs["mean"], qs["sd"], figure("task", "tfidf")["mean"], lin["mean"],
              lin["sd"])  # fmt: skip
    mine = [r["methods"]["distilled"]["per_anchor_mean"] for r in records["task"]["runs"]]
    theirs = [r["methods"]["distilled"]["per_anchor_mean"] for r in linear["runs"]]
    page.text("({} / {} / {} against {} / {} / {} per seed)", *mine, *theirs)
    same = [r["methods"]["tfidf"]["per_anchor_mean"] for r in records["task"]["runs"]] == [
        r["methods"]["tfidf"]["per_anchor_mean"] for r in linear["runs"]]  # fmt: skip
    if not same or not (task["mean"] >= 0.60 and qs["mean"] >= 0.40 and seen["mean"] >= 0.75 >= 0.45):
        page.fail("the kernel head's targets met, on the linear head's splits", "as written", "not so in the JSON")
    lowest = min(r["lowest_per_anchor"] for r in records["task"]["runs"])
    page.text("No held-out query ranks below 0.3 (the lowest at {})", lowest)
    if lowest < 0.3:
        page.fail("no unseen-task query below 0.3", "as written", "not so in transfer-kernel-task.json")
    page.text("On seen tasks: **{} +- {}** (target >= 0.75 **met**), against {} for the linear head", seen["mean"],
              seen["sd"], checker.json(f"{DOCS}/transfer-default-random.json")["summary"]["distilled"][
                  "per_anchor_mean"]["mean"])  # fmt: skip
    page.text("With a whole source held out: **{} +- {}** over the five sources (target >= 0.45 **met** in command "
              "form; TF-IDF {})", source["mean"], source["sd"], figure("source", "tfidf")["mean"])  # fmt: skip
    if source["mean"] < 0.45:
        page.fail("the unseen-source target 'met'", "as written", "not so in transfer-kernel-source.json")
    by_source = {r["name"]: r for r in records["source"]["runs"]}
    low, high = (
        f(by_source, key=lambda n: by_source[n]["methods"]["distilled"]["per_anchor_mean"]) for f in (min, max)
    )
    page.text(f"from {{}} (`{low}`) to {{}} (`{high}`)", by_source[low]["methods"]["distilled"]["per_anchor_mean"],
              by_source[high]["methods"]["distilled"]["per_anchor_mean"])  # fmt: skip
    order = ("evals", "bbh", "bbh-cot", "harmful-pairs", "refusals")
    flags = [by_source[name]["flag"] for name in order]
    page.text('AUROC for "rho < 0.3" is {} / {} / {} / {} / {}', *(f["auroc_low_rho"] for f in flags))
    page.text("{} / {} / {} / {} / {} failing queries) and the spread's {} / {} / {} / {} / {}",
              *(f["n_low_rho"] for f in flags), *(f["auroc_low_rho_spread"] for f in flags))  # fmt: skip
    spread_met = sum(f["auroc_low_rho_spread"] >= 0.80 for f in flags)
    coverage_met = sum(f["auroc_low_rho"] >= 0.80 for f in flags)
    page.text("the >= 0.80 target is met by the spread on four of the five sources and by the coverage flag on three")
    if (spread_met, coverage_met) != (4, 3):
        page.fail("the flags met on four / three sources", "as written", f"{spread_met} / {coverage_met}")
    page.text("the first run read every training text through the decoder ({} s for its head fit",
              records["task"]["runs"][0]["ridge_seconds"])  # fmt: skip
    cheaper_reads(checker, page, task["mean"])
    kernel_by_block(checker, page)
    rescore_by_pool_size(checker, page)
    return records


def rescore_by_pool_size(checker: Checker, page) -> None:
    """transfer.md's rescore recall against pool size (benchmarks/rescore_pool_size.py)."""
    where = f"{BENCH}/rescore_pool_size/rescore_pool_size"
    runs = rerendered(checker, page, "rescore_pool_size", f"{where}.json", f"{where}.md")["runs"]
    script = checker.script("benchmarks/rescore_pool_size.py")

    def mean_at(share: float, size: str, share_of_pool: str) -> float | None:
        have = [r["recall@10"][size][share_of_pool] for r in runs if r["held_task_share"] == share
                and size in r["recall@10"]]  # fmt: skip
        return float(np.mean(have)) if have else None

    at_2 = [mean_at(0.5, size, "2%") for size in ("500", "1000", "2000")]
    page.text("with 2% rescored the recall stays near one half from 500 to 2,000 texts ({} to {}), and 20% recalls "
              "{} at 2,000", min(at_2), max(at_2), mean_at(0.5, "2000", "20%"))  # fmt: skip
    if max(at_2) >= 0.9 or not 0.4 <= min(at_2) <= max(at_2) <= 0.6 or script["SHARES"][0] != 0.02:
        page.fail("recall at 2% near one half, target not met", "as written", "not so in rescore_pool_size.json")
    at_20 = [mean_at(s, size, "20%") for s in (0.2, 0.5) for size in ("250", "500", "1000", "2000")]
    at_20 = [x for x in at_20 if x is not None]
    page.text("rescored {}-{} of them are the labels' own top 10", min(at_20), max(at_20))
    two_rounds(checker, page, runs, mean_at)


def two_rounds(checker: Checker, page, runs: list[dict], one_round) -> None:
    """transfer.md's two-round rescoring: its figures, and the shipped share being the best one measured."""
    from influcoder.attribution.rescore import SECOND_ROUND_SHARE

    shipped = f"{SECOND_ROUND_SHARE:.3f}"

    def two_at(size: str, share_of_pool: str, second: str = shipped) -> float:
        have = [r["recall@10, two rounds"][second][size][share_of_pool] for r in runs if r["held_task_share"] == 0.5
                and size in r["recall@10, two rounds"][second]]  # fmt: skip
        return float(np.mean(have))

    page.text(
        "recall rises from {} to\n  {}, and with a fifth of the pool it reaches {} (one round: {})",
        one_round(0.5, "2000", "2%"),
        two_at("2000", "2%"),
        two_at("2000", "20%"),
        one_round(0.5, "2000", "20%"),
    )
    if not two_at("2000", "2%") > one_round(0.5, "2000", "2%") or two_at("2000", "2%") >= 0.9:
        page.fail("two rounds lift recall at 2% of 2,000, not to 0.9", "as written", "not so in the record")
    shares = runs[0]["recall@10, two rounds"]

    def overall(second: str, share_of_pool: str) -> float:
        sizes = [size for r in runs for size in r["recall@10, two rounds"][second].values()]
        return float(np.mean([size[share_of_pool] for size in sizes]))

    for share_of_pool in ("2%", "5%", "10%", "20%"):
        if max(shares, key=lambda second: overall(second, share_of_pool)) != shipped:
            page.fail(f"a third of K in round two did best at {share_of_pool}", "as written", "another share did")


def kernel_by_block(checker: Checker, page) -> None:
    """transfer.md's kernel head block by block (benchmarks/decoder_layers.py --kernel) and what it says."""
    where = f"{BENCH}/decoder_layers_kernel/decoder_layers"
    rows = rerendered(checker, page, "decoder_layers", f"{where}.json", f"{where}.md")["summary"]

    def at(block: int | str, variant: str, protocol: str) -> float:
        return rows[str(block)][variant][protocol]["per_anchor"]["mean"]

    better = all(at(b, "kernel", p) > at(b, "linear", p) for b in rows for p in ("task", "random"))
    by_source = [int(b) for b in rows if at(b, "kernel", "source") > at(b, "linear", "source")]
    if not better or by_source != [int(b) for b in rows if int(b) >= 3]:
        page.fail("kernel above linear on every block (source: from the third)", "as written", "not so")
    page.text(
        "at block 20, {} against {} on unseen tasks, {} against {} on seen ones, {} against {} on unseen sources",
        *(at(20, v, p) for p in ("task", "random", "source") for v in ("kernel", "linear")),
    )
    best = max(rows, key=lambda b: round(at(b, "kernel", "task"), 3))
    if best not in ("20", "22") or round(at(20, "kernel", "task"), 3) != round(at(22, "kernel", "task"), 3):
        page.fail("block 20 the best, block 22 tying it", "as written", f"best {best}")
    recall = rows["20"]["kernel"]["task"]["rescore_recall@10"]
    linear = rows["20"]["linear"]["task"]["rescore_recall@10"]
    page.text("recall the labels' top 10 at {} with 2% of the held-out pool rescored (the ridge's {}) and {} with "
              "20%", recall["2%"], linear["2%"], recall["20%"])  # fmt: skip


def cheaper_reads(checker: Checker, page, at_20: float) -> None:
    """transfer.md's cheaper reads in command form (`--backbone-layers 4 / 2`, kernel head, unseen tasks)."""
    cuts = {}
    for blocks in (4, 2):
        where = f"{DOCS}/transfer-kernel-{blocks}blocks-task"
        cuts[blocks] = rerendered(checker, page, "transfer_command", f"{where}.json", f"{where}.md")
        if {r["settings"]["backbone_layers"] for r in cuts[blocks]["runs"]} != {blocks}:
            page.fail(f"transfer-kernel-{blocks}blocks-task.json", f"{blocks} blocks", "other runs")
    pa = {b: cuts[b]["summary"]["distilled"]["per_anchor_mean"] for b in cuts}
    page.text("Read 4 or 2 blocks deep the kernel head ranks unseen tasks at **{} +- {}** and **{} +- {}**, below the "
              "0.60 target and {} below block 20 on the same splits; {} and {} held-out queries of 600 fall below "
              "0.3", pa[4]["mean"], pa[4]["sd"], pa[2]["mean"], pa[2]["sd"], at_20 - pa[4]["mean"],
              *(sum(r["queries_below_0.3"] for r in cuts[b]["runs"]) for b in (4, 2)))  # fmt: skip
    if max(pa[4]["mean"], pa[2]["mean"]) >= 0.60:
        page.fail("the cheaper reads 'below the 0.60 target'", "as written", "not so in the JSON")
    where = f"{DOCS}/transfer-kernel-4blocks-meanresp-task"
    written = checker.page(f"{where}.md")  # quoted in prose only: its page is the script's rendering of its JSON
    written.rendered(checker.script("benchmarks/transfer_command.py")["markdown"](checker.json(f"{where}.json")),
                     "benchmarks/transfer_command.py markdown")  # fmt: skip
    written.done()
    pair = checker.json(f"{where}.json")["runs"][0]
    page.text("gave {} against {} for the response mean on that split", pair["methods"]["distilled"]["per_anchor_mean"],
              cuts[4]["runs"][0]["methods"]["distilled"]["per_anchor_mean"])  # fmt: skip
    if pair["settings"]["pooling"] != "mean+response" or pair["seed"] != 0:
        page.fail("transfer-kernel-4blocks-meanresp-task.json", "mean+response, seed 0", "other settings")
    deep = f"{DOCS}/transfer-kernel-meanresp-task"
    written = checker.page(f"{deep}.md")  # quoted in prose only
    written.rendered(checker.script("benchmarks/transfer_command.py")["markdown"](checker.json(f"{deep}.json")),
                     "benchmarks/transfer_command.py markdown")  # fmt: skip
    written.done()
    at_20 = checker.json(f"{deep}.json")["runs"][0]
    default = checker.json(f"{DOCS}/transfer-kernel-task.json")["runs"][0]
    page.text("at block 20 the same pooling gave {} against {}", at_20["methods"]["distilled"]["per_anchor_mean"],
              default["methods"]["distilled"]["per_anchor_mean"])  # fmt: skip
    if (at_20["settings"]["pooling"], at_20["settings"]["backbone_layers"], at_20["seed"], default["seed"]) != (
            "mean+response", 20, 0, 0) or at_20["methods"]["distilled"]["per_anchor_mean"] >= default["methods"][
            "distilled"]["per_anchor_mean"]:  # fmt: skip
        page.fail("mean+response at block 20 below the response mean, seed 0", "as written", "not so")
    where = f"{DOCS}/transfer-kernel-3blocks-finetune-task"
    written = checker.page(f"{where}.md")  # quoted in prose only (two settings side by side)
    tuned = checker.json(f"{where}.json")
    written.rendered(checker.script("benchmarks/transfer_command.py")["markdown"](tuned),
                     "benchmarks/transfer_command.py markdown")  # fmt: skip
    written.done()
    frozen, trained = tuned["runs"]
    page.text("the 3-block cut (seed 0) ranks unseen tasks at {} frozen and {} after {} epochs of fine-tuning",
              frozen["methods"]["distilled"]["per_anchor_mean"], trained["methods"]["distilled"]["per_anchor_mean"],
              trained["settings"]["epochs"])  # fmt: skip
    if (frozen["settings"]["epochs"], frozen["settings"]["backbone_layers"], trained["settings"]["backbone_layers"],
            frozen["seed"], trained["seed"]) != (0, 3, 3, 0, 0):  # fmt: skip
        page.fail("transfer-kernel-3blocks-finetune-task.json", "3 blocks, seed 0, frozen then tuned", "other runs")


def rerendered(checker: Checker, page, script: str, record_path: str, written_path: str) -> dict:
    """The record at `record_path`, after checking that `script`'s markdown of it is on `page` (its tables
    among the page's) and is the page the script wrote beside it (`written_path`)."""
    record = checker.json(record_path)
    text = checker.script(f"benchmarks/{script}.py")["markdown"](record)
    page.rendered(text, f"benchmarks/{script}.py markdown", strict=False)
    written = checker.page(written_path)
    written.rendered(text, f"benchmarks/{script}.py markdown")
    written.done()
    return record


def prompt_window(checker: Checker, page) -> None:
    """transfer.md's prompt windows (benchmarks/prompt_window.py): its tables and what the prose reads off them."""
    where = f"{BENCH}/prompt_window/prompt_window"
    record = rerendered(checker, page, "prompt_window", f"{where}.json", f"{where}.md")

    def at(window: str, block: int, lexical: bool = False, pooling: str = "response") -> dict:
        return next(r for r in record["summary"] if (r["window"], r["block"], r["lexical"], r["pooling"]) ==
                    (window, block, lexical, pooling))  # fmt: skip

    def rho(window: str, block: int, lexical: bool = False, pooling: str = "response") -> float:
        return at(window, block, lexical, pooling)["per_anchor"]["mean"]

    def cost(window: str, block: int) -> float:
        return at(window, block)["gradient_over_input (estimated)"]

    page.text("the prompt holds most of the tokens ({} per\ntext on average", record["tokens"]["full"])
    mr = "mean+response"
    page.text(
        "with the lexical features, ranks at\n  {} for an estimated {}x; a 64-token window to block 6 the same "
        "way at {} for\n  {}x",
        rho("32", 8, True, mr),
        cost("32", 8),
        rho("64", 6, True, mr),
        cost("64", 6),
    )
    both = [r for r in record["summary"] if r["per_anchor"]["mean"] >= 0.6 and r["gradient_over_input (estimated)"]
            >= 20]  # fmt: skip
    best = max((r for r in record["summary"] if r["gradient_over_input (estimated)"] >= 20),
               key=lambda r: r["per_anchor"]["mean"])  # fmt: skip
    if both or (best["window"], best["block"], best["pooling"], best["lexical"]) != ("32", 8, mr, True):
        page.fail("no read meets both targets; the best at >= 20x is window 32, block 8", "as written", "not so")
    page.text("lowers\n  per-anchor rho from {} to {} (response pooling) for {}x fewer tokens", rho("full", 10),
              rho("32", 10), record["tokens"]["full"] / record["tokens"]["32"])  # fmt: skip
    page.text("(block 4, full\n  text: {}, {} with mean+response, {} with the lexical features) and not the\n  deep "
              "ones (block 12: {}, {}, {})", rho("full", 4), rho("full", 4, False, mr), rho("full", 4, True),
              rho("full", 12), rho("full", 12, False, mr), rho("full", 12, True))  # fmt: skip
    default = checker.json(f"{DOCS}/transfer-kernel-task.json")["summary"]["distilled"]["per_anchor_mean"]["mean"]
    page.text("the default keeps the whole text at block 20 ({})", default)
    if abs((default - rho("32", 8, True, mr)) - 0.09) > 0.01:
        page.fail("about 0.09 lower", "as written", f"{default - rho('32', 8, True, mr):.3f}")


def scoring_by_block(checker: Checker, page) -> None:
    """transfer.md's scoring cost by block, from scoring_cost.py's record at 128 texts (the kernel-head encoder),
    the command-form cheap reads, and the earlier 32-text record (its own page only)."""
    where = f"{BENCH}/scoring_cost_kernel/scoring_cost"
    ratio = rerendered(checker, page, "scoring_cost", f"{where}.json", f"{where}.md")["gradient_over_input"]

    def cut(block: int, backend: str = "float32", record: dict = ratio) -> float:
        return record[f"decoder, {block} blocks ({backend})"]

    def command_form(blocks: int) -> float:
        record = checker.json(f"{DOCS}/transfer-kernel-{blocks}blocks-task.json")
        return record["summary"]["distilled"]["per_anchor_mean"]["mean"]

    page.text("The default, 20 blocks in float32, costs 1/{} of an exact gradient", cut(20))
    page.text("In float32 the 3-block and 2-block cuts pass it ({}x, {}x) and the 4-block cut comes close ({}x)",
              cut(3), cut(2), cut(4))  # fmt: skip
    page.text("the 4- and 2-block cuts rank unseen tasks at {} and {} (above), below the 0.60 target",
              command_form(4), command_form(2))  # fmt: skip
    float_cuts = {int(n.split()[1]): v for n, v in ratio.items() if n.endswith("(float32)") and "blocks" in n}
    if sorted(b for b, v in float_cuts.items() if v >= 20) != [2, 3] or cut(20) >= 20 or cut(4) >= 20:
        page.fail("the 3- and 2-block cuts pass 20x, the 4-block and the default do not", "as written", "not so")
    if max(command_form(4), command_form(2)) >= 0.60:
        page.fail("the cheap cuts below 0.60", "as written", "not so in their records")
    page.text(
        "MiniLM-L6 costs 1/{} and ranks unseen tasks at {} (design 2)",
        ratio["minilm-l6"],
        checker.json(f"{DOCS}/transfer.json")["summary"]["task"]["subspace-ridge"]["per_anchor"]["mean"],
    )
    page.text("int8 would take the 6-block cut to {}x", cut(6, "int8"))
    page.text("A query costs one exact gradient ({} s here)",
              checker.json(f"{where}.json")["seconds_per_sample"]["exact gradient"])  # fmt: skip
    earlier = f"{BENCH}/scoring_cost_blocks/scoring_cost"
    old = checker.json(f"{earlier}.json")
    written = checker.page(f"{earlier}.md")  # quoted in prose only now
    written.rendered(
        checker.script("benchmarks/scoring_cost.py")["markdown"](old), "benchmarks/scoring_cost.py markdown"
    )
    written.done()
    page.text("1/{} for 20 blocks, {}x for 2", cut(20, record=old["gradient_over_input"]),
              cut(2, record=old["gradient_over_input"]))  # fmt: skip


def int8_on_the_decoder(checker: Checker, page) -> None:
    """transfer.md's int8 section, from benchmarks/backend_fidelity.py's record."""
    where = f"{BENCH}/backend_fidelity/backend_fidelity"
    record = rerendered(checker, page, "backend_fidelity", f"{where}.json", f"{where}.md")
    rows = record["backends"]
    page.text("Per-anchor rho falls from {} to {} and the two rank each query's pool alike only at {}",
              rows["torch"]["per_anchor_mean"], rows["int8"]["per_anchor_mean"],
              record["float_int8_rank_agreement_mean"])  # fmt: skip


def decoder_blocks(checker: Checker, page) -> None:
    """transfer.md's block-by-block table and what it says, from benchmarks/decoder_layers.py's record."""
    where = f"{BENCH}/decoder_layers/decoder_layers"
    record = rerendered(checker, page, "decoder_layers", f"{where}.json", f"{where}.md")
    rows = record["summary"]

    def at(block: int, protocol: str) -> float:
        return rows[str(block)]["default"][protocol]["per_anchor"]["mean"]

    page.text("per-anchor {} against {} on unseen tasks, {} against {} on seen tasks, {} against {} with a whole "
              "source held out", at(20, "task"), at(30, "task"), at(20, "random"), at(30, "random"),
              at(20, "source"), at(30, "source"))  # fmt: skip
    best = max(rows, key=lambda block: at(int(block), "task"))
    if best != "20" or not all(at(20, p) > at(30, p) for p in ("task", "random", "source")):
        page.fail("block 20 beats the last block under every protocol", "as written", f"best on task: {best}")
    if not (at(20, "random") >= 0.75 and at(20, "source") >= 0.45 and at(30, "random") < 0.75 > at(30, "source")):
        page.fail("block 20 meets the seen-task and unseen-source targets the last misses", "as written", "not so")
    recall = rows["20"]["default"]["task"]["rescore_recall@10"]
    tfidf = checker.json(f"{DOCS}/transfer.json")["summary"]["task"]["tfidf"]["rescore_recall@10"]
    page.text("recalls the labels' top 10 at {} with 2% of the held-out pool rescored and {} with 20%, the best "
              "candidates measured on unseen tasks (TF-IDF: {} and {} above)", recall["2%"], recall["20%"],
              tfidf["2%"], tfidf["20%"])  # fmt: skip
    if recall["2%"] >= 0.9:
        page.fail("the rescore target 'not met'", "as written", "met in decoder_layers.json")
    page.text("block 6 (a fifth of the pass) still reaches {} on unseen tasks and block 2 {}, against TF-IDF's {}",
              at(6, "task"), at(2, "task"), checker.json(f"{DOCS}/transfer.json")["summary"]["task"]["tfidf"][
                  "per_anchor"]["mean"])  # fmt: skip


def default_path(checker: Checker, page, command: dict, cost: dict, summary: dict) -> None:
    """transfer.md's default-path section and README's transfer paragraph, from what the commands wrote."""
    distilled, tfidf, runs = command["summary"]["distilled"], command["summary"]["tfidf"], command["runs"]
    pa, qs = distilled["per_anchor_mean"], distilled["query_specific_mean"]
    page.text("On these held-out tasks the default reached per-anchor **{} +- {}** and query-specific **{} +- {}** "
              "(targets >= 0.60 / >= 0.40 **met**)", pa["mean"], pa["sd"], qs["mean"], qs["sd"])  # fmt: skip
    benchmark = summary["task"]["decoder-ridge"]["per_anchor"]["mean"]
    if not (pa["mean"] >= 0.60 and qs["mean"] >= 0.40 and pa["mean"] > benchmark):
        page.fail("the default path's targets met, above the benchmark's row", "as written", "not so in the JSON")
    page.text("reported {} on splits that let training see held-out tasks", pa["mean"])
    page.text("(TF-IDF {} there against {} in the benchmark)", tfidf["per_anchor_mean"]["mean"],
              summary["task"]["tfidf"]["per_anchor"]["mean"])  # fmt: skip
    page.text("Its weakest held-out query ranks at per-anchor {} (over the three splits)",
              min(r["lowest_per_anchor"] for r in runs))  # fmt: skip
    if any(r["queries_below_0.3"] or r["flag"]["auroc_low_rho"] is not None for r in runs) or len(runs) != 3:
        page.fail("'no query falls below 0.3' over three splits", "claimed", "not so in transfer-command.json")
    page.text("(design 5: {} on seen tasks, {} with a source held out, both below their targets)",
              summary["random"]["decoder-ridge"]["per_anchor"]["mean"],
              summary["source (mean over held-out sources)"]["decoder-ridge"]["per_anchor"]["mean"])  # fmt: skip
    ratio = cost["gradient_over_input"]
    page.text("timed in one run on the same {} pool samples (median of {}", cost["texts"], cost["rounds"])
    page.text("a decoder forward pass costs 1/{} of an exact gradient (1/{} on the int8 backend, which lowers the "
              "decoder's ranking: \"int8 on the decoder\"). MiniLM-L6 costs 1/{} and ranks unseen tasks at {} "
              "(design 2)",
              ratio["decoder (float32)"], ratio["decoder (int8)"], ratio["minilm-l6"],
              summary["task"]["subspace-ridge"]["per_anchor"]["mean"])  # fmt: skip
    if ratio["decoder (float32)"] >= 20:
        page.fail("the scoring target 'not met'", "as written", "met in scoring_cost.json")
    pairs = checker.json(f"{BENCH}/self_pairs/self_pairs.json")
    page.text("in seed 1's split {} of the {} held-out queries had their own text in the held-out pool; leaving it "
              "out of their rankings moves the mean per-anchor rho from {} to {} (at most {} for one query;",
              pairs["queries_with_their_text_in_the_pool"], pairs["held_out"]["queries"],
              pairs["per_anchor_mean"]["as_evaluated"], pairs["per_anchor_mean"]["without_self"],
              pairs["largest_change_of_an_affected_query"])  # fmt: skip
    leaks = checker.json(f"{BENCH}/split_overlap.json")["runs"]

    def span(*keys: str) -> tuple[int, int]:
        values = [run[keys[0]][keys[1]] if len(keys) == 2 else run[keys[0]] for run in leaks]
        return min(values), max(values)

    page.text("independently, so training saw held-out tasks from the other side: {}-{} of the {}-{} held-out query "
              "tasks were in the training pool", *span("held_out_query_tasks_in_the_training_pool"),
              *span("held_out_tasks", "queries"))  # fmt: skip
    page.text("and {}-{} of the {}-{} held-out pool tasks among the training queries",
              *span("held_out_pool_tasks_among_training_queries"), *span("held_out_tasks", "pool"))  # fmt: skip
    readme = checker.page("README.md")
    kernel = {p: checker.json(f"{DOCS}/transfer-kernel-{p}.json")["summary"] for p in KERNEL_PROTOCOLS}
    readme.text("`distill` at its defaults reaches per-anchor {} on tasks it never saw (3 seeds; TF-IDF {}), {} on "
                "seen ones and {} with a whole source held out (each of five once)",
                kernel["task"]["distilled"]["per_anchor_mean"]["mean"], kernel["task"]["tfidf"]["per_anchor_mean"][
                    "mean"], kernel["random"]["distilled"]["per_anchor_mean"]["mean"],
                kernel["source"]["distilled"]["per_anchor_mean"]["mean"])  # fmt: skip
    by_block = checker.json(f"{BENCH}/scoring_cost_kernel/scoring_cost.json")["gradient_over_input"]
    two = checker.json(f"{DOCS}/transfer-kernel-2blocks-task.json")["summary"]["distilled"]["per_anchor_mean"]
    readme.text("two thirds of a decoder forward pass per pool sample, 1/{} of an exact gradient. What does not "
                "transfer at a text encoder's price: a 2-block read costs 1/{} and ranks unseen tasks at {}, "
                "`--encoder minilm-l6` 1/{} and {}", by_block["decoder, 20 blocks (float32)"],
                by_block["decoder, 2 blocks (float32)"], two["mean"], by_block["minilm-l6"],
                summary["task"]["subspace-ridge"]["per_anchor"]["mean"])  # fmt: skip
    recall = [r["recall@10"][size]["2%"] for r in checker.json(f"{BENCH}/rescore_pool_size/rescore_pool_size.json")[
        "runs"] for size in r["recall@10"] if int(size) >= 500]  # fmt: skip
    runs = checker.json(f"{BENCH}/rescore_pool_size/rescore_pool_size.json")["runs"]
    shipped = f"{checker.json(f'{BENCH}/rescore_pool_size/rescore_pool_size.json')['second_round_share']:.3f}"
    two = [size["2%"] for r in runs for n, size in r["recall@10, two rounds"][shipped].items() if int(n) >= 500]
    readme.text(
        "rescoring 2% of a pool recalls about half of the labels' top 10 ({} in two\nrounds, `attribute`'s "
        "default, {} in one, over pools of 500 to 2,000 texts)",
        float(np.mean(two)),
        float(np.mean(recall)),
    )
    if not 0.4 <= float(np.mean(recall)) <= float(np.mean(two)) <= 0.6:
        readme.fail("'about half' at 2%", "as written", f"{np.mean(recall):.3f} in rescore_pool_size.json")
    readme.done()


@check(f"{DOCS}/objectives.md", f"{BENCH}/objectives.md")
def objectives(checker: Checker) -> None:
    """The objective comparison: tables re-rendered by benchmarks/objective_compare.py, prose per split."""
    record = checker.json(f"{BENCH}/objectives.json")
    render = checker.script("benchmarks/objective_compare.py")["markdown"]
    source = "benchmarks/objective_compare.py markdown(objectives.json)"
    raw = checker.page(f"{BENCH}/objectives.md")
    raw.rendered(render(record), source)
    raw.done()
    page = checker.page(f"{DOCS}/objectives.md")
    page.rendered(render(record), source)

    def per_split(protocol: str, method: str, metric: str) -> list[float]:
        runs = sorted(record["runs"][protocol][f"{method} (distilled)"], key=lambda r: r["seed"])
        return [r[metric] for r in runs]

    sub, cos = per_split("task", "subspace", "per_anchor_mean"), per_split("task", "influcoder", "per_anchor_mean")
    page.text("(per-anchor {} / {} / {} against {} / {} / {};", *sub, *cos)
    sub_qs = per_split("task", "subspace", "query_specific_mean")
    cos_qs = per_split("task", "influcoder", "query_specific_mean")
    if not all(a > b for a, b in zip(sub_qs, cos_qs)) or not all(a > b for a, b in zip(sub, cos)):
        page.fail("'better on every seed'", "claimed", "not so in objectives.json")
    seen = {m: {k: per_split("random", m, k)[0] for k in METRICS} for m in ("subspace", "influcoder")}
    page.text(
        "(per-anchor {} against {}, query-specific {} against {}, mean-aggregated {} against {})",
        seen["subspace"]["per_anchor_mean"], seen["influcoder"]["per_anchor_mean"],
        seen["subspace"]["query_specific_mean"], seen["influcoder"]["query_specific_mean"],
        seen["subspace"]["mean_aggregated"], seen["influcoder"]["mean_aggregated"],
    )  # fmt: skip
    page.done()


METRICS = ("per_anchor_mean", "mean_aggregated", "query_specific_mean")


@check(
    f"{DOCS}/serve.md",
    *(f"{BENCH}/serve_{n}.md" for n in ("load", "soak", "subspace", "subspace_soak")),
    f"{BENCH}/serve_subspace_soak-before-fix.md",
)
def serve_load(checker: Checker) -> None:
    """`influcoder serve` under load: each record's tables re-rendered by benchmarks/serve_load.py `markdown`,
    the page's prose figures recomputed from the same records."""
    render = checker.script("benchmarks/serve_load.py")["markdown"]
    page = checker.page(f"{DOCS}/serve.md")
    records = {}
    for name in ("serve_load", "serve_soak", "serve_subspace", "serve_subspace_soak"):
        records[name] = record = checker.json(f"{BENCH}/{name}.json")
        raw = checker.page(f"{BENCH}/{name}.md")
        raw.rendered(render(record), f"benchmarks/serve_load.py markdown({name}.json)")
        raw.done()
    every = "\n".join(render(r) for r in records.values())  # one header for all: matched in order
    page.rendered(every, "benchmarks/serve_load.py markdown(serve_*.json)")
    load, soak = records["serve_load"]["phases"], records["serve_soak"]["phases"][0]
    series = soak["rss_series"]
    warm = next(mb for t, mb in series if t >= 10)
    page.text("({} MB at\nstart, {} MB after 10 s)", series[0][1], warm)
    page.text("+{}% from 10 s to the end of the 10 minutes", 100 * (series[-1][1] - warm) / warm)
    one = next(p for p in load if p["clients"] == 1)
    page.text("**met** ({} ms; p99 {} ms)", one["latency_ms"]["p50"], one["latency_ms"]["p99"])
    by_clients = {p["clients"]: p for p in load}
    page.text("({} queries/s; {} at 8 clients)", by_clients[32]["queries_per_s"], by_clients[8]["queries_per_s"])
    requests = sum(p["requests"] for p in [*load, soak])
    if any(p["errors"] for p in [*load, soak]):
        page.fail("0 errors", "claimed", "errors in the records")
    page.text("(0 errors in {} requests", requests)
    page.text("it grows {}%", soak["server_rss_mb"]["growth_pct"])
    checks = records["serve_load"]
    if not (checks["check_cli"]["same_answers"] and checks["kill_restart"]["same_answers"]):
        page.fail("identical answers", "claimed", "not so in serve_load.json")
    exact = next(p for p in records["serve_subspace"]["phases"] if p["clients"] == 1)
    page.text("A query then takes {} ms at 1 client (p50), about {} times", exact["latency_ms"]["p50"],
              exact["latency_ms"]["p50"] / one["latency_ms"]["p50"])  # fmt: skip
    if not records["serve_subspace"]["check_cli"]["same_answers"]:
        page.fail("answers equal attribute's (subspace)", "claimed", "not so in serve_subspace.json")
    series = records["serve_subspace_soak"]["phases"][0]["rss_series"]
    warm = next(mb for t, mb in series if t >= 10)
    after = [mb for t, mb in series if t >= 10]
    before_name = "serve_subspace_soak-before-fix"
    before = checker.json(f"{BENCH}/{before_name}.json")
    raw = checker.page(f"{BENCH}/{before_name}.md")
    raw.rendered(render(before), f"benchmarks/serve_load.py markdown({before_name}.json)")
    raw.done()
    old_series = before["phases"][0]["rss_series"]
    page.text("before the fix, grew from {} to {} MB over its last 110 s",
              next(mb for t, mb in old_series if t >= 10), old_series[-1][1])  # fmt: skip
    template = "it reaches {} MB after 10 s and ends at {} MB (+{}% from 10 s on; its\nhighest reading after 10 s is"
    template += " {} MB)"
    page.text(template, warm, series[-1][1], 100 * (series[-1][1] - warm) / warm, max(after))
    page.done()


@check(f"{DOCS}/toxicity-report/results.md")
def toxicity_report(checker: Checker) -> None:
    page = checker.page(f"{DOCS}/toxicity-report/results.md")
    constants = checker.script("src/influcoder/experiments/toxicity.py")
    render = checker.script("src/influcoder/experiments/toxicity_report.py", DROP_FRACTIONS=constants["DROP_FRACTIONS"])
    record = checker.json(f"{DOCS}/toxicity-report/results.json")
    summary = render["summarize"](record["replicates"])
    for variant, methods in summary.items():  # the committed summary is what the replicates give
        for method, entry in methods.items():
            kept = record["summary"][variant][method]
            for key, value in entry.items():
                if isinstance(value, float) and not math.isclose(value, kept[key], rel_tol=1e-9, abs_tol=1e-12):
                    page.fail(
                        f"results.json summary {variant}/{method}/{key}",
                        f"{kept[key]}",
                        f"{value} (from its replicates)",
                    )
    for replicate in record["replicates"]:  # and the replicates are the archived ones
        archived = checker.json(f"{DOCS}/toxicity-runs/{replicate['variant']}-seed{replicate['seed']}/results.json")
        if archived["methods"] != replicate["methods"]:
            page.fail(
                f"results.json replicate {replicate['variant']} seed {replicate['seed']}",
                "its methods",
                "those of toxicity-runs/",
            )
    page.rendered(
        render["markdown"](summary, record["replicates"]),
        "influcoder.experiments.toxicity_report markdown(results.json)",
    )
    page.done()


# ----------------------------------------------------------------------------------------------------------------
# benchmarks/results: re-rendered where the benchmark has a rendering function


def command_args(command: str, flag: str) -> list[str]:
    """The values after `flag` in a recorded command line (up to the next option)."""
    words = shlex.split(command)
    if flag not in words:
        return []
    values = []
    for word in words[words.index(flag) + 1 :]:
        if word.startswith("--"):
            break
        values.append(word)
    return values


@check(f"{BENCH}/scale.md", f"{BENCH}/scale-distill.md")
def scale_results(checker: Checker) -> None:
    render = checker.script("benchmarks/scale.py")["markdown"]
    for name in ("scale", "scale-distill"):
        report = checker.json(f"{BENCH}/{name}.json")
        flags = ("--sizes", "--label-sizes", "--distill-sizes")
        sizes = sorted({int(v) for flag in flags for v in command_args(report["command"], flag)})
        if "--label-sizes" not in report["command"] and "label" in report["steps"]:
            sizes = sorted({*sizes, *(int(n) for n in report["steps"]["label"]["by_size"])})
        page = checker.page(f"{BENCH}/{name}.md")
        page.rendered(render(report, sizes), "benchmarks/scale.py markdown")
        page.done()


@check(f"{BENCH}/generalization/results.md")
def generalization_results(checker: Checker) -> None:
    page = checker.page(f"{BENCH}/generalization/results.md")
    script = checker.script("benchmarks/generalization.py")
    record = checker.json(f"{BENCH}/generalization/results.json")
    summary = script["summarize"](record["runs"])
    if json.loads(json.dumps(summary)) != record["summary"]:
        page.fail("results.json summary", "(as committed)", "summarize(runs) of the same file")
    text = script["markdown"](summary, record["command"], len(record["runs"])) + script["forgetting_table"](
        record["runs"]
    )
    page.rendered(text, "benchmarks/generalization.py markdown + forgetting_table")
    page.text("{} runs; mean ± sample sd (ddof 1) over seeds", len(record["runs"]))
    page.done()


@check(f"{BENCH}/pool_offset/pool_offset.md")
def pool_offset(checker: Checker) -> None:
    page = checker.page(f"{BENCH}/pool_offset/pool_offset.md")
    script = checker.script("benchmarks/pool_offset.py")
    record = checker.json(f"{BENCH}/pool_offset/pool_offset.json")
    seeds = [s_["seed"] for s_ in record["splits"]]
    text = script["markdown"](record["variance"], record["splits"], record["command"])
    text += script["predictors_markdown"](record["predictors"], seeds) + script["mixed_markdown"](record["mixed"])
    page.rendered(text, "benchmarks/pool_offset.py markdown")
    shares = record["variance"]
    page.text(
        "Pool offset: {}% of the labels' variance (query offset {}%), {}% of what is left",
        pct(shares["pool_offset_share"]),
        pct(shares["query_offset_share"]),
        pct(shares["pool_offset_share_within_queries"]),
    )
    page.text("{}% of the pool offset's variance lies between tasks", pct(shares["between_group_share_of_pool_offset"]))
    page.done()


@check(f"{BENCH}/toxicity_encoder.md")
def toxicity_encoder(checker: Checker) -> None:
    page = checker.page(f"{BENCH}/toxicity_encoder.md")
    record = checker.json(f"{BENCH}/toxicity_encoder.json")
    render = checker.script("benchmarks/toxicity_encoder.py")["markdown"]
    page.rendered(
        render(record["replicates"], record["command"], record["machine"]), "benchmarks/toxicity_encoder.py markdown"
    )
    page.done()


@check(f"{BENCH}/distill-memory.md")
def distill_memory(checker: Checker) -> None:
    page = checker.page(f"{BENCH}/distill-memory.md")
    render = checker.script("benchmarks/distill_memory.py")["table"]
    page.rendered(render(checker.json(f"{BENCH}/distill-memory.json")["runs"]), "benchmarks/distill_memory.py table")
    page.done()


@check(f"{BENCH}/toxicity_dev.md", f"{BENCH}/toxicity_dev-epochs10.md", f"{BENCH}/toxicity_dev-unsafe.md")
def toxicity_dev(checker: Checker) -> None:
    render = checker.script("benchmarks/toxicity_dev.py")["table"]
    for name in ("toxicity_dev", "toxicity_dev-epochs10", "toxicity_dev-unsafe"):
        page = checker.page(f"{BENCH}/{name}.md")
        record = checker.json(f"{BENCH}/{name}.json")
        if all("recall_at_5pct_mean" in r for r in record["rows"]):
            page.rendered("\n".join(render(record["rows"])), "benchmarks/toxicity_dev.py table")
        else:  # written before the table had its recall column: the same cells, one fewer
            rows = [
                (
                    r["encoder"],
                    [(r["auprc_mean"], r["auprc_std"]), r["auprc_all_unsafe"], r["median_unsafe_percentile"]],
                )
                for r in record["rows"]
            ]
            page.table("| encoder |", rows, label="development set (written before the recall column)")
        page.text("{} benign + {} unsafe pairs", record["pool"]["benign"], record["pool"]["unsafe"])
        page.done()


# ----------------------------------------------------------------------------------------------------------------
# benchmarks/results: explicit, each the table its benchmark writes inline (in main()), recomputed the same way

DISTILL_RUNS = [
    "distill", "distill-balanced-centred1000", "distill-balanced-mean1000", "distill-balanced-meanresp1000",
    "distill-balanced-meanresp2057", "distill-balanced-meanresp3262", "distill-skewed-hard5", "distill-skewed-lr1e-4",
    "distill-skewed-meanresp", "distill-skewed-pool1000", "distill-skewed-pool3000",
]  # fmt: skip


def distill_tables(checker: Checker, record: dict) -> str:
    """benchmarks/distill.py's tables of one run (its main() writes them inline; per_group_table is its own)."""
    lines = ["| model | per-anchor rho (mean +- std) | mean-aggregated rho |", "|---|---|---|"]
    for name, r in record["results"].items():
        lines.append(
            f"| {name} | {r['per_anchor_mean']:.3f} +- {r['per_anchor_std']:.3f} | {r['mean_aggregated']:.3f} |"
        )
    lines += [
        "",
        "| epoch | loss | Pearson loss | KL loss | val per-anchor rho | val mean-agg rho | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in record["epochs"]:
        lines.append(
            f"| {e['epoch']} | {e['loss']:.4f} | {e['pearson_loss']:.4f} | {e['kl_loss']:.4f} "
            f"| {e['val_per_anchor']:.3f} | {e['val_mean_aggregated']:.3f} | {e['seconds']:.0f} |"
        )
    results = record["results"]
    if "per_group" in next(iter(results.values())):
        per_group = checker.script("src/influcoder/evaluation/evaluate.py")["per_group_table"]
        shown = {"distilled (best)": "distilled (best on validation)", "untrained": "untrained MiniLM-L6 (Semantic)"}
        shown["oracle"] = "reference: true pool-mean influence (oracle, query-agnostic)"
        lines += [""] + per_group(
            {column: results[name] for column, name in shown.items()}, results[shown["distilled (best)"]]["group_by"]
        )
    return "\n".join(lines) + "\n"


def distill_summary_cells(record: dict) -> list[Spec]:
    best = record["results"]["distilled (best on validation)"]
    settings = record["settings"]
    return [
        (record["train_pool"], record["train_queries"]),
        settings["lr"],
        settings["pooling"],
        len(record["epochs"]),
        record["train_seconds"] / 60,
        max(e["val_per_anchor"] for e in record["epochs"]),
        (best["per_anchor_mean"], best["per_anchor_std"]),
        best["mean_aggregated"],
        SKIP,
    ]


def distill_prose(page: Page, runs: dict[str, dict]) -> None:
    """The figures in benchmarks/results/distill.md's prose, from the runs' JSON."""

    def best(name: str, key: str = "per_anchor_mean", row: str = "distilled (best on validation)") -> float:
        return runs[f"distill-{name}"]["results"][row][key]

    def val(name: str) -> float:
        return max(e["val_per_anchor"] for e in runs[f"distill-{name}"]["epochs"])

    untrained, oracle = "untrained MiniLM-L6 (Semantic)", "reference: true pool-mean influence (oracle, query-agnostic)"
    top = runs["distill-balanced-meanresp3262"]["results"]
    page.text(
        "**not met, by {}** ({}; the standard error of a mean over {} queries with spread {} is about {}",
        0.8 - best("balanced-meanresp3262"),
        best("balanced-meanresp3262"),
        runs["distill-balanced-meanresp3262"]["eval_queries"],
        best("balanced-meanresp3262", "per_anchor_std"),
        best("balanced-meanresp3262", "per_anchor_std")
        / math.sqrt(runs["distill-balanced-meanresp3262"]["eval_queries"]),
    )
    sizes = ("balanced-mean1000", "balanced-meanresp2057", "balanced-meanresp3262")
    page.text(
        "{} (1000) -> {} (2057, 6 epochs) -> {} (3262, 10 epochs), mean-aggregated {} -> {} -> {}; response pooling "
        "alone changes nothing ({} vs {})",
        *(best(n) for n in sizes),
        *(best(n, "mean_aggregated") for n in sizes),
        best("balanced-meanresp1000"),
        best("balanced-mean1000"),
    )
    page.text(
        "validation {} vs {}, held-out {} vs {}",
        val("balanced-centred1000"),
        val("balanced-mean1000"),
        best("balanced-centred1000"),
        best("balanced-mean1000"),
    )
    page.text(
        "On this split the untrained MiniLM scores {} (mean pooling; {} with mean+response)",
        best("balanced-mean1000", row=untrained),
        best("balanced-meanresp3262", row=untrained),
    )
    page.text(
        "0.724 +- 0.235. With 1000 pool samples the encoder predicted each pool sample's query-independent influence "
        "poorly from text (mean-aggregated {} against the oracle's {};",
        best("balanced-mean1000", "mean_aggregated"),
        best("balanced-mean1000", "mean_aggregated", row=oracle),
    )
    encoder, reference = top["distilled (best on validation)"]["per_group"], top[oracle]["per_group"]
    ahead = [g for g in encoder if encoder[g]["per_anchor_mean"] > reference[g]["per_anchor_mean"]]
    behind = max(reference[g]["per_anchor_mean"] - encoder[g]["per_anchor_mean"] for g in encoder if g not in ahead)
    page.text(
        "With 3262 it beats the oracle on {} of {} tasks and trails it by at most {} on the others",
        len(ahead),
        len(encoder),
        behind,
    )
    logical = [encoder[g]["per_anchor_mean"] for g in encoder if g.startswith("logical_deduction")]
    page.text(
        "The weakest tasks are dyck languages ({}), word sorting ({}) and logical deduction ({}-{})",
        encoder["dyck_languages"]["per_anchor_mean"],
        encoder["word_sorting"]["per_anchor_mean"],
        min(logical),
        max(logical),
    )
    page.text(
        "Response pooling lifted validation ({} -> {}) and the untrained baseline ({} -> {})",
        val("skewed-lr1e-4"),
        val("skewed-meanresp"),
        best("skewed-lr1e-4", row=untrained),
        best("skewed-meanresp", row=untrained),
    )


@check(*(f"{BENCH}/{name}.md" for name in DISTILL_RUNS))
def distill_results(checker: Checker) -> None:
    for name in DISTILL_RUNS:
        page = checker.page(f"{BENCH}/{name}.md")
        record = checker.json(f"{BENCH}/{name}.json")
        page.rendered(
            distill_tables(checker, record), "benchmarks/distill.py tables (replicated)", strict=name != "distill"
        )
        if name == "distill":
            if record != checker.json(f"{BENCH}/distill-balanced-meanresp3262.json"):
                page.fail(
                    "distill.json", "(its record)", "the record of distill-balanced-meanresp3262.json (the run on top)"
                )
            runs = {f: checker.json(f"{BENCH}/{f}.json") for f in DISTILL_RUNS}
            balanced = [
                ("lr 1e-4, mean pooling", "distill-balanced-mean1000"),
                ("response pooling alone", "distill-balanced-meanresp1000"),
                ("Pearson on per-query-centred batches", "distill-balanced-centred1000"),
                ("+ 1057 more same-task pool", "distill-balanced-meanresp2057"),
                ("+ 1205 more same-task pool", "distill-balanced-meanresp3262"),
            ]
            page.table(
                "## Runs on the balanced query set",
                [(k, distill_summary_cells(runs[f])) for k, f in balanced],
                label="balanced query set",
            )
            skewed = [
                ("paper defaults, session 1", distill_summary_cells(runs["distill-skewed-pool1000"])),
                ("paper defaults, lr 1e-4", distill_summary_cells(runs["distill-skewed-lr1e-4"])),
                ("3x the pool", distill_summary_cells(runs["distill-skewed-pool3000"])),
                ("hard candidates 5 of the 15", distill_summary_cells(runs["distill-skewed-hard5"])),
                ("response pooling", distill_summary_cells(runs["distill-skewed-meanresp"])),
            ]
            page.table("## Earlier runs, on the skewed query set", skewed, label="skewed query set")
            distill_prose(page, runs)
        page.done()


@check(f"{BENCH}/encoder_speed.md", f"{BENCH}/encoder_speed-1thread.md")
def encoder_speed(checker: Checker) -> None:
    for name in ("encoder_speed", "encoder_speed-1thread"):
        page = checker.page(f"{BENCH}/{name}.md")
        record = checker.json(f"{BENCH}/{name}.json")
        lines = [
            "| backend | encodes/s | x legacy | x gradient labels | per-anchor rho | rho / float |",
            "|---|---|---|---|---|---|",
        ]
        for backend, r in record["backends"].items():
            lines.append(
                f"| {backend} | {r['encodes_per_s']:.1f} | {r['speed_vs_legacy']:.2f} | {r['vs_gradients']:.1f} | "
                f"{r['per_anchor_rho']:.3f} | {r['rho_vs_float']:.3f} |"
            )
        page.rendered("\n".join(lines), "benchmarks/encoder_speed.py table (replicated)")
        page.text(
            "Gradient labels on the same machine: {} samples/s ({} texts)",
            record["gradient_samples_per_s"],
            record["gradient_samples"],
        )
        page.text("({} texts timed,", record["n_texts"])
        page.done()


@check(f"{BENCH}/finetune-speed.md")
def finetune_speed(checker: Checker) -> None:
    page = checker.page(f"{BENCH}/finetune-speed.md")
    record = checker.json(f"{BENCH}/finetune-speed.json")
    median = record["median_seconds_per_step"]
    page.rendered(
        f"| LoRA layers | s per step |\n|---|---|\n| fused | {median['fused']:.2f} |\n| peft | {median['peft']:.2f} |",
        "benchmarks/finetune_speed.py table (replicated)",
    )
    page.text(
        "Fused: {}x; largest loss difference between the two runs {}.",
        record["fused_speedup"],
        record["max_loss_difference"],
    )
    page.done()


@check(f"{BENCH}/hostile_inputs.md")
def hostile_inputs(checker: Checker) -> None:
    page = checker.page(f"{BENCH}/hostile_inputs.md")
    record = checker.json(f"{BENCH}/hostile_inputs.json")
    rows = record["cases"]
    script = checker.script("benchmarks/hostile_inputs.py")
    page.rendered("\n".join(script["table"](rows)), "benchmarks/hostile_inputs.py table(hostile_inputs.json)")
    page.text("# Hostile inputs: {} of {} as expected", sum(script["as_expected"](r) for r in rows), len(rows))
    page.done()


@check(f"{BENCH}/index.md")
def index_results(checker: Checker) -> None:
    page = checker.page(f"{BENCH}/index.md")
    report = checker.json(f"{BENCH}/index.json")
    f = report["featurization"]
    script = checker.script("benchmarks/index.py")
    lines = [*script["featurization_table"](f), "", *script["search_table"](report["search"])]
    page.rendered("\n".join(lines), "benchmarks/index.py featurization_table + search_table(index.json)")
    page.text(
        "Speed ratio {}x vs FLOP ratio {}x: the encoder reaches {} of its FLOP advantage",
        f["speed_ratio"],
        f["flop_ratio"],
        f["speed_over_flop_ratio"],
    )
    b, m = report["bytes_per_sample"], f["bytes_per_sample_measured"]
    page.text(
        "influcoder float16 embedding {} vs LESS 8,192 x fp16 gradient features {} ({}x)",
        b["influcoder_embedding_fp16"],
        b["less_8192_fp16"],
        b["less_8192_fp16"] / b["influcoder_embedding_fp16"],
    )
    page.text(
        "influcoder index {} B/sample, gradient store 8,192 x fp16 {} B/sample",
        m["influcoder_index_fp16"],
        m["gradient_store_8192_fp16"],
    )
    page.done()


KILL_RESUME_RUNS = ("kill_resume", "kill_resume-subspace-before-fix", "kill_resume-subspace")


@check(*(f"{BENCH}/{name}.md" for name in KILL_RESUME_RUNS))
def kill_resume(checker: Checker) -> None:
    """The mid-output benchmark's runs: each page re-rendered whole by the script's own `markdown(result)`."""
    script = checker.script("benchmarks/kill_resume.py")
    for name in KILL_RESUME_RUNS:
        page = checker.page(f"{BENCH}/{name}.md")
        rendered = script["markdown"](checker.json(f"{BENCH}/{name}.json"))
        page.rendered(rendered, f"benchmarks/kill_resume.py markdown({name}.json)")
        for number, (shown, expected) in enumerate(zip(page.lines, rendered.splitlines()), 1):
            if shown != expected and not shown.startswith("|"):  # the prose too: the page is the renderer's
                page.fail(f"line {number}", shown[:100], expected[:100] + " (benchmarks/kill_resume.py markdown)")
        page.prose_checked.append((0, len(page.prose)))
        page.done()


@check(f"{BENCH}/kill_resume-seed0.md", f"{BENCH}/kill_resume-seed2.md")
def kill_resume_before(checker: Checker) -> None:
    """The two earlier runs (random delays, every kill counted whatever was on disk: benchmarks/kill_resume.py
    before 2026-12-07), their table replicated from that version."""
    for name in ("kill_resume-seed0", "kill_resume-seed2"):
        page = checker.page(f"{BENCH}/{name}.md")
        result = checker.json(f"{BENCH}/{name}.json")
        lines = [
            "| # | stage | SIGKILL after (s) | files on disk at kill | rerun rc | identical to uninterrupted "
            "| left over "
            "|",
            "|---|---|---|---|---|---|---|",
        ]
        for i, t in enumerate(result["trials"], 1):
            when = f"{t['kill_after_s']}" if t["killed"] else f"{t['kill_after_s']} (had finished)"
            verdict = "yes" if t["identical"] else "; ".join(t["problems"])
            lines.append(
                f"| {i} | {t['stage']} | {when} | {t['files_at_kill']} | {t['rerun_rc']} | {verdict} | "
                f"{', '.join(t['temporaries_left']) or '-'} |"
            )
        page.rendered("\n".join(lines), "benchmarks/kill_resume.py table of before 2026-12-07 (replicated)")
        page.text(
            "# Kill and resume: {} of {} SIGKILLed runs resumed to identical outputs",
            result["identical_after_kill"],
            result["killed"],
        )
        seconds = result["reference_seconds"]
        page.text(
            "uninterrupted: label {} s, distill {} s, index {} s",
            seconds["label"],
            seconds["distill"],
            seconds["index"],
        )
        page.done()


@check(f"{BENCH}/labels.md", f"{BENCH}/labels-fused.md", f"{BENCH}/labels-memory.md")
def labels_results(checker: Checker) -> None:
    for name in ("labels", "labels-fused", "labels-memory"):
        page = checker.page(f"{BENCH}/{name}.md")
        report = checker.json(f"{BENCH}/{name}.json")
        rows = []
        for r in report["modes"]:
            tokens = [r["batch_tokens"]] if "batch_tokens" in r else []
            rows.append(
                (
                    r.get("label", r["mode"]),
                    [*tokens, r["samples_per_s"], r["gflop_per_sample"], r["achieved_gflops"], r["peak_rss_mb"]],
                )
            )
        page.table("Command:", rows, label="labelling modes (benchmarks/labels.py writes it in main())")
        batched = next(r for r in report["modes"] if r["mode"] == "batched")
        page.text(
            "fp32 matmul {} GFLOP/s, so the ceiling at {} GFLOP/sample is {} samples/s",
            report["matmul_gflops_fp32"],
            batched["gflop_per_sample"],
            report["ceiling_samples_per_s"],
        )
        page.text("Batched path: {} of the ceiling", report["batched_fraction_of_ceiling"])
        for key, words in (
            ("batched_over_loop", "x the loop"),
            ("batched_over_hooks", "x the hooked peft layers"),
            ("batched_over_plain", "x plain forward+backward"),
        ):
            if key in report:
                page.text("{}" + words, report[key])
        page.text("LoRA gradient dim {}.", batched["lora_in_dim"])
        page.done()


@check(f"{BENCH}/labels-gemm-bound.md")
def labels_gemm_bound(checker: Checker) -> None:
    page = checker.page(f"{BENCH}/labels-gemm-bound.md")
    r = checker.json(f"{BENCH}/labels-gemm-bound.json")
    pass_rate = r["gemm_gflop"] / r["pass_seconds"]
    page.table(
        "Command:",
        [
            ("labelling pass", [r["pass_seconds"], r["gemm_gflop"], pass_rate, r["pass_fraction_of_ceiling"]]),
            (
                "products alone",
                [r["gemm_seconds_alone"], r["gemm_gflop"], r["gemm_gflops_alone"], r["bound_fraction_of_ceiling"]],
            ),
        ],
        label="labelling pass against its products",
    )
    calls = sum(p_["count"] for p_ in r["products"])
    page.text("| its {} products alone ({} distinct)", calls, r["distinct_products"])
    by_kind = sorted(r["by_kind"].items(), key=lambda kv: -kv[1]["seconds"])
    page.table(
        "Command:",
        [
            (kind, [op["calls"], op["gflop"], op["seconds"], op["gflop"] / op["seconds"] if op["seconds"] else 0.0])
            for kind, op in by_kind
        ],
        nth=1,
        label="products by kind",
    )
    samples = r["matmul_gflops_samples"]
    page.text(
        "fp32 matmul ceiling {} GFLOP/s (one 2048^3 product, median of 10 before and 10 after: {}-{})",
        r["matmul_gflops_fp32"],
        min(samples),
        max(samples),
    )
    page.done()


@check("docs/labels.md")
def labels_guide(checker: Checker) -> None:
    """docs/labels.md, the labelling guide: its projection, memory and fused-layer tables and its measured figures
    in prose by hand from their records (fidelity.json, labels.json, labels-memory.json, labels-fused.json,
    finetune-speed.json, labels-gemm-bound.json)."""
    page = checker.page("docs/labels.md")
    fidelity = checker.json(f"{BENCH}/fidelity.json")
    page.table(
        "| projector |",
        [
            ("CountSketch", [r["dim"], r["spearman"], r["pearson"], r["max_abs_error"], r["mean_abs_error"]])
            for r in fidelity
        ],
        label="projection fidelity (fidelity.json)",
    )
    page.text("{} gradient coordinates", fidelity[0]["in_dim"])
    page.text("{} `evals` samples = {} pairs", fidelity[0]["n_samples"], math.comb(fidelity[0]["n_samples"], 2))
    memory = checker.json(f"{BENCH}/labels-memory.json")
    batched = sorted(
        (r for r in memory["modes"] if r["mode"] == "batched"),
        key=lambda r: (r["attention"] != "eager", -r["batch_tokens"]),
    )
    page.table(
        "The same trade-off inside one process",
        [(str(r["batch_tokens"]), [r["attention"], r["samples_per_s"], r["peak_rss_mb"]]) for r in batched],
        label="batch tokens x attention (labels-memory.json)",
    )
    eager_2048 = next(r for r in batched if r["attention"] == "eager" and r["batch_tokens"] == 2048)
    sdpa_512 = next(r for r in batched if r["attention"] == "sdpa" and r["batch_tokens"] == 512)
    plain = next(r for r in memory["modes"] if r["mode"] == "plain")
    page.text("a run peaks near {} MB RSS inside one process", eager_2048["peak_rss_mb"])
    page.text("a plain forward+backward measured {} in the same run", plain["samples_per_s"])
    page.text("`--batch-tokens 512 --attention sdpa` labels in {} MB", sdpa_512["peak_rss_mb"])
    first = checker.json(f"{BENCH}/labels.json")
    first_modes = {r["mode"]: r for r in first["modes"]}
    page.text(
        "Per-example gradients cost ~{}% over a plain forward+backward",
        pct(first_modes["batched"]["seconds_median"] / first_modes["plain"]["seconds_median"] - 1),
    )
    fused = checker.json(f"{BENCH}/labels-fused.json")
    modes = {r["mode"]: r for r in fused["modes"]}
    page.table(
        "--out benchmarks/results/labels-fused",
        [
            (name, [modes[name]["samples_per_s"], modes[name]["achieved_gflops"], modes[name]["peak_rss_mb"]])
            for name in ("batched", "hooks", "plain")
        ],
        label="fused LoRA layers (labels-fused.json)",
    )
    page.text(
        "Labelling is {}x faster than before and now faster than the old floor ({}x a plain forward+backward",
        fused["batched_over_hooks"],
        fused["batched_over_plain"],
    )
    page.text("with {}% less peak memory", pct(1 - modes["batched"]["peak_rss_mb"] / modes["hooks"]["peak_rss_mb"]))
    page.text(
        "its fp32 matmul runs at {} GFLOP/s at 2048, against {} in the run of the memory table above and {} in",
        fused["matmul_gflops_fp32"],
        memory["matmul_gflops_fp32"],
        first["matmul_gflops_fp32"],
    )
    page.text(
        "it reaches {} (the hooked path {})",
        fused["batched_fraction_of_ceiling"],
        modes["hooks"]["samples_per_s"] / fused["ceiling_samples_per_s"],
    )
    tuned = checker.json(f"{BENCH}/finetune-speed.json")
    page.text(
        "zero; {} largest loss difference on the real decoder), {}x faster per step ({} s against {} s, {} steps "
        "of {} at",
        tuned["max_loss_difference"],
        tuned["fused_speedup"],
        tuned["median_seconds_per_step"]["fused"],
        tuned["median_seconds_per_step"]["peft"],
        tuned["steps"],
        tuned["n"] / tuned["steps"],
    )
    bound = checker.json(f"{BENCH}/labels-gemm-bound.json")
    kinds = bound["by_kind"]
    flops, seconds = sum(k["gflop"] for k in kinds.values()), sum(k["seconds"] for k in kinds.values())
    linear, lora = kinds["decoder linear layers"], kinds["LoRA and per-example gradients (rank-r side)"]
    ceiling, samples = bound["matmul_gflops_fp32"], bound["matmul_gflops_samples"]
    page.text(
        "({} calls of {} shapes for {} `evals` samples",
        sum(p_["count"] for p_ in bound["products"]),
        bound["distinct_products"],
        bound["n"],
    )
    page.text(
        "the twenty 2048^3 samples of the recorded run spread {}-{} GFLOP/s, and its ceiling is their median, {} "
        "GFLOP/s",
        min(samples),
        max(samples),
        ceiling,
    )
    if len(samples) != 20 or not math.isclose(ceiling, float(np.median(samples))):
        page.fail("sentence 'the twenty 2048^3 samples ... their median'", "twenty, median", f"{len(samples)} samples")
    page.text(
        "In the recorded run the labelling pass reached {} of the ceiling and its matrix products alone **{}** ({}-{} "
        "against the fastest and the slowest of the twenty samples); the products took {}% of the pass's time",
        bound["pass_fraction_of_ceiling"],
        bound["bound_fraction_of_ceiling"],
        bound["gemm_gflops_alone"] / max(samples),
        bound["gemm_gflops_alone"] / min(samples),
        pct(bound["gemm_share_of_pass"]),
    )
    page.text("the products themselves land at {}.", bound["bound_fraction_of_ceiling"])
    page.text(
        "attention's batched products (head dim 64) at {};",
        kinds["attention (scores and values)"]["gflop"] / kinds["attention (scores and values)"]["seconds"] / ceiling,
    )
    head = kinds["LM head (response positions)"]
    page.text("the LM head's products run alone at {} of the ceiling", head["gflop"] / head["seconds"] / ceiling)
    page.text(
        "the decoder's linear layers carry {}% of the FLOPs and run alone at {} of that run's ceiling",
        pct(linear["gflop"] / flops),
        linear["gflop"] / linear["seconds"] / bound["matmul_gflops_fp32"],
    )
    page.text(
        "(one side of width r = 8) at {}, though they hold {}% of the FLOPs and ~{}% of the products' time",
        lora["gflop"] / lora["seconds"] / bound["matmul_gflops_fp32"],
        pct(lora["gflop"] / flops),
        pct(lora["seconds"] / seconds),
    )
    page.done()


@check(f"{BENCH}/less_momentum.md", f"{BENCH}/less_momentum-warmup-step26.md")
def less_momentum(checker: Checker) -> None:
    for name in ("less_momentum", "less_momentum-warmup-step26"):
        page = checker.page(f"{BENCH}/{name}.md")
        report = checker.json(f"{BENCH}/{name}.json")
        a, c = report["auprc"], report["cosine_update_vs_shared_momentum"]
        rows = [("all LoRA blocks", [a["all"]["plain"], a["all"]["adam"], 1, 1])]
        rows += [
            (f"{k} only", [a[k]["plain"], a[k]["adam"], a[k]["share_of_update_norm2"], a[k]["share_of_gradient_norm2"]])
            for k in a
            if k != "all"
        ]
        page.table("Subset:", rows, label="AUPRC of the plain gradient and of the Adam update")
        page.text("median {} (quartiles {}, {})", c["median"], *c["quartiles"])
        page.text(
            "Subset: {} unsafe of {} pool pairs (chance AUPRC {})",
            report["subset"]["unsafe"],
            report["subset"]["n"],
            report["subset"]["chance"],
        )
        page.text("({} s).", report["seconds"])
        page.done()


@check(f"{BENCH}/protocols-demo.md")
def protocols_demo(checker: Checker) -> None:
    page = checker.page(f"{BENCH}/protocols-demo.md")
    runs = {p_: checker.json(f"{BENCH}/protocols-demo-{p_}.json") for p_ in ("random", "task")}
    rows = []
    for protocol, methods in runs.items():
        for method, r in methods.items():
            rows.append(
                (
                    protocol,
                    [
                        method,
                        (r["per_anchor_mean"], r["per_anchor_std"]),
                        r["mean_aggregated"],
                        r["query_specific_mean"],
                        r["encode_ms_per_sample"],
                    ],
                )
            )
    page.table("ms/sample is the scoring wall time", rows, label="both protocols (protocols-demo-{random,task}.json)")
    flops = checker.json(f"{BENCH}/protocols-demo-random-flops.json")
    base = flops["distilled"]["flops_per_sample"]
    rows = []
    for method, r in flops.items():
        counted = r.get("flops_per_sample")
        cells: list[Spec] = [counted / 1e9, counted / base] if counted else ["not counted", "-"]
        rows.append((method, [*cells, r["encode_ms_per_sample"]]))
    page.table("## Cost per scored sample", rows, label="FLOPs (protocols-demo-random-flops.json)")
    r, t = runs["random"], runs["task"]
    page.text(
        "On seen tasks the encoder ({}) is far ahead of every non-gradient method (TF-IDF {}, Rep-Sim "
        "{}, RDS+ {}, untrained "
        "{}), but below the query-agnostic pool-mean reference ({})",
        *(r[m]["per_anchor_mean"] for m in ("distilled", "tfidf", "repsim", "rds+", "untrained", "pool-mean")),
    )
    page.text("(query-specific {} vs LESS {})", r["distilled"]["query_specific_mean"], r["less"]["query_specific_mean"])
    page.text(
        "On unseen tasks it falls to {}, below TF-IDF ({}) and Rep-Sim ({})",
        *(t[m]["per_anchor_mean"] for m in ("distilled", "tfidf", "repsim")),
    )
    page.text(
        "Rademacher 8,192 instead of CountSketch 32,768: {}-{}, at ~{}x the encoder's time per sample",
        t["less"]["per_anchor_mean"],
        r["less"]["per_anchor_mean"],
        np.mean([x["less"]["encode_ms_per_sample"] / x["distilled"]["encode_ms_per_sample"] for x in (r, t)]),
    )
    page.done()


# ----------------------------------------------------------------------------------------------------------------
# --tasks: the unsafe ranks and top-20 strings of docs/results/toxicity.md. They come from the archived pool scores
# (toxicity-runs/*/pool-scores.npz) and the sample types of each replicate's pool, which only a rebuilt task has
# (`replicate_task`: minutes, and the embedded data assets), so this check runs on request, not in make check-docs.


def compressed(ranks: Sequence[int]) -> tuple[str, list[int]]:
    """The page's way of writing ranks: a run of 3 or more as "a-b", others one by one; as a template for
    `Page.text` and its numbers."""
    parts, values, i = [], [], 0
    while i < len(ranks):
        j = i
        while j + 1 < len(ranks) and ranks[j + 1] == ranks[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append("{}-{}")
            values += [ranks[i], ranks[j]]
            i = j + 1
        else:
            parts.append("{}")
            values.append(ranks[i])
            i += 1
    return ", ".join(parts), values


def toxicity_tasks(checker: Checker) -> None:
    from influcoder.experiments.toxicity_archive import replicate_pool_scores, replicate_task

    page = checker.page(f"{DOCS}/toxicity.md")
    found: dict[str, dict[str, tuple[str, list[int], int]]] = {}
    pool_types: dict[str, np.ndarray] = {}
    for name in REPLICATES:
        directory = checker.path(f"{DOCS}/toxicity-runs/{name}")
        types = pool_types[name] = np.array([sample.meta["type"] for sample in replicate_task(directory).pool])
        found[name] = {}
        for method in ("influcoder", "gradsim", "semantic", "less"):
            order = np.argsort(-replicate_pool_scores(directory, method), kind="stable")
            top = "".join(t[0] for t in types[order[:20]])
            ranks = [int(i) for i in np.flatnonzero(types[order] == "unsafe")]
            found[name][method] = (top, ranks, int((types[order[:20]] == "safety").sum()))

    def ranks(name: str, method: str, shown: int | None = None) -> tuple[str, list[int]]:
        listed = found[name][method][1][:shown] if shown else found[name][method][1]
        template, values = compressed(listed)
        return template + (", ..." if shown else ""), values

    def sentence(*parts: tuple[str, list[int]] | str) -> None:
        template, values = "", []
        for part in parts:
            text, numbers_ = (part, []) if isinstance(part, str) else part
            template += text
            values += numbers_
        page.text(template, *values, label=template[:40])

    h0 = found["het-seed0"]
    for method, tail in (("gradsim", ""), ("influcoder", " (160 pairs)")):
        sentence(f"{method} {h0[method][0]} unsafe ranks ", ranks("het-seed0", method), tail)
    sentence(f"less {h0['less'][0]} semantic {h0['semantic'][0]} (topic matching")
    sentence(
        "Unsafe ranks (of 2,015): gradsim ",
        ranks("hom-seed0", "gradsim"),
        "; influcoder ",
        ranks("hom-seed0", "influcoder"),
        ("; less's first unsafe pair at rank {}", [found["hom-seed0"]["less"][1][0]]),
    )
    sentence(
        "Unsafe ranks: influcoder ",
        ranks("het-seed1", "influcoder"),
        "; gradsim ",
        ranks("het-seed1", "gradsim", 10),
        "; semantic ",
        ranks("het-seed1", "semantic", 6),
        (" (with {} safety-aligned refusals in its top 20)", [found["het-seed1"]["semantic"][2]]),
    )
    sentence(
        "Unsafe ranks (of 2,015): influcoder ",
        ranks("hom-seed1", "influcoder"),
        "; semantic ",
        ranks("hom-seed1", "semantic"),
        "; gradsim ",
        ranks("hom-seed1", "gradsim", 10),
        "; less ",
        ranks("hom-seed1", "less", 3),
    )
    sentence(
        "Unsafe ranks (of 2,045): influcoder ",
        ranks("het-seed2", "influcoder"),
        "; gradsim ",
        ranks("het-seed2", "gradsim", 10),
        "; semantic ",
        ranks("het-seed2", "semantic", 5),
        (" ({} safety-aligned refusals in its top 20, none in the encoder's)", [found["het-seed2"]["semantic"][2]]),
    )
    if found["het-seed2"]["influcoder"][2]:
        page.fail(
            "het seed 2: 'none in the encoder's' top 20",
            "none",
            f"{found['het-seed2']['influcoder'][2]} safety-aligned",
        )
    sentence(
        "Unsafe ranks (of 2,015): influcoder ",
        ranks("hom-seed2", "influcoder"),
        "; gradsim ",
        ranks("hom-seed2", "gradsim", 9),
        "; semantic ",
        ranks("hom-seed2", "semantic", 5),
    )
    het2 = found["het-seed2"]["influcoder"][1]
    cut = int(0.05 * 2045)
    page.text(
        "Five unsafe pairs sit within the top {} (ranks {}-{}) and the rest spread from rank {} to {}: the 5% cut ({} "
        "samples) takes three more ({}-{}) and ends before the next group ({}-{})",
        het2[4] + 1,
        0,
        het2[4],
        het2[5],
        het2[-1],
        cut,
        het2[5],
        het2[7],
        het2[8],
        het2[11],
    )
    hom2 = found["hom-seed2"]["influcoder"][1]
    page.text(
        "({} of 15; the 5% cut ends at rank {}, before the next unsafe pair at {})",
        sum(r < int(0.05 * 2015) + 1 for r in hom2),
        int(0.05 * 2015),
        next(r for r in hom2 if r > int(0.05 * 2015)),
    )
    repsim_pool_figures(
        page, pool_types, lambda n, m: replicate_pool_scores(checker.path(f"{DOCS}/toxicity-runs/{n}"), m)
    )
    page.note("unsafe ranks and top-20 strings of six replicates: explicit, from the rebuilt pools (--tasks)")


def repsim_pool_figures(page: Page, pool_types: dict[str, np.ndarray], scores: Callable[[str, str], Any]) -> None:
    """toxicity.md's Rep-Sim figures that need to know which pool rows are unsafe (`pool_types`: each
    replicate's rebuilt pool's `type` per row; `scores(replicate, method)`: its archived pool scores)."""
    types = pool_types["het-seed0"]
    plain = np.asarray(scores("het-seed0", "repsim"))
    page.text(
        "its mean score for the unsafe pairs ({}) is lower than for benign ones ({}) and for the refusals ({})",
        *(float(plain[types == kind].mean()) for kind in ("unsafe", "benign", "safety")),
    )
    types = pool_types["het-seed2"]
    order = np.argsort(-np.asarray(scores("het-seed2", "repsim-last")), kind="stable")
    ranks = [int(i) for i in np.flatnonzero(types[order] == "unsafe")]
    page.text(
        "ten of the {} unsafe pool pairs rank {}-{} of {}, while the other five rank {}, {}, {}, {} and {}",
        len(ranks),
        ranks[5],
        ranks[-1],
        len(types),
        *ranks[:5],
    )
    if len(ranks) != 15:
        page.fail("het seed 2's unsafe pool pairs", "15", str(len(ranks)))


# ----------------------------------------------------------------------------------------------------------------
# the command line


def run(root: Path = ROOT, substitutes: dict[str, Path] | None = None, tasks: bool = False) -> Checker:
    """Run every check on the pages under `root` (`substitutes`: page -> another file to read in its place;
    `tasks`: also the toxicity ranks that need the replicates' pools rebuilt). Returns the checker: its
    `mismatches` are the failures."""
    checker = Checker(Path(root), {k: Path(v) for k, v in (substitutes or {}).items()})
    for page in expected_pages(checker.root):
        if page not in CHECKS:
            checker.mismatches.append(Mismatch(page, "the page", "(no check)", "a check in scripts/check_docs.py"))
    done: set[int] = set()
    for page, function in CHECKS.items():
        if id(function) in done or not (checker.root / page).exists():
            continue
        done.add(id(function))
        function(checker)
    if tasks:
        toxicity_tasks(checker)
    return checker


def expected_pages(root: Path) -> list[str]:
    """Every markdown page of docs/results, and every benchmarks/results page with a JSON of its name beside it."""
    pages = [p for p in (root / DOCS).rglob("*.md")]
    pages += [p for p in (root / BENCH).rglob("*.md") if p.with_suffix(".json").exists()]
    return sorted(str(p.relative_to(root)) for p in pages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this one)")
    parser.add_argument("--unbacked", action="store_true", help="list the figures no committed JSON backs")
    parser.add_argument("--coverage", action="store_true", help="say how each page's tables are checked")
    parser.add_argument(
        "--prose",
        action="store_true",
        help="also list the numbers in each checked page's prose that no sentence check compares (dates, "
        "session / issue / seed / run numbers, code spans and links left out): figures silently unchecked",
    )
    parser.add_argument(
        "--tasks",
        action="store_true",
        help="also check the toxicity page's unsafe ranks against the replicates' pools, rebuilt (minutes; needs "
        "the data assets)",
    )
    args = parser.parse_args(argv)
    checker = run(args.root, tasks=args.tasks)
    if args.coverage:
        for page, hows in sorted(checker.covered.items()):
            print(page)
            for how in hows:
                print(f"  {how}")
    if args.unbacked:
        print("figures no committed JSON backs (not compared):")
        for page, where, why in checker.unbacked:
            print(f"  {page}: {where}: {why}")
    if args.prose:
        print("numbers in prose that no sentence check compares:")
        for page in checker.pages:
            for context in unchecked_prose_numbers(page):
                print(f"  {page.name}: ...{context}...")
    for mismatch in checker.mismatches:
        print(mismatch, file=sys.stderr)
    tables_checked = sum(len(h) for h in checker.covered.values())
    verdict = f"{len(checker.mismatches)} mismatch(es)" if checker.mismatches else "every checked figure matches"
    print(f"check-docs: {len(checker.covered)} pages, {tables_checked} checks; {verdict}")
    return 1 if checker.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
