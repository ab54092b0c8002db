"""Dynamic batching: texts from many requests share model calls, cut by a token budget.

Requests put their tokenized texts on one FIFO queue. A single worker thread takes texts from the head
until the padded size (rows × longest row) would pass `max_batch_tokens`, the classifier's own budget (so a
batch is one forward pass, unless the classifier sets apart rows that would be mostly padding), runs them
and hands each request its rows. There is no waiting window: whatever queued while the model was busy
forms the next batch, so batches grow with load (continuous batching, as TEI does). A request with many
texts may span several batches; rows are written back by index, so every answer keeps its input order.
The model never runs on the event loop, and only one batch runs at a time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from textclass.checkpoint.tokenizer import Encoded
from textclass.server.metrics import ModelMetrics

log = logging.getLogger("textclass.server")


class BatchFailed(Exception):
    """The model raised while running a batch holding this request's texts."""


class ShuttingDown(Exception):
    """The batcher no longer takes work."""


@dataclass(eq=False)
class _Job:
    """One request's texts and where its answer goes."""

    encoded: Sequence[Encoded]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    remaining: int
    logits: np.ndarray | None = None  # (texts, num_labels), allocated when the first row arrives
    failed: bool = False

    def settle(self, outcome: np.ndarray | BaseException) -> None:
        """Resolve the request's future from the worker thread; the loop may be gone at shutdown."""

        def resolve() -> None:
            if self.future.done():  # the client went away and the handler was cancelled
                return
            if isinstance(outcome, BaseException):
                self.future.set_exception(outcome)
            else:
                self.future.set_result(outcome)

        try:
            self.loop.call_soon_threadsafe(resolve)
        except RuntimeError:  # event loop closed
            pass


class Batcher:
    """Queue + one worker thread around `run`: (texts) -> (texts, num_labels) float32 logits."""

    def __init__(
        self,
        run: Callable[[list[Encoded]], np.ndarray],
        max_batch_tokens: int,
        metrics: ModelMetrics | None = None,
    ):
        self._run = run
        self.max_batch_tokens = max_batch_tokens
        self.metrics = metrics
        self._queue: deque[tuple[_Job, int]] = deque()  # (job, row of that job), FIFO
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="textclass-batcher", daemon=True)

    # ---- event-loop side -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    async def infer(self, encoded: Sequence[Encoded]) -> np.ndarray:
        """(len(encoded), num_labels) logits in input order, computed in shared batches."""
        if not encoded:
            raise ValueError("nothing to classify")
        loop = asyncio.get_running_loop()
        job = _Job(encoded, loop.create_future(), loop, remaining=len(encoded))
        with self._wake:
            if self._stopping:
                raise ShuttingDown("the server is shutting down")
            self._queue.extend((job, row) for row in range(len(encoded)))
            self._queue_changed()
            self._wake.notify()
        return await job.future

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is queued, then end the worker thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ---- worker thread -------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._stopping:
                    self._wake.wait()
                if not self._queue:  # stopping and drained
                    return
                taken = self._take()
                self._queue_changed()
            if taken:
                self._run_batch(taken)

    def _take(self) -> list[tuple[_Job, int]]:
        """Texts from the head of the queue while rows × longest stays within the budget (at least one)."""
        taken: list[tuple[_Job, int]] = []
        width = 0
        while self._queue:
            job, row = self._queue[0]
            if job.failed or job.future.cancelled():
                self._queue.popleft()  # its answer is already settled: skip the rest of its texts
                continue
            new_width = max(width, len(job.encoded[row]))
            if taken and (len(taken) + 1) * new_width > self.max_batch_tokens:
                break
            taken.append(self._queue.popleft())
            width = new_width
        return taken

    def _run_batch(self, taken: list[tuple[_Job, int]]) -> None:
        encoded = [job.encoded[row] for job, row in taken]
        started = time.perf_counter()
        try:
            logits = self._run(encoded)  # (rows, num_labels)
        except Exception as exc:  # noqa: BLE001 - any model failure must reach the requests, not kill the worker
            self._isolate(taken, exc)
            return
        if self.metrics is not None:
            width = max(len(e) for e in encoded)
            self.metrics.observe_batch(len(encoded), len(encoded) * width, time.perf_counter() - started)
        self._deliver(taken, logits)

    def _isolate(self, taken: list[tuple[_Job, int]], exc: Exception) -> None:
        """A batch failed: rerun each request's share alone so one bad request cannot fail its neighbours."""
        jobs = list(dict.fromkeys(job for job, _ in taken))
        if len(jobs) == 1:
            self._fail(jobs[0], exc)
            return
        for job in jobs:
            mine = [(j, row) for j, row in taken if j is job]
            try:
                logits = self._run([job.encoded[row] for _, row in mine])
            except Exception as own:  # noqa: BLE001
                self._fail(job, own)
            else:
                self._deliver(mine, logits)

    def _fail(self, job: _Job, exc: Exception) -> None:
        log.error("batch failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
        if not job.failed:
            job.failed = True
            job.settle(BatchFailed(f"{type(exc).__name__}: {exc}"))

    @staticmethod
    def _deliver(taken: list[tuple[_Job, int]], logits: np.ndarray) -> None:
        for (job, row), values in zip(taken, logits):
            if job.failed:
                continue
            if job.logits is None:
                job.logits = np.empty((len(job.encoded), logits.shape[1]), dtype=np.float32)
            job.logits[row] = values
            job.remaining -= 1
            if job.remaining == 0:
                job.settle(job.logits)

    def _queue_changed(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_size.set(len(self._queue))
