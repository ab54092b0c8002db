"""Package a trained sentiment run as the bundled model: copy the checkpoint, export, measure int8 vs fp32.

usage: python scripts/bundle_sentiment.py RUN_DIR DEV_TSV [--out src/textclass/bundled/sentiment-en]

Ships the ONNX fp32 graph (the CPU default) beside the weights; it reads them from model.safetensors
(onnx_link.py), so the fast path adds ~0.1 MB, not another copy. The int8 graph becomes the model's default
(config.json textclass_precision) only when it agrees with fp32 on ≥ 99.5% of the dev labels with max
|Δprob| ≤ 0.02; the figures go into bundle.json and the model card.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)  # fmt: skip; the model card README.md is written by hand from the eval


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("dev", type=Path)
    parser.add_argument("--out", type=Path, default=Path("src/textclass/bundled/sentiment-en"))
    args = parser.parse_args()
    from textclass import Classifier
    from textclass.checkpoint import open_checkpoint
    from textclass.onnx import cache as artefacts
    from textclass.postprocess import apply

    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    for name in FILES:
        if (args.run / name).is_file():
            shutil.copy2(args.run / name, args.out / name)
    texts = [line.split("\t")[0] for line in args.dev.read_text(encoding="utf-8").splitlines()[1:]]
    exact = Classifier.from_pretrained(args.out, dtype="fp32")
    fast = Classifier.from_pretrained(args.out, dtype="int8", max_batch_tokens=exact.max_batch_tokens)
    p_exact, p_fast = apply(exact.logits(texts), "softmax"), apply(fast.logits(texts), "softmax")
    agreement = float((p_exact.argmax(1) == p_fast.argmax(1)).mean())
    max_delta = float(np.abs(p_exact - p_fast).max())
    print(f"int8 vs fp32 on {len(texts)} dev texts: agreement {agreement:.4f}, max |Δprob| {max_delta:.4f}")
    for stale in args.out.glob("model.*.onnx*"):
        stale.unlink()  # rebuilt below, after config.json changes (the manifest records its hash)
    if agreement >= 0.995 and max_delta <= 0.02:
        config = json.loads((args.out / "config.json").read_text())
        config["textclass_precision"] = "onnx-int8"
        (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        path, _ = artefacts.ensure(open_checkpoint(args.out), "int8")
        print(f"default precision onnx-int8; shipped {path} ({path.stat().st_size / 1e6:.1f} MB)")
    else:
        print("int8 does not meet the agreement bar: the bundled model's default stays exact (ONNX fp32)")
    path, manifest = artefacts.ensure(open_checkpoint(args.out), "fp32")
    assert manifest["linked_weights"], "the fp32 graph must read model.safetensors, not carry a copy"
    default = Classifier.from_pretrained(args.out)
    drift = float(np.abs(apply(default.logits(texts), "softmax") - p_exact).max())
    print(f"shipped {path.name} ({path.stat().st_size / 1e3:.0f} kB), default {default.precision}: "
          f"max |Δprob| vs torch fp32 {drift:.1e}")  # fmt: skip
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"bundled size: {total / 1e6:.1f} MB in {args.out}")
    (args.out / "bundle.json").write_text(
        json.dumps({"int8_agreement": agreement, "int8_max_delta_prob": max_delta}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
