"""The bundled model's data scripts: held-out sentences never leak into training, logits stay aligned to rows."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
WORDS = "good bad film plot acting dull witty long charming awful story cast score music pace".split()


def treebank(path: Path, sentences: int = 60, seed: int = 0) -> list[str]:
    """A tiny SST-2-like train.tsv: each sentence and some of its phrases (runs of its words), shuffled."""
    rng = random.Random(seed)
    rows, made = set(), []
    for _ in range(sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 12))] + [f"w{len(made)}"]  # unique: a new sentence
        made.append(" ".join(words))
        rows.add(made[-1])
        for _ in range(5):
            a = rng.randrange(len(words))
            rows.add(" ".join(words[a : rng.randint(a + 1, len(words))]))
    lines = [f"{text} \t{rng.randint(0, 1)}" for text in sorted(rows)]
    rng.shuffle(lines)
    path.write_text("\n".join(["sentence\tlabel", *lines]) + "\n")
    return made


def run(*args: str | Path) -> str:
    done = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def texts(path: Path) -> list[str]:
    return [line.rsplit("\t", 1)[0].strip() for line in path.read_text().splitlines()[1:]]


def test_held_out_sentences_and_all_their_phrases_stay_out_of_fit(tmp_path):
    made = treebank(tmp_path / "train.tsv")
    run("scripts/split_sst2.py", tmp_path / "train.tsv", tmp_path / "split", "--sentences", "10")
    held, fit = texts(tmp_path / "split" / "heldout.tsv"), texts(tmp_path / "split" / "fit.tsv")
    assert len(held) == 10 and set(held) <= set(made)  # whole sentences, not phrases
    for phrase in fit:
        assert not any(f" {phrase} " in f" {sentence} " for sentence in held), phrase
    rows = json.loads((tmp_path / "split" / "rows.json").read_text())
    train_texts = texts(tmp_path / "train.tsv")
    assert [train_texts[i] for i in rows["heldout"]] == held and [train_texts[i] for i in rows["fit"]] == fit
    kept = {t for t in train_texts if not any(f" {t} " in f" {s} " for s in held)}
    assert set(fit) == kept  # nothing else removed


def test_built_sentences_and_distillation_file(tmp_path):
    treebank(tmp_path / "train.tsv")
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nnot in train \t1\n")
    split = tmp_path / "split"
    run("scripts/split_sst2.py", tmp_path / "train.tsv", split, "--sentences", "10")
    run("scripts/build_sentences.py", split, tmp_path / "dev.tsv", tmp_path / "built.txt", "--count", "50")
    built = (tmp_path / "built.txt").read_text().splitlines()
    held = texts(split / "heldout.tsv")
    assert len(built) == 50 and not any(h in b for h in held for b in built)
    fit_rows = json.loads((split / "rows.json").read_text())["fit"]
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(fit_rows) + len(built), 2)).astype(np.float32)
    keys = np.asarray(fit_rows + [-1 - i for i in range(len(built))], dtype=np.int32)
    np.save(tmp_path / "sentiment_teacher_logits.npy", logits)
    np.save(tmp_path / "sentiment_teacher_rows.npy", keys)
    out = tmp_path / "distill.tsv"
    run("scripts/distill_data.py", split, tmp_path / "built.txt", tmp_path, out)
    lines = out.read_text().splitlines()[1:]
    assert len(lines) == len(logits) and np.array_equal(np.load(out.with_suffix(".npy")), logits)
    teacher_labels = logits[len(fit_rows) :].argmax(1).tolist()  # built rows: the teacher's label
    assert [int(line.rsplit("\t", 1)[1]) for line in lines[len(fit_rows) :]] == teacher_labels
    np.save(tmp_path / "sentiment_teacher_rows.npy", keys[::-1].copy())  # logits of other rows: refused
    done = subprocess.run([sys.executable, "scripts/distill_data.py", split, tmp_path / "built.txt", tmp_path, out],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert done.returncode != 0 and "do not match" in done.stderr
