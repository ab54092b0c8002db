"""Request and response bodies: the InferenceClient wire format for POST / and TEI's for the rest.

TEI's shapes (router/src/http/types.rs in huggingface/text-embeddings-inference) are followed exactly:
`/predict` takes a string, a list of one or two strings (one text or one pair), or a batch of such lists;
a single input answers a flat list of labels, a batch a list of lists. `/rerank` takes a query and texts and
answers [{index, score[, text]}], best first. POST / with `parameters.candidate_labels` is zero-shot
classification as the Inference API answers it: [{label, score}], best first.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from textclass.checkpoint.tokenizer import TextInput
from textclass.tasks.zero_shot import DEFAULT_HYPOTHESIS_TEMPLATE, MAX_CANDIDATE_LABELS

# TEI's error types (router/src/lib.rs `ErrorType`, v1.9.3), spelled as TEI sends them.
ErrorType = Literal["Unhealthy", "Backend", "Overloaded", "Validation", "Tokenizer", "Empty"]


class Request(BaseModel):
    """A request body checked exactly as /openapi.json states it: strict types ("true" is not a boolean, "3"
    not an integer), so what the schema allows and what the server takes cannot drift apart."""

    model_config = ConfigDict(strict=True)


def _whole(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# The whitespace str.strip() removes, spelled out so that every regex engine (pydantic's, Python's, a client's) agrees.
_SPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


# JSON Schema's integers: 3 and 3.0 (not "3", not true); strict pydantic alone would refuse 3.0. Bounds go
# inside the Annotated, before the validator, or the schema would not state them.
_WHOLE = BeforeValidator(_whole)
Integer = Annotated[int, _WHOLE]
PositiveInteger = Annotated[int, Field(ge=1), _WHOLE]
NonNegativeInteger = Annotated[int, Field(ge=0), _WHOLE]
NonEmpty = Annotated[list[str], Field(min_length=1)]
# What tokenizers can decode: u32 ids (larger or negative ones cannot be passed to it).
TokenId = Annotated[int, Field(ge=0, le=2**32 - 1), _WHOLE]

# A text to classify holds a character that is not whitespace (str.strip()'s): an empty or blank text is a 422 that
# names its index (TEI refuses empty inputs too).
NOT_BLANK = f"[^{_SPACE}]"
Text = Annotated[str, Field(pattern=NOT_BLANK)]
Texts = Annotated[list[Text], Field(min_length=1)]
# One TEI input: [text] or a pair [text, text_pair].
Sequence = Annotated[list[Text], Field(min_length=1, max_length=2)]

# "a, b,c": 1 to MAX_CANDIDATE_LABELS labels; blank ones are skipped (tasks.parse_candidate_labels). The
# whitespace is str.strip()'s, spelled out so that every regex engine (pydantic's, Python's, a client's) agrees.
_BLANK, _LABEL = f"[{_SPACE}]*", f"[{_SPACE}]*[^,{_SPACE}][^,]*"
LABEL_LIST = f"^(?:{_BLANK},)*{_LABEL}(?:(?:,{_BLANK})*,{_LABEL}){{0,{MAX_CANDIDATE_LABELS - 1}}}(?:,{_BLANK})*$"
CandidateLabels = (
    Annotated[list[str], Field(min_length=1, max_length=MAX_CANDIDATE_LABELS)]
    | Annotated[str, Field(pattern=LABEL_LIST)]
)


class ErrorResponse(BaseModel):
    error: str = Field(examples=["inputs must not be empty"])
    error_type: ErrorType = Field(examples=["Validation"])


class LabelScore(BaseModel):
    label: str = Field(examples=["POSITIVE"])
    score: float = Field(examples=[0.9876])
    windows: int | None = Field(default=None, description='Windows scored for this text (long_text "chunk" only).')


class LongTextOptions(BaseModel):
    """Texts past the model's limit: truncate (the pipeline's way) or score windows and aggregate (chunking.py)."""

    long_text: Literal["truncate", "chunk"] = "truncate"
    # The bounds that depend on the served model (its limit, its special tokens) are in the descriptions: a static
    # schema cannot state them.
    chunk_tokens: Annotated[int, Field(ge=4), _WHOLE] | None = Field(
        default=None,
        description="Chunk: tokens per window, special tokens included, at most the model's limit (GET /info "
        "max_input_length; default: that limit). Ignored with truncate.",
    )
    stride: Annotated[int, Field(ge=0), _WHOLE] | None = Field(
        default=None,
        description="Chunk: tokens neighbouring windows share, smaller than a window's text tokens (default: an "
        "eighth of them; the maximum stated is the longest window's). Ignored with truncate.",
    )
    aggregate: Literal["mean", "max", "first"] = Field(default="mean", description="Chunk: combining windows' scores.")


# ---- POST /: huggingface_hub.InferenceClient.text_classification -------------------------------
class ClassifyParameters(Request, LongTextOptions):
    model_config = ConfigDict(extra="ignore")  # the Inference API's other task parameters are no error

    top_k: PositiveInteger | None = Field(default=None, description="Labels per text, best first; all when absent.")
    function_to_apply: Literal["softmax", "sigmoid", "none", "default"] | None = Field(
        default=None, description="Default (or absent): the checkpoint's problem type decides, as in transformers."
    )
    # Zero-shot classification (InferenceClient.zero_shot_classification) when candidate_labels is given.
    candidate_labels: CandidateLabels | None = Field(
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
        pattern=r"^[^{}]*\{\}[^{}]*$",
        description=f'Zero-shot: the NLI hypothesis, with one "{{}}" where the label goes and no other braces '
        f'(default "{DEFAULT_HYPOTHESIS_TEMPLATE}").',
    )


class ClassifyRequest(Request):
    inputs: Text | Texts = Field(examples=["I've been waiting for a HuggingFace course my whole life."])
    parameters: ClassifyParameters = Field(default_factory=ClassifyParameters)


# ---- POST /predict and /rerank (TEI) ----------------------------------------------------------------
class TeiOptions(Request):
    """What /predict and /rerank share."""

    truncate: bool | None = Field(default=None, description="Cut inputs to the model's limit (default: true).")
    # TEI takes both spellings (serde aliases in its router/src/http/types.rs).
    truncation_direction: Literal["left", "right", "Left", "Right"] = "right"
    raw_scores: bool = Field(default=False, description="Logits instead of probabilities.")

    @field_validator("truncation_direction")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class PredictRequest(TeiOptions, LongTextOptions):
    inputs: Text | Sequence | Annotated[list[Sequence], Field(min_length=1)] = Field(
        description='"text", ["text"], ["text", "text_pair"], or a batch [["text"], ["text", "text_pair"], ...]',
        examples=["What is Deep Learning?"],
    )


class RerankRequest(TeiOptions):
    """A cross-encoder scores each (query, text) pair; raw_scores: the logit instead of its sigmoid."""

    query: Text = Field(examples=["What is Deep Learning?"])
    texts: Texts = Field(examples=[["Deep Learning is a kind of machine learning.", "Cheese is made of milk."]])
    return_text: bool = Field(default=False, description="Echo each text in its result.")


class Rank(BaseModel):
    index: int = Field(ge=0, description="Position of the text in the request's `texts`.")
    score: float = Field(examples=[0.9876])
    text: str | None = Field(default=None, description="The text, when return_text is true.")


def predict_inputs(inputs: str | list[str] | list[list[str]]) -> tuple[list[TextInput], bool]:
    """TEI's reading of `inputs` (a shape PredictRequest validated): (texts and pairs, whether it was one input)."""
    if isinstance(inputs, str):
        return [inputs], True
    if isinstance(inputs[0], str):
        return [_sequence(inputs)], True
    return [_sequence(item) for item in inputs], False


def _sequence(item: list[str]) -> TextInput:
    return item[0] if len(item) == 1 else (item[0], item[1])


# ---- POST /tokenize and /decode (TEI) ---------------------------------------------------------------
class TokenizeRequest(Request):
    inputs: Text | Texts
    add_special_tokens: bool = True


class SimpleToken(BaseModel):
    id: int = Field(ge=0)
    text: str
    special: bool
    start: int | None = Field(default=None, ge=0)  # character offsets into the input; null for special tokens
    stop: int | None = Field(default=None, ge=0)


class DecodeRequest(Request):
    ids: list[TokenId] | list[list[TokenId]]
    skip_special_tokens: bool = True


# ---- GET /info (TEI's Info, and ours) ---------------------------------------------------------------
class ClassifierModel(BaseModel):
    id2label: dict[str, str]
    label2id: dict[str, int]


class ModelSummary(BaseModel):
    name: str = Field(description="Its routes are under /models/{name}/.")
    model_id: str
    family: str
    labels: list[str]
    tasks: list[str] = Field(description="classify, explain, tokenize; rerank and zero-shot where the model can.")
    precision: str = Field(description="The mode the model runs in.")
    device: str


class Info(BaseModel):
    """The served model and the server's limits: every field TEI's Info requires, then ours."""

    model_id: str = Field(description="The model's name: bundled name, hub id, folder name, or --model-id.")
    served_model_name: str
    model_dtype: str
    # {"classifier": ...}, or {"reranker": ...} for a one-output model, as TEI calls them.
    model_type: dict[Literal["classifier", "reranker"], ClassifierModel]
    max_concurrent_requests: int = Field(ge=0)
    max_input_length: int = Field(ge=0)
    max_batch_tokens: int = Field(ge=0, description="Padded tokens (rows × longest) per model forward pass.")
    max_client_batch_size: int = Field(ge=0)
    max_explain_batch_size: int = Field(ge=0)
    auto_truncate: bool
    tokenization_workers: int = Field(ge=0)
    version: str
    family: str
    labels: list[str]
    problem_type: str | None
    device: str
    payload_limit: int
    precision: str = Field(description='What runs the model, e.g. "onnx-int8" (per-row int8) or "onnx-float32".')
    precision_reason: str = Field(description="Why that mode runs on this machine, decided once at load.")
    max_request_tokens: int = Field(
        ge=0, description="Tokens of model work one request may ask for: texts, windows, pairs, explain's variants."
    )
    request_timeout: float = Field(ge=0, description="Seconds a request may take before it is answered 503.")
    name: str = Field(description="The model's name in /models/{name}/.")
    models: list[ModelSummary] = Field(description="Every model this server serves; the first is also at the root.")


# ---- POST /explain -------------------------------------------------------------------------------------------
class ExplainRequest(Request):
    # A text to explain needs a token: a blank one is refused here (the schema's pattern), one of only characters its
    # tokenizer drops (control characters) by explain.tokens_of, both 422. Not r"\w": JSON Schema's regex reads it
    # as ASCII, pydantic's as Unicode, so "é&" was valid to one and not the other (found by a random contract seed).
    inputs: Text | Annotated[list[Text], Field(min_length=1)] = Field(
        description="A text, or a list of them; each must give its tokenizer a token (not only control characters).",
        examples=["A gorgeous, witty, seductive movie."],
    )
    method: Literal["occlusion", "integrated_gradients"] = "occlusion"
    target: str | None = Field(
        default=None, description="The label to explain, one of the model's (GET /info); default: the predicted one."
    )
    baseline: Literal["delete", "pad", "mask"] | None = Field(
        default=None, description="What replaces a word: delete (occlusion's default), pad (IG's default) or mask."
    )
    unit: Literal["word", "token"] = Field(default="word", description="Occlusion: remove whole words or tokens.")
    steps: Annotated[int, Field(ge=1, le=512), _WHOLE] = Field(
        default=50, description="Integrated gradients: quadrature points."
    )


class TokenAttribution(BaseModel):
    token: str
    start: int = Field(description="Character offset into the text.")
    end: int
    attribution: float = Field(description="How much this token adds to the label's score.")


class WordAttribution(BaseModel):
    word: str
    start: int
    end: int
    attribution: float = Field(description="The sum of its tokens' attributions.")


class Explanation(BaseModel):
    label: str
    score: float
    tokens: list[TokenAttribution]
    words: list[WordAttribution]
