// The influcoder explorer: a query form against /v1/ (served), or the results a report embeds (a file).
// Plain DOM, no framework and nothing fetched from elsewhere; every text is set as text, never as HTML.
"use strict";

(function () {
  const BINS = 40;
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (name === "text") node.textContent = value;
      else if (name === "cls") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  const base = (path) => (path ? String(path).split("/").filter(Boolean).pop() : "?");
  const fmt = (value, digits) => (value === null || value === undefined ? "n/a" : Number(value).toFixed(digits));

  function badge(text, kind, title) {
    return el("span", { cls: "badge " + (kind || ""), text: text, title: title });
  }

  function textBlock(prompt, response) {
    return el(
      "div",
      { cls: "text" },
      el("div", { cls: "prompt" }, el("span", { cls: "label", text: "prompt" }), el("span", { text: prompt || "(empty)" })),
      el("div", { cls: "response" }, el("span", { cls: "label", text: "response" }), el("span", { text: response })),
    );
  }

  function summaryText(index) {
    const enc = index.encoder || {};
    const parts = [
      `${Number(index.size).toLocaleString()} pool samples`,
      `dim ${index.dim}`,
      `${index.dtype}, FAISS ${index.index_factory}`,
      `encoder …/${base(enc.path || enc.backbone)} (${enc.fingerprint}, ${index.backend})`,
      `queries ${index.query_side}`,
    ];
    if (index.coverage) parts.push(`${(100 * index.coverage.share_covered).toFixed(1)}% of the pool within coverage`);
    return parts.join(" · ");
  }

  function queryFlags(result) {
    const flags = el("div", { cls: "flags" });
    if (result.covered === false) {
      flags.append(badge(`outside coverage (${fmt(result.coverage, 3)})`, "warn", "the query lies outside what the encoder was distilled on: its scores are less trustworthy"));
    } else if (result.covered === true) {
      flags.append(badge(`within coverage (${fmt(result.coverage, 3)})`, "ok", "mean cosine to the encoder's nearest labelled samples"));
    } else if (result.coverage !== null && result.coverage !== undefined) {
      flags.append(badge(`coverage ${fmt(result.coverage, 3)}`, "", "no calibrated threshold"));
    }
    if (result.confident === false) {
      flags.append(badge(`low spread (${fmt(result.spread, 4)})`, "warn", "scores hardly differ across the pool: the top k is close to arbitrary"));
    } else if (result.confident === true) {
      flags.append(badge(`spread ${fmt(result.spread, 4)}`, "ok", "the query's scores spread over the pool: the ranking means something"));
    } else if (result.spread !== null && result.spread !== undefined) {
      flags.append(badge(`spread ${fmt(result.spread, 4)}`, "", "no calibrated threshold"));
    }
    return flags;
  }

  function metaList(meta) {
    const entries = Object.entries(meta || {}).filter(([key]) => key !== "task");
    if (!entries.length) return null;
    const list = el("dl", { cls: "meta" });
    for (const [key, value] of entries.slice(0, 8)) {
      let shown = typeof value === "string" ? value : JSON.stringify(value);
      if (shown.length > 160) shown = shown.slice(0, 159) + "…";
      list.append(el("dt", { text: key }), el("dd", { text: shown }));
    }
    return list;
  }

  function hitCard(hit, lo, hi) {
    const sample = hit.sample;
    const share = hi > lo ? Math.min(1, Math.max(0, (hit.score - lo) / (hi - lo))) : 1;
    const head = el(
      "div",
      { cls: "hit-head" },
      el("span", { cls: "rank", text: "#" + hit.rank }),
      el("span", { cls: "sample-id", text: sample.id }),
    );
    if (sample.meta && sample.meta.task !== undefined) head.append(badge(String(sample.meta.task), "task", "task"));
    if (hit.covered === false) head.append(badge("outside coverage", "warn", "this sample lies outside what the encoder was distilled on"));
    const score = el(
      "div",
      { cls: "score", title: "predicted influence; the bar spans the pool's lowest to highest score" },
      el("div", { cls: "bar" }, el("div", { cls: "fill", style: `width: ${(100 * share).toFixed(1)}%` })),
      el("span", { cls: "value", text: fmt(hit.score, 4) }),
    );
    const coverage = hit.coverage === null || hit.coverage === undefined ? null : el("div", { cls: "coverage", text: `coverage ${fmt(hit.coverage, 3)}` });
    return el("li", { cls: "hit", "data-id": sample.id, "data-rank": String(hit.rank), "data-score": String(hit.score) }, head, score, textBlock(sample.prompt, sample.response), metaList(sample.meta), coverage);
  }

  function histogramFigure(histogram, hits, size) {
    const width = 640, height = 110, pad = 4;
    const counts = histogram.counts, edges = histogram.edges;
    const lo = edges[0], hi = edges[edges.length - 1];
    const most = Math.max(1, ...counts);
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height + 16}`);
    svg.setAttribute("class", "histogram");
    svg.setAttribute("role", "img");
    const x = (value) => pad + ((value - lo) / (hi - lo || 1)) * (width - 2 * pad);
    const barWidth = (width - 2 * pad) / counts.length;
    counts.forEach((count, i) => {
      const rect = document.createElementNS(ns, "rect");
      const h = (count / most) * (height - pad);
      rect.setAttribute("x", (pad + i * barWidth).toFixed(2));
      rect.setAttribute("y", (height - h).toFixed(2));
      rect.setAttribute("width", Math.max(1, barWidth - 1).toFixed(2));
      rect.setAttribute("height", h.toFixed(2));
      rect.setAttribute("class", "count");
      const tip = document.createElementNS(ns, "title");
      tip.textContent = `${count} samples in [${fmt(edges[i], 4)}, ${fmt(edges[i + 1], 4)})`;
      rect.append(tip);
      svg.append(rect);
    });
    for (const hit of hits) {
      const line = document.createElementNS(ns, "line");
      const at = x(hit.score).toFixed(2);
      line.setAttribute("x1", at);
      line.setAttribute("x2", at);
      line.setAttribute("y1", "0");
      line.setAttribute("y2", String(height));
      line.setAttribute("class", "marker");
      const tip = document.createElementNS(ns, "title");
      tip.textContent = `#${hit.rank} ${hit.sample.id}: ${fmt(hit.score, 4)}`;
      line.append(tip);
      svg.append(line);
    }
    for (const [value, anchor] of [[lo, "start"], [hi, "end"]]) {
      const label = document.createElementNS(ns, "text");
      label.setAttribute("x", String(anchor === "start" ? pad : width - pad));
      label.setAttribute("y", String(height + 13));
      label.setAttribute("text-anchor", anchor);
      label.textContent = fmt(value, 3);
      svg.append(label);
    }
    const caption = el("figcaption", {
      text: `Whole-pool scores of this query (${Number(size).toLocaleString()} samples, mean ${fmt(histogram.mean, 4)}, std ${fmt(histogram.std, 4)}); lines: the hits below.`,
    });
    const figure = el("figure", { cls: "histogram-figure" });
    figure.append(svg, caption);
    return figure;
  }

  function querySection(result, query, histogram, size) {
    const hits = result.hits || [];
    const scores = hits.map((h) => h.score);
    const lo = histogram ? histogram.edges[0] : Math.min(0, ...scores);
    const hi = histogram ? histogram.edges[histogram.edges.length - 1] : Math.max(...scores);
    const head = el("div", { cls: "query-head" }, el("h2", {}, "Query ", el("code", { text: result.id })), queryFlags(result));
    const section = el("section", { cls: "query", "data-query-id": result.id }, head);
    if (query) section.append(textBlock(query.prompt, query.response));
    if (histogram) section.append(histogramFigure(histogram, hits, size));
    const list = el("ol", { cls: "hits" });
    for (const hit of hits) list.append(hitCard(hit, lo, hi));
    section.append(hits.length ? list : el("p", { text: "No hits." }));
    return section;
  }

  function render(data) {
    const results = $("results");
    results.replaceChildren();
    const histograms = {};
    for (const h of data.histograms || []) histograms[h.query_id] = h;
    const queries = {};
    for (const q of data.queries || []) queries[q.id] = q;
    for (const result of data.results) {
      results.append(querySection(result, queries[result.id], histograms[result.id], data.index ? data.index.size : 0));
    }
    results.setAttribute("data-ready", "true");
  }

  function showError(body, status) {
    const message = body && body.error ? body.error : `the server answered ${status}`;
    $("status").textContent = message;
    $("status").className = "error";
    const field = body && body.field ? body.field : "";
    const target = field.endsWith(".prompt") ? "prompt" : field.endsWith(".response") ? "response" : field === "k" ? "k" : null;
    if (target) $(target).classList.add("invalid");
  }

  async function post(path, body) {
    const response = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    let parsed = null;
    try {
      parsed = await response.json();
    } catch (e) {
      parsed = null;
    }
    if (!response.ok) throw { body: parsed, status: response.status };
    return parsed;
  }

  async function submit(event, index) {
    event.preventDefault();
    for (const id of ["prompt", "response", "k"]) $(id).classList.remove("invalid");
    const query = { id: "query", prompt: $("prompt").value, response: $("response").value };
    const k = Number($("k").value);
    $("submit").disabled = true;
    $("status").className = "";
    $("status").textContent = "attributing…";
    $("results").removeAttribute("data-ready");
    const started = performance.now();
    try {
      const [attributed, binned] = await Promise.all([
        post("/v1/attribute", { queries: [query], k: Number.isInteger(k) ? k : $("k").value }),
        post("/v1/histogram", { queries: [query], bins: BINS }),
      ]);
      render({ index: index, queries: [query], results: attributed.results, histograms: binned.histograms });
      $("status").textContent = `${attributed.results[0].hits.length} hits in ${Math.round(performance.now() - started)} ms`;
      if (attributed.results[0].hits.length) $("results").append(auditButton(query, attributed.results[0].hits.length));
    } catch (failure) {
      if (failure && "status" in failure) showError(failure.body, failure.status);
      else showError({ error: "the server could not be reached: " + failure }, 0);
    } finally {
      $("submit").disabled = false;
    }
  }

  function auditButton(query, k) {
    // The exact-gradient check of the shown hits (POST /v1/audit): one decoder pass and backward per hit, so
    // only on request; the server refuses it, saying why, where the labelling decoder is not available.
    const button = el("button", { id: "audit", type: "button", text: "Check these hits against exact gradients" });
    button.addEventListener("click", async () => {
      button.disabled = true;
      $("status").className = "";
      $("status").textContent = "computing exact gradients…";
      try {
        const audited = await post("/v1/audit", { queries: [query], k: k });
        const result = audited.results[0];
        for (const hit of result.hits) {
          const card = document.querySelector(`li.hit[data-id="${CSS.escape(hit.id)}"]`);
          if (card) card.append(el("div", { cls: "exact", "data-exact": String(hit.exact_score), text: `exact gradient cosine ${fmt(hit.exact_score, 4)} (rank ${hit.exact_rank} of ${result.hits.length} by exact)` }));
        }
        const rho = result.spearman === null ? "n/a" : fmt(result.spearman, 3);
        button.replaceWith(el("p", { id: "audit-result", cls: "audit", text: `Spearman of encoder and exact scores over these ${result.hits.length} hits: ${rho}` }));
        $("status").textContent = "checked against exact gradients";
      } catch (failure) {
        button.disabled = false;
        if (failure && "status" in failure) showError(failure.body, failure.status);
        else showError({ error: "the server could not be reached: " + failure }, 0);
      }
    });
    return button;
  }

  async function serve() {
    let index = null;
    try {
      const response = await fetch("/v1/index");
      index = await response.json();
      $("index-summary").textContent = summaryText(index);
      if (index.limits) $("k").max = index.limits.max_k;
    } catch (e) {
      $("index-summary").textContent = "the index summary could not be read: " + e;
    }
    $("query-form").addEventListener("submit", (event) => submit(event, index));
  }

  function report(data) {
    document.body.classList.add("report");
    $("query-form").hidden = true;
    $("index-summary").textContent = `Report of ${data.created || "an attribute run"}, k = ${data.k} · ` + summaryText(data.index);
    render(data);
  }

  const embedded = JSON.parse($("influcoder-data").textContent);
  if (embedded) report(embedded);
  else serve();
})();
