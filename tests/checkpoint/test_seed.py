"""The founding document's tokenizer walkthrough, reproduced exactly (bert-base-uncased vocabulary)."""

from __future__ import annotations

from textclass.checkpoint.tokenizer import Tokenizer

SEQUENCE = "I've been waiting for a HuggingFace course my whole life."
SEED_IDS = [101, 1045, 1005, 2310, 2042, 3403, 2005, 1037, 17662, 12172, 2607, 2026, 2878, 2166, 1012, 102]
# The seed prints the second token as '"', a rendering slip: id 1005 is the apostrophe in bert-base-uncased.
SEED_TOKENS = ["i", "'", "ve", "been", "waiting", "for", "a", "hugging", "##face", "course", "my", "whole", "life", "."]


def seed_tokenizer(minilm_dir) -> Tokenizer:
    return Tokenizer.from_folder(minilm_dir, model_max_tokens=512, return_token_type_ids=True)


def test_seed_ids_tokens_and_decoding(minilm_dir):
    tokenizer = seed_tokenizer(minilm_dir)
    model_inputs = tokenizer(SEQUENCE)
    assert model_inputs["input_ids"] == SEED_IDS
    assert model_inputs["attention_mask"] == [1] * 16
    tokens = tokenizer.tokenize(SEQUENCE)
    assert tokens == SEED_TOKENS
    token_ids = tokenizer.convert_tokens_to_ids(tokens)
    assert token_ids == SEED_IDS[1:-1]
    assert tokenizer.decode(model_inputs["input_ids"]) == (
        "[CLS] i've been waiting for a huggingface course my whole life. [SEP]"
    )
    assert tokenizer.decode(token_ids) == "i've been waiting for a huggingface course my whole life."


def test_seed_padding_and_truncation_shapes(minilm_dir):
    tokenizer = seed_tokenizer(minilm_dir)
    assert len(tokenizer(SEQUENCE, padding="longest")["input_ids"]) == 16
    padded = tokenizer(SEQUENCE, padding="max_length")
    assert len(padded["input_ids"]) == 512 and sum(padded["attention_mask"]) == 16
    # max_length=8 without truncation pads to at least 8 and cuts nothing, as transformers does.
    assert tokenizer(SEQUENCE, padding="max_length", max_length=8)["input_ids"] == SEED_IDS

    sequences = [SEQUENCE, "So have I!"]
    assert [len(ids) for ids in tokenizer(sequences, truncation=True)["input_ids"]] == [16, 6]
    short = tokenizer(sequences, max_length=8, truncation=True)["input_ids"]
    assert [len(ids) for ids in short] == [8, 6]
    assert short[0] == SEED_IDS[:7] + [102]  # truncation keeps [SEP] at the end
    batch = tokenizer(sequences, padding=True, truncation=True)
    assert [len(ids) for ids in batch["input_ids"]] == [16, 16]
    assert batch["attention_mask"][1] == [1] * 6 + [0] * 10
