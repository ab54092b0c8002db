"""Running batches with ONNX Runtime on CPU: the engine that needs neither torch nor transformers.

Importing onnxruntime takes a fraction of torch's import time, which is what makes a sub-second
`textclass classify` possible; the graph comes from onnx/export.py through the artefact cache (onnx/cache.py),
which stores it with its weights in a side file that ONNX Runtime maps: a session opens in tens of milliseconds.

Many batches at once (`map`: a file, a list of texts) run side by side, one batch per CPU, each on one thread of
a second session opened with one intra-op thread, instead of one after another with every thread splitting each
matrix product: a product of a few hundred rows splits poorly, and the elementwise operators between them hardly
split at all (docs/performance.md). That session costs one more copy of the weights, so it opens on the first call
that has enough batches to share out, and only for models whose copy stays small (load.SIDE_BY_SIDE_BYTES). A
single batch (a server's, one text's) keeps every thread on it. Under load a server runs several calls at once
instead (`lanes` of them, each `one_thread` on that session, in its own thread): the same side-by-side, across
rounds of requests rather than within one. Either way each batch's logits are the same (tested).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from textclass.errors import CheckpointError
from textclass.onnx.layernorm import keep_split

if TYPE_CHECKING:
    from textclass.runtime.batching import Batch
    from textclass.runtime.engine import Rescored


def cpu_threads() -> int:
    """CPUs this process may run on (cgroup/affinity aware where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class OnnxEngine:
    """An ONNX graph on ONNX Runtime's CPU provider: `mode` "fp32" or "int8" (what `dtype` reports)."""

    backend = "onnx"
    model = None  # no torch module
    rescored: Rescored | None = None  # scores every text once

    def __init__(
        self, path: Path, mode: str, reason: str = "", threads: int | None = None, side_by_side: bool = True
    ):
        self.path = path
        self.mode = mode
        self.reason = reason
        self.threads = threads or cpu_threads()
        self.side_by_side = side_by_side  # whether `map` may open a second, one-thread session
        self._single_thread: Any = None  # the session `map` runs batches side by side on, opened when first needed
        self._lock = threading.Lock()
        self.session = self._open(self.threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.uses_token_types = "token_type_ids" in self.input_names

    def _open(self, threads: int) -> Any:
        import onnxruntime as ort

        try:
            return ort.InferenceSession(str(self.path), self.options(threads), providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for unreadable models
            raise CheckpointError(f"ONNX Runtime cannot load {self.path}: {exc}") from exc

    def options(self, threads: int) -> Any:
        """The ONNX Runtime session options this engine opens its sessions with (bench/profile_text.py reuses them)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One intra-op pool sized to the CPUs we have; inter-op parallelism only adds contention for
        # a graph that is one chain of layers.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Graph fusions and constant folding only (what export.py's fused graph still leaves: next to nothing);
        # the layout transformations of the "all" level are for convolutions.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        # The pool's threads spin during a run (turning that off made one text 1.2x slower) but stop when it
        # returns, instead of holding both CPUs until the next: a server's event loop, its clients and the caller's
        # own Python get them back. A lone server request came back 1.7 ms sooner on average (docs/server.md).
        options.add_session_config_entry("session.force_spinning_stop", "1")
        return keep_split(options)  # residual blocks stay Add + LayerNormalization (onnx/layernorm.py)

    @property
    def dtype(self) -> str:
        return "int8" if self.mode == "int8" else "float32"

    def __call__(self, batch: Batch) -> np.ndarray:  # (rows, num_labels) float32 logits
        return self._run(self.session, batch)

    @property
    def lanes(self) -> int:
        """Calls that may run at once, each on one thread of the one-thread session: one per CPU where that
        session may be opened, else one."""
        return self.threads if self.side_by_side and self.threads >= 2 else 1

    def map(self, batches: Sequence[Batch], one_thread: bool = False) -> Iterator[np.ndarray]:
        """Each batch's logits, in order: side by side, one thread each, when there are at least two batches
        per thread to share out (fewer would leave threads idle that could have split a product). With
        `one_thread` (and `lanes` > 1), one after another on the caller's thread: other calls use the other CPUs."""
        if one_thread and self.lanes > 1:
            session = self._one_thread_session()
            return iter([self._run(session, batch) for batch in batches])
        if self.lanes < 2 or len(batches) < 2 * self.threads:
            return map(self, batches)
        session = self._one_thread_session()
        # The pool hands the next batch (longest first: make_batches' order) to whichever thread is free.
        with ThreadPoolExecutor(self.threads, thread_name_prefix="textclass-onnx") as pool:
            return iter(list(pool.map(lambda batch: self._run(session, batch), batches)))

    def _one_thread_session(self) -> Any:
        with self._lock:
            if self._single_thread is None:
                try:
                    self._single_thread = self._open(1)
                except CheckpointError as exc:
                    # Its graph went away since this engine opened (a newer build of the same checkpoint replaced
                    # its cache entry): the open session still holds it, so the batches run there, sharing its
                    # threads (ONNX Runtime runs calls on one session concurrently).
                    logging.getLogger("textclass").warning("textclass: %s; batches run on one session", exc)
                    self._single_thread = self.session
            return self._single_thread

    def _run(self, session: Any, batch: Batch) -> np.ndarray:
        feeds = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if self.uses_token_types:
            types = batch.token_type_ids
            feeds["token_type_ids"] = np.zeros_like(batch.input_ids) if types is None else types
        (logits,) = session.run(["logits"], feeds)
        return np.asarray(logits, dtype=np.float32)
