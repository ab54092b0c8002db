"""Distillation in textclass train: a student learns from a teacher's logits, not its labels; checks and resume."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from textclass import Classifier, TextclassError
from textclass.train.distill import TEACHER_LOGITS, distill_loss_sum
from textclass.train.run import train
from textclass.train.setup import Reporter, TrainArgs
from trainkit import FAST, kill_after_first_checkpoint, sentiment_rows, tiny_base, topic_rows, write_jsonl

pytestmark = pytest.mark.slow  # the quick tier (-m 'not slow') leaves these out

ROOT = Path(__file__).resolve().parents[2]


class Collect(Reporter):
    def __init__(self) -> None:
        self.messages: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)


@pytest.fixture(scope="module")
def base(tmp_path_factory, vocab_txt) -> Path:
    return tiny_base(tmp_path_factory.mktemp("base") / "bert", vocab_txt)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    rows = sentiment_rows(400, 1)
    flipped = [{**r, "label": "neg" if r["label"] == "pos" else "pos"} for r in rows]
    return {
        "train": write_jsonl(folder / "train.jsonl", rows),
        "wrong": write_jsonl(folder / "wrong.jsonl", flipped),  # every label the opposite of the truth
        "dev": write_jsonl(folder / "dev.jsonl", sentiment_rows(100, 2)),
    }


@pytest.fixture(scope="module")
def teacher(base, data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "teacher"
    summary = train(TrainArgs(model=str(base), train=str(data["train"]), eval=str(data["dev"]), out=str(out),
                              **{**FAST, "epochs": 2}))  # fmt: skip
    assert summary["eval_metrics"]["accuracy"] >= 0.95
    return out


def texts_of(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text().splitlines()]


def predictions(folder: Path, texts: list[str]) -> np.ndarray:
    return Classifier.from_pretrained(folder, dtype="fp32").logits(texts).argmax(-1)


# ---- learning from the teacher ------------------------------------------------------------------------
def test_student_learns_from_teacher_despite_wrong_labels(teacher, data, tmp_path, vocab_txt):
    # Another architecture, initialised afresh, trained on labels that are all wrong: only the teacher can teach it.
    student_base = tiny_base(tmp_path / "distilbert", vocab_txt, family="distilbert")
    out = tmp_path / "student"
    summary = train(TrainArgs(model=str(student_base), train=str(data["wrong"]), out=str(out), teacher=str(teacher),
                              distill_alpha=1.0, **{**FAST, "epochs": 3}))  # fmt: skip
    assert summary["distillation"]["label_agreement"] <= 0.05  # the teacher disagrees with (almost) every label
    dev = texts_of(data["dev"])
    truth = np.array([json.loads(line)["label"] == "pos" for line in data["dev"].read_text().splitlines()])
    student, taught = predictions(out, dev), predictions(teacher, dev)
    assert (student == taught).mean() >= 0.9  # chance is 0.5; learning the labels would give about 0
    assert (student == truth).mean() >= 0.9


def test_teacher_folder_and_logits_file_train_the_same_student(base, teacher, data, tmp_path):
    settings = dict(model=str(base), train=str(data["train"]), max_steps=6, distill_alpha=0.7, distill_temperature=3.0,
                    seed=3, **{k: v for k, v in FAST.items() if k != "epochs"})  # fmt: skip
    from_folder, from_file = tmp_path / "folder", tmp_path / "file"
    train(TrainArgs(out=str(from_folder), teacher=str(teacher), **settings))
    written = from_folder / TEACHER_LOGITS
    reference = Classifier.from_pretrained(teacher, dtype="fp32").logits(texts_of(data["train"]))
    np.testing.assert_allclose(np.load(written), reference, atol=1e-6, rtol=0)
    train(TrainArgs(out=str(from_file), teacher_logits=str(written), **settings))

    first, second = load_file(str(from_folder / "model.safetensors")), load_file(str(from_file / "model.safetensors"))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    sha = hashlib.sha256(written.read_bytes()).hexdigest()
    for out, source in ((from_folder, "teacher"), (from_file, "teacher_logits")):
        recorded = json.loads((out / "training_args.json").read_text())
        assert recorded[source] == str(teacher if source == "teacher" else written)
        assert recorded["distillation"]["sha256"] == sha and recorded["distillation"]["logits_file"] == str(written)
        assert (recorded["distill_alpha"], recorded["distill_temperature"]) == (0.7, 3.0)
        card = (out / "README.md").read_text()
        assert "## Distillation" in card and sha in card and "temperature T = 3.0" in card


def test_teacher_labels_in_another_order_and_a_shorter_limit(base, teacher, data, tmp_path):
    other = tmp_path / "teacher"
    shutil.copytree(teacher, other)
    config = json.loads((other / "config.json").read_text())
    config.update(id2label={"0": "pos", "1": "neg"}, label2id={"pos": 0, "neg": 1})  # same weights, names swapped
    (other / "config.json").write_text(json.dumps(config))
    settings = json.loads((other / "tokenizer_config.json").read_text())
    (other / "tokenizer_config.json").write_text(json.dumps({**settings, "model_max_length": 6}))
    reporter = Collect()
    out = tmp_path / "out"
    train(TrainArgs(model=str(base), train=str(data["train"]), out=str(out), teacher=str(other), max_steps=1,
                    max_length=32), reporter)  # fmt: skip
    warnings = [m for m in reporter.messages if m.startswith("warning: the teacher")]
    assert len(warnings) == 1 and "at most 6 tokens, the student 32" in warnings[0]
    # The student's column "neg" is the teacher's column 1, and the teacher read 6 tokens of each text.
    expected = Classifier.from_pretrained(teacher, dtype="fp32").logits(texts_of(data["train"]), max_length=6)
    np.testing.assert_allclose(np.load(out / TEACHER_LOGITS), expected[:, ::-1], atol=1e-6, rtol=0)


def test_teacher_scores_text_pairs(base, teacher, tmp_path):
    rows = [{"premise": r["text"], "hypothesis": "it was " + r["label"], "label": r["label"]}
            for r in sentiment_rows(30, 6)]  # fmt: skip
    data, out = write_jsonl(tmp_path / "pairs.jsonl", rows), tmp_path / "out"
    train(TrainArgs(model=str(base), train=str(data), out=str(out), text_column="premise",
                    text_pair_column="hypothesis", teacher=str(teacher), max_steps=1))  # fmt: skip
    pairs = [(r["premise"], r["hypothesis"]) for r in rows]
    expected = Classifier.from_pretrained(teacher, dtype="fp32").logits(pairs)
    np.testing.assert_allclose(np.load(out / TEACHER_LOGITS), expected, atol=1e-6, rtol=0)
    assert not np.allclose(expected, Classifier.from_pretrained(teacher, dtype="fp32").logits([p[0] for p in pairs]))


@pytest.mark.parametrize("task", ["multi_label", "regression"])
def test_other_tasks_distil_from_logits_files(base, task, tmp_path):
    rows = topic_rows(40, 1) if task == "multi_label" else [{"text": r["text"], "label": i / 40}
                                                            for i, r in enumerate(sentiment_rows(40, 1))]  # fmt: skip
    train_file = write_jsonl(tmp_path / "train.jsonl", rows)
    logits = np.random.default_rng(0).normal(size=(40, 3 if task == "multi_label" else 1)).astype(np.float32)
    np.save(tmp_path / "logits.npy", logits)
    out = tmp_path / "out"
    summary = train(TrainArgs(model=str(base), train=str(train_file), out=str(out), task=task, max_steps=3,
                              teacher_logits=str(tmp_path / "logits.npy"), **{**FAST, "epochs": 1}))  # fmt: skip
    record = summary["distillation"]
    assert record["rows"] == 40 and record["temperature"] == (2.0 if task == "multi_label" else None)
    assert np.isfinite(record["label_agreement"]) and (out / "model.safetensors").is_file()


# ---- the loss -------------------------------------------------------------------------------------------
def test_distillation_loss_matches_its_definition():
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(5, 3, generator=generator), torch.randn(5, 3, generator=generator)
    ids = torch.tensor([0, 2, 1, 1, 0])
    t, a = 2.5, 0.3
    p_teacher, log_student = F.softmax(teacher / t, -1), F.log_softmax(student / t, -1)
    kl = (p_teacher * (p_teacher.log() - log_student)).sum()
    expected = a * t**2 * kl + (1 - a) * F.cross_entropy(student, ids, reduction="sum", label_smoothing=0.1)
    got = distill_loss_sum(student, teacher, ids, "single_label", t, a, label_smoothing=0.1)
    torch.testing.assert_close(got, expected)

    multi_hot = (torch.rand(5, 3, generator=generator) > 0.5).float()
    q, s = torch.sigmoid(teacher / t), torch.sigmoid(student / t)
    bce = (-(q * s.log() + (1 - q) * (1 - s).log())).mean(-1).sum()
    label = F.binary_cross_entropy_with_logits(student, multi_hot, reduction="none").mean(-1).sum()
    torch.testing.assert_close(distill_loss_sum(student, teacher, multi_hot, "multi_label", t, a),
                               a * t**2 * bce + (1 - a) * label)  # fmt: skip

    values = torch.randn(5, generator=generator)
    expected = a * ((student[:, :1] - teacher[:, :1]) ** 2).sum() + (1 - a) * ((student[:, 0] - values) ** 2).sum()
    got = distill_loss_sum(student[:, :1], teacher[:, :1], values, "regression", None, a)
    torch.testing.assert_close(got, expected)

    # Only soft targets: a student that already matches the teacher gets no gradient, whatever the labels say.
    matching = teacher.clone().requires_grad_()
    distill_loss_sum(matching, teacher, ids, "single_label", t, 1.0).backward()
    assert matching.grad.abs().max() < 1e-6


# ---- resume --------------------------------------------------------------------------------------------
def test_distilled_resume_after_sigkill_is_exact(base, teacher, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", sentiment_rows(120, 3))  # 2 epochs × 30 steps
    args = dict(model=str(base), train=str(data), epochs=2, batch_size=4, lr=1e-3, save_steps=5, threads=1, seed=7,
                teacher=str(teacher), distill_alpha=0.7, distill_temperature=3.0)  # fmt: skip
    train(TrainArgs(out=str(tmp_path / "straight"), **args))

    killed = tmp_path / "killed"
    options = [f"--{k.replace('_', '-')}={v}" for k, v in args.items() if k not in ("model", "train")]
    kill_after_first_checkpoint(["--model", str(base), "--train", str(data), "--out", str(killed), "--quiet",
                                 *options], killed)  # fmt: skip

    logits_file = killed / TEACHER_LOGITS
    original = logits_file.read_bytes()
    np.save(logits_file, np.load(logits_file) + 1e-3)  # other teacher logits than the run started with
    with pytest.raises(TextclassError, match="teacher_logits_sha256 differ"):
        train(TrainArgs(out=str(killed), resume=True, **args))
    logits_file.write_bytes(original)
    reporter = Collect()
    summary = train(TrainArgs(out=str(killed), resume=True, **args), reporter)
    assert summary["step"] == 60 and any(m.startswith("reusing the teacher logits") for m in reporter.messages)
    straight = load_file(str(tmp_path / "straight" / "model.safetensors"))
    resumed = load_file(str(killed / "model.safetensors"))
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], atol=1e-6, rtol=0, msg=name)


# ---- bad input -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def with_dropped_rows(tmp_path_factory) -> Path:
    """40 usable rows and 2 that training drops."""
    rows = sentiment_rows(40, 5) + [{"text": "", "label": "pos"}, {"text": "no label"}]
    return write_jsonl(tmp_path_factory.mktemp("dropped") / "train.jsonl", rows)


@pytest.mark.parametrize(
    "array,message",
    [
        (np.zeros((42, 2)), r"have 42 rows, .* after dropping 2 unusable rows \(it seems to include the dropped rows"),
        (np.zeros((39, 2)), "have 39 rows, the training data has 40 rows after dropping 2 unusable rows; the file"),
        (np.zeros((40, 3)), r"have 3 columns, the student has 2 labels \['neg', 'pos'\]"),
        (np.full((40, 2), np.nan), "NaN or infinite values"),
        (np.zeros(40), r"of shape \(40,\); expected numbers of shape \(rows, labels\)"),
        (np.array(["a"] * 80).reshape(40, 2), "expected numbers"),
    ],
)
def test_bad_teacher_logits_files(base, with_dropped_rows, tmp_path, array, message):
    np.save(tmp_path / "logits.npy", array)
    with pytest.raises(TextclassError, match=message):
        train(TrainArgs(model=str(base), train=str(with_dropped_rows), out=str(tmp_path / "out"), max_steps=1,
                        teacher_logits=str(tmp_path / "logits.npy")))  # fmt: skip
    assert not (tmp_path / "out" / "model.safetensors").exists()


def _multi_label_teacher(teacher: Path, folder: Path) -> Path:
    shutil.copytree(teacher, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "problem_type": "multi_label_classification"}))
    return folder


@pytest.mark.parametrize(
    "make_teacher,message",
    [
        (lambda base, teacher, tmp, vocab: tiny_base(tmp / "three", vocab, head=True, num_labels=3),
         r"has labels \['LABEL_0', 'LABEL_1', 'LABEL_2'\] but the student's are \['neg', 'pos'\]"),
        (lambda base, teacher, tmp, vocab: base, "is a bare encoder without a classification head"),
        (lambda base, teacher, tmp, vocab: _multi_label_teacher(teacher, tmp / "multi"),
         "is a multi-label model but the student trains for single-label"),
    ],
)  # fmt: skip
def test_unusable_teachers(base, teacher, data, tmp_path, vocab_txt, make_teacher, message):
    folder = make_teacher(base, teacher, tmp_path, vocab_txt)
    with pytest.raises(TextclassError, match=message):
        train(TrainArgs(model=str(base), train=str(data["train"]), out=str(tmp_path / "out"), teacher=str(folder)))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"teacher": "t", "teacher_logits": "l.npy"}, "choose --teacher or --teacher-logits, not both"),
        ({"distill_alpha": 0.5}, "need a --teacher or --teacher-logits"),
        ({"teacher": "t", "distill_alpha": 1.5}, r"--distill-alpha must be in \[0, 1\], got 1.5"),
        ({"teacher": "t", "distill_temperature": 0.0}, "--distill-temperature must be positive"),
        ({"teacher": "t", "task": "regression", "distill_temperature": 2.0}, "regression distils by MSE"),
        ({"teacher_logits": "logits.csv"}, "expected a .npy file of shape"),
        ({"teacher_logits": "missing.npy"}, "teacher logits file missing.npy does not exist"),
    ],
)
def test_bad_distillation_options(base, data, tmp_path, kwargs, message):
    with pytest.raises(TextclassError, match=message):
        train(TrainArgs(model=str(base), train=str(data["train"]), out=str(tmp_path / "out"), **kwargs))


def test_cli_refuses_misaligned_logits_in_one_line(base, with_dropped_rows, tmp_path):
    np.save(tmp_path / "logits.npy", np.zeros((39, 2), dtype=np.float32))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-m", "textclass", "train", "--model", str(base), "--train",
                             str(with_dropped_rows), "--out", str(tmp_path / "out"), "--teacher-logits",
                             str(tmp_path / "logits.npy"), "--quiet"],
                            capture_output=True, text=True, env=env)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: teacher logits {tmp_path / 'logits.npy'} have 39 rows, the training data has 40 rows after dropping "
        "2 unusable rows; the file must hold one row per usable training row, in file order"
    ]
