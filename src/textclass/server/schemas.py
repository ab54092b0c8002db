"""Request and response bodies: the InferenceClient wire format for POST / and TEI's for the rest.

TEI's shapes (router/src/http/types.rs in huggingface/text-embeddings-inference) are followed exactly:
`/predict` takes a string, a list of one or two strings (one text or one pair), or a batch of such lists;
a single input answers a flat list of labels, a batch a list of lists.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from textclass.tokenize import TextInput


class InputShapeError(ValueError):
    """Inputs that parse as JSON but are not a shape TEI accepts."""


class ErrorResponse(BaseModel):
    error: str = Field(examples=["inputs must not be empty"])
    error_type: str = Field(examples=["validation"])


class LabelScore(BaseModel):
    label: str = Field(examples=["POSITIVE"])
    score: float = Field(examples=[0.9876])


# ---- POST /: huggingface_hub.InferenceClient.text_classification -------------------------------
class ClassifyParameters(BaseModel):
    model_config = ConfigDict(extra="ignore")  # the Inference API's other task parameters are no error

    top_k: int | None = Field(default=None, ge=1, description="Labels per text, best first; all when absent.")
    function_to_apply: str | None = Field(
        default=None, description="softmax, sigmoid or none; default: the checkpoint's problem type decides."
    )


class ClassifyRequest(BaseModel):
    inputs: str | list[str] = Field(examples=["I've been waiting for a HuggingFace course my whole life."])
    parameters: ClassifyParameters = Field(default_factory=ClassifyParameters)


# ---- POST /predict (TEI) ---------------------------------------------------------------------------
class PredictRequest(BaseModel):
    inputs: str | list[str] | list[list[str]] = Field(
        description='"text", ["text"], ["text", "text_pair"], or a batch [["text"], ["text", "text_pair"], ...]',
        examples=["What is Deep Learning?"],
    )
    truncate: bool | None = Field(default=None, description="Cut inputs to the model's limit (default: true).")
    truncation_direction: Literal["left", "right"] = "right"
    raw_scores: bool = Field(default=False, description="Logits instead of probabilities.")

    @field_validator("truncation_direction", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value  # TEI spells them Left / Right


def predict_inputs(inputs: str | list[str] | list[list[str]]) -> tuple[list[TextInput], bool]:
    """TEI's reading of `inputs`: (texts and pairs, whether it was a single input)."""
    if isinstance(inputs, str):
        return [inputs], True
    if not inputs:
        raise InputShapeError("inputs must not be empty")
    if isinstance(inputs[0], str):
        return [_sequence(inputs, None)], True
    return [_sequence(item, index) for index, item in enumerate(inputs)], False


def _sequence(item: list, index: int | None) -> TextInput:
    where = "inputs" if index is None else f"inputs[{index}]"
    if len(item) == 1:
        return item[0]
    if len(item) == 2:
        return (item[0], item[1])
    raise InputShapeError(
        f"{where} has {len(item)} strings; expected [text] or a pair [text, text_pair] "
        '(send a batch as [["first text"], ["second text"], ...])'
    )


# ---- POST /tokenize and /decode (TEI) ---------------------------------------------------------------
class TokenizeRequest(BaseModel):
    inputs: str | list[str]
    add_special_tokens: bool = True


class SimpleToken(BaseModel):
    id: int
    text: str
    special: bool
    start: int | None = None  # character offsets into the input; null for special tokens
    stop: int | None = None


class DecodeRequest(BaseModel):
    ids: list[int] | list[list[int]]
    skip_special_tokens: bool = True
