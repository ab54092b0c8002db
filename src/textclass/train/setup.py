"""What a training run is given: its arguments, its tokenized data, and where it reports progress."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from textclass.checkpoint.tokenizer import Encoded, Tokenizer
from textclass.errors import TextclassError
from textclass.train.data import Dataset, Task

DEFAULT_METRIC = {"single_label": "accuracy", "multi_label": "micro_f1", "regression": "mse"}


@dataclass
class TrainArgs:
    model: str
    train: str
    out: str
    eval: str | None = None
    task: Task = "single_label"
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    label_delimiter: str | None = None
    label_names: list[str] | None = None
    epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    max_length: int = 128
    label_smoothing: float = 0.0
    layer_lr_decay: float = 1.0
    ema: float | None = None
    bf16: bool = False
    seed: int = 42
    eval_steps: int | None = None
    save_steps: int | None = None
    metric: str | None = None
    patience: int | None = None
    dtype_out: str = "fp32"
    temperature_calibrate: bool = False
    resume: bool = False
    keep_checkpoints: bool = False
    device: str = "cpu"
    threads: int | None = None
    # Distillation (textclass.train.distill): a teacher classifier folder, or its precomputed logits (.npy).
    teacher: str | None = None
    teacher_logits: str | None = None
    distill_temperature: float | None = None  # [default: 2.0 when distilling a classifier]
    distill_alpha: float | None = None  # weight of the soft-target loss [default: 0.5 when distilling]

    def __post_init__(self) -> None:
        checks = [
            (self.task in DEFAULT_METRIC, f"task must be one of {list(DEFAULT_METRIC)}, got {self.task!r}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.grad_accum >= 1, f"--grad-accum must be at least 1, got {self.grad_accum}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (0 <= self.warmup_ratio < 1, f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}"),
            (0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}"),
            (0 < self.layer_lr_decay <= 1, f"--layer-lr-decay must be in (0, 1], got {self.layer_lr_decay}"),
            (self.ema is None or 0 <= self.ema < 1, f"--ema must be in [0, 1), got {self.ema}"),
            (self.max_length >= 2, f"--max-length must be at least 2, got {self.max_length}"),
            (
                self.dtype_out in ("fp32", "fp16", "bf16"),
                f"--dtype-out must be fp32, fp16 or bf16, not {self.dtype_out}",
            ),
            (not (self.label_smoothing and self.task != "single_label"), "--label-smoothing is for single-label tasks"),
            (not (self.temperature_calibrate and not self.eval), "--temperature-calibrate needs --eval data to fit on"),
            (not (self.temperature_calibrate and self.task == "regression"), "regression has no temperature to fit"),
            (not (self.patience and not self.eval), "--patience (early stopping) needs --eval data"),
            (not (self.teacher and self.teacher_logits), "choose --teacher or --teacher-logits, not both"),
            (
                self.distilling or (self.distill_temperature is None and self.distill_alpha is None),
                "--distill-temperature and --distill-alpha need a --teacher or --teacher-logits",
            ),
            (
                not (self.task == "regression" and self.distill_temperature is not None),
                "regression distils by MSE to the teacher's value; it has no --distill-temperature",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise TextclassError(message)
        if self.metric is None:
            self.metric = DEFAULT_METRIC[self.task]
        if self.distilling:
            # Filled here (not as field defaults) so runs without a teacher keep their resume recipe unchanged.
            if self.distill_alpha is None:
                self.distill_alpha = 0.5
            if self.distill_temperature is None and self.task != "regression":
                self.distill_temperature = 2.0
            if not 0 <= self.distill_alpha <= 1:
                raise TextclassError(f"--distill-alpha must be in [0, 1], got {self.distill_alpha}")
            if self.distill_temperature is not None and not self.distill_temperature > 0:
                raise TextclassError(f"--distill-temperature must be positive, got {self.distill_temperature}")

    @property
    def distilling(self) -> bool:
        return bool(self.teacher or self.teacher_logits)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Teacher:
    """A distillation teacher's logits, one row per training row, and where they came from."""

    logits: np.ndarray  # (rows, labels) float32, columns in the student's label order
    sha256: str  # of the .npy file the logits were read from (or written to); resuming checks it
    record: dict[str, Any]  # for training_args.json, metrics.json and the model card


@dataclass
class TrainData:
    encoded: list[Encoded]
    targets: np.ndarray
    pad_token_id: int
    dataset: Dataset
    teacher: Teacher | None = None  # distillation: indexed like `targets`, so each row keeps its soft target


def encode(dataset: Dataset, tokenizer: Tokenizer, max_length: int, teacher: Teacher | None = None) -> TrainData:
    encoded = tokenizer.encode_batch(dataset.texts, truncation=True, max_length=max_length)
    return TrainData(encoded, dataset.targets, tokenizer.pad_token_id, dataset, teacher)


class Reporter:
    """Where a run reports progress; this base is silent. The CLI passes a rich progress bar."""

    def message(self, text: str) -> None:
        pass

    def start(self, total_steps: int, done_steps: int) -> None:
        pass

    def step(self, step: int, loss: float, lr: float, samples_per_second: float) -> None:
        pass

    def evaluated(self, metrics: dict[str, Any]) -> None:
        pass

    def finish(self) -> None:
        pass
