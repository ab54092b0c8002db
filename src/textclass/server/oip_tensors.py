"""Open Inference Protocol v2 tensors on the wire: the JSON request and response, and the binary tensor extension.

JSON (KServe's inference_rest.md): {"inputs": [{"name", "shape", "datatype", "data"}], "outputs": [{"name"}],
"parameters": {...}} and back {"model_name", "outputs": [{"name", "shape", "datatype", "data"}]}.
Binary tensor extension (Triton's, what tritonclient sends by default): the body is the JSON header, then raw
tensor bytes; the `Inference-Header-Content-Length` header gives the JSON's size, and an input whose data is in
the binary part has `parameters.binary_data_size` instead of `data`. A BYTES tensor's binary form is each element
as a 4-byte little-endian length and its bytes; FP32 is little-endian float32, row-major. Outputs come back binary
when asked (`parameters.binary_data` on a requested output, or `binary_data_output` on the request), the response
carrying the same header. Decoded binary inputs become `data` before validation, so one model checks both forms.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from textclass.server.errors import ApiError
from textclass.server.schemas import NonNegativeInteger, PositiveInteger, Text

HEADER = "inference-header-content-length"
Scalar = str | int | float | bool  # what an OIP parameter's value may be
OUTPUTS = ("label", "score", "scores")


class Parameters(BaseModel):
    """OIP parameters: the ones named here typed, any others scalars (the protocol's own rule) and ignored."""

    model_config = ConfigDict(strict=True, extra="allow")
    __pydantic_extra__: dict[str, Scalar] = Field(init=False)


class InputParameters(Parameters):
    binary_data_size: NonNegativeInteger | None = Field(
        default=None, description="Binary tensor extension: this input's bytes follow the JSON header, not `data`."
    )


class RequestInput(BaseModel):
    model_config = ConfigDict(strict=True)

    name: Literal["text", "text_pair"] = Field(description="`text`, and `text_pair` for pairs (as many).")
    shape: Annotated[list[NonNegativeInteger], Field(min_length=1, max_length=1)] = Field(
        description="[N]: the number of texts in `data`.", examples=[[2]]
    )
    datatype: Literal["BYTES"]
    parameters: InputParameters | None = None
    data: Annotated[list[Text], Field(min_length=1)] = Field(
        description="The N texts, none empty or only whitespace.", examples=[["I love this movie", "I hate it"]]
    )


class OutputParameters(Parameters):
    binary_data: bool | None = Field(default=None, description="This output in binary (default: binary_data_output).")
    classification: PositiveInteger | None = Field(
        default=None, description='Triton\'s classification extension: the best k labels, "score:index:label" each.'
    )


class RequestOutput(BaseModel):
    model_config = ConfigDict(strict=True)

    name: Literal["label", "score", "scores"]
    parameters: OutputParameters | None = None


class RequestParameters(Parameters):
    truncate: bool | None = Field(default=None, description="Cut texts to the model's limit (default: true).")
    truncation_direction: Literal["right", "left", "Right", "Left"] | None = None
    raw_scores: bool | None = Field(default=None, description="Logits instead of probabilities (default: false).")
    binary_data_output: bool | None = Field(default=None, description="Every output in binary (default: false).")


class InferenceRequest(BaseModel):
    """JSON tensors in; each field checked as this schema states it (strict types)."""

    model_config = ConfigDict(strict=True)

    id: str | None = Field(default=None, description="Returned in the response.")
    parameters: RequestParameters | None = None
    inputs: Annotated[list[RequestInput], Field(min_length=1, max_length=2)]
    outputs: list[RequestOutput] | None = Field(default=None, description="Default: label, score and scores.")


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Scalar] | None = None
    data: list[str] | list[float] | list[list[float]] | list[list[str]] | None = Field(
        default=None, description="Row-major; absent when binary (binary_data_size)."
    )


class InferenceResponse(BaseModel):
    model_name: str
    id: str | None = None
    outputs: list[ResponseOutput]


class OipError(BaseModel):
    error: str = Field(examples=["unknown model 'x'; this server serves 'sentiment-en'"])


@dataclass(frozen=True)
class Output:
    name: str
    binary: bool
    classification: int | None  # the best k labels as strings instead of the tensor (any output name)


@dataclass(frozen=True)
class Inputs:
    """A checked request: texts (and pairs), the outputs asked for, in order, and its parameters."""

    id: str | None
    texts: list[str]
    pairs: list[str] | None
    outputs: list[Output]
    parameters: RequestParameters


def read_request(body: bytes, header_length: str | None, max_texts: int) -> Inputs:
    """The request's inputs, or ApiError 400 naming what is wrong (413 past max_texts)."""
    size = len(body)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > size:
            raise ApiError(400, f"Inference-Header-Content-Length must be the JSON header's size (0 to {size} bytes)"
                                f"; got {header_length!r}")  # fmt: skip
        size = int(header_length)
    try:
        raw = json.loads(body[:size])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # RecursionError: [[[[...]]]]
        raise ApiError(400, f"request body is not a JSON inference request ({type(exc).__name__}: {exc})") from exc
    if not isinstance(raw, dict):
        raise ApiError(400, "request body must be a JSON object with inputs")
    inputs = raw.get("inputs")
    for tensor in inputs if isinstance(inputs, list) else []:
        if isinstance(tensor, dict) and isinstance(tensor.get("parameters"), dict) \
                and "binary_data_size" in tensor["parameters"]:  # fmt: skip
            _check_count(tensor, max_texts)  # before decoding its bytes
    _decode_binary(raw, body[size:])
    try:
        request = InferenceRequest.model_validate(raw)
    except ValidationError as exc:
        raise ApiError(400, describe(exc, raw)) from exc
    by_name = {tensor.name: tensor for tensor in request.inputs}
    if len(by_name) < len(request.inputs):
        raise ApiError(400, "each input may appear once: text, and optionally text_pair")
    if "text" not in by_name:
        raise ApiError(400, "input 'text' is required (text_pair goes with it)")
    for tensor in request.inputs:
        if tensor.shape[0] != len(tensor.data):
            raise ApiError(400, f"input '{tensor.name}': shape {tensor.shape} but {len(tensor.data)} elements in data")
    texts = by_name["text"].data
    pairs = by_name["text_pair"].data if "text_pair" in by_name else None
    if pairs is not None and len(pairs) != len(texts):
        raise ApiError(400, f"input 'text_pair' has {len(pairs)} elements but 'text' has {len(texts)}; send one each")
    # Only a request that is otherwise valid is told it is too large: a malformed one is a 400 whatever its size
    # (as the schema promises; found by the contract test's random seed).
    _check_count({"name": "text", "shape": [len(texts)]}, max_texts)
    parameters = request.parameters or RequestParameters()
    every = bool(parameters.binary_data_output)
    outputs = []
    for asked in request.outputs if request.outputs is not None else [RequestOutput(name=n) for n in OUTPUTS]:
        options = asked.parameters or OutputParameters()
        binary = every if options.binary_data is None else options.binary_data
        outputs.append(Output(asked.name, binary, options.classification))
    return Inputs(request.id, texts, pairs, outputs, parameters)


def _check_count(tensor: dict, max_texts: int) -> None:
    """413 past max_texts. Checked before decoding binary data too: an oversized binary request costs no more than
    reading its header."""
    shape = tensor.get("shape")
    if isinstance(shape, list) and shape and isinstance(shape[0], int) and shape[0] > max_texts:
        raise ApiError(413, f"input '{tensor.get('name')}' has {shape[0]} texts but at most {max_texts} per request "
                            "(--max-client-batch-size); split them")  # fmt: skip


def _decode_binary(raw: dict, binary: bytes) -> None:
    """Inputs given as binary_data_size get their `data` from the bytes after the header, in input order."""
    offset = 0
    for tensor in raw["inputs"] if isinstance(raw.get("inputs"), list) else []:
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is None:
            continue
        name = tensor.get("name")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
            left = len(binary) - offset
            raise ApiError(400, f"input '{name}': binary_data_size {size!r} but {left} bytes follow the JSON header "
                                "(set Inference-Header-Content-Length to the header's size)")  # fmt: skip
        if tensor.get("datatype") == "BYTES":  # any other datatype is refused by validation, naming the input
            tensor["data"] = _bytes_elements(binary[offset : offset + size], name)
        offset += size
    if offset != len(binary):
        raise ApiError(400, f"{len(binary) - offset} bytes after the JSON header belong to no input's binary_data_size")


def _bytes_elements(chunk: bytes, name: Any) -> list[str]:
    """A binary BYTES tensor: (4-byte little-endian length, bytes) per element, each UTF-8 text."""
    out, offset = [], 0
    while offset < len(chunk):
        if offset + 4 > len(chunk):
            raise ApiError(400, f"input '{name}': binary BYTES data ends inside an element's 4-byte length")
        (length,) = struct.unpack_from("<I", chunk, offset)
        offset += 4
        if offset + length > len(chunk):
            raise ApiError(400, f"input '{name}': element {len(out)} says {length} bytes but fewer follow")
        try:
            out.append(chunk[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ApiError(400, f"input '{name}': element {len(out)} is not UTF-8 text ({exc.reason})") from exc
        offset += length
    return out


def describe(exc: ValidationError, raw: dict) -> str:
    """One line naming each wrong input or field: pydantic's locations say `inputs.0.data.3`."""
    messages: dict[str, str] = {}
    wrong_type: set[str] = set()  # tensors whose datatype is wrong: their data's errors would only repeat it
    for error in exc.errors():
        loc = [part for part in error["loc"] if not _type_tag(part)]
        where = ".".join(str(part) for part in loc) or "body"
        if len(loc) >= 2 and loc[0] in ("inputs", "outputs") and isinstance(loc[1], int):
            tensor = raw[loc[0]][loc[1]]
            name = tensor.get("name") if isinstance(tensor, dict) else None
            kind = "input" if loc[0] == "inputs" else "output"
            tensor_name = f"{kind} {name!r}" if isinstance(name, str) else f"{kind} {loc[1]}"
            where = f"{tensor_name}: {loc[2] if len(loc) > 2 else 'tensor'}"
            if loc[2:3] == ["datatype"]:
                wrong_type.add(tensor_name)
                messages[where] = f"{where} must be BYTES (texts); got {error.get('input')!r}"
            elif loc[2:3] == ["data"] and len(loc) > 3 and error.get("type") == "string_pattern_mismatch":
                messages.setdefault(where, f"{where}[{loc[3]}] is empty or only whitespace; every text needs "
                                           "something to classify")  # fmt: skip
            elif loc[2:3] == ["data"] and len(loc) > 3:
                messages.setdefault(where, f"{where} must be a list of strings (the texts)")
        if where in messages:  # a union's members fail one by one: the first says enough
            continue
        messages[where] = f"{where} is required" if error.get("type") == "missing" else f"{where}: {error['msg']}"
    kept = [m for where, m in messages.items() if not (where.endswith(": data") and where[: -6] in wrong_type)]
    return "; ".join(kept) or "request body does not match the inference request schema"


def _type_tag(part: object) -> bool:
    """pydantic's union member names in a location ("str", "list[str]", "function-after[...]")."""
    return isinstance(part, str) and (part in ("str", "int", "float", "bool") or "[" in part)


def write_response(
    model: str, request_id: str | None, tensors: list[tuple[str, str, np.ndarray, bool]]
) -> tuple[bytes, dict[str, str]]:
    """(body, headers) for the (name, datatype, array, binary) tensors, in order."""
    entries, chunks = [], []
    for name, datatype, array, binary in tensors:
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            chunk = _binary(datatype, array)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = array.tolist()
        entries.append(entry)
    answer: dict[str, Any] = {"model_name": model}
    if request_id is not None:
        answer["id"] = request_id
    answer["outputs"] = entries
    header = json.dumps(answer, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    if not chunks:
        return header, {"content-type": "application/json"}
    return header + b"".join(chunks), {"content-type": "application/octet-stream", HEADER: str(len(header))}


def _binary(datatype: str, array: np.ndarray) -> bytes:
    if datatype == "BYTES":
        encoded = [str(item).encode("utf-8") for item in array.reshape(-1)]
        return b"".join(struct.pack("<I", len(item)) + item for item in encoded)
    return np.ascontiguousarray(array, dtype="<f4").tobytes()
