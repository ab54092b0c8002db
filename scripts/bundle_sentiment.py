"""Package a trained sentiment run as the bundled model: copy the checkpoint, ship its ONNX graph, check it.

usage: python scripts/bundle_sentiment.py RUN_DIR HELDOUT_TSV [--out src/textclass/bundled/sentiment-en]

Copies the checkpoint files (the model card README.md in the bundle folder is kept: it is written by hand), writes
`model.fp32.onnx`, the 0.1 MB graph that reads its weights from model.safetensors (tools/ship_onnx.py), and
compares the default mode with exact fp32 on HELDOUT_TSV (held-out train sentences, never dev). The figures go
into bundle.json; the size is checked against the 80 MB the package allows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import ship_onnx  # noqa: E402  (the one writer of a shipped graph, with its checks)

FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)  # fmt: skip; the model card README.md is written by hand from the eval
MAX_BYTES = 80 * 10**6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("heldout", type=Path, help="TSV with a sentence column: held-out train sentences")
    parser.add_argument("--out", type=Path, default=Path("src/textclass/bundled/sentiment-en"))
    args = parser.parse_args()
    import numpy as np

    from textclass import Classifier

    missing = [name for name in FILES if not (args.run / name).is_file()]
    if missing:
        raise SystemExit(f"error: {args.run} lacks {', '.join(missing)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in args.out.iterdir():
        if stale.name != "README.md":
            stale.unlink()
    for name in FILES:
        shutil.copy2(args.run / name, args.out / name)
    ship_onnx.main(str(args.out))

    texts = [line.split("\t")[0] for line in args.heldout.read_text(encoding="utf-8").splitlines()[1:]]
    exact = Classifier.from_pretrained(args.out, backend="torch", dtype="fp32")
    default = Classifier.from_pretrained(args.out)
    p_exact, p_default = exact.scores(exact.logits(texts)), default.scores(default.logits(texts))
    figures = {
        "default_precision": default.precision,
        "heldout_texts": len(texts),
        "default_vs_fp32_agreement": float((p_exact.argmax(1) == p_default.argmax(1)).mean()),
        "default_vs_fp32_mean_abs_delta_prob": float(np.abs(p_exact - p_default).max(1).mean()),
        "default_vs_fp32_max_abs_delta_prob": float(np.abs(p_exact - p_default).max()),
    }
    total = sum(path.stat().st_size for path in args.out.iterdir())
    figures["bundled_bytes"] = total
    print(json.dumps(figures, indent=2))
    (args.out / "bundle.json").write_text(json.dumps(figures, indent=2) + "\n")
    if total > MAX_BYTES:
        raise SystemExit(f"error: the bundle is {total / 1e6:.1f} MB, over {MAX_BYTES / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
