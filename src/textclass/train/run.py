"""`train()`: data → model → loop → calibration → a Hugging Face checkpoint folder with a model card."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from textclass.errors import TextclassError
from textclass.fileio import write_json
from textclass.models.config import TEMPERATURE_KEY
from textclass.runtime.cpu import emulated_bf16
from textclass.train import metrics as metric_fns
from textclass.train.data import Dataset, encode_targets, label_lookup, label_names, load_dataset
from textclass.train.distill import load_teacher
from textclass.train.loop import CHECKPOINTS, evaluate_data, latest_checkpoint, predict_logits, run_training
from textclass.train.model import prepare_model
from textclass.train.save import save_hf_checkpoint
from textclass.train.setup import Reporter, TrainArgs, encode


def _load(path: str, args: TrainArgs) -> Dataset:
    dataset, _ = load_dataset(
        path, args.task, args.text_column, args.text_pair_column, args.label_column, args.label_delimiter
    )
    return dataset


def train(args: TrainArgs, reporter: Reporter | None = None) -> dict[str, Any]:
    """Fine-tune `args.model` on `args.train`; writes `args.out` and returns the run's summary."""
    reporter = reporter or Reporter()
    began = time.perf_counter()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    out = Path(args.out)
    if (out / CHECKPOINTS).is_dir() and not args.resume:
        raise TextclassError(
            f"{out} holds the checkpoint of an unfinished run; pass --resume to continue it, "
            "or choose another --out (or delete the folder)"
        )
    if out.exists() and not out.is_dir():
        raise TextclassError(f"--out {out} is a file; expected a folder to write the checkpoint into")

    if args.bf16 and args.device.startswith("cpu") and (slow := emulated_bf16()):
        # Chosen by the CPU's flags (avx512_bf16, amx_bf16), not its name: native bf16 autocast ran 1.6 s a step
        # against fp32's 2.8 (all-mpnet-base-v2, 32 x 27 tokens, 2-core Zen4); emulated, it is the slower one.
        reporter.message(f"warning: --bf16: {slow}; leave out --bf16 to train faster in fp32")
    train_set = _load(args.train, args)
    eval_set = _load(args.eval, args) if args.eval else None
    names, uses_ids = label_names(train_set.raw_labels, args.task, args.label_delimiter)
    prepared = prepare_model(args.model, args.task, names, uses_ids, args.label_names, args.seed)
    config = prepared.checkpoint.config
    for note in prepared.notes:
        reporter.message(note)
    if args.task != "regression":
        lookup = {str(i): i for i in range(len(names))} if uses_ids else {}
        lookup |= label_lookup(config.id2label)
    else:
        lookup = None
    encode_targets(train_set, args.task, lookup, args.label_delimiter)
    if eval_set is not None:
        encode_targets(eval_set, args.task, lookup, args.label_delimiter)
    for dataset in (train_set, eval_set):
        if dataset is not None:
            reporter.message(f"{dataset.source}: {len(dataset)} rows")
            if dataset.dropped:
                reporter.message(dataset.drop_summary())
    if args.task != "regression":
        reporter.message(f"labels: {list(config.id2label)}")

    tokenizer = prepared.tokenizer
    max_length = min(args.max_length, tokenizer.model_max_length)
    teacher = None
    if args.distilling:
        resuming = args.resume and latest_checkpoint(out) is not None
        teacher = load_teacher(args, train_set, config, max_length, resuming, reporter)
    train_data = encode(train_set, tokenizer, max_length, teacher)
    eval_data = encode(eval_set, tokenizer, max_length) if eval_set is not None else None
    model = prepared.model

    history = run_training(model, args, train_data, eval_data, reporter)

    final: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if eval_data is not None:
        final = evaluate_data(model, eval_data, args.task, args.device, args.bf16)
        if args.temperature_calibrate:
            logits = predict_logits(model, eval_data, args.device, args.bf16)
            temperature = metric_fns.fit_temperature(logits, eval_data.targets, args.task)
            calibrated = metric_fns.compute(args.task, logits / temperature, eval_data.targets, config.id2label)
            extra[TEMPERATURE_KEY] = temperature
            final["temperature"] = temperature
            final["calibrated"] = {k: calibrated[k] for k in ("log_loss", "ece")}
            reporter.message(
                f"temperature {temperature:.3f}: ECE {final['ece']:.4f} → {calibrated['ece']:.4f}, "
                f"log loss {final['log_loss']:.4f} → {calibrated['log_loss']:.4f}"
            )
    summary = {
        "base_model": args.model,
        "train": {"file": args.train, "rows": len(train_set), "dropped": dict(train_set.dropped)},
        "eval": None
        if eval_set is None
        else {"file": args.eval, "rows": len(eval_set), "dropped": dict(eval_set.dropped)},  # fmt: skip
        "labels": list(config.id2label),
        "new_parameters": prepared.new_parameters,
        "eval_metrics": final,
        "distillation": None if teacher is None else teacher.record,
        **history,
        "wall_seconds": time.perf_counter() - began,
    }
    save_hf_checkpoint(
        out,
        model,
        prepared.checkpoint,
        dtype_out=args.dtype_out,
        config_extra=extra,
        files={"README.md": model_card(args, summary)},
    )
    write_json(out / "training_args.json", args.to_json() | {"distillation": summary["distillation"]})
    write_json(out / "metrics.json", summary)
    if not args.keep_checkpoints:
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    return summary


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def distillation_card(record: dict[str, Any] | None) -> list[str]:
    """The model card's account of the teacher, or nothing for a run without one."""
    if record is None:
        return []
    source = f"the teacher `{record['teacher']}`" if record["teacher"] else "precomputed teacher logits"
    if record["temperature"] is None:  # regression
        soft = "squared error to the teacher's value"
    else:
        soft = f"T² · KL(teacher ‖ student) at temperature T = {record['temperature']}"
    agreement = "MSE" if record["temperature"] is None else "agreement"
    return [
        "## Distillation",
        "",
        f"Distilled from {source} (logits `{record['logits_file']}`, sha256 `{record['sha256']}`). Loss: "
        f"{record['alpha']} × {soft} + {1 - record['alpha']:g} × the label loss. Teacher {agreement} with "
        f"the training labels: {record['label_agreement']:.4f}.",
        "",
    ]


def model_card(args: TrainArgs, summary: dict[str, Any]) -> str:
    """A model card README.md: what the model was trained on, how, and how well it did."""
    train_info, eval_info = summary["train"], summary["eval"]
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags: [textclass]",
        "---",
        "",
        f"# Fine-tuned {Path(args.model).name}",
        "",
        f"Fine-tuned with `textclass train` from `{args.model}` for {args.task.replace('_', '-')} classification"
        if args.task != "regression"
        else f"Fine-tuned with `textclass train` from `{args.model}` for regression.",
        "",
        "## Data",
        "",
        f"- train: `{train_info['file']}`, {train_info['rows']} rows"
        + (
            f" ({sum(train_info['dropped'].values())} dropped: {train_info['dropped']})"
            if train_info["dropped"]
            else ""
        ),
    ]
    if eval_info:
        lines.append(f"- eval: `{eval_info['file']}`, {eval_info['rows']} rows")
    if args.task != "regression":
        lines.append(f"- labels: {', '.join(summary['labels'])}")
    lines += [
        "",
        "## Recipe",
        "",
        f"AdamW (lr {args.lr}, weight decay {args.weight_decay}, none on biases and LayerNorm), linear warmup "
        f"({args.warmup_ratio:.0%}) and decay, gradient clipping at {args.max_grad_norm}, batch size "
        f"{args.batch_size} × {args.grad_accum} accumulation, {summary['step']} steps ({args.epochs} epochs max), "
        f"max length {args.max_length}, label smoothing {args.label_smoothing}, seed {args.seed}"
        + (", bf16 autocast" if args.bf16 else "")
        + f". Best checkpoint by eval {summary['metric']}. Trained at {summary['samples_per_second']:.1f} samples/s.",
        "",
        *distillation_card(summary["distillation"]),
    ]
    final = summary["eval_metrics"]
    if final:
        lines += ["## Results (eval set)", "", "| metric | value |", "|---|---|"]
        for key, value in final.items():
            if not isinstance(value, (dict, list)):
                lines.append(f"| {key} | {_fmt(value)} |")
        if "temperature" in final:
            lines += ["", f"Logits are meant to be divided by the fitted temperature {final['temperature']:.4f} "
                      f"(`{TEMPERATURE_KEY}` in config.json) before softmax for calibrated scores."]  # fmt: skip
        lines.append("")
    lines += ["## Use", "", "```python", "from textclass import Classifier", "",
              'clf = Classifier.from_pretrained("PATH")',
              "# or: transformers.pipeline('text-classification', model='PATH')", "```", ""]  # fmt: skip
    return "\n".join(lines)
