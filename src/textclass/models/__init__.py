"""Model families textclass can load, looked up by config.json's model_type.

One line per model_type names the module that declares its family. Modules are imported on first use: a
family whose file holds its own nn.Modules imports torch with it, which the BERT lineage's ONNX path never
needs (its declarations are torch-free; its modules live in encoder.py).
"""

from __future__ import annotations

import importlib

from textclass.errors import CheckpointError
from textclass.models.family import Family

REGISTRY = {
    "bert": "textclass.models.bert",
    "roberta": "textclass.models.bert",
    "xlm-roberta": "textclass.models.bert",
    "camembert": "textclass.models.bert",
    "distilbert": "textclass.models.distilbert",
    "deberta-v2": "textclass.models.deberta",
    "electra": "textclass.models.electra",
    "albert": "textclass.models.albert",
    "modernbert": "textclass.models.modernbert",
    "mpnet": "textclass.models.mpnet",
}
SUPPORTED_MODEL_TYPES = tuple(REGISTRY)


def family_for(model_type: str | None) -> Family:
    module_name = REGISTRY.get(model_type or "")
    if module_name is None:
        raise CheckpointError(
            f"model_type {model_type!r} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise CheckpointError(
            f"model_type {model_type!r} runs on PyTorch, which is not installed: pip install 'textclass[torch]'"
        ) from exc
    return next(family for family in module.FAMILIES if model_type in family.model_types)


__all__ = ["REGISTRY", "SUPPORTED_MODEL_TYPES", "Family", "family_for"]
