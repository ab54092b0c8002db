"""Tokenization equals transformers' AutoTokenizer, for all three tokenizer sources, on tricky text."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import CORPUS, SST2, TINY_MAX_TOKENS, make_tokenizer
from textclass.checkpoint.tokenizer import Tokenizer

TRICKY = CORPUS + [
    "",
    " ",
    "\t\n  ",
    "ÀÉÎÕÜ àéîõü ñ ç ß ø å æ œ",
    "x" * 300,
    "a" + "é" * 150,
    "Ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ",
    "zero\u200bwidth\u00a0nbsp",
    "مرحبا بالعالم שלום עולם привет мир",
    "#hashtag @mention $100 ~tilde~ `code` *bold*",
]


def corpus() -> list[str]:
    texts = list(TRICKY)
    dev = SST2 / "dev.tsv"
    if dev.is_file():  # the real sentences widen coverage where the data is present
        texts += [line.split("\t")[0] for line in dev.read_text(encoding="utf-8").splitlines()[1:]]
    return texts


def ours_for(folder: Path, token_types: bool) -> Tokenizer:
    return Tokenizer.from_folder(folder, TINY_MAX_TOKENS, return_token_type_ids=token_types)


@pytest.fixture(scope="module")
def sources(tmp_path_factory, vocab_txt):
    """source name -> (folder holding only that source's files, reference transformers tokenizer, token types)."""
    from transformers import BertTokenizerFast

    root = tmp_path_factory.mktemp("tokenizers")
    out = {}
    bert = make_tokenizer("bert", vocab_txt)
    bert.save_pretrained(root / "tokenizer.json")
    out["tokenizer.json"] = (root / "tokenizer.json", bert, True)

    wordpiece = root / "vocab.txt"
    wordpiece.mkdir()
    shutil.copy(vocab_txt, wordpiece / "vocab.txt")
    (wordpiece / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 64}))
    out["vocab.txt"] = (wordpiece, BertTokenizerFast(vocab=str(vocab_txt), model_max_length=64), True)

    cased = root / "vocab.txt-cased"
    cased.mkdir()
    shutil.copy(vocab_txt, cased / "vocab.txt")
    settings = {"do_lower_case": False, "strip_accents": True, "model_max_length": 64}
    (cased / "tokenizer_config.json").write_text(json.dumps(settings))
    reference = BertTokenizerFast(vocab=str(vocab_txt), do_lower_case=False, strip_accents=True, model_max_length=64)
    out["vocab.txt-cased"] = (cased, reference, True)

    roberta = make_tokenizer("roberta", vocab_txt)
    bpe = root / "bpe"
    roberta.save_pretrained(bpe)
    (bpe / "tokenizer.json").unlink()
    vocab = json.loads(roberta.backend_tokenizer.to_str())["model"]["vocab"]
    merges = json.loads(roberta.backend_tokenizer.to_str())["model"]["merges"]
    (bpe / "vocab.json").write_text(json.dumps(vocab))
    (bpe / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    (bpe / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 64}))
    out["vocab.json+merges.txt"] = (bpe, roberta, False)

    xlmr = make_tokenizer("xlm-roberta", vocab_txt)
    xlmr.save_pretrained(root / "unigram")
    out["tokenizer.json-unigram"] = (root / "unigram", xlmr, False)
    return out


SOURCES = ["tokenizer.json", "vocab.txt", "vocab.txt-cased", "vocab.json+merges.txt", "tokenizer.json-unigram"]


@pytest.mark.parametrize("source", SOURCES)
def test_ids_equal_transformers(sources, source):
    folder, reference, token_types = sources[source]
    ours = ours_for(folder, token_types)
    assert ours.source.startswith(source.split("-")[0])
    texts = corpus()
    for truncation in (True, False):
        expected = reference(texts, truncation=truncation)
        got = ours(texts, truncation=truncation)
        assert got["input_ids"] == expected["input_ids"], f"truncation={truncation}"
        assert got["attention_mask"] == expected["attention_mask"]
        if token_types:
            assert got["token_type_ids"] == expected["token_type_ids"]
    for text in TRICKY:
        assert ours.tokenize(text) == reference.tokenize(text), text


@pytest.mark.parametrize("source", SOURCES)
def test_one_text_tokenizes_as_it_does_in_a_batch(sources, source):
    """One text takes `encode`, several `encode_batch`: the same ids and token types either way, truncated alike."""
    folder, _, token_types = sources[source]
    ours = ours_for(folder, token_types)
    texts = TRICKY + ["word " * 100]
    for kwargs in ({}, {"truncation": False}, {"max_length": 9}, {"max_length": 9, "truncation_side": "left"}):
        together = ours.encode_batch(texts, **kwargs)
        alone = [ours.encode_batch([text], **kwargs)[0] for text in texts]
        assert [(e.ids, e.type_ids) for e in alone] == [(e.ids, e.type_ids) for e in together], kwargs


@pytest.mark.parametrize("source", SOURCES)
def test_pairs_padding_and_max_length_equal_transformers(sources, source):
    folder, reference, token_types = sources[source]
    ours = ours_for(folder, token_types)
    firsts, seconds = TRICKY[: len(TRICKY) // 2], TRICKY[len(TRICKY) // 2 : 2 * (len(TRICKY) // 2)]
    for kwargs in (
        {"padding": True, "truncation": True},
        {"padding": "max_length", "truncation": True, "max_length": 20},
        {"truncation": True, "max_length": 9},
    ):
        assert ours(firsts, seconds, **kwargs) == {k: v for k, v in reference(firsts, seconds, **kwargs).items()}, (
            kwargs
        )
        assert ours(firsts, **kwargs) == dict(reference(firsts, **kwargs)), kwargs


@pytest.mark.parametrize("source", SOURCES)
def test_decode_equals_transformers(sources, source):
    folder, reference, token_types = sources[source]
    ours = ours_for(folder, token_types)
    for text in TRICKY:
        ids = reference(text)["input_ids"]
        for cleanup in (True, False):
            for skip in (True, False):
                expected = reference.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=cleanup)
                assert ours.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=cleanup) == expected


def test_cleanup_default_follows_tokenizer_config(sources, tmp_path):
    folder, _, _ = sources["vocab.txt"]
    ids = ours_for(folder, True)("don't stop , ok ?")["input_ids"]
    assert ours_for(folder, True).decode(ids) == "[CLS] don't stop, ok? [SEP]"  # key absent: 4.x clean-up
    shutil.copytree(folder, tmp_path / "no-cleanup")
    config = json.loads((tmp_path / "no-cleanup" / "tokenizer_config.json").read_text())
    (tmp_path / "no-cleanup" / "tokenizer_config.json").write_text(
        json.dumps({**config, "clean_up_tokenization_spaces": False})
    )
    raw = ours_for(tmp_path / "no-cleanup", True)
    assert raw.decode(ids) == raw._base.decode(ids, skip_special_tokens=False)


def test_model_max_length_caps_at_position_table(sources):
    folder, _, _ = sources["vocab.txt"]
    tokenizer = Tokenizer.from_folder(folder, model_max_tokens=32, return_token_type_ids=True)
    assert tokenizer.model_max_length == 32  # config says 64, but the model only has 32 positions
    assert len(tokenizer.encode_batch(["word " * 100])[0]) == 32


def test_missing_tokenizer_files_is_clear_error(tmp_path):
    from textclass.errors import CheckpointError

    with pytest.raises(CheckpointError, match="has no tokenizer"):
        Tokenizer.from_folder(tmp_path, 64, True)
