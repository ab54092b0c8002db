"""Writing files so that a reader, or a process killed half-way, never sees half of one.

Every writer in textclass (ONNX artefacts and their manifests, batch output parts and manifests, training
checkpoints, reports) goes through these: write a temporary sibling, rename it over the target (atomic on one
filesystem). `durable` adds the fsyncs that make the content and the rename survive a power cut, for files whose
loss would lose accepted work (batch output); caches and reports that can be rebuilt skip that cost.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def atomic_write(path: Path, data: bytes | Callable[[IO[bytes]], Any], durable: bool = False) -> None:
    """Replace `path` with `data` (bytes, or a function that writes into the open binary file) all at once."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            if isinstance(data, bytes):
                handle.write(data)
            else:
                data(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; what we write is as readable as its folder
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_folder(path.parent)  # makes the rename itself durable


def write_json(path: Path, data: Any, durable: bool = False) -> None:
    atomic_write(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"), durable=durable)


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield a temporary folder that becomes `target` by one rename on success; `target` must not exist."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield temp
        os.replace(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _fsync_folder(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
