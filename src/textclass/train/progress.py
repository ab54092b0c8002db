"""A rich progress bar for training: loss, learning rate, samples/s and ETA; eval results as lines."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from textclass.train.setup import Reporter

SHOWN_METRICS = ("loss", "accuracy", "macro_f1", "micro_f1", "mse", "mae", "ece")


class RichReporter(Reporter):
    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self.task_id: Any = None
        self.smoothed: float | None = None

    def message(self, text: str) -> None:
        (self.progress.console if self.progress else self.console).print(text, markup=False, highlight=False)

    def start(self, total_steps: int, done_steps: int) -> None:
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[speed]} samples/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.progress.start()
        self.task_id = self.progress.add_task("train", total=total_steps, completed=done_steps,
                                              loss="-", lr="-", speed="-")  # fmt: skip

    def step(self, step: int, loss: float, lr: float, samples_per_second: float) -> None:
        # An exponential average: single steps are noisy, the trend is what matters.
        self.smoothed = loss if self.smoothed is None else 0.9 * self.smoothed + 0.1 * loss
        if self.progress is not None:
            self.progress.update(self.task_id, completed=step, loss=f"{self.smoothed:.4f}", lr=f"{lr:.2e}",
                                 speed=f"{samples_per_second:.1f}")  # fmt: skip

    def evaluated(self, metrics: dict[str, Any]) -> None:
        shown = "  ".join(f"{k} {metrics[k]:.4f}" for k in SHOWN_METRICS if k in metrics)
        self.message(f"eval @ step {metrics['step']} (epoch {metrics['epoch']}): {shown}")

    def finish(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
