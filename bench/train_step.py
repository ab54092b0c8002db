"""One training step of `textclass train`'s loop vs a plain transformers loop: same rows, same model, same optimizer.

    python bench/train_step.py --model /work/cache/mpnet --steps 20 [--bf16]

Both train a fresh 2-label head on the base checkpoint over the same 20 batches of 32 SST-2 train phrases that
tokenize to exactly --tokens tokens (so no batch pads), AdamW lr 2e-5 with clipping at 1.0, cross-entropy,
bf16 autocast or fp32, with the same thread count. Ours is the real loop (textclass.train.loop.run_training,
length buckets, resumable bookkeeping), timed by its own per-step clock; theirs is
AutoModelForSequenceClassification with a hand-written loop (what Trainer runs per step, without its
dataloader). Prints seconds per step (median of steps 2..N and mean of all) and the ratio ours / theirs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import SST2_TRAIN, cpu_name, read_texts


class Clock:
    """A Reporter that keeps each step's time, from the loop's own samples/s figure."""

    def __init__(self, rows: int):
        self.rows, self.times, self.last = rows, [], None

    def message(self, text: str) -> None: ...
    def start(self, total_steps: int, done_steps: int) -> None: ...
    def evaluated(self, metrics) -> None: ...
    def finish(self) -> None: ...

    def step(self, step: int, loss: float, lr: float, samples_per_second: float) -> None:
        total = step * self.rows / samples_per_second  # the loop's summed step seconds so far
        self.times.append(total - (self.last or 0.0))
        self.last = total


def pick_rows(model: str, count: int, tokens: int) -> list[str]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(model) / "tokenizer.json"))
    tok.no_padding()  # some tokenizer.json files (all-mpnet-base-v2) pad every text to 128
    tok.no_truncation()
    texts = [t.strip() for t in read_texts(SST2_TRAIN, None)]
    same = [t for t in texts if len(tok.encode(t).ids) == tokens]
    if len(same) < count:
        raise SystemExit(f"only {len(same)} train phrases have {tokens} tokens; ask for fewer steps")
    return same[:count]


def ours(model: str, texts: list[str], steps: int, batch: int, bf16: bool, threads: int) -> list[float]:
    from textclass.train.run import train
    from textclass.train.setup import TrainArgs

    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "rows.tsv"
        data.write_text("sentence\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(texts)))
        clock = Clock(batch)
        train(TrainArgs(model=model, train=str(data), out=str(Path(folder) / "out"), epochs=1, max_steps=steps,
                        batch_size=batch, lr=2e-5, bf16=bf16, threads=threads, max_length=128), clock)  # fmt: skip
    return clock.times


def theirs(model: str, texts: list[str], steps: int, batch: int, bf16: bool, threads: int) -> list[float]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model)
    net = AutoModelForSequenceClassification.from_pretrained(model, num_labels=2).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-5, weight_decay=0.01)
    times = []
    for step in range(steps):
        rows = texts[step * batch : (step + 1) * batch]
        inputs = tokenizer(rows, padding=True, return_tensors="pt")
        labels = torch.tensor([i % 2 for i in range(len(rows))])
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(**inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return times


def summary(times: list[float]) -> tuple[float, float]:
    return statistics.median(times[1:]), statistics.fmean(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="base checkpoint folder (e.g. all-mpnet-base-v2)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=27, help="every row has this many tokens, [CLS]/[SEP] included")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (both)")
    args = parser.parse_args()
    texts = pick_rows(args.model, args.steps * args.batch_size, args.tokens)
    common = (args.model, texts, args.steps, args.batch_size, args.bf16, args.threads)
    mode = "bf16 autocast" if args.bf16 else "fp32"
    a, b = summary(ours(*common)), summary(theirs(*common))
    print(f"{cpu_name()}, {args.threads} threads, {mode}, batch {args.batch_size} x {args.tokens} tokens, "
          f"{args.steps} steps")  # fmt: skip
    print(f"textclass train loop : median {a[0]:.2f} s/step, mean {a[1]:.2f}")
    print(f"transformers loop    : median {b[0]:.2f} s/step, mean {b[1]:.2f}")
    print(f"ratio ours / transformers (median): {a[0] / b[0]:.2f}x")


if __name__ == "__main__":
    main()
