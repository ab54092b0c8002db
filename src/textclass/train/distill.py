"""Knowledge distillation: a teacher's logits for every training row, checked before training, and the loss.

The teacher is either a classifier folder (`--teacher`), run once over the training texts before training,
or a precomputed `.npy` file (`--teacher-logits`) of shape (rows, labels): one row per *usable* training row
(after empty texts and missing labels are dropped), in file order. A `--teacher` run writes exactly such a
file to OUT/teacher_logits.npy, so later runs can reuse it, and a resumed run reads it back instead of
running the teacher again (the same logits bit for bit; the resume recipe holds their sha256).
"""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from textclass.errors import TextclassError
from textclass.fileio import atomic_write
from textclass.models.config import EncoderConfig
from textclass.train import metrics as metric_fns
from textclass.train.batches import loss_sum
from textclass.train.data import Dataset, Task
from textclass.train.setup import Reporter, Teacher, TrainArgs

TEACHER_LOGITS = "teacher_logits.npy"  # written into --out by a --teacher run


def teacher_task(config: EncoderConfig) -> Task:
    """What a classifier's logits mean, by transformers' rules (one label and no problem_type: regression)."""
    if config.problem_type == "regression" or (config.problem_type is None and config.num_labels == 1):
        return "regression"
    return "multi_label" if config.problem_type == "multi_label_classification" else "single_label"


def load_teacher(
    args: TrainArgs, dataset: Dataset, config: EncoderConfig, max_length: int, resuming: bool, reporter: Reporter
) -> Teacher:
    """The teacher logits for `dataset` (the student's usable training rows), checked against the student."""
    if args.teacher_logits:
        path = Path(args.teacher_logits)
    else:
        path = Path(args.out) / TEACHER_LOGITS
        if resuming and path.is_file():
            reporter.message(f"reusing the teacher logits {path} computed when the run started")
        else:
            _write_npy(path, _run_teacher(args.teacher, dataset, config, args, max_length, reporter))
    data, logits = read_logits(path)
    check_logits(logits, path, dataset, config)
    record: dict[str, Any] = {
        "teacher": args.teacher,
        "logits_file": str(path),
        "sha256": hashlib.sha256(data).hexdigest(),
        "rows": len(logits),
        "temperature": args.distill_temperature,
        "alpha": args.distill_alpha,
        # How often the teacher agrees with the training labels: low means the labels and teacher disagree.
        "label_agreement": _agreement(logits, dataset.targets, args.task, config.id2label),
    }
    return Teacher(logits, record["sha256"], record)


def _run_teacher(
    folder: str, dataset: Dataset, student: EncoderConfig, args: TrainArgs, max_length: int, reporter: Reporter
) -> np.ndarray:
    """(rows, labels) fp32 logits of the teacher on the training texts, columns in the student's label order."""
    from textclass.classifier import Classifier

    began = time.perf_counter()
    teacher = Classifier.from_pretrained(folder, device=args.device, dtype="fp32")
    if not teacher.has_head:
        raise TextclassError(
            f"--teacher {folder} is a bare encoder without a classification head; the teacher must be a "
            "fine-tuned classifier (the output folder of `textclass train`, for example)"
        )
    kind = teacher_task(teacher.config)
    if kind != args.task:
        raise TextclassError(
            f"--teacher {folder} is a {kind.replace('_', '-')} model but the student trains for "
            f"{args.task.replace('_', '-')}; the teacher must solve the same task"
        )
    order = list(range(teacher.config.num_labels))
    if args.task != "regression":
        if sorted(teacher.labels) != sorted(student.id2label):
            raise TextclassError(
                f"--teacher {folder} has labels {list(teacher.labels)} but the student's are "
                f"{list(student.id2label)}; the teacher must have the same label set "
                "(name integer class ids with --label-names)"
            )
        order = [teacher.labels.index(name) for name in student.id2label]  # teacher column of each student label
    # Each model reads its own tokens; a teacher that reads fewer sees less of long texts than the student.
    limit = teacher.tokenizer.model_max_length
    if limit < max_length:
        reporter.message(
            f"warning: the teacher {folder} reads at most {limit} tokens, the student {max_length}: "
            "the teacher sees less of longer texts than the student does"
        )
    logits = teacher.logits(dataset.texts, max_length=min(limit, max_length))[:, order]
    reporter.message(f"teacher {folder}: logits for {len(logits)} rows in {time.perf_counter() - began:.1f} s")
    return np.ascontiguousarray(logits, dtype=np.float32)


def _write_npy(path: Path, logits: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, logits, allow_pickle=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())


def read_logits(path: Path) -> tuple[bytes, np.ndarray]:
    """The file's bytes (for its sha256) and its (rows, labels) float32 array."""
    if path.suffix.lower() != ".npy":
        raise TextclassError(
            f"teacher logits {path}: expected a .npy file of shape (rows, labels), as numpy.save writes it"
        )
    if not path.is_file():
        raise TextclassError(f"teacher logits file {path} does not exist")
    data = path.read_bytes()
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise TextclassError(f"cannot read teacher logits {path} as a .npy array: {exc}") from exc
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise TextclassError(
            f"teacher logits {path} hold a {array.dtype} array of shape {array.shape}; expected numbers "
            "of shape (rows, labels)"
        )
    return data, np.ascontiguousarray(array, dtype=np.float32)


def check_logits(logits: np.ndarray, path: Path, dataset: Dataset, config: EncoderConfig) -> None:
    """One row per usable training row, one column per student label, all finite."""
    rows, dropped = len(dataset), sum(dataset.dropped.values())
    if len(logits) != rows:
        hint = (
            " (it seems to include the dropped rows; keep only the usable ones)"
            if dropped and len(logits) == rows + dropped
            else ""
        )
        raise TextclassError(
            f"teacher logits {path} have {len(logits)} rows, the training data has {rows} rows"
            + (f" after dropping {dropped} unusable rows" if dropped else "")
            + f"{hint}; the file must hold one row per usable training row, in file order"
        )
    if logits.shape[1] != config.num_labels:
        raise TextclassError(
            f"teacher logits {path} have {logits.shape[1]} columns, the student has {config.num_labels} "
            f"labels {list(config.id2label)}; expected one column per label, in that order"
        )
    bad = np.flatnonzero(~np.isfinite(logits).all(axis=1))
    if len(bad):
        raise TextclassError(f"teacher logits {path} hold NaN or infinite values ({len(bad)} rows, first {bad[0]})")


def _agreement(logits: np.ndarray, targets: np.ndarray, task: str, labels: tuple[str, ...]) -> float:
    """Teacher accuracy on the training labels (exact match for multi-label), or its MSE for regression."""
    found = metric_fns.compute(task, logits, targets, labels)
    return float(found["mse" if task == "regression" else "accuracy"])


def distill_loss_sum(
    student: torch.Tensor,
    teacher: torch.Tensor,
    targets: torch.Tensor,
    task: str,
    temperature: float | None,
    alpha: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """alpha × soft-target loss + (1 - alpha) × label loss, summed over rows (as `loss_sum`).

    Single-label: T² · KL(softmax(teacher/T) ‖ softmax(student/T)) (Hinton et al. 2015; T² keeps the soft
    gradients' scale independent of T). Multi-label: T² · BCE of student/T against sigmoid(teacher/T),
    averaged over labels. Regression: squared error to the teacher's value (no temperature).
    """
    student, teacher = student.float(), teacher.float()  # (rows, labels) each
    if task == "regression":
        soft = F.mse_loss(student.squeeze(-1), teacher.squeeze(-1), reduction="sum")
    else:
        assert temperature is not None
        scaled, target = student / temperature, teacher / temperature
        if task == "multi_label":
            per_row = F.binary_cross_entropy_with_logits(scaled, torch.sigmoid(target), reduction="none").mean(-1)
            soft = per_row.sum()
        else:
            soft = F.kl_div(F.log_softmax(scaled, -1), F.log_softmax(target, -1), log_target=True, reduction="sum")
        soft = soft * temperature**2
    return alpha * soft + (1 - alpha) * loss_sum(student, targets, task, label_smoothing)
