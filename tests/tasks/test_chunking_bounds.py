"""Long documents in bounded, linear work: cutting reads each token list once, a prefix is tokenized only as far as
the windows can use, max_windows bounds a call (Python API, CLI, batch), and the answers stay the same."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import CORPUS
from textclass.checkpoint import open_checkpoint
from textclass.checkpoint.locate import resolve_model
from textclass.classifier import Classifier
from textclass.cli.app import app
from textclass.errors import InputError, LimitError
from textclass.tasks import chunking
from textclass.tasks.chunking import leading_encoding, windows_for

TINY = Path(__file__).parents[1] / "fixtures" / "tiny"
# WordPiece (bert, distilbert), byte-level BPE (roberta), SentencePiece Unigram (xlm-roberta, camembert), and the
# bundled MiniLM's: every tokenizer kind the fixtures hold.
TOKENIZERS = {name: open_checkpoint(TINY / name).load_tokenizer() for name in sorted(p.name for p in TINY.iterdir())}
TOKENIZERS["sentiment-en"] = open_checkpoint(resolve_model(None)).load_tokenizer()
SENTENCES = [" ".join(CORPUS[i % len(CORPUS)].split()[: 4 + (i * 5) % 9]) + "." for i in range(40)]
runner = CliRunner()


def document(words: int) -> str:
    text, out = " ".join(SENTENCES), []
    while sum(len(part.split()) for part in out) < words:
        out.append(text)
    return " ".join(" ".join(out).split()[:words])


@pytest.fixture(scope="module")
def clf(tiny_checkpoints) -> Classifier:
    return Classifier.from_pretrained(tiny_checkpoints["bert"][0])  # 3 labels, a 64-token limit


# Pieces of text, glued without a separator now and then: words, accents, CJK, emoji, combining marks, runs of
# whitespace and punctuation, the tokenizers' special-looking strings.
PIECES = st.sampled_from(["word", "Café", "naïve", "e\u0301", "中文", "日本語", "😀", "👍🏽", "don't", "3.14", "...",
                          "!?", "  ", "\n", "\n\n", "\t", "[MASK]", "<s>", "supercalifragilistic", "Ångström", "—",
                          " the", " a", "x" * 30])  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(st.tuples(PIECES, st.sampled_from(["", " ", " ", ". ", "\n"])), min_size=1, max_size=400),
       tokens=st.integers(1, 60), name=st.sampled_from(sorted(TOKENIZERS)))  # fmt: skip
def test_leading_encoding_is_the_texts_own_start(pieces, tokens, name):
    """Whatever the text and tokenizer: the trusted tokens of the prefix are the full text's first tokens (ids, type
    ids, offsets, word starts), more than asked for unless they are all of them."""
    tokenizer = TOKENIZERS[name]
    text = "".join(piece + glue for piece, glue in pieces)
    full = tokenizer.encodings([text], False)[0]
    encoding, trusted, _ = leading_encoding(tokenizer, text, tokens)
    assert trusted > tokens or trusted == len(full.ids)
    assert encoding.ids[:trusted] == full.ids[:trusted]
    assert encoding.offsets[:trusted] == full.offsets[:trusted]
    assert encoding.type_ids[:trusted] == full.type_ids[:trusted]
    assert chunking.cut_points(text, encoding, trusted) == tuple(
        [p for p in points if p < trusted] for points in chunking.cut_points(text, full))
    # Truncation reads the prefix as it reads the whole text (tokens + 2: the limit, special tokens included).
    limit = tokens + 2
    prefix = chunking.truncation_prefix(tokenizer, text, limit)
    assert text.startswith(prefix)
    assert tokenizer.encode_batch([prefix], max_length=limit) == tokenizer.encode_batch([text], max_length=limit)


def test_truncation_tokenizes_only_what_it_reads(clf, monkeypatch):
    text = document(200_000)  # ~1.2 MB, truncated at 64 tokens
    expected = clf.tokenizer.encode_batch([text])
    seen = []
    encode_batch, encodings = clf.tokenizer.encode_batch, clf.tokenizer.encodings
    monkeypatch.setattr(clf.tokenizer, "encode_batch", lambda texts, **kw: seen.extend(map(len, texts))
                        or encode_batch(texts, **kw))  # fmt: skip
    monkeypatch.setattr(clf.tokenizer, "encodings", lambda texts, add_special_tokens=True: seen.extend(map(len, texts))
                        or encodings(texts, add_special_tokens))  # fmt: skip
    assert clf.encode([text, "short"]) == [*expected, *encode_batch(["short"])]
    assert sum(seen) < 5_000, seen  # characters tokenized, of 1.2 million
    assert clf.encode([text], truncation_side="left") == clf.tokenizer.encode_batch([text], truncation_side="left")


def test_cutting_reads_each_token_list_once(clf):
    """`word_ids` and `offsets` build a new list on each read: a cutter reading them per token is quadratic."""
    full = clf.tokenizer.encodings([document(3000)], False)[0]
    reads = {"word_ids": 0, "offsets": 0}

    class Counted:
        ids = full.ids

        def __getattr__(self, name):
            reads[name] += 1
            return getattr(full, name)

    chunking.cut_points(document(3000), Counted())
    assert reads == {"word_ids": 1, "offsets": 1}


def test_planning_is_linear_in_the_text(clf):
    """Planning 40k words takes about 40× what 1k words take (it took 1,000× and more before: the cutter was
    quadratic); a generous bound, so a busy machine does not fail it."""
    windows = windows_for(clf.tokenizer, "chunk", chunk_tokens=64, stride=8)

    def seconds(words: int) -> float:
        text = document(words)
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            windows.plan([text])
            best = min(best, time.perf_counter() - started)
        return best

    small, large = seconds(1000), seconds(40_000)
    assert large < 40 * small * 5 + 0.5, (small, large)


def test_first_window_tokenizes_only_a_prefix(clf, monkeypatch):
    """aggregate "first" and max_windows read a huge text only as far as their windows can use, and answer as if
    they had read it all."""
    text = document(200_000)  # ~1.2 MB
    unbounded = windows_for(clf.tokenizer, "chunk", chunk_tokens=64, stride=8).plan([text[:20_000]])
    seen = []
    encodings = clf.tokenizer.encodings
    monkeypatch.setattr(clf.tokenizer, "encodings", lambda texts, add_special_tokens=True: seen.extend(map(len, texts))
                        or encodings(texts, add_special_tokens))  # fmt: skip
    first = windows_for(clf.tokenizer, "chunk", chunk_tokens=64, stride=8, aggregate="first").plan([text])
    assert first.counts == [1] and first.encoded[0].ids == unbounded.encoded[0].ids
    assert sum(seen) < 10_000, seen  # characters tokenized, of 1.2 million
    seen.clear()
    with pytest.raises(LimitError) as caught:
        windows_for(clf.tokenizer, "chunk", chunk_tokens=64, stride=8).plan([text], max_windows=5)
    assert caught.value.limit == 5 and "max_windows=5" in str(caught.value)
    assert sum(seen) < 20_000, seen


def test_max_windows_in_the_python_api(clf):
    texts = [document(300), "short", document(120)]
    free = clf(texts, long_text="chunk", chunk_tokens=32, stride=4, top_k=None)
    needed = sum(r[0]["windows"] for r in free)
    assert needed > 5
    assert clf(texts, long_text="chunk", chunk_tokens=32, stride=4, top_k=None, max_windows=needed) == free
    with pytest.raises(LimitError, match=f"more than max_windows={needed - 1} windows of 32 tokens"):
        clf(texts, long_text="chunk", chunk_tokens=32, stride=4, max_windows=needed - 1)
    # Truncation: each text is one window.
    assert clf(texts, max_windows=3) == clf(texts)
    with pytest.raises(LimitError, match="3 texts take at least 3 windows, more than max_windows=2"):
        clf(texts, max_windows=2)
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(InputError, match="max_windows must be a positive integer or None"):
            clf(texts, long_text="chunk", max_windows=bad)


def test_max_windows_on_the_command_line_and_in_batch(clf, tmp_path):
    folder = str(clf.folder)
    long, short = document(400), "a fine short text"
    need = clf(long, long_text="chunk", chunk_tokens=32)[0]["windows"]
    ok = runner.invoke(app, ["classify", long, short, "--model", folder, "--format", "jsonl", "--long-text", "chunk",
                             "--chunk-tokens", "32", "--max-windows", str(need + 1)])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert [json.loads(line)["windows"] for line in ok.stdout.splitlines()] == [need, 1]
    over = runner.invoke(app, ["classify", long, short, "--model", folder, "--long-text", "chunk",
                               "--chunk-tokens", "32", "--max-windows", str(need)])  # fmt: skip
    lines = over.stderr.strip().splitlines()
    assert over.exit_code == 1 and len(lines) == 1 and f"more than max_windows={need}" in lines[0]
    # batch: a row past the bound is an error row; the others are scored as without a bound.
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in [short, long, short]), encoding="utf-8")
    outputs = {}
    for bound in ([], ["--max-windows", str(need - 1)]):
        out = tmp_path / f"out{len(bound)}.jsonl"
        done = runner.invoke(app, ["batch", "-i", str(source), "-o", str(out), "--model", folder, "-q",
                                   "--long-text", "chunk", "--chunk-tokens", "32", *bound])  # fmt: skip
        assert done.exit_code == 0, done.output
        outputs[len(bound)] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    free, bounded = outputs[0], outputs[2]
    assert free[1]["windows"] == need and free[1]["error"] is None
    assert bounded[1]["label"] is None and f"more than --max-windows {need - 1} windows" in bounded[1]["error"]
    assert [bounded[i] for i in (0, 2)] == [free[i] for i in (0, 2)]
