"""The cache of exported ONNX models: where they live, what they were made from, and when to rebuild.

An artefact `model.<mode>.onnx` sits beside the checkpoint when that folder is writable (a bundled model
ships its own this way), else under the user cache (TEXTCLASS_CACHE, $XDG_CACHE_HOME/textclass or
~/.cache/textclass). Next to it, `model.<mode>.onnx.json` records what it was built from: config.json's
hash, each weight file's size, mtime and content hash, the export settings, and the artefact's own size
and hash. An artefact is used only when all of these still match; otherwise (stale, truncated, edited,
half-written) it is rebuilt. Files are written to a temporary name and renamed, so readers never see half
a file. Validating costs one stat per file when mtimes are unchanged; a file whose mtime moved (a copy, a
git clone, a package install) is re-hashed once, and when its content proves unchanged its new size and
mtime are remembered in the user cache (`confirmed/`), never in the manifest: a shipped manifest (the
bundled model's) stays byte for byte what was committed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from textclass.checkpoint import Checkpoint
from textclass.fileio import atomic_write
from textclass.onnx.export import export_onnx, export_settings, require_exporter

log = logging.getLogger("textclass")


def artefact_name(mode: str) -> str:
    return f"model.{mode}.onnx"


def cache_root() -> Path:
    if os.environ.get("TEXTCLASS_CACHE"):
        return Path(os.environ["TEXTCLASS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "textclass"


def candidate_dirs(checkpoint: Checkpoint) -> list[Path]:
    """Beside the checkpoint first, then a per-checkpoint folder in the user cache."""
    folder_key = hashlib.sha256(str(checkpoint.folder.resolve()).encode()).hexdigest()[:16]
    return [checkpoint.folder, cache_root() / "onnx" / f"{checkpoint.folder.name}-{folder_key}"]


def find(checkpoint: Checkpoint, mode: str) -> tuple[Path, dict[str, Any]] | None:
    """A valid artefact for this checkpoint and mode, with its manifest; None when there is none."""
    for folder in candidate_dirs(checkpoint):
        path = folder / artefact_name(mode)
        if not path.exists():
            continue
        manifest, problem = check(path, checkpoint, mode)
        if manifest is not None:
            return path, manifest
        log.warning("textclass: not using %s: %s; it will be rebuilt", path, problem)
    return None


def ensure(checkpoint: Checkpoint, mode: str) -> tuple[Path, dict[str, Any]]:
    """A valid artefact, exported now (once; tens of seconds) when none is cached."""
    found = find(checkpoint, mode)
    if found is not None:
        return found
    require_exporter(checkpoint, mode)
    for folder in candidate_dirs(checkpoint):
        if _writable(folder):
            path = folder / artefact_name(mode)
            log.warning("textclass: exporting %s to %s (once)", checkpoint.folder, path)
            return path, build(checkpoint, mode, path, link=folder == checkpoint.folder and linkable(checkpoint))
    raise OSError(f"no writable place for the ONNX export; tried {', '.join(map(str, candidate_dirs(checkpoint)))}")


def linkable(checkpoint: Checkpoint) -> bool:
    """Whether an artefact beside the checkpoint can read the weights from its files (onnx_link.py): plain
    safetensors files, not symlinks (ONNX Runtime refuses external data that resolves outside the folder,
    as a hub cache's snapshot links do)."""
    files = list(checkpoint.weight_files)
    return bool(files) and all(f.suffix == ".safetensors" and not f.is_symlink() for f in files)


def build(checkpoint: Checkpoint, mode: str, path: Path, link: bool = False) -> dict[str, Any]:
    """Export to `path` and write its manifest; returns the manifest."""
    source = fingerprint(checkpoint)  # before exporting: a checkpoint changed meanwhile then reads as stale
    if mode == "int8":  # quantized from the fp32 artefact (shipped or cached): seconds, without a second export
        from textclass.onnx.calibration import calibration_batches
        from textclass.onnx.quantize import write_int8
        from textclass.runtime.cpu import int8_plan

        fp32, _ = ensure(checkpoint, "fp32")
        write_int8(fp32, path, int8_plan(), calibration_batches(checkpoint), checkpoint.weight_files if link else ())
    else:
        export_onnx(checkpoint, path, mode, link=link)
    manifest = {
        "settings": export_settings(mode),
        "source": source,
        "artefact": _describe(path),
        "linked_weights": link,
    }
    atomic_write(_manifest_path(path), json.dumps(manifest, indent=1).encode())
    return manifest


def check(path: Path, checkpoint: Checkpoint, mode: str) -> tuple[dict[str, Any] | None, str]:
    """(manifest, "") when `path` is a faithful export of the checkpoint now on disk, else (None, why not)."""
    try:
        manifest = json.loads(_manifest_path(path).read_text(encoding="utf-8"))
        if manifest["settings"] != export_settings(mode):
            return None, "made with other export settings"
        recorded = manifest["source"]
        if recorded["config_sha256"] != file_sha256(checkpoint.folder / "config.json"):
            return None, "config.json changed"
        weights = {item["name"]: item for item in recorded["weights"]}
        if set(weights) != {p.name for p in checkpoint.weight_files}:
            return None, "the weight files changed"
        confirmed = _Confirmed(path)
        for file in checkpoint.weight_files:
            problem = confirmed.same(file, weights[file.name])
            if problem:
                return None, f"{file.name} {problem}"
        problem = confirmed.same(path, manifest["artefact"])
        if problem:
            return None, f"the ONNX file {problem} since it was built (damaged or replaced)"
        confirmed.save()
    except FileNotFoundError as exc:
        return None, f"{Path(exc.filename or '?').name} is missing"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"its manifest is unreadable ({type(exc).__name__})"
    return manifest, ""


class _Confirmed:
    """Files whose mtime differs from the manifest but whose content was hashed and found unchanged, by
    (size, mtime): kept in the user cache so the next load needs a stat, not a hash, and the manifest beside
    the artefact is never rewritten. Best effort: without a writable cache the file is re-hashed next time."""

    def __init__(self, artefact: Path):
        key = hashlib.sha256(str(artefact.resolve()).encode()).hexdigest()[:16]
        self.path = cache_root() / "confirmed" / f"{artefact.name}-{key}.json"
        try:
            self.known: dict[str, list] = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.known = {}
        self.changed = False

    def same(self, file: Path, recorded: dict[str, Any]) -> str:
        """An empty string when `file` still is what `recorded` describes, else what differs."""
        stat = file.stat()
        if stat.st_size != recorded["size"]:
            return "changed size"
        if stat.st_mtime_ns == recorded["mtime_ns"]:
            return ""  # same size and mtime: trusted without reading (a stat, not a hash, per load)
        key, seen = str(file.resolve()), [stat.st_size, stat.st_mtime_ns, recorded["sha256"]]
        if self.known.get(key) == seen:
            return ""
        if file_sha256(file) != recorded["sha256"]:
            return "changed"
        self.known[key] = seen
        self.changed = True
        return ""

    def save(self) -> None:
        if not self.changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(self.known, indent=1).encode())
        except OSError:
            pass


def session_key(manifest: dict[str, Any]) -> str:
    """What an optimized ONNX Runtime graph saved from this artefact depends on (onnx_engine.py): the artefact,
    and the checkpoint's config and weights, which a linked artefact reads at load."""
    source = manifest["source"]
    parts = [manifest["artefact"]["sha256"], source["config_sha256"], *(w["sha256"] for w in source["weights"])]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def fingerprint(checkpoint: Checkpoint) -> dict[str, Any]:
    weights = [{"name": file.name, **_describe(file)} for file in checkpoint.weight_files]
    return {"config_sha256": file_sha256(checkpoint.folder / "config.json"), "weights": weights}


def _describe(file: Path) -> dict[str, Any]:
    stat = file.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": file_sha256(file)}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False
