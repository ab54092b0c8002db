"""The ONNX graph built without torch (onnx_graph.py) against the traced export, side by side, per family.

    python bench/onnx_build.py [--limit 400] [--rounds 5] [--out bench/models/families]

For each BERT-lineage model_type, a random checkpoint of MiniLM's shape (bench/families.py builds it, with
MiniLM's tokenizer files), and the real all-MiniLM-L6-v2 with a 2-label head: both graphs are exported fused
fp32 (what the default CPU path runs), then run on the same SST-2 dev batches (length-sorted, the default CPU
token budget), alternating between the two graphs round after round so that drift in the machine hits both.
Columns: export time of each, max |Δlogit| between them, texts/s of each (best round), and built/traced speed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, SST2_DEV, cpu_name, read_texts, table

sys.path.insert(0, str(ROOT / "tests"))


def minilm_classifier(folder: Path, minilm: Path) -> Path:
    """all-MiniLM-L6-v2 with a seeded random 2-label head (the bare encoder cannot classify)."""
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification

    if not (folder / "model.safetensors").is_file():
        torch.manual_seed(0)
        AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=2).save_pretrained(folder)
        for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            shutil.copy(minilm / name, folder / name)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=400, help="SST-2 dev sentences to use")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes over the texts, per graph")
    parser.add_argument("--out", default=str(ROOT / "bench" / "models" / "families"), help="where checkpoints go")
    args = parser.parse_args()

    import transformers as tf
    from families import LABELS, SHAPE, build, configs

    from conftest import minilm_folder
    from textclass.checkpoint import open_checkpoint
    from textclass.classifier import DEFAULT_MAX_BATCH_TOKENS
    from textclass.onnx.export import export_onnx
    from textclass.runtime.batching import make_batches
    from textclass.runtime.onnx_engine import OnnxEngine

    minilm = minilm_folder()
    texts = read_texts(SST2_DEV, args.limit)
    common = dict(vocab_size=30522, num_labels=2, **LABELS, max_position_embeddings=514, pad_token_id=0)
    shapes = {name: config for name, config in configs().items() if name in ("bert", "distilbert", "roberta")}
    shapes["xlm-roberta"] = tf.XLMRobertaConfig(**SHAPE, **common)
    shapes["camembert"] = tf.CamembertConfig(**SHAPE, **common)
    folders = {}
    for name, config in shapes.items():
        build(Path(args.out) / name, config, minilm)
        folders[name] = Path(args.out) / name
    folders["MiniLM-L6 (real weights)"] = minilm_classifier(Path(args.out) / "minilm-head", minilm)

    rows = []
    for name, folder in folders.items():
        checkpoint = open_checkpoint(folder)
        tokenizer = checkpoint.load_tokenizer()
        encoded = tokenizer.encode_batch(texts)
        batches = list(make_batches(encoded, DEFAULT_MAX_BATCH_TOKENS["cpu"], tokenizer.pad_token_id,
                                    checkpoint.family.token_types))  # fmt: skip
        with tempfile.TemporaryDirectory() as work:
            engines, export_seconds = {}, {}
            for kind in ("traced", "built"):
                path = Path(work) / f"{kind}.onnx"
                start = time.perf_counter()
                export_onnx(checkpoint, path, "fp32", traced=kind == "traced")
                export_seconds[kind] = time.perf_counter() - start
                engines[kind] = OnnxEngine(path, "fp32")
            logits = {kind: np.concatenate([engine(b) for b in batches]) for kind, engine in engines.items()}
            best = dict.fromkeys(engines, float("inf"))
            for _ in range(args.rounds):
                for kind, engine in engines.items():  # alternating: both graphs see the same machine state
                    start = time.perf_counter()
                    for batch in batches:
                        engine(batch)
                    best[kind] = min(best[kind], time.perf_counter() - start)
        rate = {kind: len(texts) / seconds for kind, seconds in best.items()}
        rows.append([name, f"{export_seconds['traced']:.1f}", f"{export_seconds['built']:.1f}",
                     f"{np.abs(logits['built'] - logits['traced']).max():.1e}", f"{rate['traced']:.0f}",
                     f"{rate['built']:.0f}", f"{rate['built'] / rate['traced']:.3f}"])  # fmt: skip
        print(" | ".join(rows[-1]), flush=True)
    print(f"\n{cpu_name()}; {len(texts)} SST-2 dev sentences, best of {args.rounds} rounds; random weights of MiniLM's "
          "shape (6x384, 12 heads) unless named\n")  # fmt: skip
    print(table(["model", "export s (torch trace)", "export s (built)", "max |Δlogit|", "traced texts/s",
                 "built texts/s", "built/traced"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
