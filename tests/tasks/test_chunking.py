"""Long documents: windows that cover the text along sentence boundaries, one run call for every window, the
aggregations, bad options, the CLI and `textclass batch`, and accuracy on the bundled model beyond its window."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import CORPUS
from textclass import postprocess
from textclass.classifier import Classifier
from textclass.cli.app import app
from textclass.errors import InputError
from textclass.tasks.chunking import split, windows_for

# Sentences of 5-15 words: a long, multi-sentence document for a 64-token model.
SENTENCES = [" ".join(CORPUS[i % len(CORPUS)].split()[: 5 + (i * 7) % 11]).rstrip(".!?") + "." for i in range(24)]
DOCUMENT = " ".join(SENTENCES)


@pytest.fixture(scope="module")
def clf(tiny_checkpoints) -> Classifier:
    return Classifier.from_pretrained(tiny_checkpoints["bert"][0])  # 3 labels, a 64-token limit


def test_split_covers_in_windows_with_bounded_overlap():
    rng = random.Random(0)
    for _ in range(200):
        length, content = rng.randint(1, 400), rng.randint(2, 60)
        overlap = rng.randint(0, content - 1)
        words = sorted(rng.sample(range(1, length), min(length - 1, length // 2))) if length > 1 else []
        sentences = sorted(rng.sample(words, len(words) // 5))
        spans = split(length, content, overlap, sentences, words)
        assert spans[0][0] == 0 and spans[-1][1] == length
        for (start, end), (next_start, next_end) in zip(spans, spans[1:]):
            assert start < next_start <= end < next_end  # in order, contiguous or overlapping, always advancing
            assert end - next_start <= max(overlap, end - (length - content))  # overlap bounded (the last may reach)
        assert all(0 < end - start <= content for start, end in spans)


def test_windows_end_and_start_at_sentences(clf):
    windows = windows_for(clf.tokenizer, "chunk", chunk_tokens=40, stride=8)
    plan = windows.plan([DOCUMENT])
    assert plan.counts[0] == len(plan.encoded) > 2
    firsts = {clf.tokenizer.tokenize(s)[0] for s in SENTENCES}
    full = clf.tokenizer.encodings([DOCUMENT], add_special_tokens=False)[0].ids
    covered = []
    for window in plan.encoded:
        assert len(window) <= 40 and window.ids[0] == clf.tokenizer.encoding("").ids[0]  # [CLS] ... [SEP]
        body = window.ids[1:-1]
        assert clf.tokenizer.convert_ids_to_tokens(body[:1])[0] in firsts  # starts where a sentence does
        after = covered[-1][0] + 1 if covered else 0  # sentences repeat: look past the previous window's start
        start = next(i for i in range(after, len(full)) if full[i : i + len(body)] == body)
        covered.append((start, start + len(body)))
    assert covered[0][0] == 0 and covered[-1][1] == len(full)
    assert all(b[0] <= a[1] for a, b in zip(covered, covered[1:]))  # no token left out


def test_short_texts_score_as_truncation(clf):
    texts = CORPUS[:6]
    assert all(len(e) <= 64 for e in clf.encode(texts))
    chunked = clf(texts, long_text="chunk")
    assert [c["windows"] for c in chunked] == [1] * len(texts)
    for got, want in zip(chunked, clf(texts)):
        assert got["label"] == want["label"] and got["score"] == pytest.approx(want["score"], abs=1e-6)
    ranked = clf(texts[0], long_text="chunk", top_k=None)
    assert [r["windows"] for r in ranked] == [1, 1, 1]
    assert [r["label"] for r in ranked] == [r["label"] for r in clf(texts[0], top_k=None)]
    assert clf([], long_text="chunk") == clf([]) == []


def test_every_window_in_one_run_call_and_each_aggregation(clf, monkeypatch):
    texts = [DOCUMENT, CORPUS[1], DOCUMENT[: len(DOCUMENT) // 2]]
    calls = []
    run = clf.run
    monkeypatch.setattr(clf, "run", lambda encoded, batch_size=None: calls.append(len(encoded)) or run(encoded))
    results = clf(texts, long_text="chunk", chunk_tokens=32, stride=6, top_k=None)
    plan = windows_for(clf.tokenizer, "chunk", 32, 6).plan(texts)
    assert calls == [len(plan.encoded)] and plan.counts[1] == 1 and plan.counts[0] > plan.counts[2] > 1
    monkeypatch.undo()
    # Each window alone, one forward pass each, then the aggregation by hand.
    alone = np.concatenate([clf.run([window]) for window in plan.encoded])
    probabilities = postprocess.apply(alone / clf.temperature, "softmax")
    blocks = np.split(probabilities, np.cumsum(plan.counts)[:-1])
    first_windows = clf(texts, long_text="chunk", chunk_tokens=32, stride=6, aggregate="first", top_k=None)
    highest = clf(texts, long_text="chunk", chunk_tokens=32, stride=6, aggregate="max", top_k=None)
    for index, block in enumerate(blocks):
        for result, want, windows in [(results[index], block.mean(0), plan.counts[index]),
                                      (highest[index], block.max(0), plan.counts[index]),
                                      (first_windows[index], block[0], 1)]:  # fmt: skip
            got = {r["label"]: r["score"] for r in result}
            np.testing.assert_allclose([got[label] for label in clf.labels], want, atol=1e-5)
            assert {r["windows"] for r in result} == {windows}
    assert sum(r["score"] for r in results[0]) == pytest.approx(1, abs=1e-5)  # the mean stays a distribution


def test_bad_long_text_options(clf):
    cases = [
        (dict(long_text="split"), "long_text must be one of truncate, chunk"),
        (dict(long_text="chunk", aggregate="median"), "aggregate must be one of mean, max, first"),
        (dict(long_text="chunk", stride=62), "stride (tokens shared by neighbouring windows) must be from 0 to 61"),
        (dict(long_text="chunk", chunk_tokens=16, stride=14), "must be from 0 to 13"),
        (dict(long_text="chunk", chunk_tokens=65), "chunk_tokens must be an integer from 3 to the model's limit 64"),
        (dict(long_text="chunk", chunk_tokens=2), "chunk_tokens must be an integer from 3"),
        (dict(stride=4), "chunk_tokens and stride apply to long_text='chunk'"),
    ]
    for options, message in cases:
        with pytest.raises(InputError) as caught:
            clf("fine", **options)
        assert message in str(caught.value)
    with pytest.raises(InputError, match=r"input 1 is empty \(or only whitespace\)"):
        clf(["fine", "   "], long_text="chunk")
    with pytest.raises(InputError, match="text 1 has no tokens"):  # not blank, yet nothing the tokenizer keeps
        clf(["fine", "\u200b\u200b"], long_text="chunk")
    with pytest.raises(InputError, match="text pair"):
        clf([("a", "b")], long_text="chunk")


# ---- command line and batch ------------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_classify_long_text(clf):
    folder = str(clf.folder)
    result = runner.invoke(app, ["classify", DOCUMENT, "short", "--model", folder, "--format", "jsonl",
                                 "--long-text", "chunk", "--chunk-tokens", "32", "--aggregate", "max"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    want = clf([DOCUMENT, "short"], long_text="chunk", chunk_tokens=32, aggregate="max")
    assert [r["windows"] for r in rows] == [w["windows"] for w in want] and rows[0]["windows"] > 1
    assert [r["label"] for r in rows] == [w["label"] for w in want]
    table = runner.invoke(app, ["classify", DOCUMENT, "--model", folder, "--long-text", "chunk"])
    assert table.exit_code == 0 and "windows" in table.stdout
    for args, message in [(["--long-text", "chunk", "--stride", "100"], "stride"),
                          (["--long-text", "chunk", "--aggregate", "median"], "aggregate must be one of"),
                          (["--long-text", "sliding"], "long_text must be one of")]:  # fmt: skip
        failed = runner.invoke(app, ["classify", "text", "--model", folder, *args])
        lines = failed.stderr.strip().splitlines()
        assert failed.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    empty = runner.invoke(app, ["classify", "  ", "--model", folder, "--long-text", "chunk"])
    assert empty.exit_code == 1 and "input 0 is empty" in empty.stderr


def test_batch_long_text(clf, tmp_path):
    texts = [DOCUMENT, "short one", "", DOCUMENT[:300]]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["batch", "-i", str(source), "-o", str(out), "--model", str(clf.folder), "-q",
                                 "--long-text", "chunk", "--chunk-tokens", "32", "--stride", "4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    want = clf([t for t in texts if t], long_text="chunk", chunk_tokens=32, stride=4)
    scored = [r for r in rows if r["error"] is None]
    assert [r["windows"] for r in scored] == [w["windows"] for w in want] and scored[0]["windows"] > 1
    assert [r["label"] for r in scored] == [w["label"] for w in want]
    np.testing.assert_allclose([r["score"] for r in scored], [w["score"] for w in want], atol=1e-5)
    assert rows[2]["error"] == "empty text" and rows[2]["windows"] is None
    bad = runner.invoke(app, ["batch", "-i", str(source), "-o", str(tmp_path / "bad.jsonl"), "--model",
                              str(clf.folder), "--long-text", "chunk", "--stride", "99"])  # fmt: skip
    assert bad.exit_code == 1 and "stride" in bad.stderr and not (tmp_path / "bad.jsonl").exists()


# ---- the bundled model on documents longer than its window --------------------------------------------------------
def test_bundled_model_finds_a_late_sentence(sst2_dir):
    """Filler the model is unsure of, then the only sentence it is sure of, past the first 64-token window:
    reading the first window (truncation there) is near chance, scoring every window finds the sentence."""
    clf = Classifier.default()
    with open(sst2_dir / "dev.tsv", encoding="utf-8") as handle:
        rows = [(r[0].strip(), int(r[1])) for r in list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]]
    rows = rows[:200]
    positive = np.array([r["score"] if r["label"] == "POSITIVE" else 1 - r["score"] for r in clf([t for t, _ in rows])])
    unsure = [t for (t, _), p in zip(rows, positive) if abs(p - 0.5) < 0.2 and len(t) < 150]
    sure = [(t, y) for (t, y), p in zip(rows, positive) if abs(p - y) < 0.05 and len(t) < 150]
    rng = random.Random(1)
    documents, labels = [], []
    for index in range(24):
        needle, label = rng.choice([s for s in sure if s[1] == index % 2])
        before = []
        while len(clf.encode([" ".join(before)])[0]) <= 64:  # past the first window, whatever its cuts
            before.append(rng.choice(unsure))
        documents.append(" ".join([*before, needle, rng.choice(unsure)]))
        labels.append("POSITIVE" if label else "NEGATIVE")

    def accuracy(**options) -> float:
        return float(np.mean([r["label"] == y for r, y in zip(clf(documents, long_text="chunk", chunk_tokens=64,
                                                                      **options), labels)]))  # fmt: skip

    first, mean, highest = accuracy(aggregate="first"), accuracy(aggregate="mean"), accuracy(aggregate="max")
    assert highest >= first + 0.25 and mean >= first + 0.15, (first, mean, highest)
