"""Request and response bodies: the InferenceClient wire format for POST / and TEI's for the rest.

TEI's shapes (router/src/http/types.rs in huggingface/text-embeddings-inference) are followed exactly:
`/predict` takes a string, a list of one or two strings (one text or one pair), or a batch of such lists;
a single input answers a flat list of labels, a batch a list of lists. `/rerank` takes a query and texts and
answers [{index, score[, text]}], best first. POST / with `parameters.candidate_labels` is zero-shot
classification as the Inference API answers it: [{label, score}], best first.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from textclass.tasks import DEFAULT_HYPOTHESIS_TEMPLATE, MAX_CANDIDATE_LABELS
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
    # Zero-shot classification (InferenceClient.zero_shot_classification) when candidate_labels is given.
    candidate_labels: list[str] | str | None = Field(
        default=None,
        description=f"Zero-shot with an NLI model: the labels to score, a list or 'a,b,c' (at most "
        f"{MAX_CANDIDATE_LABELS}). Answers [{{label, score}}] for one text, a list of those per text for a list.",
        examples=[["refund", "legal", "faq"]],
    )
    multi_label: bool | None = Field(
        default=None, description="Zero-shot: score each label on its own instead of softmaxing across labels."
    )
    hypothesis_template: str | None = Field(
        default=None,
        description=f'Zero-shot: the NLI hypothesis, "{{}}" for the label (default "{DEFAULT_HYPOTHESIS_TEMPLATE}").',
    )


class ClassifyRequest(BaseModel):
    inputs: str | list[str] = Field(examples=["I've been waiting for a HuggingFace course my whole life."])
    parameters: ClassifyParameters = Field(default_factory=ClassifyParameters)


# ---- POST /predict and /rerank (TEI) ----------------------------------------------------------------
class TeiOptions(BaseModel):
    """What /predict and /rerank share."""

    truncate: bool | None = Field(default=None, description="Cut inputs to the model's limit (default: true).")
    truncation_direction: Literal["left", "right"] = "right"
    raw_scores: bool = Field(default=False, description="Logits instead of probabilities.")

    @field_validator("truncation_direction", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value  # TEI spells them Left / Right


class PredictRequest(TeiOptions):
    inputs: str | list[str] | list[list[str]] = Field(
        description='"text", ["text"], ["text", "text_pair"], or a batch [["text"], ["text", "text_pair"], ...]',
        examples=["What is Deep Learning?"],
    )


class RerankRequest(TeiOptions):
    """A cross-encoder scores each (query, text) pair; raw_scores: the logit instead of its sigmoid."""

    query: str = Field(examples=["What is Deep Learning?"])
    texts: list[str] = Field(examples=[["Deep Learning is a kind of machine learning.", "Cheese is made of milk."]])
    return_text: bool = Field(default=False, description="Echo each text in its result.")


class Rank(BaseModel):
    index: int = Field(description="Position of the text in the request's `texts`.")
    score: float = Field(examples=[0.9876])
    text: str | None = Field(default=None, description="The text, when return_text is true.")


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
