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
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from textclass.checkpoint.tokenizer import Encoded, TextInput
from textclass.errors import InputError, LimitError

if TYPE_CHECKING:
    from textclass.checkpoint.tokenizer import Tokenizer

LONG_TEXT = ("truncate", "chunk")
AGGREGATES = ("mean", "max", "first")
# Where a new sentence starts: after . ! ? … (and closing quotes or brackets) and whitespace, or after a newline.
_SENTENCE_BREAK = re.compile(r"[.!?…]+[\"'”’)\]]*\s+|\n\s*")
# A first guess of the characters that hold one token (English WordPiece: about 5), for tokenizing a prefix.
CHARS_PER_TOKEN = 8


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
    """How to cut texts into windows; `plan` (a bound for all texts together) and `plan_each` (one per text) do it.

    Tokenizing is bounded by what the windows can use: with aggregate "first", or under a bound, a long text is
    tokenized only as far as its first window, or the windows it may still take, reach (leading_encoding)."""

    tokenizer: Tokenizer
    chunk_tokens: int
    stride: int
    aggregate: str

    @cached_property
    def specials(self) -> tuple[tuple[list[int], list[int]], tuple[list[int], list[int]]]:
        return special_tokens(self.tokenizer)

    @property
    def content(self) -> int:
        """Text tokens per window: chunk_tokens less the special tokens."""
        prefix, suffix = self.specials
        return self.chunk_tokens - len(prefix[0]) - len(suffix[0])

    def plan(self, items: Sequence[TextInput], strict: bool = True, max_windows: int | None = None) -> Plan:
        """The windows of every text. A text without tokens is an error, or with strict=False one window of
        special tokens only (what truncation scores for it). max_windows: the most windows all texts together
        may take (None: no bound); past it, a LimitError before any model work."""
        texts = _single_texts(items)
        check_max_windows(max_windows, len(texts))
        encoded: list[Encoded] = []
        counts = []
        for index, (text, early) in enumerate(zip(texts, self._encode_short(texts, max_windows is not None))):
            # Windows still allowed: each later text needs one at least.
            allowed = None if max_windows is None else max_windows - len(encoded) - (len(texts) - index - 1)
            windows = self._cut(text, early, allowed)
            if windows is None:
                raise LimitError(f"the texts need more than max_windows={max_windows} windows of "
                                 f"{self.chunk_tokens} tokens (text {index} is where they run out); shorten or "
                                 "split the texts, send fewer, or raise max_windows", limit=max_windows)  # fmt: skip
            if not windows and strict:
                raise InputError(f"text {index} has no tokens ({text!r}); give it words to classify")
            encoded += windows or [self._wrap([], [])]
            counts.append(max(1, len(windows)))
        return Plan(encoded, counts, self.aggregate)

    def plan_each(self, texts: Sequence[str], max_windows: int | None) -> tuple[Plan, list[str | None]]:
        """Windows of the texts that need at most `max_windows` each, and per text the error of one that needs
        more (None where planned); a text without tokens is one window of special tokens. For `textclass batch`,
        where one long row must not fail the others."""
        check_max_windows(max_windows, 1)
        encoded: list[Encoded] = []
        counts, errors = [], []
        for text, early in zip(texts, self._encode_short(texts, max_windows is not None)):
            windows = self._cut(text, early, max_windows)
            if windows is None:
                errors.append(f"needs more than --max-windows {max_windows} windows of {self.chunk_tokens} tokens")
                continue
            errors.append(None)
            encoded += windows or [self._wrap([], [])]
            counts.append(max(1, len(windows)))
        return Plan(encoded, counts, self.aggregate), errors

    def _encode_short(self, texts: Sequence[str], bounded: bool) -> list[Any]:
        """Encodings of the texts short enough to hold few tokens, tokenized together (the Rust tokenizer's
        threads); None for those that `_cut` tokenizes alone, only as far as it needs. Without a bound and with
        every window used, all are short."""
        bounded = bounded or self.aggregate == "first"
        short = [i for i, text in enumerate(texts) if not bounded or len(text) <= CHARS_PER_TOKEN * self.content]
        out: list[Any] = [None] * len(texts)
        for index, encoding in zip(short, self.tokenizer.encodings([texts[i] for i in short], False)):
            out[index] = encoding
        return out

    def _cut(self, text: str, encoding: Any, allowed: int | None) -> list[Encoded] | None:
        """The windows of one text ([] when it has no tokens); None when it needs more than `allowed`."""
        content = self.content
        first = self.aggregate == "first"
        bound = content if first else None if allowed is None else allowed * content  # tokens worth reading
        if encoding is None:
            encoding, length, _ = leading_encoding(self.tokenizer, text, bound)
        else:
            length = len(encoding.ids)
        if bound is not None and length > bound and not first:
            return None  # windows hold at most `content` tokens each
        token_ids, type_ids = encoding.ids[:length], encoding.type_ids[:length]  # each read builds a list: once
        if not token_ids:
            return []
        spans = split(length, content, self.stride, *cut_points(text, encoding, length))
        spans = spans[:1] if first else spans
        if allowed is not None and len(spans) > allowed:
            return None
        return [self._wrap(token_ids[start:end], type_ids[start:end]) for start, end in spans]

    def _wrap(self, ids: list[int], type_ids: list[int]) -> Encoded:
        """A window's text tokens inside the tokenizer's special tokens."""
        prefix, suffix = self.specials
        return Encoded(prefix[0] + ids + suffix[0], prefix[1] + type_ids + suffix[1])


def _single_texts(items: Sequence[TextInput]) -> list[str]:
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise InputError(f"input {index} is a text pair; long_text='chunk' splits single texts only")
    return list(items)  # type: ignore[arg-type]


def check_max_windows(max_windows: int | None, texts: int) -> None:
    """max_windows must be a positive integer or None; texts that each take one window must fit in it."""
    if max_windows is None:
        return
    if not _integer(max_windows) or max_windows < 1:
        raise InputError(f"max_windows must be a positive integer or None (no bound); got {max_windows!r}")
    if texts > max_windows:
        raise LimitError(f"{texts} texts take at least {texts} windows, more than max_windows={max_windows}; "
                         "send fewer texts or raise max_windows", limit=max_windows)  # fmt: skip


def leading_encoding(tokenizer: Tokenizer, text: str, tokens: int | None) -> tuple[Any, int, int]:
    """(encoding without special tokens, n, characters): the encoding of text[:characters], whose first n tokens
    are the whole text's first n tokens, n > `tokens` unless they are all of the text's tokens. So a text far
    longer than `tokens` is tokenized only about that far: a prefix cut where whitespace is (its last word, which
    may go on past the cut, is not counted), growing 4× until it holds enough tokens; work stays linear in the text
    when its tokens are sparse."""
    size = CHARS_PER_TOKEN * ((tokens or 0) + 1)
    while tokens is not None and size < len(text):
        cut = max(text.rfind(space, size // 2, size) for space in (" ", "\n", "\t"))
        cut = cut if cut > 0 else size
        encoding = tokenizer.encodings([text[:cut]], False)[0]
        word_ids = encoding.word_ids
        trusted = len(word_ids)
        while trusted and word_ids[trusted - 1] == word_ids[-1]:
            trusted -= 1
        if trusted > tokens:
            return encoding, trusted, cut
        size *= 4
    encoding = tokenizer.encodings([text], False)[0]
    return encoding, len(encoding.ids), len(text)


def truncation_prefix(tokenizer: Tokenizer, text: str, tokens: int) -> str:
    """What truncation at `tokens` tokens reads of a text, as a prefix that tokenizes to the same first tokens: a
    text far past the limit is not tokenized whole only to be cut (2 MB took 1.5 s; this takes milliseconds)."""
    if tokens < 1 or len(text) <= CHARS_PER_TOKEN * (tokens + 1):
        return text
    return text[: leading_encoding(tokenizer, text, tokens)[2]]


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


def cut_points(text: str, encoding: Any, length: int | None = None) -> tuple[list[int], list[int]]:
    """Token positions where a sentence starts, and where a word starts (both ascending, 0 excluded), among the
    encoding's first `length` tokens (default: all).

    O(tokens): an Encoding's `word_ids` and `offsets` build a new Python list on every read (4,000 tokens: 2.4 s
    read per token, 0.5 ms read once), so each is read once."""
    word_ids, offsets = encoding.word_ids, encoding.offsets
    length = len(word_ids) if length is None else length
    end = offsets[length - 1][1] if length else 0
    # Sentence breaks in the text those tokens cover (and a little past): not a scan of a text far longer.
    breaks = {match.end() for match in _SENTENCE_BREAK.finditer(text, 0, min(len(text), end + 64))}
    sentences, words = [], []
    for position in range(1, length):
        if word_ids[position] != word_ids[position - 1]:
            words.append(position)
            if offsets[position][0] in breaks:
                sentences.append(position)
    return sentences, words


def split(length: int, content: int, overlap: int, sentences: list[int], words: list[int]) -> list[tuple[int, int]]:
    """[start, end) token spans of at most `content` tokens covering 0..length, consecutive ones sharing up to
    `overlap` tokens. A window ends where a sentence (else a word) starts if one does in its second half; the
    next starts at the first sentence start within the last `overlap` tokens, or where the window ended if that is a
    sentence start (whole sentences need no overlap), else at the first word start there; the last window reaches
    back to be full."""

    # Binary searches in the ascending point lists: O(log tokens) per window, not a scan of every point.
    def first(points: list[int], low: int, high: int) -> int | None:
        at = bisect_left(points, low)
        return points[at] if at < len(points) and points[at] <= high else None

    def last(points: list[int], low: int, high: int) -> int | None:
        at = bisect_right(points, high) - 1
        return points[at] if at >= 0 and points[at] >= low else None

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
