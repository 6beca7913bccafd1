"""`influcoder attribute --report DIR`: the explorer page with an attribution run's results inside it.

The page is the one `influcoder serve` shows (``static/``), made self-contained: its stylesheet and script
are inlined and the results (the shape of /v1/attribute and /v1/histogram, `influcoder.serve.results`) are
embedded as JSON, so ``DIR/index.html`` opens from a file, offline, and can be mailed or archived with the
run. Writing it needs neither FastAPI nor a server.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from influcoder.attribution.influcoder import Attribution, Influcoder
from influcoder.core.atomic import atomic_output
from influcoder.data.records import Sample
from influcoder.serve.results import (
    DEFAULT_BINS,
    QueryAttribution,
    histogram,
    histogram_record,
    index_summary,
    pool_scores,
    query_flags,
    query_record,
)

log = logging.getLogger(__name__)

PAGE = "index.html"
STYLE_LINK = '<link rel="stylesheet" href="/static/style.css">'
SCRIPT_TAG = '<script src="/static/app.js"></script>'
DATA_TAG = '<script id="influcoder-data" type="application/json">null</script>'
HISTOGRAM_QUERIES = 64
"""Queries scored against the whole pool at once for the histograms (pool rows x this many float32 in memory)."""


def static_text(name: str) -> str:
    return resources.files("influcoder.serve").joinpath("static", name).read_text(encoding="utf-8")


def script_safe(text: str) -> str:
    """`text` safe inside a <script> element: no ``</script>`` or ``<!--`` can end or bend it (in JSON and JS,
    ``\\u003c`` is the same ``<``; the page's own script has no such sequence, which `embed` checks)."""
    return text.replace("<", "\\u003c")


def embed(data: dict[str, Any]) -> str:
    """The explorer page with its style and script inlined and `data` embedded (what the script renders
    instead of showing the query form)."""
    page, script = static_text(PAGE), static_text("app.js")
    if "</script" in script.lower() or "<!--" in script:
        raise ValueError("app.js must not contain '</script' or '<!--': it is inlined into a <script> element")
    for tag in (STYLE_LINK, SCRIPT_TAG, DATA_TAG):
        if page.count(tag) != 1:
            raise ValueError(f"static/{PAGE} must hold {tag!r} exactly once (the report replaces it)")
    payload = script_safe(json.dumps(data, ensure_ascii=False, allow_nan=False))
    page = page.replace(STYLE_LINK, "<style>\n" + static_text("style.css") + "</style>")
    page = page.replace(DATA_TAG, f'<script id="influcoder-data" type="application/json">{payload}</script>')
    return page.replace(SCRIPT_TAG, "<script>\n" + script + "</script>")


def report_data(
    ic: Influcoder,
    queries: Sequence[Sample],
    results: Sequence[Sequence[Attribution]],
    k: int,
    bins: int = DEFAULT_BINS,
) -> dict[str, Any]:
    """What the page renders for an `Influcoder.attribute(queries, k)` call just made on `ic` (its query
    coverage and spread are read from `ic`): per query its text, hits with flags, and whole-pool histogram."""
    reference = ic.coverage_reference
    answers = [
        QueryAttribution(
            query.id,
            list(hits),
            **query_flags(reference, ic.query_coverage.get(query.id), ic.query_spread.get(query.id)),
        )
        for query, hits in zip(queries, results)
    ]
    histograms = []
    for start in range(0, len(queries), HISTOGRAM_QUERIES):
        chunk = list(queries[start : start + HISTOGRAM_QUERIES])
        scores = pool_scores(ic.index_.iter_embeddings(), ic.query_vectors(chunk))
        histograms += [histogram_record(q.id, histogram(scores[:, c], bins)) for c, q in enumerate(chunk)]
    return {
        "mode": "report",
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "k": k,
        "index": index_summary(ic),
        "queries": [{"id": q.id, "prompt": q.prompt, "response": q.response} for q in queries],
        "results": [query_record(answer) for answer in answers],
        "histograms": histograms,
    }


def write_report(
    directory: str | Path,
    ic: Influcoder,
    queries: Sequence[Sample],
    results: Sequence[Sequence[Attribution]],
    k: int,
    bins: int = DEFAULT_BINS,
) -> Path:
    """Write ``directory/index.html`` (atomically) for this attribution run; returns its path."""
    path = Path(directory) / PAGE
    path.parent.mkdir(parents=True, exist_ok=True)
    page = embed(report_data(ic, queries, results, k, bins))
    with atomic_output(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    log.info("report: %s (%d queries)", path, len(queries))
    return path
