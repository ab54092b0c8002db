"""Training throughput: `textclass train` vs `transformers.Trainer`, same model, data, batch size, max length.

    python bench/train.py --model MINILM_DIR --data ../shared/data/sst2/train.tsv --steps 40

Both run in this process, one after the other, with the same thread count; samples/s counts the
optimizer steps' rows over the training loop's time (Trainer: its train_runtime). Needs
`pip install accelerate` for Trainer.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def textclass_run(model: str, data: Path, steps: int, batch_size: int, max_length: int, threads: int) -> float:
    from textclass.train.run import train
    from textclass.train.setup import TrainArgs

    with tempfile.TemporaryDirectory() as out:
        summary = train(TrainArgs(model=model, train=str(data), out=out, max_steps=steps, batch_size=batch_size,
                                  max_length=max_length, threads=threads, lr=5e-5, epochs=1))  # fmt: skip
    return summary["samples_per_second"]


def trainer_run(model: str, data: Path, steps: int, batch_size: int, max_length: int, threads: int, group: bool):
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,  # fmt: skip
    )

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model)
    with data.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    encoded = tokenizer([r["sentence"] for r in rows], truncation=True, max_length=max_length)
    dataset = [{"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": int(r["label"])}
               for ids, mask, types, r in zip(encoded["input_ids"], encoded["attention_mask"],
                                              encoded["token_type_ids"], rows)]  # fmt: skip
    net = AutoModelForSequenceClassification.from_pretrained(model, num_labels=2)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch_size, max_steps=steps,
                                 learning_rate=5e-5, weight_decay=0.01, warmup_steps=int(0.06 * steps), use_cpu=True,
                                 report_to=[], save_strategy="no", logging_strategy="no", dataloader_num_workers=0,
                                 train_sampling_strategy="group_by_length" if group else "random", seed=42)  # fmt: skip
        trainer = Trainer(model=net, args=args, train_dataset=dataset, data_collator=DataCollatorWithPadding(tokenizer))
        metrics = trainer.train().metrics
    return steps * batch_size / metrics["train_runtime"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="base checkpoint folder (e.g. all-MiniLM-L6-v2)")
    parser.add_argument("--data", type=Path, required=True, help="GLUE-style TSV with sentence and label columns")
    parser.add_argument("--rows", type=int, default=5000, help="use the file's first N rows (both runs)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--group-by-length", action="store_true", help="also time Trainer with group_by_length")
    args = parser.parse_args()
    lines = args.data.read_text(encoding="utf-8").splitlines(keepends=True)[: args.rows + 1]
    data = Path(tempfile.mkdtemp()) / "slice.tsv"
    data.write_text("".join(lines), encoding="utf-8")
    common = (args.model, data, args.steps, args.batch_size, args.max_length, args.threads)
    started = time.perf_counter()
    ours = textclass_run(*common)
    print(f"textclass train      : {ours:7.1f} samples/s", flush=True)
    theirs = trainer_run(*common, group=False)
    print(f"transformers.Trainer : {theirs:7.1f} samples/s", flush=True)
    if args.group_by_length:
        grouped = trainer_run(*common, group=True)
        print(f"Trainer group_by_len : {grouped:7.1f} samples/s  (ratio {ours / grouped:.2f}x)")
    print(f"ratio textclass / Trainer: {ours / theirs:.2f}x  ({args.steps} steps each, batch {args.batch_size}, "
          f"max length {args.max_length}, {args.threads} threads, {time.perf_counter() - started:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
