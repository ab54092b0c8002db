"""`evaluate()`: score a checkpoint on a labelled file; metrics.json, PNG plots and a rich report.

The task comes from the checkpoint's problem_type; metrics are computed on the raw logits, and also on
logits divided by the checkpoint's fitted temperature when it has one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from textclass.fileio import write_json
from textclass.models.config import TEMPERATURE_KEY
from textclass.postprocess import sigmoid, softmax
from textclass.train import metrics as metric_fns
from textclass.train.data import Task, encode_targets, label_lookup, load_dataset


def task_of(problem_type: str | None) -> Task:
    if problem_type == "multi_label_classification":
        return "multi_label"
    if problem_type == "regression":
        return "regression"
    return "single_label"


def evaluate(
    model: str | os.PathLike[str] | None,
    data: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    errors: int = 0,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    label_delimiter: str | None = None,
    max_length: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    backend: str | None = None,
) -> dict[str, Any]:
    """Metrics of `model` (None: the bundled model) on `data` as a dict (also written to out_dir/metrics.json
    with plots). device, dtype, backend: as Classifier.from_pretrained takes them."""
    from textclass.checkpoint import open_checkpoint
    from textclass.checkpoint.locate import resolve_model
    from textclass.classifier import Classifier

    # The config alone first: the data's columns, rows and labels are checked before the weights load.
    config = open_checkpoint(resolve_model(None if model is None else str(model))).config
    task = task_of(config.problem_type)
    dataset, _ = load_dataset(data, task, text_column, text_pair_column, label_column, label_delimiter)
    encode_targets(dataset, task, None if task == "regression" else label_lookup(config.id2label), label_delimiter)
    classifier = Classifier.from_pretrained(model, device=device, dtype=dtype, backend=backend)
    logits = classifier.logits(dataset.texts, max_length=max_length)  # (n, labels)
    report: dict[str, Any] = {"model": str(classifier.folder if model is None else model), "data": str(data),
                              "task": task, "rows": len(dataset),
                              "dropped": dict(dataset.dropped)}  # fmt: skip
    report.update(metric_fns.compute(task, logits, dataset.targets, config.id2label))
    temperature = config.raw.get(TEMPERATURE_KEY)
    if temperature and task != "regression":
        calibrated = metric_fns.compute(task, logits / float(temperature), dataset.targets, config.id2label)
        report["temperature"] = float(temperature)
        report["calibrated"] = {k: calibrated[k] for k in ("log_loss", "ece")}
    if errors:
        report["errors"] = worst_mistakes(dataset.texts, logits, dataset.targets, task, config.id2label, errors)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", report)
        report["plots"] = [str(p) for p in write_plots(out, task, logits, dataset.targets, report)]
    return report


def worst_mistakes(texts: list, logits: np.ndarray, targets: np.ndarray, task: str, labels, count: int) -> list[dict]:
    """The `count` wrong predictions the model was surest of (largest errors, for regression)."""
    rows = []
    if task == "single_label":
        probs = softmax(logits)
        predicted = probs.argmax(axis=-1)
        for i in np.flatnonzero(predicted != targets):
            rows.append((float(probs[i, predicted[i]]), {"text": texts[i], "label": labels[targets[i]],
                         "predicted": labels[predicted[i]], "score": float(probs[i, predicted[i]])}))  # fmt: skip
    elif task == "multi_label":
        probs = sigmoid(np.asarray(logits, dtype=np.float64))
        predicted, truth = probs >= 0.5, targets > 0.5
        for i in np.flatnonzero((predicted != truth).any(axis=1)):
            wrong = predicted[i] != truth[i]
            confidence = float(np.abs(probs[i] - 0.5)[wrong].max() + 0.5)
            rows.append((confidence, {"text": texts[i], "label": [labels[j] for j in np.flatnonzero(truth[i])],
                                      "predicted": [labels[j] for j in np.flatnonzero(predicted[i])],
                                      "score": confidence}))  # fmt: skip
    else:
        errors = np.abs(logits[:, 0] - targets)
        for i in range(len(texts)):
            rows.append((float(errors[i]), {"text": texts[i], "label": float(targets[i]),
                                            "predicted": float(logits[i, 0]), "score": float(errors[i])}))  # fmt: skip
    rows.sort(key=lambda r: -r[0])
    return [r for _, r in rows[:count]]


def write_plots(out: Path, task: str, logits: np.ndarray, targets: np.ndarray, report: dict) -> list[Path]:
    """confusion_matrix.png, reliability.png and scores.png (regression: scores.png only)."""
    try:
        import matplotlib
    except ImportError:
        from textclass.errors import TextclassError

        raise TextclassError("plots need matplotlib: pip install 'textclass[train]' (or leave out --out)") from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    written = []
    if task == "regression":
        figure, axis = plt.subplots(figsize=(5, 4))
        axis.scatter(targets, logits[:, 0], s=6, alpha=0.5)
        axis.set(xlabel="target", ylabel="prediction", title=f"MSE {report['mse']:.4f}")
        written.append(_save(figure, out / "scores.png"))
        return written
    if task == "single_label":
        probs = softmax(logits)
        confidence, correct = probs.max(axis=-1), probs.argmax(axis=-1) == targets
        confusion = np.asarray(report["confusion_matrix"])
        labels = report["labels"]
        size = max(4.0, 0.5 * len(labels) + 2)
        figure, axis = plt.subplots(figsize=(size, size))
        axis.imshow(confusion, cmap="Blues")
        axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        axis.set_yticks(range(len(labels)), labels)
        for (row, col), value in np.ndenumerate(confusion):
            color = "white" if value > confusion.max() / 2 else "black"
            axis.text(col, row, str(value), ha="center", va="center", color=color)
        axis.set(xlabel="predicted", ylabel="true", title=f"accuracy {report['accuracy']:.4f}")
        written.append(_save(figure, out / "confusion_matrix.png"))
    else:
        probs = sigmoid(np.asarray(logits, dtype=np.float64))
        chosen = probs >= 0.5
        confidence = np.where(chosen, probs, 1 - probs).ravel()
        correct = (chosen == (targets > 0.5)).ravel()
    bins = metric_fns.reliability(confidence, correct)
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    axis.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=1 / metric_fns.ECE_BINS, align="edge",
             edgecolor="black", alpha=0.7, label="accuracy")  # fmt: skip
    axis.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=f"ECE {report['ece']:.4f}")
    axis.legend(loc="upper left")
    written.append(_save(figure, out / "reliability.png"))
    figure, axis = plt.subplots(figsize=(6, 4))
    edges = np.linspace(0, 1, 21)
    axis.hist([confidence[correct], confidence[~correct]], bins=edges, stacked=True, label=["correct", "wrong"])
    axis.set(xlabel="score of the predicted label", ylabel="count", title="score histogram")
    axis.legend()
    written.append(_save(figure, out / "scores.png"))
    return written


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    summary = Table(title=f"{report['model']} on {report['data']} ({report['rows']} rows)", show_header=False)
    for key in ("accuracy", "label_accuracy", "macro_f1", "micro_f1", "log_loss", "ece", "mse", "mae", "pearson"):
        if key in report:
            summary.add_row(key, f"{report[key]:.4f}")
    if "temperature" in report:
        summary.add_row("temperature", f"{report['temperature']:.4f}")
        for key, value in report["calibrated"].items():
            summary.add_row(f"{key} (calibrated)", f"{value:.4f}")
    if report["dropped"]:
        summary.add_row("dropped rows", str(report["dropped"]))
    console.print(summary)
    if "per_class" in report:
        table = Table(title="per class")
        for column in ("label", "precision", "recall", "f1", "support"):
            table.add_column(column, justify="left" if column == "label" else "right")
        for label, row in report["per_class"].items():
            table.add_row(label, f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}",
                          str(row["support"]))  # fmt: skip
        console.print(table)
    if "confusion_matrix" in report:
        table = Table(title="confusion matrix (rows: true, columns: predicted)")
        table.add_column("")
        for label in report["labels"]:
            table.add_column(label, justify="right")
        for label, row in zip(report["labels"], report["confusion_matrix"]):
            table.add_row(label, *map(str, row))
        console.print(table)
    if report.get("errors"):
        table = Table(title="most confident mistakes")
        for column in ("text", "label", "predicted", "score"):
            table.add_column(column, overflow="fold", ratio=3 if column == "text" else None)
        for row in report["errors"]:
            text = row["text"] if isinstance(row["text"], str) else " ‖ ".join(row["text"])
            table.add_row(text, str(row["label"]), str(row["predicted"]), f"{row['score']:.4f}")
        console.print(table)
    for path in report.get("plots", []):
        console.print(f"wrote {path}")
