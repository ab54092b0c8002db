"""Long documents: score a text longer than the model's window as several windows, then one answer per text.

The pipeline truncates: whatever lies past the model's limit is never read. Here a text is cut into windows
of `chunk_tokens` tokens (the model's limit by default, special tokens included) that overlap by up to `stride`
tokens. Cuts fall between tokens, and where possible where a sentence starts (else where a word starts), so a
window holds whole sentences (and needs no overlap when it ends with one); the last window reaches back to be
full. Every window of every text is scored in the same `Classifier.run` call (or the server's batches), and each
text's window scores are aggregated:
- mean: the average of the windows' scores (probabilities stay a distribution);
- max: per label, its highest score in any window (the strongest window speaks; scores no longer sum to 1);
- first: the first window alone (only it is scored): truncation at `chunk_tokens`.
A text that fits in one window is scored exactly as with truncation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from textclass.checkpoint.tokenizer import Encoded, TextInput
from textclass.errors import InputError

if TYPE_CHECKING:
    from textclass.checkpoint.tokenizer import Tokenizer

LONG_TEXT = ("truncate", "chunk")
AGGREGATES = ("mean", "max", "first")
# Where a new sentence starts: after . ! ? … (and closing quotes or brackets) and whitespace, or after a newline.
_SENTENCE_BREAK = re.compile(r"[.!?…]+[\"'”’)\]]*\s+|\n\s*")


@dataclass(frozen=True)
class Plan:
    """Windows to score, in text order, and how many belong to each text."""

    encoded: list[Encoded]
    counts: list[int]
    aggregate: str

    def combine(self, scores: np.ndarray) -> np.ndarray:
        """(windows, labels) scores -> (texts, labels), by the aggregation asked for."""
        if not self.counts:
            return np.asarray(scores)[:0]  # no texts
        blocks = np.split(np.asarray(scores), np.cumsum(self.counts)[:-1])
        reduce = {"mean": lambda b: b.mean(0), "max": lambda b: b.max(0), "first": lambda b: b[0]}[self.aggregate]
        return np.stack([reduce(block) for block in blocks])


@dataclass(frozen=True)
class Windows:
    """How to cut texts into windows; `plan` does it."""

    tokenizer: Tokenizer
    chunk_tokens: int
    stride: int
    aggregate: str

    def plan(self, items: Sequence[TextInput], strict: bool = True) -> Plan:
        """The windows of every text. A text without tokens is an error, or with strict=False one window of
        special tokens only (what truncation scores for it)."""
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise InputError(f"input {index} is a text pair; long_text='chunk' splits single texts only")
        prefix, suffix = special_tokens(self.tokenizer)
        content = self.chunk_tokens - len(prefix[0]) - len(suffix[0])
        encoded, counts = [], []
        for index, (text, encoding) in enumerate(zip(items, self.tokenizer.encodings(list(items), False))):
            if not encoding.ids and strict:
                raise InputError(f"text {index} has no tokens ({text!r}); give it words to classify")
            spans = split(len(encoding.ids), content, self.stride, *cut_points(text, encoding))
            spans = spans[:1] if self.aggregate == "first" else spans
            for start, end in spans:
                ids = prefix[0] + encoding.ids[start:end] + suffix[0]
                encoded.append(Encoded(ids, prefix[1] + encoding.type_ids[start:end] + suffix[1]))
            counts.append(len(spans))
        return Plan(encoded, counts, self.aggregate)


def windows_for(
    tokenizer: Tokenizer,
    long_text: str = "truncate",
    chunk_tokens: int | None = None,
    stride: int | None = None,
    aggregate: str = "mean",
) -> Windows | None:
    """Checked options: None for truncation (the pipeline's behaviour), else how to cut texts into windows.

    chunk_tokens: tokens per window, special tokens included (default: the model's limit); stride: tokens two
    windows may share (default: an eighth of the window).
    """
    if long_text not in LONG_TEXT:
        raise InputError(f"long_text must be one of {', '.join(LONG_TEXT)}; got {long_text!r}")
    if aggregate not in AGGREGATES:
        raise InputError(f"aggregate must be one of {', '.join(AGGREGATES)}; got {aggregate!r}")
    if long_text == "truncate":
        if chunk_tokens is not None or stride is not None:
            raise InputError("chunk_tokens and stride apply to long_text='chunk'; set it, or leave them out")
        return None
    limit = tokenizer.model_max_length
    specials = sum(len(part[0]) for part in special_tokens(tokenizer))
    window = limit if chunk_tokens is None else chunk_tokens
    if not _integer(window) or not specials < window <= limit:
        raise InputError(f"chunk_tokens must be an integer from {specials + 1} to the model's limit {limit} "
                         f"({specials} of them go to special tokens); got {chunk_tokens!r}")  # fmt: skip
    content = window - specials
    overlap = content // 8 if stride is None else stride
    if not _integer(overlap) or not 0 <= overlap < content:
        raise InputError(f"stride (tokens shared by neighbouring windows) must be from 0 to {content - 1}, smaller "
                         f"than the window's {content} text tokens (chunk_tokens {window} less {specials} special "
                         f"tokens); got {stride!r}")  # fmt: skip
    return Windows(tokenizer, window, overlap, aggregate)


def special_tokens(tokenizer: Tokenizer) -> tuple[tuple[list[int], list[int]], tuple[list[int], list[int]]]:
    """((ids, type ids) before the text, (ids, type ids) after it): what the tokenizer wraps a text in."""
    plain = tokenizer.encodings(["a"], add_special_tokens=False)[0]
    full = tokenizer.encodings(["a"], add_special_tokens=True)[0]
    for start in range(len(full.ids) - len(plain.ids) + 1):
        if full.ids[start : start + len(plain.ids)] == plain.ids:
            end = start + len(plain.ids)
            return (full.ids[:start], full.type_ids[:start]), (full.ids[end:], full.type_ids[end:])
    raise InputError("cannot tell this tokenizer's special tokens from the text's; use long_text='truncate'")


def cut_points(text: str, encoding: Any) -> tuple[list[int], list[int]]:
    """Token positions where a sentence starts, and where a word starts (both ascending, 0 excluded)."""
    breaks = {match.end() for match in _SENTENCE_BREAK.finditer(text)}
    sentences, words = [], []
    for position in range(1, len(encoding.ids)):
        if encoding.word_ids[position] != encoding.word_ids[position - 1]:
            words.append(position)
            if encoding.offsets[position][0] in breaks:
                sentences.append(position)
    return sentences, words


def split(length: int, content: int, overlap: int, sentences: list[int], words: list[int]) -> list[tuple[int, int]]:
    """[start, end) token spans of at most `content` tokens covering 0..length, consecutive ones sharing up to
    `overlap` tokens. A window ends where a sentence (else a word) starts if one does in its second half; the
    next starts at the first sentence start within the last `overlap` tokens, or where the window ended if that is a
    sentence start (whole sentences need no overlap), else at the first word start there; the last window reaches
    back to be full."""

    def first(points: list[int], low: int, high: int) -> int | None:
        return next((p for p in points if low <= p <= high), None)

    def last(points: list[int], low: int, high: int) -> int | None:
        return next((p for p in reversed(points) if low <= p <= high), None)

    spans: list[tuple[int, int]] = []
    start = end = 0
    while start + content < length:
        # Past the previous window's end (overlap < content keeps that within reach), and at least half full.
        limit, floor = start + content, max(start + max(1, content // 2), end + 1)
        end = last(sentences, floor, limit) or last(words, floor, limit) or limit
        spans.append((start, end))
        low = max(end - overlap, start + 1)
        start = first(sentences, low, end) or first(words, low, end) or low
    if spans:  # the last window: as full as it can be, starting at a sentence or word start
        low = max(length - content, spans[-1][0] + 1)
        start = first(sentences, low, start) or first(words, low, start) or start
    spans.append((start, length))
    return spans


def add_window_counts(per_input: list[Any], counts: list[int]) -> None:
    """Put "windows" in every label dict of each input's result (a dict, or a list of dicts)."""
    for result, count in zip(per_input, counts, strict=True):
        for entry in result if isinstance(result, list) else [result]:
            entry["windows"] = count


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
