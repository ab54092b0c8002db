"""textclass train: learning, loss, HF round trip, resume after SIGKILL, data formats and bad data."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from familykit import needs_gpu
from textclass import Classifier, TextclassError
from textclass.train.batches import loss_sum
from textclass.train.data import load_dataset
from textclass.train.model import prepare_model
from textclass.train.run import train
from textclass.train.save import save_hf_checkpoint
from textclass.train.setup import TrainArgs
from trainkit import FAST, kill_after_first_checkpoint, sentiment_rows, tiny_base, topic_rows, write_jsonl

pytestmark = pytest.mark.slow  # the quick tier (-m 'not slow') leaves these out

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def base(tmp_path_factory, vocab_txt) -> Path:
    return tiny_base(tmp_path_factory.mktemp("base") / "bert", vocab_txt)


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("sentiment")
    train_file = write_jsonl(folder / "train.jsonl", sentiment_rows(400, 1))
    return train_file, write_jsonl(folder / "dev.jsonl", sentiment_rows(100, 2))


def hf_logits(folder: Path, texts: list[str]) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, truncation=True, return_tensors="pt")).logits.numpy()


# ---- learning ------------------------------------------------------------------------------------
def test_learns_separable_task(base, sentiment, tmp_path):
    train_file, dev_file = sentiment
    out = tmp_path / "out"
    summary = train(TrainArgs(model=str(base), train=str(train_file), eval=str(dev_file), out=str(out),
                              **{**FAST, "epochs": 2}))  # fmt: skip
    assert summary["eval_metrics"]["accuracy"] >= 0.95
    assert summary["new_parameters"] == ["head.out.bias", "head.out.weight"]
    clf = Classifier.from_pretrained(out)
    assert clf.labels == ("neg", "pos")
    assert [r["label"] for r in clf(["a superb film", "an awful film"])] == ["pos", "neg"]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "training_args.json", "metrics.json"):
        assert (out / name).is_file(), name
    assert "## Results" in (out / "README.md").read_text() and not (out / "checkpoints").exists()


def test_learns_multi_label_task(base, tmp_path):
    train_file = write_jsonl(tmp_path / "train.jsonl", topic_rows(400, 1))
    dev_file = write_jsonl(tmp_path / "dev.jsonl", topic_rows(100, 2))
    out = tmp_path / "out"
    summary = train(TrainArgs(model=str(base), train=str(train_file), eval=str(dev_file), out=str(out),
                              task="multi_label", **FAST))  # fmt: skip
    assert summary["eval_metrics"]["accuracy"] >= 0.95  # exact match of the whole label set
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    scores = Classifier.from_pretrained(out)("football and pizza", top_k=None)
    assert {r["label"] for r in scores if r["score"] > 0.5} == {"sport", "food"}


# ---- loss ---------------------------------------------------------------------------------------
def test_loss_is_cross_entropy_on_logits(base, tmp_path):
    from transformers import AutoModelForSequenceClassification

    prepared = prepare_model(str(base), "single_label", ["a", "b", "c"], False)
    model = prepared.model.eval()
    with torch.no_grad():
        for param in model.head.out.parameters():  # spread the logits so a softmax-twice loss would differ
            param.normal_(0, 2.0)
    encoded = prepared.tokenizer(["one text", "another longer text here", "x"], padding=True)
    ids, mask = torch.tensor(encoded["input_ids"]), torch.tensor(encoded["attention_mask"])
    targets = torch.tensor([2, 0, 1])
    with torch.no_grad():
        logits = model(ids, mask)
        ours = loss_sum(logits, targets, "single_label") / 3
    expected = torch.nn.functional.cross_entropy(logits, targets)
    assert torch.allclose(ours, expected, atol=1e-6)
    # The seed's pitfall: cross-entropy on probabilities instead of logits gives another number.
    assert not torch.allclose(ours, torch.nn.functional.cross_entropy(logits.softmax(-1), targets), atol=1e-3)
    # And transformers' own loss (labels=...) for the same weights agrees.
    save_hf_checkpoint(tmp_path / "hf", model, prepared.checkpoint)
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    with torch.no_grad():
        hf_loss = hf(input_ids=ids, attention_mask=mask, labels=targets).loss
    assert torch.allclose(ours, hf_loss, atol=1e-5)


def test_label_smoothing_and_accumulation_change_loss_as_expected():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.0]])
    targets = torch.tensor([0, 1, 1])
    smooth = loss_sum(logits, targets, "single_label", label_smoothing=0.1) / 3
    assert torch.allclose(smooth, torch.nn.functional.cross_entropy(logits, targets, label_smoothing=0.1))
    # Summed per micro-batch and divided by the step's rows: two halves add up to the whole batch's mean.
    halves = (
        loss_sum(logits[:2], targets[:2], "single_label") / 3 + loss_sum(logits[2:], targets[2:], "single_label") / 3
    )
    assert torch.allclose(halves, torch.nn.functional.cross_entropy(logits, targets))


# ---- the output is a Hugging Face checkpoint ------------------------------------------------------
@pytest.mark.parametrize("family,head", [("bert", False), ("distilbert", True), ("roberta", True)])
def test_transformers_loads_output_with_same_logits(family, head, sentiment, tmp_path, vocab_txt):
    base = tiny_base(tmp_path / "base", vocab_txt, family=family, head=head, num_labels=3)
    out = tmp_path / "out"
    summary = train(TrainArgs(model=str(base), train=str(sentiment[0]), out=str(out), max_steps=3, **FAST))
    if head:  # a 3-label classifier continued on 2 labels gets a new output layer
        assert summary["new_parameters"] == ["head.out.bias", "head.out.weight"]
    texts = ["a superb film", "the plot was boring and the actor awful", "x", "thing " * 80]
    ours = Classifier.from_pretrained(out).logits(texts)
    np.testing.assert_allclose(ours, hf_logits(out, texts), atol=1e-4, rtol=0)
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["label2id"] == {"neg": 0, "pos": 1}
    assert config["problem_type"] == "single_label_classification"
    assert config["architectures"][0].endswith("ForSequenceClassification")


def test_fp16_output_and_temperature(base, sentiment, tmp_path):
    out = tmp_path / "out"
    train(TrainArgs(model=str(base), train=str(sentiment[0]), eval=str(sentiment[1]), out=str(out), max_steps=4,
                    dtype_out="fp16", temperature_calibrate=True, **FAST))  # fmt: skip
    tensors = load_file(str(out / "model.safetensors"))
    assert {t.dtype for t in tensors.values()} == {torch.float16}
    config = json.loads((out / "config.json").read_text())
    assert config["textclass_temperature"] > 0 and config["dtype"] == "float16"
    metrics = json.loads((out / "metrics.json").read_text())["eval_metrics"]
    assert metrics["calibrated"]["log_loss"] <= metrics["log_loss"] + 1e-9  # T=1 is among the candidates
    ours = Classifier.from_pretrained(out).logits(["a superb film"])
    np.testing.assert_allclose(ours, hf_logits(out, ["a superb film"]), atol=1e-4)


# ---- resume after SIGKILL -------------------------------------------------------------------------
def _cli_args(base: Path, data: Path, out: Path, extra: dict) -> list[str]:
    options = [f"--{k.replace('_', '-')}={v}" for k, v in extra.items()]
    return ["--model", str(base), "--train", str(data), "--out", str(out), "--epochs", "2", "--batch-size", "4",
            "--lr", "1e-3", "--save-steps", "5", "--threads", "1", "--seed", "7", "--quiet", *options]  # fmt: skip


# The second case checks that the weight average and per-layer learning rates are part of the saved state.
@pytest.mark.parametrize("extra", [{}, {"ema": 0.9, "layer_lr_decay": 0.8}], ids=["plain", "ema-llrd"])
def test_resume_after_sigkill_gives_identical_weights(base, tmp_path, extra):
    data = write_jsonl(tmp_path / "train.jsonl", sentiment_rows(200, 3))  # 2 epochs × 50 steps
    args = dict(model=str(base), train=str(data), epochs=2, batch_size=4, lr=1e-3, save_steps=5, threads=1, seed=7,
                **extra)  # fmt: skip
    train(TrainArgs(out=str(tmp_path / "straight"), **args))

    killed = tmp_path / "killed"
    kill_after_first_checkpoint(_cli_args(base, data, killed, extra), killed)

    with pytest.raises(TextclassError, match="--resume"):
        train(TrainArgs(out=str(killed), **args))  # an unfinished run is not overwritten by accident
    with pytest.raises(TextclassError, match="batch_size differ"):
        train(TrainArgs(out=str(killed), resume=True, **{**args, "batch_size": 8}))
    summary = train(TrainArgs(out=str(killed), resume=True, **args))
    assert summary["step"] == 100
    straight, resumed = (
        load_file(str(tmp_path / "straight" / "model.safetensors")),
        load_file(str(killed / "model.safetensors")),
    )
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], atol=1e-6, rtol=0, msg=name)


# ---- optimisation levers ----------------------------------------------------------------------------
def test_layer_lr_decay_scales_learning_rate_by_depth(base, sentiment, tmp_path):
    from textclass.train.loop import layer_depth, make_optimizer

    model = prepare_model(str(base), "single_label", ["NEGATIVE", "POSITIVE"], uses_ids=False, seed=42).model
    layers = model.config.num_layers
    optimizer = make_optimizer(model, 1e-3, 0.01, layer_lr_decay=0.5)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    for name, param in model.named_parameters():
        depth = layer_depth(name, layers)
        assert lr_of[id(param)] == pytest.approx(1e-3 * 0.5 ** (layers + 1 - depth)), name
    assert {layer_depth(n, layers) for n, _ in model.named_parameters()} == set(range(layers + 2))

    # A near-zero decay freezes the embeddings in practice while the head (same seeded start) still learns.
    train_file, _ = sentiment
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = tmp_path / "llrd"
    train(TrainArgs(model=str(base), train=str(train_file), out=str(out), seed=42, **{**FAST, "layer_lr_decay": 1e-4}))
    after = load_file(str(out / "model.safetensors"))
    word = next(k for k in after if k.endswith("word_embeddings.weight"))
    assert torch.allclose(after[word], before["encoder.embeddings.word.weight"], atol=1e-5)
    assert not torch.allclose(after["classifier.weight"], before["head.out.weight"], atol=1e-3)


def test_weight_average_is_an_exponential_moving_average():
    from textclass.train.loop import WeightAverage

    model = torch.nn.Linear(3, 2)
    start = model.weight.detach().clone()
    average = WeightAverage(model, decay=0.5)
    expected = start.clone()
    for step in range(1, 6):
        with torch.no_grad():
            model.weight.add_(1.0)
        average.update(model)
        decay = min(0.5, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * model.weight.detach()
    torch.testing.assert_close(average.shadow["weight"], expected)
    raw = model.weight.detach().clone()
    average.swap(model)
    torch.testing.assert_close(model.weight.detach(), expected)
    average.swap(model)
    torch.testing.assert_close(model.weight.detach(), raw)


def test_ema_run_saves_the_weights_it_evaluated(base, sentiment, tmp_path):
    train_file, dev_file = sentiment
    out = tmp_path / "ema"
    summary = train(TrainArgs(model=str(base), train=str(train_file), eval=str(dev_file), out=str(out),
                              **{**FAST, "epochs": 2, "ema": 0.9}))  # fmt: skip
    best = max(h["accuracy"] for h in summary["history"])
    assert summary["eval_metrics"]["accuracy"] == pytest.approx(best)
    assert best >= 0.9


# ---- data ---------------------------------------------------------------------------------------
def test_formats_read_the_same(tmp_path):
    rows = [{"text": 'he said "hi", then left', "label": "a"}, {"text": "tab-free text", "label": "b"}]
    write_jsonl(tmp_path / "d.jsonl", rows)
    with (tmp_path / "d.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "d.tsv").write_text("text\tlabel\n" + "".join(f"{r['text']}\t{r['label']}\n" for r in rows))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    for suffix in ("jsonl", "csv", "tsv", "parquet"):
        dataset, labels = load_dataset(tmp_path / f"d.{suffix}")
        assert dataset.texts == [r["text"] for r in rows] and labels == ["a", "b"], suffix


def test_glue_tsv_with_integer_labels_and_names(base, tmp_path):
    rows = sentiment_rows(60, 4)
    tsv = tmp_path / "train.tsv"
    tsv.write_text("sentence\tlabel\n" + "".join(f"{r['text']} ''\t{int(r['label'] == 'pos')}\n" for r in rows))
    out = tmp_path / "out"
    train(TrainArgs(model=str(base), train=str(tsv), out=str(out), max_steps=2, label_names=["NEG", "POS"], **FAST))
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "NEG", "1": "POS"}


def test_dropped_rows_are_counted(base, tmp_path):
    rows = sentiment_rows(40, 5) + [{"text": "", "label": "pos"}, {"text": "   ", "label": "neg"},
                                    {"text": "no label", "label": None}, {"text": "no label key"}]  # fmt: skip
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    summary = train(TrainArgs(model=str(base), train=str(data), out=str(tmp_path / "out"), max_steps=1, **FAST))
    assert summary["train"] == {"file": str(data), "rows": 40, "dropped": {"empty text": 2, "missing label": 2}}


def test_relabel_continuing_a_classifier(sentiment, tmp_path, vocab_txt):
    base = tiny_base(tmp_path / "base", vocab_txt, family="distilbert", head=True, num_labels=3)
    messages = []

    class Collect:
        message = messages.append
        start = step = evaluated = finish = staticmethod(lambda *a: None)

    train(TrainArgs(model=str(base), train=str(sentiment[0]), out=str(tmp_path / "out"), max_steps=1, **FAST),
          Collect())  # fmt: skip
    assert any("relabelled" in m and "LABEL_0" in m and "'neg', 'pos'" in m for m in messages)


@pytest.mark.parametrize(
    "content,suffix,kwargs,message",
    [
        ("", "csv", {}, "is empty"),
        ("text,label\n", "csv", {}, "is empty"),
        ("words,label\nhi,a\n", "csv", {}, "has no 'text' or 'sentence' column; its columns are: words, label"),
        ("text,label\nhi,a,extra\n", "csv", {}, "data row 1: the row has 3 fields, the header 2"),
        ("sentence\tlabel\nhi\n", "tsv", {}, "data row 1: the row has 1 fields, the header 2"),
        ("text,label\nhi,a\n", "csv", {"label_column": "target"}, "no column 'target'"),
        ("text,label\n,a\n  ,b\n", "csv", {}, "no usable rows"),
        ('{"text": "hi"\n', "jsonl", {}, "data row 1: line is not valid JSON"),
        ("a,b\n", "xlsx", {}, "cannot tell the format"),
        ("text,label\nhi,high\n", "csv", {"task": "regression"}, "regression labels must be numbers"),
    ],
)
def test_bad_training_data(base, tmp_path, content, suffix, kwargs, message):
    data = tmp_path / f"train.{suffix}"
    data.write_text(content)
    with pytest.raises(TextclassError, match=message):
        train(TrainArgs(model=str(base), train=str(data), out=str(tmp_path / "out"), max_steps=1, **kwargs))


def test_eval_label_unseen_in_training(base, sentiment, tmp_path):
    dev = write_jsonl(tmp_path / "dev.jsonl", [{"text": "meh", "label": "neutral"}] * 3 + sentiment_rows(5, 9))
    with pytest.raises(TextclassError, match=r"labels the model does not know: 'neutral' \(3 rows\)"):
        train(TrainArgs(model=str(base), train=str(sentiment[0]), eval=str(dev), out=str(tmp_path / "o"), max_steps=1))


def test_cli_reports_bad_data_without_traceback(base, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-m", "textclass", "train", "--model", str(base), "--train",
                             str(tmp_path / "missing.csv"), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, env=env)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: data file {tmp_path / 'missing.csv'} does not exist"


def test_read_rows_json_array(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps([{"text": "a", "label": 1}]))
    dataset, labels = load_dataset(tmp_path / "d.json")
    assert (dataset.texts, labels) == (["a"], [1])


def test_text_pairs_round_trip(base, tmp_path):
    rows = [{"premise": r["text"], "hypothesis": "it was " + r["label"], "label": r["label"]}
            for r in sentiment_rows(40, 6)]  # fmt: skip
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "out"
    train(TrainArgs(model=str(base), train=str(data), out=str(out), text_column="premise",
                    text_pair_column="hypothesis", max_steps=2, **FAST))  # fmt: skip
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    firsts, seconds = [r["premise"] for r in rows[:4]], [r["hypothesis"] for r in rows[:4]]
    ours = Classifier.from_pretrained(out).logits(list(zip(firsts, seconds)))
    model = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        ref = model(**AutoTokenizer.from_pretrained(out)(firsts, seconds, padding=True, return_tensors="pt")).logits
    np.testing.assert_allclose(ours, ref.numpy(), atol=1e-4, rtol=0)


def test_eval_steps_and_early_stopping(base, sentiment, tmp_path):
    # A learning rate too small to change any prediction: accuracy never improves after the first eval.
    args = {**FAST, "lr": 1e-12}
    summary = train(TrainArgs(model=str(base), train=str(sentiment[0]), eval=str(sentiment[1]), out=str(tmp_path / "o"),
                              eval_steps=5, patience=2, **args))  # fmt: skip
    assert [h["step"] for h in summary["history"]] == [5, 10, 15]
    assert summary["step"] == 15 and summary["best_step"] == 5


@needs_gpu
def test_trains_on_the_gpu_in_bf16_and_transformers_loads_the_result(base, sentiment, tmp_path):
    train_file, dev_file = sentiment
    out = tmp_path / "out"
    summary = train(TrainArgs(model=str(base), train=str(train_file), eval=str(dev_file), out=str(out), device="cuda",
                              bf16=True, **{**FAST, "epochs": 2}))  # fmt: skip
    assert summary["eval_metrics"]["accuracy"] >= 0.95
    texts = ["a superb film", "the plot was boring and the actor awful", "x", "thing " * 80]
    ours = Classifier.from_pretrained(out, device="cpu", dtype="fp32").logits(texts)
    np.testing.assert_allclose(ours, hf_logits(out, texts), atol=1e-4, rtol=0)
    on_gpu = Classifier.from_pretrained(out, device="auto")  # as a user's default (the suite pins the CPU)
    assert on_gpu.device.startswith("cuda") and [r["label"] for r in on_gpu(texts[:2])] == ["pos", "neg"]


def test_bf16_autocast_and_accumulation_run(base, sentiment, tmp_path):
    summary = train(TrainArgs(model=str(base), train=str(sentiment[0]), eval=str(sentiment[1]), out=str(tmp_path / "o"),
                              max_steps=3, bf16=True, grad_accum=2, **FAST))  # fmt: skip
    assert summary["samples"] == 3 * 2 * FAST["batch_size"]
    assert np.isfinite(summary["eval_metrics"]["loss"])


@pytest.mark.parametrize(
    "flags, warns", [({"avx2", "fma"}, True), ({"avx2", "fma", "avx512_bf16"}, False), ({"avx2", "amx_bf16"}, False)]
)
def test_bf16_warns_where_the_cpu_emulates_it(base, sentiment, tmp_path, monkeypatch, flags, warns):
    from textclass.runtime import cpu
    from textclass.train.setup import Reporter

    monkeypatch.setattr(cpu, "detect", lambda: cpu.CpuFeatures("x86_64", frozenset(flags)))

    class Messages(Reporter):
        def __init__(self):
            self.seen: list[str] = []

        def message(self, text: str) -> None:
            self.seen.append(text)

    reporter = Messages()
    train(TrainArgs(model=str(base), train=str(sentiment[0]), out=str(tmp_path / "o"), max_steps=1, bf16=True,
                    **FAST), reporter)  # fmt: skip
    warned = [m for m in reporter.seen if m.startswith("warning: --bf16")]
    assert bool(warned) == warns, reporter.seen
    assert not warned or "no native bf16" in warned[0]


def test_csv_quoted_fields_keep_newlines_and_commas(tmp_path):
    (tmp_path / "d.csv").write_text('text,label\n"two\nlines, one comma",a\nplain,b\n')
    dataset, labels = load_dataset(tmp_path / "d.csv")
    assert (dataset.texts, labels) == (["two\nlines, one comma", "plain"], ["a", "b"])
