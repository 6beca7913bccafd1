"""`influcoder serve` under load, on the loopback only, bounded in time and in count.

Starts `influcoder serve` on 127.0.0.1 as a subprocess, then for each client count runs that many concurrent
clients (one keep-alive connection each) for --seconds, each posting one-query /v1/attribute requests in a
loop (queries drawn round-robin from --queries, or from the index's own samples), and measures requests/s,
latency percentiles, errors (any non-200 answer or failed request), and the server's resident memory (sampled
from /proc every --rss-every seconds: start, end, peak, growth). With --kill-restart it then records the
answers to a few queries, SIGKILLs the server under load, restarts it, runs `influcoder verify` on the index
and asks the same queries again: the answers must be identical. With --check-cli the served answers are
compared with `influcoder attribute` on the same queries and index.

    python benchmarks/serve_load.py --index runs/index --clients 1 8 32 --seconds 60 --kill-restart --check-cli

writes benchmarks/results/serve_load.json (everything measured, the machine, the command) and .md (the table).
Linux only (/proc for the memory); no request leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
CLI = [sys.executable, "-c", "import sys; from influcoder.cli.main import main; sys.exit(main())"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    """Resident memory of `pid` in MB (None once it has exited)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Server:
    """`influcoder serve` as a subprocess on a free loopback port; its log goes to a file."""

    def __init__(self, args: argparse.Namespace, log: Path):
        self.args, self.log, self.port = args, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> float:
        """Start it and wait until /v1/health answers; returns the seconds that took."""
        import httpx

        command = [*CLI, "serve", "--index", str(self.args.index), "--port", str(self.port), "--quiet"]
        command += ["--max-queries", str(max(32, self.args.queries_per_request)), "--max-k", str(max(100, self.args.k))]
        command += ["--batch-window-ms", str(self.args.batch_window_ms), "--device", self.args.device]
        if self.args.encoder:
            command += ["--encoder", str(self.args.encoder)]
        started = time.perf_counter()
        with open(self.log, "a", encoding="utf-8") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = started + self.args.start_timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}; its log: {self.log}")
            try:
                if httpx.get(self.url + "/v1/health", timeout=2).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server did not answer within {self.args.start_timeout} s; its log: {self.log}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def load_queries(args: argparse.Namespace) -> list[dict]:
    """The query texts: --queries (a DATA file), else the first --n-queries samples of the index itself."""
    if args.queries:
        from influcoder.data.loading import load_samples

        samples = list(load_samples(args.queries, limit=args.n_queries))
    else:
        from influcoder.attribution.index import EmbeddingIndex

        pool = EmbeddingIndex(args.index).samples()
        samples = [pool[i] for i in range(min(args.n_queries, len(pool)))]
    return [{"id": s.id, "prompt": s.prompt, "response": s.response} for s in samples]


async def load_phase(
    server: Server, queries: list[dict], clients: int, args: argparse.Namespace, until_down: bool = False
) -> dict:
    """`clients` concurrent clients for args.seconds (or until args.max_requests): latencies, errors, memory.
    With `until_down` (the kill check) a client stops at its first failed connection instead of counting on."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    memory: list[tuple[float, float]] = []
    order = itertools.cycle(range(len(queries)))
    per = args.queries_per_request
    started = time.perf_counter()
    deadline = started + args.seconds

    async def client(http: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline and len(latencies) + len(errors) < args.max_requests:
            body = {"queries": [{**queries[next(order)], "id": f"q{j}"} for j in range(per)], "k": args.k}
            sent = time.perf_counter()
            try:
                response = await http.post("/v1/attribute", json=body)
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                if until_down:
                    return

    async def sample_memory() -> None:
        while time.perf_counter() < deadline:
            value = rss_mb(server.process.pid)
            if value is not None:
                memory.append((round(time.perf_counter() - started, 2), round(value, 1)))
            await asyncio.sleep(args.rss_every)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    timeout = httpx.Timeout(args.request_timeout)
    health = httpx.get(server.url + "/v1/health").json()["batching"]["attribute"]
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=timeout) as http:
        watcher = asyncio.create_task(sample_memory())
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - started
        watcher.cancel()
    try:
        after = httpx.get(server.url + "/v1/health").json()["batching"]["attribute"]
    except httpx.HTTPError:  # the kill check: the server is gone
        after = health
    ms = np.asarray(latencies) * 1000
    rss = [value for _, value in memory]
    batches = after["batches"] - health["batches"]
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "queries_per_request": per,
        "requests_per_s": round(len(latencies) / elapsed, 2),
        "queries_per_s": round(len(latencies) * per / elapsed, 2),
        "latency_ms": {
            name: round(float(np.percentile(ms, q)), 2) if len(ms) else None
            for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
        },
        "errors": len(errors),
        "error_examples": errors[:5],
        "model_calls": batches,
        "requests_per_model_call": round((after["jobs"] - health["jobs"]) / batches, 2) if batches else None,
        "server_rss_mb": {
            "start": rss[0] if rss else None,
            "end": rss[-1] if rss else None,
            "peak": max(rss) if rss else None,
            "growth_pct": round(100 * (rss[-1] - rss[0]) / rss[0], 2) if len(rss) > 1 else None,
        },
        "rss_series": memory,
    }


def answers(server: Server, queries: list[dict], k: int) -> list[list[tuple[str, float]]]:
    """Each query's (pool id, score) hits, one request per query."""
    import httpx

    out = []
    for query in queries:
        response = httpx.post(server.url + "/v1/attribute", json={"queries": [query], "k": k}, timeout=120)
        response.raise_for_status()
        out.append([(h["sample"]["id"], h["score"]) for h in response.json()["results"][0]["hits"]])
    return out


def same(a: list[list[tuple[str, float]]], b: list[list[tuple[str, float]]], tolerance: float = 1e-6) -> bool:
    """Identical hit ids in the same order, scores equal to `tolerance`."""
    return all(
        [i for i, _ in x] == [i for i, _ in y] and all(abs(s - t) <= tolerance for (_, s), (_, t) in zip(x, y))
        for x, y in zip(a, b, strict=True)
    )


def kill_restart(server: Server, queries: list[dict], args: argparse.Namespace) -> dict:
    """SIGKILL the server halfway through a load phase, restart it, verify the index, compare answers."""
    reference = answers(server, queries[: args.check_queries], args.k)
    clients = max(args.clients)
    killed_at = args.seconds / 2

    async def load_then_kill() -> dict:
        phase = asyncio.create_task(load_phase(server, queries, clients, args, until_down=True))
        await asyncio.sleep(killed_at)
        server.kill()
        return await phase

    during = asyncio.run(load_then_kill())
    restart_s = server.start()
    verify = subprocess.run([*CLI, "verify", str(args.index)], capture_output=True, text=True, check=False)
    again = answers(server, queries[: args.check_queries], args.k)
    return {
        "clients": clients,
        "killed_after_s": killed_at,
        "answered_before_kill": during["requests"],
        "failed_by_the_kill": during["errors"],
        "restart_s": round(restart_s, 2),
        "verify_exit": verify.returncode,
        "verify_output": verify.stdout.strip().splitlines()[-3:],
        "queries_compared": len(reference),
        "same_answers": same(reference, again),
    }


def check_cli(server: Server, queries: list[dict], args: argparse.Namespace, work: Path) -> dict:
    """`influcoder attribute` on the same queries and index against the served answers (ids exactly, scores to
    the 6 decimals the CLI writes)."""
    chosen = queries[: args.check_queries]
    query_file, hits_file = work / "check-queries.jsonl", work / "check-hits.jsonl"
    query_file.write_text("".join(json.dumps(q) + "\n" for q in chosen), encoding="utf-8")
    command = [*CLI, "attribute", "--index", str(args.index), "--queries", str(query_file), "-k", str(args.k)]
    command += ["--format", "jsonl", "--out", str(hits_file), "--quiet", "--device", args.device]
    if args.encoder:
        command += ["--encoder", str(args.encoder)]
    subprocess.run(command, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in hits_file.read_text(encoding="utf-8").splitlines()]
    cli = [[(r["pool_id"], r["score"]) for r in rows if r["query_id"] == q["id"]] for q in chosen]
    served = [[(i, round(s, 6)) for i, s in hits] for hits in answers(server, chosen, args.k)]
    return {"queries_compared": len(chosen), "same_answers": same(cli, served, tolerance=2e-6)}


def markdown(report: dict) -> str:
    lines = [
        "# influcoder serve under load",
        "",
        f"Index: {report['index']['size']:,} samples, {report['index']['index_factory']}, {report['index']['backend']} "
        f"encoder, queries {report['index']['query_side']}; {report['queries_per_request']} query per request, "
        f"k = {report['k']}, loopback. Machine: {report['machine']['platform']}, {report['machine']['cpus']} CPUs.",
        "",
        "| clients | s | requests | req/s | queries/s | p50 ms | p99 ms | errors | requests / model call | "
        "server RSS MB (start → end, peak) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in report["phases"]:
        rss, lat = p["server_rss_mb"], p["latency_ms"]
        lines.append(
            f"| {p['clients']} | {p['seconds']} | {p['requests']:,} | {p['requests_per_s']} | {p['queries_per_s']} | "
            f"{lat['p50']} | {lat['p99']} | {p['errors']} | {p['requests_per_model_call']} | "
            f"{rss['start']} → {rss['end']}, {rss['peak']} |"
        )
    if "kill_restart" in report:
        k = report["kill_restart"]
        lines += [
            "",
            f"SIGKILL under load ({k['clients']} clients, after {k['killed_after_s']} s), "
            f"restart in {k['restart_s']} s: "
            f"`influcoder verify` exit {k['verify_exit']}, the same answers to {k['queries_compared']} queries: "
            f"{'yes' if k['same_answers'] else '**no**'}.",
        ]
    if "check_cli" in report:
        c = report["check_cli"]
        lines += ["", f"Answers equal to `influcoder attribute` ({c['queries_compared']} queries): "
                  f"{'yes' if c['same_answers'] else '**no**'}."]  # fmt: skip
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True, help="an index directory (influcoder index)")
    parser.add_argument("--encoder", type=Path, help="encoder directory (default: the one the index records)")
    parser.add_argument("--queries", help="query DATA (default: the index's own first --n-queries samples)")
    parser.add_argument("--n-queries", type=int, default=256, help="distinct queries cycled through")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32], help="concurrent clients per phase")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="most requests per phase")
    parser.add_argument("--k", type=int, default=10, help="hits per query")
    parser.add_argument("--queries-per-request", type=int, default=1)
    parser.add_argument("--batch-window-ms", type=float, default=5.0, help="the server's --batch-window-ms")
    parser.add_argument("--device", default="cpu", help="the server's --device")
    parser.add_argument("--rss-every", type=float, default=1.0, help="seconds between memory samples")
    parser.add_argument("--request-timeout", type=float, default=120.0)
    parser.add_argument("--start-timeout", type=float, default=300.0, help="seconds the server may take to start")
    parser.add_argument("--kill-restart", action="store_true", help="SIGKILL under load, restart, compare answers")
    parser.add_argument("--check-cli", action="store_true", help="compare answers with `influcoder attribute`")
    parser.add_argument("--check-queries", type=int, default=8, help="queries compared by the two checks")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_load", help="writes OUT.json and OUT.md")
    args = parser.parse_args(argv)
    for name in ("n_queries", "max_requests", "k", "queries_per_request", "check_queries"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.seconds <= 0 or min(args.clients) < 1:
        parser.error("--seconds must be positive and every --clients at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    import httpx

    args = parse(argv)
    queries = load_queries(args)
    with tempfile.TemporaryDirectory(prefix="serve-load-") as scratch:
        work = Path(scratch)
        server = Server(args, work / "server.log")
        try:
            start_s = server.start()
            report = {
                "command": " ".join(["python benchmarks/serve_load.py", *(argv if argv is not None else sys.argv[1:])]),
                "machine": {
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                },
                "index": httpx.get(server.url + "/v1/index").json(),
                "k": args.k,
                "queries_per_request": args.queries_per_request,
                "distinct_queries": len(queries),
                "server_start_s": round(start_s, 2),
                "phases": [asyncio.run(load_phase(server, queries, clients, args)) for clients in args.clients],
            }
            if args.check_cli:
                report["check_cli"] = check_cli(server, queries, args, work)
            if args.kill_restart:
                report["kill_restart"] = kill_restart(server, queries, args)
        except Exception:
            print(f"server log ({server.log}):\n" + server.log.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    failed = sum(p["errors"] for p in report["phases"])
    checks = [report[name]["same_answers"] for name in ("kill_restart", "check_cli") if name in report]
    return 1 if failed or not all(checks) or report.get("kill_restart", {}).get("verify_exit", 0) else 0


if __name__ == "__main__":
    sys.exit(main())
