"""Model families textclass can load, looked up by config.json's model_type."""

from __future__ import annotations

from textclass.errors import CheckpointError
from textclass.models.bert import BERT, ROBERTA
from textclass.models.distilbert import DISTILBERT
from textclass.models.family import Family

FAMILIES: tuple[Family, ...] = (BERT, DISTILBERT, ROBERTA)
SUPPORTED_MODEL_TYPES = tuple(t for family in FAMILIES for t in family.model_types)


def family_for(model_type: str | None) -> Family:
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise CheckpointError(f"model_type {model_type!r} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
