"""Rerank as RAG frameworks call it: Cohere's v2 (POST /v2/rerank) and v1 / Jina's (POST /v1/rerank) shapes.

The same cross-encoder scores as TEI's /rerank: each (query, document) pair through the shared batches, the
sigmoid of its one logit, best first (ties keep input order), `top_n` of them. What differs is the wire format:
- v2 (`cohere.ClientV2.rerank`): documents are strings; `max_tokens_per_doc` cuts each document before it is
  paired; the answer is {id, results: [{index, relevance_score}], meta}.
- v1 (Cohere's v1 and Jina's API, one route for both): documents are strings or {text, ...} objects (an object's
  other fields come back with it, as Cohere's v1 does); `return_documents` defaults to true as Jina's does (Cohere
  v1 clients that want none send false); the answer adds `model` and `usage.total_tokens` (Jina's), beside `id` and
  `meta` (Cohere's).
A request may carry up to --max-rerank-documents documents (default 1,000, what both APIs advise): a RAG app
sends its 50-100 retrieved candidates in one call, past TEI's client batch size.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from textclass.errors import InputError
from textclass.server.errors import ApiError, documented
from textclass.server.lookup import ProtocolModel, ServedModels
from textclass.server.schemas import PositiveInteger, Request, Text
from textclass.server.threads import in_thread
from textclass.tasks.rerank import rank_texts, require_cross_encoder, rerank_pairs

Handler = Callable[[Any], Awaitable[tuple[Any, dict[str, str]]]]  # fastpath.py's route function
ERRORS = documented(400, 401, 404, 413, 422, 424, 429, 500, 503)

_MODEL = Field(
    default=None,
    description="The served model to rank with (GET /info model_id). With one model served, any value, or none.",
    examples=["rerank-v3.5"],
)
_TOP_N = Field(default=None, description="The best this many, best first (default: every document).")


class TextDocument(BaseModel):
    """A v1 document object: its `text` is ranked; any other fields come back with it unchanged."""

    model_config = ConfigDict(strict=True, extra="allow")

    text: Text = Field(examples=["Carson City is the capital city of Nevada."])


class CohereV2RerankRequest(Request):
    model: str | None = _MODEL
    query: Text = Field(examples=["What is the capital of the United States?"])
    documents: Annotated[list[Text], Field(min_length=1)] = Field(
        examples=[["Carson City is the capital city of Nevada.", "Washington, D.C. is the capital of the US."]]
    )
    top_n: PositiveInteger | None = _TOP_N
    max_tokens_per_doc: PositiveInteger | None = Field(
        default=None, description="Cut each document to this many tokens before pairing it with the query."
    )


class RerankV1Request(Request):
    model: str | None = _MODEL
    query: Text = Field(examples=["What is the capital of the United States?"])
    documents: Annotated[list[Text | TextDocument], Field(min_length=1)] = Field(
        description="Strings, or objects with a `text` field (Jina's {text}; Cohere v1's objects keep their fields).",
        examples=[["Carson City is the capital city of Nevada.", {"text": "Washington, D.C. is the capital."}]],
    )
    top_n: PositiveInteger | None = _TOP_N
    return_documents: bool = Field(default=True, description="Each result carries its document (Jina's default).")
    rank_fields: list[Literal["text"]] | None = Field(
        default=None, description='Cohere v1: only ["text"] (a document\'s text is what the model reads).'
    )


class RerankResult(BaseModel):
    index: int = Field(ge=0, description="The document's position in the request.")
    relevance_score: float = Field(description="Sigmoid of the cross-encoder's logit: 0 to 1, higher is better.")


class RerankResultWithDocument(RerankResult):
    document: dict[str, Any] | None = Field(
        default=None, description="{text} for a string document, the object itself for an object (return_documents)."
    )


class ApiVersion(BaseModel):
    version: str


class Tokens(BaseModel):
    input_tokens: int = Field(ge=0, description="Tokens the model read: every (query, document) pair.")


class MetaV2(BaseModel):
    api_version: ApiVersion
    tokens: Tokens


class MetaV1(BaseModel):
    api_version: ApiVersion


class Usage(BaseModel):
    total_tokens: int = Field(ge=0)


class CohereV2RerankResponse(BaseModel):
    id: str
    results: list[RerankResult]
    meta: MetaV2


class RerankV1Response(BaseModel):
    id: str
    model: str = Field(description="The served model that ranked the documents.")
    results: list[RerankResultWithDocument]
    usage: Usage
    meta: MetaV1


def rerank_routes(models: ServedModels, max_documents: int) -> dict[str, tuple[type[BaseModel], Handler]]:
    """path -> (request model, route function): FastPath answers these, `declare` documents them."""

    def admit(name: str | None, count: int) -> ProtocolModel:
        """The model asked for, once it can rank this many documents."""
        served = models.pick(name)
        if count > max_documents:
            raise ApiError(413, f"{count} documents but at most {max_documents} per request "
                                "(--max-rerank-documents); split them")  # fmt: skip
        try:
            require_cross_encoder(served.clf.config)
        except InputError as exc:  # a classifier, not a cross-encoder: TEI's /rerank answers 424 too
            raise ApiError(424, str(exc)) from exc
        return served

    async def ranked(served: ProtocolModel, query: str, texts: list[str], top_n: int | None) -> tuple[list[dict], int]:
        """(results best first with index and relevance_score, tokens read), the scores as on /rerank."""
        pairs = rerank_pairs(query, texts)
        encoded = await served.encode(pairs, True, "right")
        logits = await served.infer(pairs, True, "right", encoded)  # (documents, 1)
        served.predictions.observe_logits(logits)
        results = [{"index": r["index"], "relevance_score": r["score"]}
                   for r in rank_texts(logits, texts, top_n, False, False)]  # fmt: skip
        return results, sum(len(row) for row in encoded)

    async def v2(body: CohereV2RerankRequest) -> tuple[Any, dict[str, str]]:
        served = admit(body.model, len(body.documents))
        texts = body.documents
        if body.max_tokens_per_doc is not None and body.max_tokens_per_doc < served.clf.tokenizer.model_max_length:
            # Pairs are cut at the model's limit anyway; below it, each document is tokenized once more, off the loop
            # (in a daemon thread, as all the server's work off the loop: a cancelled request's never holds the exit).
            texts = await in_thread(cut_documents, served, texts, body.max_tokens_per_doc)
        results, tokens = await ranked(served, body.query, texts, body.top_n)
        meta = {"api_version": {"version": "2"}, "tokens": {"input_tokens": tokens}}
        return {"id": str(uuid.uuid4()), "results": results, "meta": meta}, {}

    async def v1(body: RerankV1Request) -> tuple[Any, dict[str, str]]:
        served = admit(body.model, len(body.documents))
        texts = [doc if isinstance(doc, str) else doc.text for doc in body.documents]
        results, tokens = await ranked(served, body.query, texts, body.top_n)
        if body.return_documents:
            for result in results:
                doc = body.documents[result["index"]]
                result["document"] = {"text": doc} if isinstance(doc, str) else doc.model_dump()
        answer = {"id": str(uuid.uuid4()), "model": served.model_id, "results": results,
                  "usage": {"total_tokens": tokens}, "meta": {"api_version": {"version": "1"}}}  # fmt: skip
        return answer, {}

    return {"/v2/rerank": (CohereV2RerankRequest, v2), "/v1/rerank": (RerankV1Request, v1)}


def cut_documents(served: ProtocolModel, texts: list[str], max_tokens: int) -> list[str]:
    """Each document cut after its first `max_tokens` tokens (Cohere's max_tokens_per_doc), at that token's end."""
    out = []
    for text, encoding in zip(texts, served.clf.tokenizer.encodings(texts, False)):
        offsets = encoding.offsets
        out.append(text if len(offsets) <= max_tokens else text[: offsets[max_tokens - 1][1]])
    return out


def declare(app: FastAPI, routes: dict[str, tuple[type[BaseModel], Handler]], answer: Callable) -> None:
    """The FastAPI routes documenting (and, off the fast path, serving) the rerank shapes."""
    v2, v1 = routes["/v2/rerank"][1], routes["/v1/rerank"][1]

    @app.post("/v2/rerank", response_model=CohereV2RerankResponse, responses=ERRORS, summary="Cohere v2 rerank")
    async def cohere_v2_rerank(body: CohereV2RerankRequest) -> Response:
        """What `cohere.ClientV2(base_url=...).rerank(model, query, documents, top_n)` sends and parses."""
        return answer(*await v2(body))

    @app.post("/v1/rerank", response_model=RerankV1Response, responses=ERRORS, summary="Cohere v1 / Jina rerank")
    async def rerank_v1(body: RerankV1Request) -> Response:
        """Jina's rerank API and Cohere's v1: documents as strings or {text} objects, returned unless
        return_documents is false."""
        return answer(*await v1(body))
