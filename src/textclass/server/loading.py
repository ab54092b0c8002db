"""Loading what a server serves: each model once, checked, and a failure named before anything listens."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING

from textclass.errors import TextclassError
from textclass.server.settings import ServerSettings

if TYPE_CHECKING:
    from textclass.classifier import Classifier

log = logging.getLogger("textclass.server")


def load_models(settings: ServerSettings) -> Classifier | dict[str, Classifier]:
    """The classifier(s) to serve, each loaded once and checked (a bare encoder without a head fails here, with its
    message, not at the first request). One that fails stops the start-up, named, before anything listens."""
    from textclass.classifier import Classifier
    from textclass.server.settings import model_name

    specs = settings.models or ((None, settings.model),)
    loaded: dict[str | None, Classifier] = {}
    for name, source in specs:
        started = time.perf_counter()
        try:
            clf = Classifier.from_pretrained(
                source, device=settings.device, dtype=settings.dtype, backend=settings.backend,
                max_batch_tokens=settings.max_batch_tokens,
            )  # fmt: skip
            clf.run([])
        except TextclassError as exc:
            if name is None:
                raise
            raise TextclassError(f"model {name!r} ({source}) did not load: {exc}") from exc
        loaded[name] = clf
        log.info(json.dumps({
            "event": "model_loaded", "name": name, "model_id": name or settings.model_id or model_name(clf.folder),
            "folder": str(clf.folder), "family": clf.config.family, "labels": list(clf.labels), "device": clf.device,
            "precision": clf.precision, "max_batch_tokens": clf.max_batch_tokens,
            "max_input_length": clf.tokenizer.model_max_length, "seconds": round(time.perf_counter() - started, 2),
        }))  # fmt: skip
    return loaded[None] if None in loaded else {str(name): clf for name, clf in loaded.items()}
