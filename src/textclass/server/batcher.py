"""Dynamic batching: texts from many requests share model calls, cut by a token budget.

Requests put their tokenized texts on one FIFO queue. A worker thread takes *everything queued* (a round, at
most ROUND_BATCHES forward passes' worth of tokens; with several lanes and a full queue, its share by length,
below) and hands it to the classifier in one call, which sorts the rows by length and cuts them into forward
passes of at most `max_batch_tokens` padded tokens (rows × longest), running them side by side when there are
enough (runtime/onnx_engine.py). Then each request gets its rows. There is no waiting window: whatever queued
while the model was busy forms the next round, so rounds grow with load (continuous batching, as TEI does).

Why rounds rather than one budget's worth off the head: measured on 2 cores (docs/server.md), the classifier ran
64 queued one-sentence requests at 0.61× its offline speed when they came in budget-sized FIFO slices (~21 mixed
lengths, so few rows per forward pass after the length split, and too few passes to run side by side) and at
0.79× as one call, as offline scoring calls it. A request with many texts may span several rounds; rows are
written back by index, so every answer keeps its input order. The model never runs on the event loop. Answers go
back to the event loop once per round (one wake-up), not once per request.

Lanes: with an engine that can run several calls at once on one thread each (`engine.lanes`, one per CPU: ONNX
Runtime), there is one worker thread per lane. A round that finds no other lane busy runs with every thread (one
request's latency is unchanged); a round taken while another runs goes on one thread, and an idle lane takes a
round only when no other lane is busy or an eighth of a forward pass's budget (LANE_SHARE) is queued, so that
rounds do not shrink to single requests at moderate load. Under load the rounds run side by side, one per CPU,
as offline scoring runs its passes (docs/server.md has the figures). Which lane scored a text does not change its
logits.

Shares by length: when a lane takes a round while another runs and SPLIT_TOKENS are queued, it does not take the
whole queue but its share of it: the head of the queue (a round's tokens per lane) sorted by length and cut into one
share of its tokens per lane, the share holding the oldest text. Taking everything left the other lane little to
take when it finished: under 64 clients the lanes ran 87-88% of the time, with shares 94-95% (docs/server.md). Cut
by length rather than in arrival order, a share's passes are fuller: 1-2% less model time a text, 2-3 points of
served/offline. The oldest text is always taken, so a text waits at most as many rounds as it takes to clear what
was queued before it; a request's answer is the same whichever round, lane or neighbours its texts had.
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
from textclass.runtime.batching import plan
from textclass.server.metrics import ModelMetrics

log = logging.getLogger("textclass.server")
ROUND_BATCHES = 8  # a round takes at most this many forward passes' worth of real tokens (latency bound)
# While a lane runs, another takes a round once an eighth of a forward pass's budget is queued (128 tokens on CPU,
# a handful of sentences): 64 clients ran alike from a sixteenth to a quarter, and with no wait at all.
LANE_SHARE = 8
# While a lane runs, another that finds at least this many tokens queued (about ten sentences) takes its share of the
# queue by length (Batcher._split). 64 clients on the bundled model (AMX Xeon, bench/load.py): 0.75-0.77x offline at
# 128-256, 0.74-0.76x at 512, 0.74-0.75x at 1,024; the whole queue in arrival order, 0.70-0.72x in the same minutes;
# half of it in arrival order, 0.71-0.72x where shares by length gave 0.73-0.74x. Held-out texts (1,000 SST-5 train
# sentences, slower minutes): 128 0.740-0.743x, 256 0.737-0.743x, 1,024 0.709-0.717x; arrival order 0.691-0.707x.
SPLIT_TOKENS = 256


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


Outcome = tuple[_Job, "np.ndarray | BaseException"]


def _settle(outcomes: list[Outcome]) -> None:
    """Resolve these requests' futures from the worker thread: one call_soon_threadsafe (one wake-up of the event
    loop) per loop and round, not per request. A loop may be gone at shutdown."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for job, outcome in outcomes:
        by_loop.setdefault(job.loop, []).append((job, outcome))
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, settled)
        except RuntimeError:  # event loop closed
            pass


def _resolve(outcomes: list[Outcome]) -> None:
    """On the event loop."""
    for job, outcome in outcomes:
        if job.future.done():  # the client went away and the handler was cancelled
            continue
        if isinstance(outcome, BaseException):
            job.future.set_exception(outcome)
        else:
            job.future.set_result(outcome)


class Batcher:
    """Queue + a worker thread per lane around `run`: (texts) -> (texts, num_labels) float32 logits, which cuts its
    texts into forward passes of at most `max_batch_tokens` padded tokens (Classifier.run)."""

    def __init__(
        self,
        run: Callable[..., np.ndarray],
        max_batch_tokens: int,
        metrics: ModelMetrics | None = None,
        round_batches: int = ROUND_BATCHES,
        lanes: int = 1,
    ):
        """`run(encoded)` scores a round with every thread; with `lanes` > 1 also `run(encoded, one_thread=True)`
        on the calling thread alone, while other lanes' rounds run."""
        self._run = run
        self.max_batch_tokens = max_batch_tokens
        self.max_round_tokens = max_batch_tokens * round_batches
        self.lane_tokens = max(1, max_batch_tokens // LANE_SHARE)  # what an idle lane waits for while one runs
        self.metrics = metrics
        self._queue: deque[tuple[_Job, int]] = deque()  # (job, row of that job), FIFO
        self._queued_tokens = 0  # tokens of the rows in the queue
        self._wake = threading.Condition()
        self._delivering = threading.Lock()  # lanes write rows of the same request
        self._stopping = False
        self._busy = 0  # lanes running a round
        self._threads = [threading.Thread(target=self._work, name=f"textclass-batcher-{lane}", daemon=True)
                         for lane in range(max(1, lanes))]  # fmt: skip

    # ---- event-loop side -----------------------------------------------------------------------
    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    @property
    def lanes(self) -> int:
        return len(self._threads)

    @property
    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads) and not self._stopping

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
            self._queued_tokens += sum(len(item) for item in encoded)
            self._queue_changed()
            self._wake.notify_all()  # every idle lane re-checks whether to take a round
        return await job.future

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is queued, then end the worker thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    # ---- worker thread -------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._ready():
                    self._wake.wait()
                if not self._queue:  # stopping and drained
                    return
                taken = self._take()
                self._queue_changed()
                self._busy += 1
                alone = self._busy == 1
            try:
                if taken:
                    self._run_batch(taken, alone)
            finally:
                with self._wake:
                    self._busy -= 1
                    self._wake.notify_all()  # a lane waiting for a fuller queue may take it now

    def _ready(self) -> bool:
        """Whether this lane should take a round now (or, stopping with nothing queued, end)."""
        if not self._queue:
            return self._stopping
        return self._busy == 0 or self._stopping or self._queued_tokens >= self.lane_tokens

    def _take(self) -> list[tuple[_Job, int]]:
        """Texts from the head of the queue while their tokens stay within the round's (at least one); while another
        lane runs and SPLIT_TOKENS are queued, this lane's share of the queue by length (_split). A lane that finds
        the others idle takes the queue as it came and runs it with every thread."""
        if self._busy and self._queued_tokens >= SPLIT_TOKENS:
            return self._split()
        taken: list[tuple[_Job, int]] = []
        tokens = 0
        while (head := self._live_head()) is not None:
            job, row = head
            tokens += len(job.encoded[row])
            if taken and tokens > self.max_round_tokens:
                break
            taken.append(self._queue.popleft())
            self._queued_tokens -= len(job.encoded[row])
        return taken

    def _live_head(self) -> tuple[_Job, int] | None:
        """The oldest queued text whose request still waits for its answer, left at the head; texts of requests
        already settled (a failed batch, a client gone) are dropped on the way."""
        while self._queue:
            job, row = self._queue[0]
            if not (job.failed or job.future.cancelled()):
                return job, row
            self._queue.popleft()
            self._queued_tokens -= len(job.encoded[row])
        return None

    def _split(self) -> list[tuple[_Job, int]]:
        """This lane's share of the head of the queue (up to a round's tokens per lane): sorted by length and cut
        into one share of its tokens per lane, the share that holds the oldest text, in queue order, within the
        round's tokens. The rest stays at the head for the other lanes, so side-by-side rounds each hold
        near-equal lengths, as one sorted call's passes do. The oldest text always goes, so none waits longer
        than the rounds it takes to clear the texts queued before it; the work is linear in the window, whatever
        the queue's length."""
        window: list[tuple[_Job, int]] = []
        tokens = 0
        while tokens < self.max_round_tokens * self.lanes and (head := self._live_head()) is not None:
            window.append(self._queue.popleft())
            tokens += len(head[0].encoded[head[1]])
        lengths = [len(job.encoded[row]) for job, row in window]
        shares = length_shares(lengths, self.lanes)
        taken: list[int] = []
        tokens = 0
        for i in range(len(window)):
            if shares[i] == shares[0]:
                if taken and tokens + lengths[i] > self.max_round_tokens:
                    break
                taken.append(i)
                tokens += lengths[i]
        chosen = set(taken)
        self._queue.extendleft(reversed([item for i, item in enumerate(window) if i not in chosen]))
        self._queued_tokens -= tokens
        return [window[i] for i in taken]

    def _run_batch(self, taken: list[tuple[_Job, int]], alone: bool = True) -> None:
        encoded = [job.encoded[row] for job, row in taken]
        started = time.perf_counter()
        try:
            logits = self._run(encoded) if alone else self._run(encoded, one_thread=True)  # (rows, num_labels)
        except Exception as exc:  # noqa: BLE001 - any model failure must reach the requests, not kill the worker
            self._isolate(taken, exc)
            return
        if self.metrics is not None:
            self.metrics.observe_batch(len(encoded), padded_tokens(encoded, self.max_batch_tokens),
                                       time.perf_counter() - started)  # fmt: skip
        with self._delivering:
            outcomes = self._deliver(taken, logits)
        _settle(outcomes)

    def _isolate(self, taken: list[tuple[_Job, int]], exc: Exception) -> None:
        """A round failed: rerun each request's share alone so one bad request cannot fail its neighbours."""
        jobs = list(dict.fromkeys(job for job, _ in taken))
        if len(jobs) == 1:
            _settle(self._fail(jobs[0], exc))
            return
        outcomes: list[Outcome] = []
        for job in jobs:
            mine = [(j, row) for j, row in taken if j is job]
            try:
                logits = self._run([job.encoded[row] for _, row in mine])
            except Exception as own:  # noqa: BLE001
                outcomes += self._fail(job, own)
            else:
                with self._delivering:
                    outcomes += self._deliver(mine, logits)
        _settle(outcomes)

    def _fail(self, job: _Job, exc: Exception) -> list[Outcome]:
        log.error("batch failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
        with self._delivering:
            if job.failed:
                return []
            job.failed = True
        return [(job, BatchFailed(f"{type(exc).__name__}: {exc}"))]

    @staticmethod
    def _deliver(taken: list[tuple[_Job, int]], logits: np.ndarray) -> list[Outcome]:
        """Write each row into its request's answer; the requests now complete."""
        done: list[Outcome] = []
        for (job, row), values in zip(taken, logits):
            if job.failed:
                continue
            if job.logits is None:
                job.logits = np.empty((len(job.encoded), logits.shape[1]), dtype=np.float32)
            job.logits[row] = values
            job.remaining -= 1
            if job.remaining == 0:
                done.append((job, job.logits))
        return done

    def _queue_changed(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_size.set(len(self._queue))


def length_shares(lengths: Sequence[int], parts: int) -> list[int]:
    """Which of `parts` shares each text falls in when the texts, sorted by length (stable: queue order among equal
    lengths), are cut into shares of equal tokens: the share its middle token falls in."""
    share = max(1.0, sum(lengths) / parts)
    shares, seen = [0] * len(lengths), 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        shares[i] = min(parts - 1, int((seen + lengths[i] / 2) // share))
        seen += lengths[i]
    return shares


def padded_tokens(encoded: Sequence[Encoded], max_batch_tokens: int) -> int:
    """Padded tokens (rows × longest, summed over forward passes) of one model call: the classifier's own cut."""
    lengths = [len(e) for e in encoded]
    return sum(len(rows) * lengths[rows[0]] for rows in plan(lengths, max_batch_tokens))  # longest first
