"""Concurrent requests gathered into one model call, run on one worker thread so the event loop never blocks.

An encoder embeds 32 texts in little more time than one (at these sizes a forward pass is mostly fixed cost),
so a server that answers each request on its own spends most of its model time on overhead under load.
`MicroBatcher.submit` queues a job; one loop waits until the oldest waiting job has waited `window_s` (or
`max_batch` items are waiting), takes the waiting jobs up to `max_batch` items, and hands them to `run` on
the executor. A job is never split: one that would overflow the batch starts the next one. Results, or the
exception `run` raised, go back to each job's future; a job whose caller went away (a closed connection
cancels its future) is dropped unrun.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")


@dataclass
class BatchStats:
    """What a batcher has run (for /v1/health and the load benchmark: whether requests share model calls)."""

    batches: int = 0
    jobs: int = 0
    items: int = 0
    largest: int = 0
    """Most items one model call took."""


@dataclass
class _Waiting(Generic[Job]):
    job: Job
    size: int
    since: float
    future: asyncio.Future


class MicroBatcher(Generic[Job, Result]):
    """Gather jobs for up to `window_s`, run them as one batch on `executor` with `run(jobs) -> results`."""

    def __init__(
        self,
        run: Callable[[Sequence[Job]], Sequence[Result]],
        executor: Executor,
        size: Callable[[Job], int] = lambda job: 1,
        window_s: float = 0.005,
        max_batch: int = 64,
        name: str = "batch",
    ):
        self._run, self._executor, self._size = run, executor, size
        self.window_s, self.max_batch, self.name = window_s, max_batch, name
        self.stats = BatchStats()
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._items = 0
        self._arrived: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the gathering loop on the running event loop (idempotent)."""
        if self._task is None:
            self._arrived, self._full = asyncio.Event(), asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"influcoder-{self.name}")

    async def stop(self) -> None:
        """Stop the loop; jobs still waiting are cancelled."""
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        while self._waiting:
            self._waiting.popleft().future.cancel()
        self._items, self._task = 0, None

    async def submit(self, job: Job) -> Result:
        """The result of `job`, run in some batch; raises what `run` raised for that batch."""
        self.start()
        loop = asyncio.get_running_loop()
        waiting = _Waiting(job, self._size(job), loop.time(), loop.create_future())
        self._waiting.append(waiting)
        self._items += waiting.size
        self._arrived.set()
        if self._items >= self.max_batch:
            self._full.set()
        return await waiting.future

    def _take(self) -> list[_Waiting]:
        """The oldest waiting jobs that fit in one batch (at least one), callers gone left out."""
        batch, items = [], 0
        while self._waiting and (not batch or items + self._waiting[0].size <= self.max_batch):
            waiting = self._waiting.popleft()
            self._items -= waiting.size
            if not waiting.future.done():
                batch.append(waiting)
                items += waiting.size
        if not self._waiting:
            self._arrived.clear()
        if self._items < self.max_batch:
            self._full.clear()
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            remaining = self._waiting[0].since + self.window_s - loop.time() if self._waiting else 0.0
            if remaining > 0 and not self._full.is_set():
                try:
                    await asyncio.wait_for(self._full.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
            batch = self._take()
            if batch:
                await self._run_batch(loop, batch)

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Waiting]) -> None:
        """Run one batch and settle each job's future; nothing raised here may end the loop (every later
        request would wait forever), so a failure of the batch goes to its callers instead."""
        jobs = [waiting.job for waiting in batch]
        try:
            results = await loop.run_in_executor(self._executor, self._run, jobs)
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name}: {len(results)} results for a batch of {len(batch)} jobs")
        except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch; each answers (and logs) a 500
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            return
        size = sum(waiting.size for waiting in batch)
        self.stats.batches += 1
        self.stats.jobs += len(batch)
        self.stats.items += size
        self.stats.largest = max(self.stats.largest, size)
        for waiting, result in zip(batch, results):
            if not waiting.future.done():
                waiting.future.set_result(result)
