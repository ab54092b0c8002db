"""Why the classifier said it: how much each token and word of a text pushes the score of one label.

Two methods, both in score units (the probability `clf(text)` reports, temperature included), so a word's
attribution reads "this word adds 0.31 to POSITIVE":
- occlusion, model-agnostic (the default ONNX path): each word (or token) in turn is deleted, or replaced by the
  pad or mask token; every variant of every text goes to ONE `Classifier.run` call, so it costs one set of
  forward passes per text, batched. Attribution = the target's score on the text minus its score on the variant.
  With words occluded whole, a word's tokens share its drop equally, so words are the sums of their tokens.
- integrated gradients on the word embeddings (torch): the gradient of the target's score, integrated along the
  straight path from a baseline (every non-special token's embedding replaced by the pad token's; [CLS]/[SEP] and
  the like kept) to the text's embeddings, with captum's default Gauss-Legendre quadrature; attribution per token =
  Σ_hidden (embedding - baseline) · mean gradient, what captum's LayerIntegratedGradients gives on
  `encoder.embeddings.word`. The tokens add up to score(text) - score(baseline), up to the quadrature error.
Words come from the tokenizer's pre-tokenization (its word ids): "isn't" is three words for BERT, as it sees it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from textclass.checkpoint.tokenizer import Encoded
from textclass.errors import InputError
from textclass.extras import require_torch
from textclass.runtime.cpu import CPU_BATCH_TOKENS
from textclass.tasks.inputs import strings

TORCH_PASS_TOKENS = CPU_BATCH_TOKENS["other"]  # integrated gradients' smallest pass, in tokens

if TYPE_CHECKING:
    from torch import nn

    from textclass.checkpoint.tokenizer import Tokenizer
    from textclass.classifier import Classifier

METHODS = ("occlusion", "integrated_gradients")
BASELINES = ("delete", "pad", "mask")  # what stands in for an occluded unit; IG takes pad or mask
UNITS = ("word", "token")  # what occlusion removes at a time
DEFAULT_STEPS = 50  # captum's default n_steps
# Integrated gradients' work per token per path step, in tokens of served forward work: a forward and a backward pass
# in fp32 torch. Measured on the bundled MiniLM (2-core EPYC Zen4, quiet): 440-580 us a token-step against ~120 us a
# token of a served forward pass, so one token-step weighs 4 tokens in the per-request bound.
IG_TOKEN_COST = 4
_MASK_TOKENS = ("[MASK]", "<mask>")


@dataclass(frozen=True)
class Tokens:
    """One text as the model sees it (truncated at the model's limit), with where each token came from."""

    text: str
    ids: list[int]
    type_ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]  # character offsets into `text`
    words: list[int | None]  # word index per token; None for special tokens

    @property
    def positions(self) -> list[int]:
        """Positions of the text's own tokens (no [CLS]/[SEP])."""
        return [i for i, word in enumerate(self.words) if word is not None]

    def units(self, unit: str) -> list[list[int]]:
        """Token positions occluded together: one list per word, or one per token."""
        if unit == "token":
            return [[i] for i in self.positions]
        groups: dict[int, list[int]] = {}
        for position in self.positions:
            groups.setdefault(self.words[position], []).append(position)
        return list(groups.values())


@dataclass(frozen=True)
class Options:
    method: str
    baseline: str
    unit: str
    steps: int


def check_options(method: str, baseline: str | None, unit: str, steps: int) -> Options:
    """Validated options; baseline None: "delete" for occlusion, "pad" for integrated gradients. Integrated
    gradients without torch are a MissingExtra here, before any work (not an ImportError half-way)."""
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if method == "integrated_gradients":
        require_torch("explaining with integrated gradients")
    if baseline is None:
        baseline = "delete" if method == "occlusion" else "pad"
    allowed = BASELINES if method == "occlusion" else ("pad", "mask")
    if baseline not in allowed:
        raise InputError(f"baseline for {method} must be one of {', '.join(allowed)}; got {baseline!r}")
    if unit not in UNITS:
        raise InputError(f"unit must be one of {', '.join(UNITS)}; got {unit!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be a positive integer; got {steps!r}")
    return Options(method, baseline, unit, steps)


def tokens_of(tokenizer: Tokenizer, texts: str | Sequence[str]) -> tuple[list[Tokens], bool]:
    """The texts tokenized with offsets and word ids, and whether one str was passed."""
    single = isinstance(texts, str)
    items = [texts] if single else strings(texts, "texts", "text to explain")
    out = []
    for index, text in enumerate(items):
        encoding = tokenizer.encoding(text)  # truncated at the model's limit: what the model reads is explained
        words = [None if special else word for word, special in zip(encoding.word_ids, encoding.special_tokens_mask)]
        if all(word is None for word in words):
            where = "the text" if single else f"text {index}"
            raise InputError(f"{where} has no tokens to attribute ({text!r}); give a text with words in it")
        out.append(Tokens(text, encoding.ids, encoding.type_ids, encoding.tokens, encoding.offsets, words))
    return out, single


def replacement_id(tokenizer: Tokenizer, baseline: str) -> int | None:
    """The token id standing in for occluded tokens (None: delete them)."""
    if baseline == "delete":
        return None
    if baseline == "pad":
        return tokenizer.pad_token_id
    for token_id in tokenizer.convert_tokens_to_ids(_MASK_TOKENS):
        if token_id is not None:
            return token_id
    raise InputError(f"this tokenizer has no mask token ({' or '.join(_MASK_TOKENS)}); use baseline 'pad' or 'delete'")


def target_index(labels: Sequence[str], target: str | int | None, predicted: int) -> int:
    """The label to attribute to: a label name or index, or the predicted label when None."""
    if target is None:
        return predicted
    if isinstance(target, str) and target in labels:
        return labels.index(target)
    if isinstance(target, int) and not isinstance(target, bool) and 0 <= target < len(labels):
        return target
    raise InputError(f"target must be one of the labels ({', '.join(labels)}) or an index below {len(labels)}; "
                     f"got {target!r}")  # fmt: skip


# ---- occlusion: prepare variants, score them anywhere (one run call, or the server's batcher), then read them ----
def occlusion_inputs(texts: list[Tokens], unit: str, replacement: int | None) -> tuple[list[Encoded], list[int]]:
    """Per text: the text itself, then one variant per unit with that unit occluded; and the rows per text."""
    rows: list[Encoded] = []
    counts = []
    for item in texts:
        units = item.units(unit)
        rows.append(Encoded(item.ids, item.type_ids))
        for positions in units:
            hidden = set(positions)
            if replacement is None:
                keep = [i for i in range(len(item.ids)) if i not in hidden]
                rows.append(Encoded([item.ids[i] for i in keep], [item.type_ids[i] for i in keep]))
            else:
                ids = [replacement if i in hidden else token for i, token in enumerate(item.ids)]
                rows.append(Encoded(ids, item.type_ids))
        counts.append(1 + len(units))
    return rows, counts


def occlusion_results(
    texts: list[Tokens], unit: str, scores: np.ndarray, counts: list[int], labels: Sequence[str], target: Any
) -> list[dict[str, Any]]:
    """Results from the (rows, labels) scores of `occlusion_inputs`' rows."""
    results = []
    start = 0
    for item, count in zip(texts, counts):
        block = scores[start : start + count]  # row 0: the text; then one row per unit
        start += count
        label = target_index(labels, target, int(block[0].argmax()))
        drops = block[0, label] - block[1:, label]  # (units,)
        per_token = np.zeros(len(item.ids))
        for drop, positions in zip(drops, item.units(unit)):
            per_token[positions] = drop / len(positions)  # a word's tokens share its drop, so they sum to it
        results.append(result(item, labels[label], float(block[0, label]), per_token))
    return results


def occlusion(clf: Classifier, texts: list[Tokens], target: Any, options: Options) -> list[dict[str, Any]]:
    rows, counts = occlusion_inputs(texts, options.unit, replacement_id(clf.tokenizer, options.baseline))
    scores = clf.scores(clf.run(rows))
    return occlusion_results(texts, options.unit, scores, counts, clf.labels, target)


# ---- integrated gradients ----------------------------------------------------------------------------------------
def integrated_gradients_work(texts: list[Tokens], steps: int) -> int:
    """What integrated gradients over `texts` costs, in tokens of served forward work (IG_TOKEN_COST each step)."""
    return sum(len(item.ids) for item in texts) * steps * IG_TOKEN_COST


def quadrature(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre points in [0, 1] and their weights, as captum's default method builds them."""
    points, weights = np.polynomial.legendre.leggauss(steps)
    return 0.5 * (1 + points), 0.5 * weights


def fp32_torch_model(clf: Classifier) -> nn.Module:
    """The engine's torch model when it runs fp32, else one built from the checkpoint in fp32 on the same device."""
    require_torch("explaining with integrated gradients")
    import torch

    from textclass.checkpoint import build_model

    if clf.engine.backend == "torch" and clf.engine.dtype == "float32" and clf.engine.model is not None:
        return clf.engine.model
    return build_model(clf.checkpoint, torch.float32, clf.device)[0]


def integrated_gradients(clf: Classifier, texts: list[Tokens], target: Any, options: Options) -> list[dict[str, Any]]:
    import torch

    model = clf.torch_model
    word = model.encoder.embeddings.word  # every family's word-embedding table
    caller = threading.get_ident()
    replacement = replacement_id(clf.tokenizer, options.baseline)
    alphas, weights = (torch.tensor(v, dtype=torch.float32, device=clf.device) for v in quadrature(options.steps))
    results = []
    for item in texts:
        ids = torch.tensor([item.ids], device=clf.device)  # (1, seq)
        types = torch.tensor([item.type_ids], device=clf.device) if clf.engine.uses_token_types else None
        special = torch.tensor([[w is None for w in item.words]], device=clf.device)
        with torch.no_grad():
            inputs = word(ids)  # (1, seq, hidden)
            baseline = word(torch.where(special, ids, replacement))  # special tokens kept, as captum's usual setup
            probabilities = clf.scores(model(ids, None, types))[0]  # differentiable: a tensor
        label = target_index(clf.labels, target, int(probabilities.argmax()))
        gradient = torch.zeros_like(inputs)  # Σ_steps weight · ∂score/∂embedding, (1, seq, hidden)
        # Path points per forward pass. torch's forward and backward gain from bigger passes than the CPU budget
        # chosen for ONNX Runtime with AMX (256): 296 vs 338 ms a text at 1024 vs 256 tokens (bundled model).
        per_pass = max(1, max(clf.max_batch_tokens, TORCH_PASS_TOKENS) // len(item.ids))
        for first in range(0, options.steps, per_pass):
            alpha = alphas[first : first + per_pass, None, None]  # (points, 1, 1)
            path = (baseline + alpha * (inputs - baseline)).requires_grad_()  # (points, seq, hidden)
            # The embedding layer's output becomes the path point; positions and token types still come from ids.
            # Only in this thread: the model may be the engine's, classifying for others at the same time.
            hook = word.register_forward_hook(
                lambda module, args, output, path=path: path if threading.get_ident() == caller else None
            )
            try:
                with torch.enable_grad():
                    rows = len(path)
                    logits = model(ids.expand(rows, -1), None, None if types is None else types.expand(rows, -1))
                    score = clf.scores(logits)[:, label]
                    (grad,) = torch.autograd.grad(score.sum(), path)
            finally:
                hook.remove()
            gradient += (grad * weights[first : first + per_pass, None, None]).sum(0, keepdim=True)
        per_token = ((inputs - baseline) * gradient).sum(-1)[0]  # (seq,)
        results.append(result(item, clf.labels[label], float(probabilities[label]), per_token.cpu().numpy()))
    return results


# ---- the answer --------------------------------------------------------------------------------------------------
def result(item: Tokens, label: str, score: float, per_token: np.ndarray) -> dict[str, Any]:
    """{"label", "score", "tokens", "words"}: special tokens left out, words summing their tokens."""
    tokens = []
    words: dict[int, dict[str, Any]] = {}
    for position in item.positions:
        start, end = item.offsets[position]
        attribution = float(per_token[position])
        tokens.append({"token": item.tokens[position], "start": start, "end": end, "attribution": attribution})
        word = words.get(item.words[position])
        if word is None:
            words[item.words[position]] = {"word": "", "start": start, "end": end, "attribution": attribution}
        else:
            word["end"] = max(word["end"], end)
            word["attribution"] += attribution
    for word in words.values():
        word["word"] = item.text[word["start"] : word["end"]]
    return {"label": label, "score": score, "tokens": tokens, "words": list(words.values())}


def explain(
    clf: Classifier,
    texts: str | Sequence[str],
    target: str | int | None = None,
    method: str = "occlusion",
    baseline: str | None = None,
    unit: str = "word",
    steps: int = DEFAULT_STEPS,
) -> dict[str, Any] | list[dict[str, Any]]:
    options = check_options(method, baseline, unit, steps)
    items, single = tokens_of(clf.tokenizer, texts)
    target_index(clf.labels, target, 0)  # a bad target fails before any model work
    run = occlusion if options.method == "occlusion" else integrated_gradients
    results = run(clf, items, target, options)
    return results[0] if single else results
