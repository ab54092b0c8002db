"""Rebuild tests/fixtures/tiny/<model_type>/ and tests/snapshots/*.json: reference outputs that need no torch to check.

One tiny random classifier per BERT-lineage model_type (hidden 16, 2 layers; tens of KB each, with a tokenizer
trained on the spot), saved with transformers, plus the bundled model. For each, transformers (fp32, eager
attention) records, TEI style, what a checkpoint must give on fixed inputs: the token ids, the logits and the
text-classification pipeline's output with top_k=None. tests/test_snapshots.py then checks textclass against
these files with neither torch nor transformers installed (CI runs it in a torch-free venv).

Run from the repository root with the test extra installed, only to change the fixtures; commit the outputs:

    python tools/make_snapshots.py
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
import transformers
from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer, SentencePieceUnigramTokenizer
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))
from conftest import CORPUS  # noqa: E402
from textclass.checkpoint.locate import DEFAULT_MODEL, bundled_models  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "tiny"
SNAPSHOTS = ROOT / "tests" / "snapshots"
MAX_TOKENS = 32  # short position tables: the long text below is truncated
TEXTS = [*CORPUS, "", "ok", "a gorgeous, witty, seductive movie. " * 12]
PAIRS = [["A man is playing a guitar.", "Someone plays music."], ["The cat sleeps.", "¿Dónde está el perro?"]]
LABELS = {"0": "negative", "1": "neutral", "2": "positive"}
SPECIALS_BERT = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SPECIALS_ROBERTA = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
TRAINING_TEXT = CORPUS * 3 + [text for pair in PAIRS for text in pair]


def tokenizer_for(model_type: str) -> transformers.PreTrainedTokenizerFast:
    """A transformers fast tokenizer of the family's kind, its vocabulary trained on the test texts."""
    if model_type in ("bert", "distilbert"):
        wordpiece = BertWordPieceTokenizer(lowercase=True)
        wordpiece.train_from_iterator(TRAINING_TEXT, vocab_size=260, special_tokens=SPECIALS_BERT)
        return transformers.BertTokenizerFast(vocab=wordpiece.get_vocab(), model_max_length=MAX_TOKENS)
    if model_type == "roberta":
        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(TRAINING_TEXT, vocab_size=300, special_tokens=SPECIALS_ROBERTA)
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
                  for m in json.loads(bpe._tokenizer.to_str())["model"]["merges"]]  # fmt: skip
        return transformers.RobertaTokenizerFast(vocab=bpe.get_vocab(), merges=merges, model_max_length=MAX_TOKENS)
    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(TRAINING_TEXT, vocab_size=260, special_tokens=SPECIALS_ROBERTA, unk_token="<unk>")
    vocab = [tuple(piece) for piece in json.loads(unigram._tokenizer.to_str())["model"]["vocab"]]
    cls = transformers.CamembertTokenizerFast if model_type == "camembert" else transformers.XLMRobertaTokenizerFast
    return cls(vocab=vocab, model_max_length=MAX_TOKENS)


def model_for(model_type: str, tokenizer: transformers.PreTrainedTokenizerFast, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    # A wide initialisation (as TF fixtures use) so that texts get distinct features from a random encoder.
    common = {"vocab_size": len(tokenizer), "id2label": LABELS, "label2id": {v: int(k) for k, v in LABELS.items()},
              "initializer_range": 0.3, "attn_implementation": "eager"}  # fmt: skip
    if model_type == "distilbert":
        # Multi-label, so the snapshot covers sigmoid scores too.
        config = transformers.DistilBertConfig(dim=16, n_layers=2, n_heads=2, hidden_dim=32,
                                               max_position_embeddings=MAX_TOKENS,
                                               problem_type="multi_label_classification", **common)  # fmt: skip
    else:
        roberta = model_type != "bert"
        config = transformers.AutoConfig.for_model(
            model_type, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=MAX_TOKENS + (2 if roberta else 0), type_vocab_size=1 if roberta else 2,
            **({"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2} if roberta else {}), **common,
        )  # fmt: skip
    model = AutoModelForSequenceClassification.from_config(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            # Random init leaves norms at identity and biases at zero: perturb them so the snapshot sees them.
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.1)
        # Centre each label's logit over the texts, so that labels differ between texts.
        out = model.classifier.out_proj if hasattr(model.classifier, "out_proj") else model.classifier
        logits = model(**tokenizer(TEXTS, padding=True, truncation=True, return_tensors="pt")).logits
        out.bias.sub_(logits.mean(0))
    return model


def snapshot(folder: Path, name: str, pairs: bool) -> None:
    """Record transformers' ids, logits and pipeline output for the checkpoint in `folder`."""
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32,
                                                               attn_implementation="eager").eval()  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(folder)
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
    record: dict = {"model": name, "made_with": {"transformers": transformers.__version__, "torch": torch.__version__}}
    cases = {"texts": TEXTS} | ({"pairs": PAIRS} if pairs else {})
    for kind, inputs in cases.items():
        encoded = tokenizer(*zip(*inputs) if kind == "pairs" else (inputs,), truncation=True)
        batch = tokenizer.pad(encoded, return_tensors="pt")
        with torch.no_grad():
            logits = model(**batch).logits
        items = [{"text": a, "text_pair": b} for a, b in inputs] if kind == "pairs" else inputs
        record[kind] = {
            "inputs": inputs,
            "input_ids": encoded["input_ids"],
            "logits": [[round(v, 6) for v in row] for row in logits.tolist()],
            "pipeline": [
                [{"label": r["label"], "score": round(r["score"], 6)} for r in rows]
                for rows in classify(items, top_k=None, truncation=True)
            ],  # fmt: skip
        }
    SNAPSHOTS.mkdir(parents=True, exist_ok=True)
    (SNAPSHOTS / f"{name}.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    for seed, model_type in enumerate(("bert", "distilbert", "roberta", "xlm-roberta", "camembert")):
        folder = FIXTURES / model_type
        shutil.rmtree(folder, ignore_errors=True)
        tokenizer = tokenizer_for(model_type)
        model_for(model_type, tokenizer, seed).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        for file in folder.iterdir():
            file.chmod(0o644)  # save_pretrained writes the weights private
        snapshot(folder, f"tiny-{model_type}", pairs=True)
        print(f"{folder.relative_to(ROOT)}: {sum(f.stat().st_size for f in folder.iterdir()) / 1e3:.0f} kB")
    snapshot(bundled_models()[DEFAULT_MODEL], DEFAULT_MODEL, pairs=False)


if __name__ == "__main__":
    main()
