"""Every model family, textclass against transformers in one run: parity of logits and CPU speed.

    python bench/families.py [--limit 200] [--families deberta-v2,modernbert] [--out bench/models/families]

For each family a random checkpoint of one shape (MiniLM's: 6 layers, hidden 384, 12 heads, FFN 1536; the
family's own extras at their usual values) is built with transformers and saved with MiniLM's WordPiece tokenizer
files, so every family reads the same token ids and only the model differs. Columns: max |Δlogit| of textclass
torch fp32 against transformers, and of the default CPU mode against textclass fp32; texts/s of the transformers
pipeline at batch 1 (its default) and of textclass's default mode (which backend runs is shown); the ratio.
The first load (ONNX export) is not timed. Prints a markdown table and the CPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from common import ROOT, SST2_DEV, cpu_name, read_texts, table

sys.path.insert(0, str(ROOT / "tests"))

SHAPE = dict(num_hidden_layers=6, hidden_size=384, num_attention_heads=12, intermediate_size=1536)
LABELS = {"id2label": {0: "NEGATIVE", 1: "POSITIVE"}, "label2id": {"NEGATIVE": 0, "POSITIVE": 1}}


def configs() -> dict[str, object]:
    """model_type -> a transformers config of the shared shape."""
    import transformers as tf

    common = dict(vocab_size=30522, num_labels=2, **LABELS)
    return {
        "bert": tf.BertConfig(**SHAPE, **common),
        "distilbert": tf.DistilBertConfig(dim=384, n_layers=6, n_heads=12, hidden_dim=1536, **common),
        "roberta": tf.RobertaConfig(**SHAPE, **common, max_position_embeddings=514, pad_token_id=0),
        "deberta-v2": tf.DebertaV2Config(**SHAPE, **common, relative_attention=True, position_biased_input=False,
                                         pos_att_type=["p2c", "c2p"], position_buckets=256, max_relative_positions=-1,
                                         norm_rel_ebd="layer_norm", share_att_key=True, type_vocab_size=0),
        "modernbert": tf.ModernBertConfig(**SHAPE, **common, pad_token_id=0, cls_token_id=101, sep_token_id=102,
                                          bos_token_id=101, eos_token_id=102),
        "electra": tf.ElectraConfig(**SHAPE, **common, embedding_size=128),
        "albert": tf.AlbertConfig(**SHAPE, **common, embedding_size=128),
        "mpnet": tf.MPNetConfig(**SHAPE, **common, pad_token_id=1),  # transformers numbers MPNet positions after 1
    }


def build(folder: Path, config, minilm: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    if (folder / "model.safetensors").is_file():
        return
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    with torch.no_grad():  # random heads give near-equal logits; spread them so labels mean something
        for name, param in model.named_parameters():
            if name.startswith("classifier") and name.endswith("weight"):
                param.mul_(20.0)
    model.save_pretrained(folder)
    for file in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm / file, folder / file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=200, help="SST-2 dev sentences to use")
    parser.add_argument("--families", default="all", help="comma-separated model types")
    parser.add_argument("--out", default=str(ROOT / "bench" / "models" / "families"), help="where checkpoints go")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from conftest import minilm_folder
    from textclass import Classifier

    os.environ.pop("TEXTCLASS_PRECISION", None)  # conftest pins exact fp32 for the tests; measure the real default

    torch.set_num_threads(torch.get_num_threads())
    minilm = minilm_folder()
    texts = read_texts(SST2_DEV, args.limit)
    chosen = configs()
    if args.families != "all":
        chosen = {name: chosen[name] for name in args.families.split(",")}
    rows = []
    for name, config in chosen.items():
        folder = Path(args.out) / name
        build(folder, config, minilm)
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        exact = Classifier.from_pretrained(folder, dtype="fp32")
        if not exact.tokenizer.return_token_type_ids:
            tokenizer.model_input_names = ["input_ids", "attention_mask"]  # the model takes no token types
        encoded = tokenizer(texts[:64], padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            reference = model(**encoded).logits.numpy()
        ours = exact.logits(texts[:64])
        default = Classifier.from_pretrained(folder)
        default_logits = default.logits(texts[:64])

        pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1)
        pipe(texts[:8])
        start = time.perf_counter()
        pipe(texts, batch_size=1, truncation=True)
        pipe_rate = len(texts) / (time.perf_counter() - start)
        default(texts[:16])
        start = time.perf_counter()
        default(texts)
        rate = len(texts) / (time.perf_counter() - start)
        rows.append([name, f"{np.abs(ours - reference).max():.1e}", f"{np.abs(default_logits - ours).max():.1e}",
                     f"{pipe_rate:.0f}", f"{rate:.0f} ({default.precision})", f"{rate / pipe_rate:.1f}x"])  # fmt: skip
        print(" | ".join(rows[-1]), flush=True)
    print(f"\n{cpu_name()}; {len(texts)} SST-2 dev sentences; MiniLM shape (6x384, 12 heads)\n")
    print(table(["family", "max |Δlogit| torch fp32 vs transformers", "max |Δlogit| default vs fp32",
                 "pipeline b1 texts/s", "textclass default texts/s", "ratio"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
