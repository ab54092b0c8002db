"""The single-machine engine: read, score, write, as three overlapping stages.

A background thread parses chunk i+1 while the main thread tokenizes and runs chunk i, and a writer thread makes
chunk i-1 durable. So reading and writing hide behind the model (which releases the GIL while it runs) and batch
throughput stays close to calling the Classifier on texts already in memory.
Tokenizing stays on the main thread, beside the model, not ahead of it: the Rust tokenizer's thread pool
running during torch's would oversubscribe the cores and slow torch's parallel kernels far more than it saves.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from queue import Empty, Full, Queue
from typing import TypeVar

from textclass.batch.job import BatchJob, Progress
from textclass.batch.readers import InputSpec, read_chunks
from textclass.batch.score import Columns, finish, prepare
from textclass.batch.writer import PartStore

T = TypeVar("T")
PREFETCH_CHUNKS = 2  # chunks read ahead; with the one being scored and those being written, memory stays bounded
PENDING_WRITES = 2


def run_local(job: BatchJob, spec: InputSpec, model: str, store: PartStore, progress: Progress) -> int:
    """Score the rows after store.rows_done into the store; returns how many rows got an error."""
    from textclass.classifier import Classifier

    clf = Classifier.from_pretrained(model, device=job.device, dtype=job.dtype, backend=job.backend)
    chunks = read_chunks(spec, job.chunk_rows, store.rows_done, on_bytes=progress.on_bytes)
    errors = 0

    def write(columns: Columns) -> None:
        store.write(columns)
        progress.advance(len(columns["error"]))

    with ThreadPoolExecutor(1, thread_name_prefix="textclass-writer") as writer:
        pending: deque[Future] = deque()
        for chunk in in_background(chunks, PREFETCH_CHUNKS):
            prepared = prepare(clf, chunk, job.score)
            columns = finish(clf, prepared, clf.run(prepared.encoded), job.score)
            errors += len(chunk) - len(prepared.valid)
            pending.append(writer.submit(write, columns))
            while len(pending) > PENDING_WRITES:
                pending.popleft().result()  # raises a write error here, and caps memory held by the queue
        for future in pending:
            future.result()
    return errors


def in_background(items: Iterator[T], depth: int) -> Iterator[T]:
    """Iterate `items` on a helper thread, at most `depth` ahead; its exceptions re-raise in the consumer."""
    queue: Queue = Queue(depth)
    stop = threading.Event()
    done = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put(exc)

    thread = threading.Thread(target=work, name="textclass-reader", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = queue.get(timeout=0.1)
            except Empty:
                if not thread.is_alive() and queue.empty():
                    raise RuntimeError("the reader thread stopped without finishing") from None
                continue
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
