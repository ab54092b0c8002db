"""DeBERTa-v2/v3: logits, tokenizers (tokenizer.json and spm.model), ONNX export and training against transformers.

Two tiny variants. "v3" is DeBERTa-v3's shape: relative attention only, log-bucketed distances (16 buckets,
so texts past 8 tokens reach the log buckets), shared query/key projections, a normalised relative table,
no token types. "v2" has what v3 dropped: absolute positions, its own position projections, token types,
and DeBERTa-v2 xlarge's extras (a narrower embedding projected up, the first layer's convolution).
Tokenizers: DebertaV2Tokenizer over a Unigram vocabulary trained on the spot (saved as tokenizer.json), and
a real SentencePiece model (spm.model alone, as microsoft/deberta-v3-* ship it) where sentencepiece is installed.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import CORPUS, TINY_MAX_TOKENS
from familykit import (
    check_batch_equals_single,
    check_first_only,
    check_gpu,
    check_onnx_at_every_length,
    check_pipeline,
    edit_config,
    needs_gpu,
    reference_logits,
)
from textclass import Classifier
from textclass.errors import CheckpointError, InputError
from trainkit import FAST, sentiment_rows, write_jsonl

TEXTS = CORPUS + ["", "word " * 300]  # the last one is far past the 64-token limit
VOCAB_SIZE = 256  # the model's; both test tokenizers fit in it
VARIANTS = {
    "v3": dict(relative_attention=True, position_biased_input=False, pos_att_type=["p2c", "c2p"], position_buckets=16,
               max_relative_positions=-1, norm_rel_ebd="layer_norm", share_att_key=True, type_vocab_size=0),
    "v2": dict(relative_attention=True, position_biased_input=True, pos_att_type="c2p|p2c", share_att_key=False,
               type_vocab_size=2, embedding_size=24, conv_kernel_size=3, conv_act="gelu", pooler_hidden_act="tanh"),
}  # fmt: skip
SPECIAL_TOKENS = dict(bos_token="[CLS]", eos_token="[SEP]", unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                      cls_token="[CLS]", mask_token="[MASK]")  # fmt: skip


def unigram_tokenizer(texts: list[str]):
    """DeBERTa-v3's tokenizer class over a Unigram vocabulary trained with `tokenizers` (no sentencepiece)."""
    from tokenizers import SentencePieceUnigramTokenizer
    from transformers import DebertaV2Tokenizer

    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(texts, vocab_size=300, special_tokens=["[PAD]", "[CLS]", "[SEP]", "[UNK]"],
                                unk_token="[UNK]")  # fmt: skip
    vocab = [tuple(piece) for piece in json.loads(unigram._tokenizer.to_str())["model"]["vocab"]]
    return DebertaV2Tokenizer(vocab=vocab, model_max_length=TINY_MAX_TOKENS)


def write_spm_tokenizer(folder: Path, **settings) -> Path:
    """spm.model + tokenizer_config.json + special_tokens_map.json, as microsoft/deberta-v3-base ships them."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 5), model_writer=model, model_type="unigram", vocab_size=250,
        hard_vocab_limit=False, pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]",
        eos_piece="[SEP]", unk_piece="[UNK]", minloglevel=2,
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spm.model").write_bytes(model.getvalue())
    config = {"do_lower_case": False, "vocab_type": "spm", "model_max_length": TINY_MAX_TOKENS, **settings}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS))
    return folder


def make_model(variant: str, kind: str = "classifier", num_labels: int = 3, seed: int = 0, **overrides):
    from transformers import DebertaV2Config, DebertaV2ForMaskedLM, DebertaV2ForSequenceClassification, DebertaV2Model

    torch.manual_seed(seed)
    settings = dict(
        vocab_size=VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
        max_position_embeddings=TINY_MAX_TOKENS, num_labels=num_labels, pad_token_id=0,
        # Ten times the usual spread: with 0.02 the relative terms move a tiny model's logits by less than the
        # 1e-4 parity tolerance, so a wrong bucket or projection could pass.
        initializer_range=0.2,
    )  # fmt: skip
    config = DebertaV2Config(**{**settings, **VARIANTS[variant], **overrides})
    classes = {"classifier": DebertaV2ForSequenceClassification, "mlm": DebertaV2ForMaskedLM, "base": DebertaV2Model}
    model = classes[kind](config).eval()
    # Random init leaves norms at identity and biases at zero; perturb them so parity sees them.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.1)
    return model


def save(folder: Path, model, tokenizer=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tokenizer():
    tokenizer = unigram_tokenizer(CORPUS * 3)
    assert len(tokenizer) <= VOCAB_SIZE
    return tokenizer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tokenizer):
    """variant -> (folder, transformers classifier)."""
    built = {}
    for variant in VARIANTS:
        model = make_model(variant)
        built[variant] = (save(tmp_path_factory.mktemp(f"deberta-{variant}"), model, tokenizer), model)
    return built


@pytest.fixture(scope="module")
def spm_checkpoint(tmp_path_factory, tiny):
    """The v3 classifier with only spm.model for a tokenizer."""
    pytest.importorskip("sentencepiece")
    folder = write_spm_tokenizer(tmp_path_factory.mktemp("deberta-spm"))
    return save(folder, tiny["v3"][1])


# ---- parity with transformers ---------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_last_layer_first_token_alone(tiny, variant):
    check_first_only(tiny[variant][0])


def test_first_token_alone_through_a_convolution(tmp_path, tokenizer):
    """One layer: the v2 convolution then sits in the last layer, read for the first row only."""
    model = make_model("v2", num_hidden_layers=1)
    folder = save(tmp_path / "one-layer", model, tokenizer)
    check_first_only(folder)
    ours = Classifier.from_pretrained(folder, dtype="fp32").logits(TEXTS)
    np.testing.assert_allclose(ours, reference_logits(model, tokenizer, TEXTS), atol=1e-4, rtol=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_match_transformers(tiny, tokenizer, variant):
    folder, model = tiny[variant]
    ours = Classifier.from_pretrained(folder, dtype="fp32").logits(TEXTS)
    assert ours.shape == (len(TEXTS), 3) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference_logits(model, tokenizer, TEXTS), atol=1e-4, rtol=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_hidden_states_match_on_valid_positions(tiny, tokenizer, variant):
    """Every valid position matches, not only the first token the head reads; padded rows stay finite."""
    from textclass.checkpoint import build_model, open_checkpoint

    folder, model = tiny[variant]
    ours, _ = build_model(open_checkpoint(folder))
    enc = tokenizer(TEXTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        expected = model.deberta(**enc).last_hidden_state
        got = ours.encoder(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    valid = enc["attention_mask"].bool()
    assert not valid.all() and torch.isfinite(got).all()
    assert (got[valid] - expected[valid]).abs().max().item() < 1e-4


def test_relative_attention_is_real(tiny, tokenizer, copy_checkpoint):
    """The relative terms move the logits well past the tolerance: dropping p2c, or moving the log buckets."""
    folder, model = tiny["v3"]
    reference = reference_logits(model, tokenizer, TEXTS)
    changed = copy_checkpoint(folder)
    original = json.loads((folder / "config.json").read_text())
    for changes in ({"pos_att_type": ["c2p"]}, {"max_relative_positions": 4 * TINY_MAX_TOKENS}):
        (changed / "config.json").write_text(json.dumps({**original, **changes}))
        logits = Classifier.from_pretrained(changed, dtype="fp32").logits(TEXTS)
        assert np.abs(logits - reference).max() > 1e-3, changes


def test_log_buckets_match_transformers():
    from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

    from textclass.models.deberta import log_bucket

    distance = torch.arange(-2048, 2049)
    for buckets, max_distance in ((256, 512), (16, TINY_MAX_TOKENS), (256, 1024)):
        expected = make_log_bucket_position(distance, buckets, max_distance).long()
        assert torch.equal(log_bucket(distance, buckets, max_distance), expected)


@pytest.mark.parametrize("variant", VARIANTS)
def test_pairs_match_transformers(tiny, tokenizer, variant):
    folder, model = tiny[variant]
    firsts, seconds = CORPUS[:7], CORPUS[7:14]
    ours = Classifier.from_pretrained(folder, dtype="fp32").logits(list(zip(firsts, seconds)))
    np.testing.assert_allclose(ours, reference_logits(model, tokenizer, firsts, seconds), atol=1e-4, rtol=0)


def test_token_types_are_used(tiny, tokenizer):
    """v2 has token type embeddings: a pair differs from the same tokens read as one segment."""
    folder, model = tiny["v2"]
    enc = tokenizer([CORPUS[0]], [CORPUS[1]], return_tensors="pt")
    with torch.no_grad():
        as_pair = model(**enc).logits
        one_segment = model(enc["input_ids"], enc["attention_mask"], torch.zeros_like(enc["token_type_ids"])).logits
    ours = Classifier.from_pretrained(folder, dtype="fp32").logits([(CORPUS[0], CORPUS[1])])
    np.testing.assert_allclose(ours, as_pair.numpy(), atol=1e-4, rtol=0)
    assert (as_pair - one_segment).abs().max() > 1e-3


def test_pipeline_output_equal(tiny, tokenizer):
    folder, model = tiny["v2"]
    check_pipeline(folder, model, tokenizer)


def test_batch_equals_single(tiny):
    check_batch_equals_single(tiny["v2"][0])  # v2's convolution is where padding could leak in


# ---- ONNX and other precisions --------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_matches_torch_at_every_length(tiny, variant):
    # Most texts run past the 8 exact-distance buckets.
    folder, _ = tiny[variant]
    _, expected, texts = check_onnx_at_every_length(folder)
    if variant == "v2":  # the int8 export runs ORT's shape inference over the whole graph first
        int8 = Classifier.from_pretrained(folder, backend="onnx", dtype="int8")
        assert int8.precision == "onnx-int8"
        # Loose: int8 weights of a model initialised 10x wider than usual move its logits by up to ~0.5.
        assert np.corrcoef(int8.logits(texts).ravel(), expected.ravel())[0, 1] > 0.9


# ---- checkpoints: bases, damage, unsupported values -----------------------------------------------
@pytest.mark.parametrize(("kind", "legacy"), [("base", True), ("mlm", True), ("mlm", False)])
def test_base_checkpoint_loads_but_does_not_classify(tmp_path, tokenizer, kind, legacy):
    # MLM heads: "cls.predictions.*" (legacy) or "lm_predictions.lm_head.*"; neither is part of a classifier.
    from textclass.checkpoint import build_model, open_checkpoint
    folder = save(tmp_path / kind, make_model("v3", kind=kind, legacy=legacy), tokenizer)
    _, new_head = build_model(open_checkpoint(folder))
    assert sorted(new_head) == ["head.dense.bias", "head.dense.weight", "head.out.bias", "head.out.weight"]
    clf = Classifier.from_pretrained(folder)
    assert not clf.has_head
    with pytest.raises(InputError, match="bare encoder without a classification head"):
        clf(["hello"])


def test_missing_body_tensor_is_named(tiny, copy_checkpoint):
    folder = copy_checkpoint(tiny["v2"][0])
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["deberta.encoder.layer.1.attention.self.pos_query_proj.weight"]
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"lacks tensors: deberta\.encoder\.layer\.1\.attention\.self\.pos_quer"):
        Classifier.from_pretrained(folder, dtype="fp32")


def test_unused_absolute_position_table_is_ignored(tiny, tokenizer, copy_checkpoint):
    """Some v3 checkpoints carry a position table their config does not use; transformers skips it, so do we."""
    folder, model = tiny["v3"]
    copy = copy_checkpoint(folder)
    tensors = load_file(str(copy / "model.safetensors"))
    tensors["deberta.embeddings.position_embeddings.weight"] = torch.randn(TINY_MAX_TOKENS, 32)
    save_file(tensors, str(copy / "model.safetensors"))
    ours = Classifier.from_pretrained(copy, dtype="fp32").logits(TEXTS)
    np.testing.assert_allclose(ours, reference_logits(model, tokenizer, TEXTS), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pos_att_type": ["c2p", "p2p"]}, r"pos_att_type \['c2p', 'p2p'\] is not supported; expected c2p and/or p2c"),
        ({"norm_rel_ebd": "batch_norm"}, "norm_rel_ebd 'batch_norm' is not supported"),
        ({"pooler_hidden_act": "mish"}, "pooler_hidden_act: activation 'mish' is not supported"),
        ({"attention_head_size": 4}, "attention_head_size 4 is not supported"),
        ({"num_attention_heads": 5}, "hidden_size 32 is not a multiple of num_attention_heads 5"),
        ({"max_relative_positions": 9}, "position_buckets 16 with max_relative_positions 9 is not supported"),
    ],
)  # fmt: skip
def test_unsupported_config_value_is_explained(tiny, copy_checkpoint, changes, message):
    folder = copy_checkpoint(tiny["v3"][0])
    edit_config(folder, **changes)
    with pytest.raises(CheckpointError, match=message):
        Classifier.from_pretrained(folder, dtype="fp32")


# ---- tokenizers -----------------------------------------------------------------------------------
def assert_same_tokens(ours, theirs, texts) -> None:
    for text in texts:
        expected = theirs(text, truncation=True)
        got = ours(text, truncation=True)
        assert got["input_ids"] == expected["input_ids"], text
        assert got["token_type_ids"] == expected["token_type_ids"], text
    firsts, seconds = CORPUS[:7], CORPUS[7:14]
    expected, got = theirs(firsts, seconds), ours(firsts, seconds)
    assert got["input_ids"] == expected["input_ids"] and got["token_type_ids"] == expected["token_type_ids"]
    assert set(expected["token_type_ids"][0]) == {0, 1}  # the pair's second segment is typed 1
    assert ours.pad_token_id == theirs.pad_token_id


def test_tokenizer_json_ids_match_transformers(tiny):
    from transformers import AutoTokenizer

    folder, _ = tiny["v3"]
    ours = Classifier.from_pretrained(folder, dtype="fp32").tokenizer
    assert ours.source == "tokenizer.json"
    assert_same_tokens(ours, AutoTokenizer.from_pretrained(folder), TEXTS + ["a[MASK]b [MASK] c", "  two  spaces "])
    assert len(ours(TEXTS[-1], truncation=True)["input_ids"]) == TINY_MAX_TOKENS


def test_spm_model_alone_matches_transformers(spm_checkpoint):
    """A folder with spm.model and no tokenizer.json (microsoft/deberta-v3-*): tokens and logits as transformers."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    assert not (spm_checkpoint / "tokenizer.json").exists()
    clf = Classifier.from_pretrained(spm_checkpoint, dtype="fp32")
    theirs = AutoTokenizer.from_pretrained(spm_checkpoint)
    assert clf.tokenizer.source == "spm.model"
    # v3's [MASK] is not in spm.model: both append it after the pieces.
    assert clf.tokenizer.convert_tokens_to_ids(["[MASK]"]) == [theirs.mask_token_id] == [len(theirs) - 1]
    assert_same_tokens(clf.tokenizer, theirs, TEXTS + ["a[MASK]b [MASK] c", "  two  spaces ", "x\u00a0y\u3000z"])
    model = AutoModelForSequenceClassification.from_pretrained(spm_checkpoint).eval()
    np.testing.assert_allclose(clf.logits(TEXTS), reference_logits(model, theirs, TEXTS), atol=1e-4, rtol=0)


def test_spm_model_alone_matches_sentencepiece(spm_checkpoint):
    """The tokenizer DeBERTa was trained with is SentencePiece itself: same pieces on text without special tokens."""
    import sentencepiece

    from textclass.checkpoint.tokenizer import Tokenizer

    processor = sentencepiece.SentencePieceProcessor(model_file=str(spm_checkpoint / "spm.model"))
    ours = Tokenizer.from_folder(spm_checkpoint, 10**6, return_token_type_ids=True)
    # (The last of CORPUS spells out special tokens, which transformers matches and spm does not.) SentencePiece's
    # own normaliser folds a no-break and an ideographic space into a plain one.
    for text in [*CORPUS[:-1], "x\u00a0y\u3000z", "  two  spaces ", "tab\tand\nnewline"]:
        assert ours(text)["input_ids"] == [1, *processor.encode(text), 2], text


@pytest.mark.parametrize("settings", [{"do_lower_case": True}, {"split_by_punct": True}, {"add_prefix_space": False}])
def test_spm_tokenizer_settings_match_transformers(tmp_path, settings):
    pytest.importorskip("sentencepiece")
    from transformers import DebertaV2Tokenizer

    from textclass.checkpoint.tokenizer import Tokenizer

    folder = write_spm_tokenizer(tmp_path, **settings)
    ours = Tokenizer.from_folder(folder, TINY_MAX_TOKENS, return_token_type_ids=True)
    assert_same_tokens(ours, DebertaV2Tokenizer.from_pretrained(folder), TEXTS)


def test_spm_model_without_sentencepiece_says_what_to_install(spm_checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # import sentencepiece now fails
    with pytest.raises(CheckpointError, match="only spm.model; reading it needs SentencePiece: pip install sentencep"):
        Classifier.from_pretrained(spm_checkpoint, dtype="fp32")


def test_describe(tiny):
    from textclass.checkpoint import open_checkpoint
    from textclass.checkpoint.describe import describe

    folder, _ = tiny["v2"]
    info = describe(folder)
    assert info["family"] == "deberta-v2" and info["model_type"] == "deberta-v2"
    assert info["labels"] == ["LABEL_0", "LABEL_1", "LABEL_2"] and info["has_classification_head"]
    assert info["layers"] == 2 and info["max_length"] == TINY_MAX_TOKENS
    config = open_checkpoint(tiny["v3"][0]).config
    assert (config.relative_span, config.position_buckets, config.max_relative_positions) == (16, 16, TINY_MAX_TOKENS)
    assert config.share_att_key and config.norm_relative and not config.position_biased_input


# ---- training -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_training_round_trip(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from textclass.train.run import train
    from textclass.train.setup import TrainArgs

    rows = sentiment_rows(400, 1)
    tokenizer = unigram_tokenizer([row["text"] for row in rows] + CORPUS)
    no_dropout = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.02,
                      vocab_size=len(tokenizer))  # fmt: skip
    base = save(tmp_path / "base", make_model("v3", kind="base", **no_dropout), tokenizer)
    train_file = write_jsonl(tmp_path / "train.jsonl", rows)
    dev_file = write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(100, 2))
    out = tmp_path / "out"
    summary = train(TrainArgs(model=str(base), train=str(train_file), eval=str(dev_file), out=str(out), **FAST))
    assert summary["new_parameters"] == ["head.dense.bias", "head.dense.weight", "head.out.bias", "head.out.weight"]
    assert summary["eval_metrics"]["accuracy"] >= 0.9
    texts = ["a superb film", "the plot was boring and the actor awful", "x", "thing " * 80]
    hf = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32).eval()
    reference = reference_logits(hf, AutoTokenizer.from_pretrained(out), texts)
    np.testing.assert_allclose(Classifier.from_pretrained(out, dtype="fp32").logits(texts), reference, atol=1e-4)
    assert [r["label"] for r in Classifier.from_pretrained(out)(["a superb film", "an awful film"])] == ["pos", "neg"]


@needs_gpu
@pytest.mark.parametrize("variant", VARIANTS)
def test_gpu_matches_transformers(tiny, tokenizer, variant):
    check_gpu(*tiny[variant], tokenizer)
