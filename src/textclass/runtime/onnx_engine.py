"""Running batches with ONNX Runtime on CPU: the engine that needs neither torch nor transformers.

Importing onnxruntime takes a fraction of torch's import time, which is what makes a sub-second
`textclass classify` possible; the graph itself comes from export.py via the artefacts.py cache.

Opening a session runs ONNX Runtime's graph optimizations, which take most of a cold start (~0.15-0.3 s here
for MiniLM: folding the linked weights to fp32, fusing). So the first session of an artefact also saves its
optimized graph, weights in a side file, under the user cache (`<cache>/ort/<key>-ort<version>/`), and later
sessions load that with optimizations off (~0.03 s; same kernels, identical outputs). The key covers the
artefact, the checkpoint's weights and config (so a changed checkpoint never meets an old graph) and ORT's
version; only graph-level fusions (ORT's "extended" level) are saved, nothing specific to this CPU.
Saved graphs are as big as the model's fp32 weights, so the cache is kept within a budget (TEXTCLASS_ORT_CACHE_MB,
default 2048): after each save, the least recently used ones go.

Many batches at once (`map`: a file, a list of texts) run side by side, one batch per CPU, each on one thread of
a second session opened with one intra-op thread, instead of one after another with every thread splitting each
matrix product: a product of a few hundred rows splits poorly, and the elementwise operators between them hardly
split at all (DistilBERT shape, per-row int8, 2-CPU AMD EPYC: +6-10% texts/s). That session costs one more copy
of the weights, so it opens on the first call that has enough batches to share out, and only for models whose
copy stays small (engine.SIDE_BY_SIDE_BYTES). A single batch (a server's, one text's) keeps every thread on it.
Either way each batch's logits are the same (tested).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from textclass.errors import CheckpointError

log = logging.getLogger("textclass")
_SAVED_GRAPH, _SAVED_WEIGHTS, _SAVED_MANIFEST = "model.onnx", "weights.bin", "files.json"
_DEFAULT_CACHE_MB = 2048  # saved optimized graphs kept in the user cache, unless TEXTCLASS_ORT_CACHE_MB says

if TYPE_CHECKING:
    from textclass.runtime.batching import Batch


def cpu_threads() -> int:
    """CPUs this process may run on (cgroup/affinity aware where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class OnnxEngine:
    backend = "onnx"
    reason = ""  # why this mode runs (engine.load_engine sets it)

    def __init__(
        self, path: Path, mode: str, threads: int | None = None, cache_key: str | None = None, side_by_side: bool = True
    ):
        self.threads = threads or cpu_threads()
        self.side_by_side = side_by_side  # whether `map` may open a second, one-thread session
        self.from_saved_optimization = False
        self._cache_key = cache_key
        self._single_thread: Any = None  # the session `map` runs batches side by side on, opened when first needed
        self._lock = threading.Lock()
        try:
            self.session = self._open(path, cache_key, self.threads)
        except Exception as exc:  # ORT raises its own exception types for unreadable models
            raise CheckpointError(f"ONNX Runtime cannot load {path}: {exc}; delete it to have it rebuilt") from exc
        self.path = path
        self.mode = mode
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.uses_token_types = "token_type_ids" in self.input_names

    def _options(self, threads: int, optimize: bool, save_to: Path | None = None) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One intra-op pool sized to the CPUs we have; inter-op parallelism only adds contention for
        # a graph that is one chain of layers.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        levels = ort.GraphOptimizationLevel
        options.graph_optimization_level = levels.ORT_ENABLE_EXTENDED if optimize else levels.ORT_DISABLE_ALL
        if save_to is not None:
            options.optimized_model_filepath = str(save_to / _SAVED_GRAPH)
            options.add_session_config_entry("session.optimized_model_external_initializers_file_name", _SAVED_WEIGHTS)
            options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        return options

    def _open(self, path: Path, cache_key: str | None, threads: int) -> Any:
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if cache_key is None:
            return ort.InferenceSession(str(path), self._options(threads, True), providers=providers)
        from textclass.onnx.cache import cache_root

        saved = cache_root() / "ort" / f"{cache_key}-ort{ort.__version__}"
        if _intact(saved):
            _touch(saved)  # before loading: another process pruning meanwhile then sees it as in use
            try:
                session = ort.InferenceSession(str(saved / _SAVED_GRAPH), self._options(threads, False),
                                               providers=providers)
                self.from_saved_optimization = True
                return session
            except Exception as exc:  # noqa: BLE001 - any damage: rebuild below
                log.warning("textclass: not using the saved optimized graph %s (%s); rebuilding it", saved, exc)
        shutil.rmtree(saved, ignore_errors=True)
        try:
            saved.parent.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(dir=saved.parent, prefix=f".{saved.name}."))
        except OSError:  # no writable cache: optimize in memory each time
            return ort.InferenceSession(str(path), self._options(threads, True), providers=providers)
        try:
            session = ort.InferenceSession(str(path), self._options(threads, True, save_to=work), providers=providers)
        except Exception:  # noqa: BLE001 - saving failed (disk full?) or the graph is bad: try without saving
            shutil.rmtree(work, ignore_errors=True)
            return ort.InferenceSession(str(path), self._options(threads, True), providers=providers)
        try:
            _record(work)
            os.replace(work, saved)  # a reader sees the complete folder or none
            prune(saved.parent, keep=saved)
        except OSError:  # another process saved it first, or the disk is full: this session is fine as it is
            shutil.rmtree(work, ignore_errors=True)
        return session

    @property
    def dtype(self) -> str:
        return "int8" if self.mode == "int8" else "float32"

    def __call__(self, batch: Batch) -> np.ndarray:  # (rows, num_labels) float32 logits
        return self._run(self.session, batch)

    def map(self, batches: Sequence[Batch]) -> Iterator[np.ndarray]:
        """Each batch's logits, in order: side by side, one thread each, when there are at least two batches
        per thread to share out (fewer would leave threads idle that could have split a product)."""
        if not self.side_by_side or self.threads < 2 or len(batches) < 2 * self.threads:
            return map(self, batches)
        with self._lock:
            if self._single_thread is None:
                self._single_thread = self._open(self.path, self._cache_key, 1)
        session = self._single_thread
        # The pool hands the next batch (longest first: make_batches' order) to whichever thread is free.
        with ThreadPoolExecutor(self.threads, thread_name_prefix="textclass-onnx") as pool:
            return iter(list(pool.map(lambda batch: self._run(session, batch), batches)))

    def _run(self, session: Any, batch: Batch) -> np.ndarray:
        feeds = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if self.uses_token_types:
            types = batch.token_type_ids
            feeds["token_type_ids"] = np.zeros_like(batch.input_ids) if types is None else types
        (logits,) = session.run(["logits"], feeds)
        return np.asarray(logits, dtype=np.float32)


def _record(folder: Path) -> None:
    """Sizes and mtimes of the saved files: a truncated or replaced file then reads as damaged."""
    files = {name: _stat(folder / name) for name in (_SAVED_GRAPH, _SAVED_WEIGHTS) if (folder / name).exists()}
    (folder / _SAVED_MANIFEST).write_text(json.dumps(files))


def _intact(folder: Path) -> bool:
    try:
        recorded = json.loads((folder / _SAVED_MANIFEST).read_text())
        return _SAVED_GRAPH in recorded and all(_stat(folder / name) == value for name, value in recorded.items())
    except (OSError, ValueError, TypeError):
        return False


def _stat(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _touch(folder: Path) -> None:
    """Mark a saved graph as used now: pruning evicts the least recently used first."""
    try:
        os.utime(folder / _SAVED_MANIFEST)
    except OSError:
        pass


def prune(root: Path, keep: Path | None = None, budget: int | None = None) -> list[Path]:
    """Remove saved graphs, least recently used first, until the rest fit the budget (bytes; default from
    TEXTCLASS_ORT_CACHE_MB), and leftovers of saves interrupted over an hour ago. Returns what went."""
    if budget is None:
        budget = _budget()
    entries, removed = [], []
    for folder in root.iterdir():
        try:
            if folder.name.startswith("."):  # a save in progress, or one a crash left behind
                if time.time() - folder.stat().st_mtime > 3600:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder)
                continue
            manifest = folder / _SAVED_MANIFEST
            used = manifest.stat().st_mtime if manifest.exists() else 0.0
            entries.append((used, sum(f.stat().st_size for f in folder.iterdir()), folder))
        except OSError:  # another process removed it meanwhile
            continue
    total = sum(size for _, size, _ in entries)
    for _, size, folder in sorted(entries, key=lambda entry: entry[0]):
        if total <= budget:
            break
        if folder != keep:
            shutil.rmtree(folder, ignore_errors=True)  # a session that opened it keeps its own copy in memory
            total -= size
            removed.append(folder)
    return removed


def _budget() -> int:
    """Bytes of saved graphs to keep: TEXTCLASS_ORT_CACHE_MB (default 2048), read leniently."""
    value = os.environ.get("TEXTCLASS_ORT_CACHE_MB", "")
    try:
        megabytes = float(value) if value else _DEFAULT_CACHE_MB
    except ValueError:
        log.warning("textclass: TEXTCLASS_ORT_CACHE_MB=%r is not a number of megabytes; keeping %d", value,
                    _DEFAULT_CACHE_MB)  # fmt: skip
        megabytes = _DEFAULT_CACHE_MB
    return max(0, int(megabytes * 2**20))
