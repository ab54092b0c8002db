"""`textclass train` and `textclass eval`: parse options, call textclass.train, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from textclass.cli.common import BackendOption, DeviceOption, DtypeOption, ModelOption, fail


def train(
    model: Annotated[str, typer.Option("--model", "-m", help="Base checkpoint: a bare encoder or a classifier.")],
    train_file: Annotated[Path, typer.Option("--train", help="Training data: .csv, .tsv, .jsonl, .json, .parquet.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the fine-tuned Hugging Face checkpoint.")],
    eval_file: Annotated[Path | None, typer.Option("--eval", help="Evaluation data, same format.")] = None,
    multi_label: Annotated[bool, typer.Option("--multi-label", help="Several labels per row (BCE).")] = False,
    regression: Annotated[bool, typer.Option("--regression", help="A numeric target (MSE).")] = False,
    text_column: Annotated[str | None, typer.Option(help="(default: text or sentence)")] = None,
    text_pair_column: Annotated[str | None, typer.Option(help="Second text of a pair.")] = None,
    label_column: Annotated[str | None, typer.Option(help="(default: label or labels)")] = None,
    label_delimiter: Annotated[str | None, typer.Option(help="Multi-label cells like 'a|b': the delimiter.")] = None,
    label_names: Annotated[
        str | None, typer.Option(help="Names for integer labels 0..K-1, comma-separated (NEGATIVE,POSITIVE).")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 3,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimizer steps.")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    grad_accum: Annotated[int, typer.Option(min=1, help="Batches per optimizer step.")] = 1,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 5e-5,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.06,
    max_grad_norm: Annotated[float, typer.Option(help="Gradient clipping norm; 0 turns it off.")] = 1.0,
    max_length: Annotated[int, typer.Option(help="Tokens per input (longer ones are truncated).")] = 128,
    label_smoothing: float = 0.0,
    layer_lr_decay: Annotated[
        float, typer.Option(help="Layer-wise lr decay: each layer below the head learns this times slower.")
    ] = 1.0,
    ema: Annotated[
        float | None, typer.Option(help="Keep, evaluate and save an exponential moving average of the weights.")
    ] = None,
    bf16: Annotated[
        bool, typer.Option("--bf16", help="bf16 autocast: faster where the CPU has native bf16 (avx512_bf16, amx_bf16)")
    ] = False,
    seed: int = 42,
    eval_steps: Annotated[int | None, typer.Option(help="Evaluate every N steps instead of each epoch.")] = None,
    save_steps: Annotated[int | None, typer.Option(help="Save resumable state every N steps.")] = None,
    metric: Annotated[str | None, typer.Option(help="Keep-best metric (default: accuracy/micro_f1/mse).")] = None,
    patience: Annotated[int | None, typer.Option(help="Early stopping: evals without improvement.")] = None,
    dtype_out: Annotated[str, typer.Option(help="Saved weights: fp32, fp16 or bf16.")] = "fp32",
    temperature_calibrate: Annotated[
        bool, typer.Option("--temperature-calibrate", help="Fit a softmax temperature on the eval set.")
    ] = False,
    teacher: Annotated[
        str | None, typer.Option(help="Distil from this classifier folder (run once over the training texts).")
    ] = None,
    teacher_logits: Annotated[
        Path | None, typer.Option(help="Distil from precomputed teacher logits: .npy, (usable rows, labels).")
    ] = None,
    distill_temperature: Annotated[
        float | None, typer.Option(help="Softmax temperature of the soft targets (default 2.0).")
    ] = None,
    distill_alpha: Annotated[
        float | None, typer.Option(help="Weight of the soft-target loss; labels get 1 - alpha (default 0.5).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out.")] = False,
    keep_checkpoints: Annotated[bool, typer.Option(help="Keep resumable state after finishing.")] = False,
    device: DeviceOption = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all cores).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Fine-tune a checkpoint on labelled data; writes a Hugging Face checkpoint folder."""
    from textclass.errors import TextclassError

    if multi_label and regression:
        fail("choose --multi-label or --regression, not both")
    try:
        from textclass.extras import require_torch

        require_torch("textclass train", extra="train")
        from textclass.runtime.precision import pick_device
        from textclass.train.progress import RichReporter
        from textclass.train.run import train as run_train
        from textclass.train.setup import Reporter, TrainArgs

        args = TrainArgs(
            model=model, train=str(train_file), out=str(out), eval=str(eval_file) if eval_file else None,
            task="multi_label" if multi_label else "regression" if regression else "single_label",
            text_column=text_column, text_pair_column=text_pair_column, label_column=label_column,
            label_delimiter=label_delimiter,
            label_names=[n.strip() for n in label_names.split(",")] if label_names else None,
            epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
            weight_decay=weight_decay, warmup_ratio=warmup_ratio, max_grad_norm=max_grad_norm, max_length=max_length,
            label_smoothing=label_smoothing, layer_lr_decay=layer_lr_decay, ema=ema, bf16=bf16, seed=seed,
            eval_steps=eval_steps, save_steps=save_steps,
            metric=metric, patience=patience, dtype_out=dtype_out, temperature_calibrate=temperature_calibrate,
            teacher=teacher, teacher_logits=str(teacher_logits) if teacher_logits else None,
            distill_temperature=distill_temperature, distill_alpha=distill_alpha,
            resume=resume, keep_checkpoints=keep_checkpoints, device=pick_device(device), threads=threads,
        )  # fmt: skip
        reporter = Reporter() if quiet else RichReporter()
        summary = run_train(args, reporter)
    except TextclassError as exc:
        fail(str(exc))
    final = summary["eval_metrics"]
    shown = ", ".join(f"{k} {final[k]:.4f}" for k in ("accuracy", "macro_f1", "micro_f1", "mse", "ece") if k in final)
    typer.echo(
        f"saved {out} ({summary['step']} steps, {summary['samples_per_second']:.1f} samples/s, "
        f"{summary['wall_seconds']:.0f} s){': ' + shown if shown else ''}",
        err=True,
    )


def evaluate(
    data: Annotated[Path, typer.Option("--data", help="Labelled data: .csv, .tsv, .jsonl, .json, .parquet.")],
    model: ModelOption = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write metrics.json and PNG plots here.")] = None,
    errors: Annotated[int, typer.Option("--errors", help="Show the N most confident mistakes.", min=0)] = 0,
    text_column: Annotated[str | None, typer.Option(help="(default: text or sentence)")] = None,
    text_pair_column: Annotated[str | None, typer.Option(help="Second text of a pair.")] = None,
    label_column: Annotated[str | None, typer.Option(help="(default: label or labels)")] = None,
    label_delimiter: Annotated[str | None, typer.Option(help="Multi-label cells like 'a|b': the delimiter.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Tokens per input (default: the model's limit).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as JSON instead of tables.")] = False,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    backend: BackendOption = None,
) -> None:
    """Score a checkpoint on labelled data: accuracy, F1, calibration, confusion matrix, plots."""
    from textclass.errors import TextclassError

    try:
        from textclass.train.evaluate import evaluate as run_eval
        from textclass.train.evaluate import print_report

        report = run_eval(
            model, data, out_dir=out, errors=errors, text_column=text_column, text_pair_column=text_pair_column,
            label_column=label_column, label_delimiter=label_delimiter, max_length=max_length, device=device,
            dtype=dtype, backend=backend,
        )  # fmt: skip
    except TextclassError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
    else:
        print_report(report)
