"""Synthetic labelled data and tiny base models for the train/eval tests."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import build_checkpoint

FILLER = "the a film movie story plot actor scene music time people way thing day world life".split()
CUES = {"pos": ["good", "great", "superb"], "neg": ["bad", "awful", "boring"]}
TOPICS = {"sport": ["football", "tennis"], "food": ["pizza", "bread"], "news": ["election", "minister"]}
# Settings under which a 2-layer, 32-wide random BERT learns the cue-word tasks in a few seconds.
FAST = dict(epochs=4, batch_size=8, lr=3e-3, threads=1, warmup_ratio=0.1)


def sentiment_rows(n: int, seed: int) -> list[dict]:
    """One cue word among filler words decides the label: separable by construction."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 12))]
        words.insert(rng.randint(0, len(words)), rng.choice(CUES[label]))
        rows.append({"text": " ".join(words), "label": label})
    return rows


def topic_rows(n: int, seed: int) -> list[dict]:
    """Each row mentions one or two topics; its labels are exactly those topics."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        labels = sorted(rng.sample(sorted(TOPICS), rng.choice([1, 1, 2])))
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 10))]
        for label in labels:
            words.insert(rng.randint(0, len(words)), rng.choice(TOPICS[label]))
        rows.append({"text": " ".join(words), "labels": labels})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_base(folder: Path, vocab_txt: Path, family: str = "bert", head: bool = False, num_labels: int = 2) -> Path:
    """A tiny random checkpoint without dropout (dropout only slows a 32-wide model down on these tasks)."""
    if not (folder / "config.json").is_file():
        no_dropout = (
            {"dropout": 0.0, "attention_dropout": 0.0}
            if family == "distilbert"
            else {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
        )
        build_checkpoint(folder, family, vocab_txt, num_labels=num_labels, head=head, **no_dropout)
    return folder


def kill_after_first_checkpoint(cli_args: list[str], out: Path) -> None:
    """Run `textclass train` with `cli_args` in a subprocess and SIGKILL it once it has saved resumable state."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    process = subprocess.Popen([sys.executable, "-m", "textclass", "train", *cli_args], env=env)
    deadline = time.monotonic() + 120
    while not list((out / "checkpoints").glob("step-*")) and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "model.safetensors").exists()
    saved = sorted((out / "checkpoints").glob("step-*"))
    assert saved and (saved[-1] / "state.pt").is_file()
