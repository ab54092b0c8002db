"""Shared bench helpers: texts, the long-text set, the CPU's name, the modes, markdown tables."""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # bench this checkout's textclass, whatever is installed
# ../shared beside the checkout (a worktree one level deeper looks one more up); TEXTCLASS_SST2 overrides.
_SHARED = next((p / "shared" for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared").is_dir()), ROOT.parent)
SST2_DEV = Path(os.environ.get("TEXTCLASS_SST2", _SHARED / "data" / "sst2")) / "dev.tsv"
SST2_TRAIN = SST2_DEV.with_name("train.tsv")
# (label in tables, backend, dtype); the first is the exact reference among textclass modes. Which one is the
# default depends on the CPU (textclass.runtime.cpu): per-row int8 on x86 with AVX2 or VNNI, onnx fp32 elsewhere.
MODES = [("torch fp32", "torch", "fp32"), ("torch bf16", "torch", "bf16"), ("torch int8", "torch", "int8"),
         ("onnx fp32", "onnx", "fp32"), ("onnx int8 (per-row)", "onnx", "int8")]  # fmt: skip


def read_texts(path: Path, limit: int | None) -> list[str]:
    if path.suffix == ".tsv":  # SST-2 style: a header, then sentence<TAB>label
        with open(path, encoding="utf-8") as handle:
            texts = [row[0] for row in list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]]
    else:
        texts = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return texts[:limit] if limit else texts


CONNECTIVES = (", but", "; still,", ", although", ", and yet", ", even though", ". On the other hand,", " while")


def contrast_texts(count: int = 2000, seed: int = 0, path: Path = SST2_TRAIN) -> list[str]:
    """Sentences no report uses, for choosing a fast mode's format: each joins a positive and a negative SST-2
    train phrase (4+ words, random order) with a connective. Mixed sentiment puts many near a tie, where a fast
    mode's errors show; the phrases alone were fitted by the bundled model and are scored too confidently."""
    import random

    with open(path, encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    by_label: dict[str, list[str]] = {"0": [], "1": []}
    for text, label in rows:
        if len(text.split()) >= 4:
            by_label[label.strip()].append(text.strip())
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        first, second = rng.choice(by_label["1"]), rng.choice(by_label["0"])
        if rng.random() < 0.5:
            first, second = second, first
        out.append(f"{first}{rng.choice(CONNECTIVES)} {second}")
    return out


def text_set_parser(description: str, limit: int) -> argparse.ArgumentParser:
    """A bench's parser with the options that choose its model and texts: --model, --texts, --limit, --long."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint folder")
    parser.add_argument("--texts", default=str(SST2_DEV), help="SST-2 style .tsv or one text per line")
    parser.add_argument("--limit", type=int, default=limit, help="texts to use (0: all)")
    parser.add_argument("--long", action="store_true", help="join sentences into ~300-token paragraphs first")
    return parser


def text_set(args: argparse.Namespace, count_tokens) -> list[str]:
    """The texts text_set_parser's options ask for: the first --limit sentences, or paragraphs of them (--long)."""
    texts = read_texts(Path(args.texts), None if args.long else args.limit)
    return paragraphs(texts, count_tokens)[: args.limit or None] if args.long else texts


def paragraphs(sentences: list[str], count_tokens, target: int = 300) -> list[str]:
    """Join consecutive sentences into paragraphs of about `target` tokens (the long-text set)."""
    out, current, size = [], [], 0
    for sentence in sentences:
        current.append(sentence.strip())
        size += count_tokens(sentence) - 2  # without [CLS]/[SEP]
        if size >= target - 2:
            out.append(" ".join(current))
            current, size = [], 0
    return out


def cpu_name() -> str:
    """The CPU's model name and count, e.g. "AMD EPYC, 2 CPUs", and whether the AVX2 path was viewed on it."""
    from textclass.runtime.cpu import detect

    features = detect()
    name = f"{features.name or platform.processor() or 'unknown CPU'}, {os.cpu_count()} CPUs"
    if not features.view:
        return name
    if "avx2_view" in os.environ.get("LD_PRELOAD", ""):
        return f"{name}, AVX2 view (tools/avx2-view: AVX2 kernels, AVX2 format)"
    return f"{name}, TEXTCLASS_CPU=avx2 (AVX2 format on this CPU's own kernels)"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
