"""The one artefact cache: the ONNX graphs textclass builds from checkpoints, one folder per key.

A key is the sha256 of what decides an artefact's content: the export settings (mode, recipe version, the CPU's
int8 plan), ONNX Runtime's version, config.json's bytes, and each weight file's name, size and mtime (a stat, never
a hash of the weights). Its folder, `<cache>/onnx/<checkpoint>-<mode>-<key[:16]>/`, holds:
- `model.onnx` + `model.onnx.data`: the graph ONNX Runtime opens. For a built artefact, the artefact itself (fused,
  weights in the side file, which ONNX Runtime maps: a session opens as fast as from ONNX Runtime's own saved
  optimized graph (docs/performance.md, "Cold start"), so no second copy is kept). For a graph a bundled model
  ships (model.fp32.onnx, reading the shipped safetensors), ONNX Runtime's optimized form of it: the links to
  fp16 weights folded to fp32 once, not at every start;
- `entry.json`: what it was made from (the checkpoint folder, the key's inputs) and each file's size; its mtime
  says when it was last used.
The folder is built under a temporary name and renamed whole, so a reader sees a complete entry or none; a file
whose size no longer matches is damage, and the entry is rebuilt. <cache> is TEXTCLASS_CACHE, else
$XDG_CACHE_HOME/textclass, else ~/.cache/textclass. Nothing is written into a checkpoint's folder or the package.
Without a writable cache an artefact is built into a temporary folder removed at exit (a bundled model's graph is
used as shipped).

Pruning is explicit (`textclass cache prune`, cli/cache.py) except for one rule: a new entry for a checkpoint folder
replaces that folder's older entries of the same mode, settings and ONNX Runtime version, which its files changed
since and which can never match again. Leftovers of builds interrupted over an hour ago go at the same time.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from textclass.checkpoint import Checkpoint
from textclass.checkpoint.locate import BUNDLED_DIR
from textclass.onnx.export import export_graphs, export_settings, require_exporter, save_graph
from textclass.onnx.layernorm import keep_split

log = logging.getLogger("textclass")
GRAPH, ENTRY = "model.onnx", "entry.json"
FORMAT = 1  # entry.json's layout
_STALE_BUILD_SECONDS = 3600  # a temporary folder this old is a build that died, not one in progress


def cache_root() -> Path:
    if os.environ.get("TEXTCLASS_CACHE"):
        return Path(os.environ["TEXTCLASS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "textclass"


def shipped_graph(checkpoint: Checkpoint, mode: str) -> Path | None:
    """The graph a bundled model ships for `mode` (trusted as shipped), or None."""
    path = checkpoint.folder / f"model.{mode}.onnx"
    bundled = checkpoint.folder.resolve().is_relative_to(BUNDLED_DIR.resolve())
    return path if bundled and path.is_file() else None


def key_inputs(checkpoint: Checkpoint, mode: str, plan: str | None) -> dict[str, Any]:
    """Everything the artefact's content depends on, cheap to read: a sha256 of config.json, stats of the rest."""
    import onnxruntime

    def stat(path: Path) -> list:
        info = path.stat()
        return [path.name, info.st_size, info.st_mtime_ns]

    shipped = shipped_graph(checkpoint, mode)
    return {
        "settings": export_settings(mode, plan),
        "onnxruntime": onnxruntime.__version__,
        "config_sha256": hashlib.sha256((checkpoint.folder / "config.json").read_bytes()).hexdigest(),
        "weights": [stat(path) for path in checkpoint.weight_files],
        "shipped": stat(shipped) if shipped else None,
    }


def entry_name(folder: Path, mode: str, inputs: dict[str, Any]) -> str:
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return f"{folder.name}-{mode}-{key[:16]}"


def find(checkpoint: Checkpoint, mode: str, plan: str | None = None) -> Path | None:
    """The cached graph for this checkpoint and mode, or None (nothing built yet, or damaged)."""
    entry = cache_root() / "onnx" / entry_name(checkpoint.folder, mode, key_inputs(checkpoint, mode, plan))
    return entry / GRAPH if not _check(entry) else None


def ensure(
    checkpoint: Checkpoint, mode: str, plan: str | None = None, calibration: Callable[[], Iterable] | None = None
) -> Path:
    """The graph ONNX Runtime should open for this checkpoint and mode: cached, else built now (once: seconds,
    tens of seconds for a traced family). `plan`: the CPU's int8 plan; `calibration`: returns int8's calibration
    feeds, called only when int8 is built."""
    inputs = key_inputs(checkpoint, mode, plan)
    root = cache_root() / "onnx"
    entry = root / entry_name(checkpoint.folder, mode, inputs)
    problem = _check(entry)
    if not problem:
        _touch(entry)  # last used: what `textclass cache` shows
        return entry / GRAPH
    if problem != "missing":
        log.warning("textclass: cache entry %s is damaged (%s); rebuilding it", entry, problem)
        shutil.rmtree(entry, ignore_errors=True)
    shipped = shipped_graph(checkpoint, mode)
    if shipped is None:
        require_exporter(checkpoint)
    try:
        work = _new_folder(root, entry.name)
    except OSError:  # no writable cache (read-only home, full disk): nothing is kept
        if shipped is not None:
            return shipped
        work = Path(tempfile.mkdtemp(prefix="textclass-uncached-"))
        atexit.register(shutil.rmtree, work, ignore_errors=True)
        log.warning("textclass: no writable cache at %s; building %s for this process only", root, mode)
        notes = _build(checkpoint, mode, plan, calibration, work, shipped, root)
        _write_entry(work, checkpoint, mode, inputs, 0.0, notes)
        return work / GRAPH
    try:
        started = time.perf_counter()
        if shipped is None:
            log.warning("textclass: exporting %s (%s) to %s (once)", checkpoint.folder, mode, entry)
        notes = _build(checkpoint, mode, plan, calibration, work, shipped, root)
        _write_entry(work, checkpoint, mode, inputs, time.perf_counter() - started, notes)
        _publish(work, entry)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _replace_older(root, entry, checkpoint.folder, mode, inputs)
    return entry / GRAPH


def _build(checkpoint: Checkpoint, mode: str, plan: str | None, calibration: Callable[[], Iterable] | None,
           work: Path, shipped: Path | None, root: Path) -> dict[str, Any]:  # fmt: skip
    """Write the entry's graph into `work`: ONNX Runtime's optimized form of a shipped graph, else the artefact,
    int8 from the fused fp32 graph (the fp32 entry's when there is one, else a fresh export, kept as the fp32 entry
    too: rescoring needs it next). Returns what entry.json notes besides: int8's calibration logits."""
    if shipped is not None:
        _optimize(shipped, work / GRAPH)
        return {}
    if mode == "fp32":
        save_graph(export_graphs(checkpoint, ["fp32"]).graphs["fp32"], work / GRAPH)
        return {}
    import onnx

    from textclass.onnx.quantize import int8_model

    if calibration is None:
        raise ValueError("an int8 export needs its calibration feeds (runtime/load.py: calibration_feeds)")
    fp32 = _built_entry(root, checkpoint, "fp32")
    if fp32 is not None:
        model, logits = int8_model(onnx.load(str(fp32)), plan, calibration())  # type: ignore[arg-type]
        save_graph(model, work / GRAPH)
    else:
        exported = export_graphs(checkpoint, ["fp32", "int8"], plan, calibration())
        save_graph(exported.graphs["int8"], work / GRAPH)
        if shipped_graph(checkpoint, "fp32") is None:
            _store(root, checkpoint, "fp32", None, lambda folder: save_graph(exported.graphs["fp32"], folder / GRAPH))
        logits = exported.calibration_logits
    return {"calibration_logits": logits.round(5).tolist() if logits is not None else None}


def calibration_logits(graph: Path) -> np.ndarray | None:
    """(texts, num_labels) fp32 logits of the calibration texts, noted when the int8 graph `graph` was built (the
    entry beside it); None when there is no note (a shipped graph, an fp32 one)."""
    try:
        noted = json.loads((graph.parent / ENTRY).read_text(encoding="utf-8")).get("calibration_logits")
    except (OSError, ValueError):
        return None
    return None if noted is None else np.asarray(noted, dtype=np.float32)


def _built_entry(root: Path, checkpoint: Checkpoint, mode: str) -> Path | None:
    """The graph of this checkpoint's intact entry for `mode` when it is an artefact built here (not a shipped
    graph's optimized form, which quantize.py cannot read), else None."""
    if shipped_graph(checkpoint, mode) is not None:
        return None
    entry = root / entry_name(checkpoint.folder, mode, key_inputs(checkpoint, mode, None))
    return entry / GRAPH if not _check(entry) else None


def _store(root: Path, checkpoint: Checkpoint, mode: str, plan: str | None, write: Callable[[Path], None]) -> None:
    """Publish another entry made on the way (best effort: the one asked for is what matters)."""
    inputs = key_inputs(checkpoint, mode, plan)
    entry = root / entry_name(checkpoint.folder, mode, inputs)
    if not _check(entry):
        return
    try:
        work = _new_folder(root, entry.name)
        try:
            write(work)
            _write_entry(work, checkpoint, mode, inputs, 0.0, {})
            _publish(work, entry)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _replace_older(root, entry, checkpoint.folder, mode, inputs)
    except OSError as exc:
        log.warning("textclass: could not cache the %s graph too (%s)", mode, exc)


def discard(graph: Path) -> bool:
    """Remove the cache entry holding `graph` (ONNX Runtime could not open it); False when `graph` is not in the
    cache (a shipped graph, a temporary build): nothing to rebuild."""
    entry = graph.parent
    if entry.parent.resolve() != (cache_root() / "onnx").resolve():
        return False
    shutil.rmtree(entry, ignore_errors=True)
    return True


def _optimize(graph: Path, out: Path) -> None:
    """ONNX Runtime's optimized form of `graph` (extended level: graph fusions and constant folding only, nothing
    specific to this CPU), its weights in `out`'s side file."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(out)
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", out.name + ".data")
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    keep_split(options)  # a shipped graph's residual blocks are not fused again (layernorm.py)
    ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])


def _new_folder(root: Path, name: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.tmp-"))


def _write_entry(work: Path, checkpoint: Checkpoint, mode: str, inputs: dict[str, Any], seconds: float,
                 notes: dict[str, Any]) -> None:  # fmt: skip
    files = {p.name: p.stat().st_size for p in sorted(work.iterdir())}
    record = {"format": FORMAT, "checkpoint": str(checkpoint.folder.resolve()), "mode": mode, "inputs": inputs,
              "files": files, "build_seconds": round(seconds, 2), **notes}  # fmt: skip
    (work / ENTRY).write_text(json.dumps(record, indent=1), encoding="utf-8")


def _publish(work: Path, entry: Path) -> None:
    """Rename the finished folder into place; another process that got there first wins (the same content)."""
    try:
        os.replace(work, entry)
    except OSError:
        if _check(entry):
            raise
        shutil.rmtree(work, ignore_errors=True)


def _check(entry: Path) -> str:
    """"" when the entry is complete and undamaged, else what is wrong ("missing" when there is none)."""
    try:
        record = json.loads((entry / ENTRY).read_text(encoding="utf-8"))
        for name, size in record["files"].items():
            if (entry / name).stat().st_size != size:
                return f"{name} changed size"
        return "" if GRAPH in record["files"] else "no graph"
    except FileNotFoundError:
        return "missing" if not entry.exists() else "a file is missing"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"entry.json unreadable ({type(exc).__name__})"


def _touch(entry: Path) -> None:
    """Mark the entry used now (what `textclass cache` shows, and `prune --older-than` reads); a read-only cache
    just keeps its old date."""
    try:
        os.utime(entry / ENTRY)
    except OSError:
        pass


@dataclass(frozen=True)
class Entry:
    folder: Path
    checkpoint: str  # the checkpoint folder it was built from ("" for an unreadable or older-layout folder)
    mode: str
    size: int  # bytes
    last_used: float  # seconds since the epoch
    state: str  # "current", "stale" (its checkpoint changed or is gone), "damaged" or "old layout"

    @property
    def key(self) -> str:
        return self.folder.name.rsplit("-", 1)[-1]


def entries(root: Path | None = None) -> list[Entry]:
    """What the cache holds, most recently used first: every entry, and the folders of an older textclass's cache
    (ort/, confirmed/, onnx/<name>-<hash>/) for `textclass cache prune` to remove."""
    root = root or cache_root()
    found = []
    for folder in _folders(root):
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        try:
            record = json.loads((folder / ENTRY).read_text(encoding="utf-8"))
            used = (folder / ENTRY).stat().st_mtime
        except (OSError, ValueError):
            found.append(Entry(folder, "", "", size, folder.stat().st_mtime, "old layout"))
            continue
        state = "damaged" if _check(folder) else _state(record)
        found.append(Entry(folder, record.get("checkpoint", ""), record.get("mode", ""), size, used, state))
    return sorted(found, key=lambda entry: -entry.last_used)


def _folders(root: Path) -> Iterator[Path]:
    for part in ("onnx", "ort"):
        if (root / part).is_dir():
            yield from (p for p in sorted((root / part).iterdir()) if p.is_dir() and not p.name.startswith("."))
    if (root / "confirmed").is_dir():
        yield root / "confirmed"


def _state(record: dict[str, Any]) -> str:
    """"current" when the checkpoint it was built from is still the one on disk (same config and weight files),
    else "stale"; the settings and ONNX Runtime version are not judged (another CPU or venv may share the cache)."""
    from textclass.checkpoint import open_checkpoint

    inputs = record["inputs"]
    try:
        checkpoint = open_checkpoint(record["checkpoint"])
        now = key_inputs(checkpoint, record["mode"], inputs["settings"].get("quantization", {}).get("plan"))
    except Exception:  # noqa: BLE001 - gone, unreadable, or no longer a checkpoint: stale either way
        return "stale"
    same = all(now[name] == inputs.get(name) for name in ("config_sha256", "weights", "shipped"))
    return "current" if same else "stale"


def prune(entries_to_remove: Iterable[Entry]) -> int:
    """Remove these entries (entries() picks them); returns the bytes freed. A process that opened one keeps its
    session: ONNX Runtime holds the graph in memory."""
    freed = 0
    for entry in entries_to_remove:
        shutil.rmtree(entry.folder, ignore_errors=True)
        freed += entry.size
    return freed


def _replace_older(root: Path, keep: Path, folder: Path, mode: str, inputs: dict[str, Any]) -> None:
    """The one automatic pruning rule (module docstring), and dead builds' leftovers."""
    same = (str(folder.resolve()), mode, inputs["settings"], inputs["onnxruntime"])
    for other in list(root.iterdir()):
        try:
            if other.name.startswith("."):
                if time.time() - other.stat().st_mtime > _STALE_BUILD_SECONDS:
                    shutil.rmtree(other, ignore_errors=True)
                continue
            if other == keep:
                continue
            record = json.loads((other / ENTRY).read_text(encoding="utf-8"))
            theirs = (record["checkpoint"], record["mode"], record["inputs"]["settings"],
                      record["inputs"]["onnxruntime"])  # fmt: skip
            if theirs == same:
                shutil.rmtree(other, ignore_errors=True)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # another process's entry being removed, or an older layout: left to `textclass cache prune`
