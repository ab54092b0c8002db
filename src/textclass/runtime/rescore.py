"""The CPU default's int8: per-row int8 everywhere, and the texts it leaves near a tie scored again in exact fp32.
(The default and a pinned onnx-int8 run this; dtype="int8" asked for by name runs per-row int8 alone.)

Per-row int8 (quantize.py) moves a text's logits a little, whatever the text. Where the model is sure, that
hardly moves its probabilities; near a tie the same change moves them most (dp/dlogit = p(1 - p)) and can flip the
label. On texts with many near ties (bench/common.py: contrast_texts, mixed-sentiment sentences), int8 alone
misses the accuracy contract (contract.py) where bf16 keeps it. So every text whose int8 answer is near a tie is
run again in fp32, and fp32's logits are its answer:
- two exclusive labels (softmax): the top probability is at most MARGIN above the runner-up;
- more exclusive labels: the top probability (after the temperature) is at most MULTI_TOP;
- independent labels (sigmoid): some label lies within MARGIN / 2 of 0.5.
MARGIN = 0.5 (for two labels: top probability ≤ 0.75) is the smallest of 0.3-0.8 that kept the contract with a
20% margin on those sentences; the figures are in docs/performance.md ("Near ties scored again in fp32"). On
texts where the model is sure, next to nothing runs twice.

A text's way is decided by its own int8 output, and both engines score rows independently of their neighbours,
so the answer still does not depend on the batch. The fp32 engine opens on the first near tie. Raw scores
(regression) have no tie: there the int8 engine runs alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from textclass import postprocess
from textclass.runtime.batching import Batch, regroup
from textclass.runtime.engine import Rescored

if TYPE_CHECKING:
    from textclass.runtime.onnx_engine import OnnxEngine

MARGIN = 0.5
# More than two exclusive labels: a text is rescored when its top probability (after the temperature) is at most
# MULTI_TOP. With many labels a text is often unsure without its top two being close (0.55 / 0.25 / 0.1 ...), and
# a probability moves by p(1 - p) times int8's logit error whatever the gap: the earlier rule, a top-two logit gap
# ≤ 0.3, broke the mean |Δp| bound (0.0056 on SST-5 dev) on a five-label MiniLM trained without a temperature.
# Chosen by a rule written first (docs/performance.md, "Multi-class models"): of top-two gaps 0.3-1.0 and top
# probabilities 0.6-0.9, on SST-5 train rows held out from three five-label MiniLMs (with and without a
# temperature, and a weak one), in both int8 formats, the candidate keeping 80% of every bound with the fewest
# texts rescored. A five-label SST-5 model then rescores 70-85% of its texts, so the default runs it in exact fp32
# (rescoring_pays); a confident many-label model keeps int8.
MULTI_TOP = 0.6
# The per-model choice (rescoring_pays): int8 with its near ties rescored must cost at most this share of exact
# fp32's time on the calibration sentences, 10% below break-even for traffic with more near ties than they have.
WORTH_IT = 0.9
log = logging.getLogger("textclass")


def near_ties(logits: np.ndarray, function: str, temperature: float = 1.0) -> np.ndarray:
    """Indices of the rows of (rows, num_labels) logits whose answer is near a tie (module docstring), judged on
    the scores the model reports (postprocess.apply: its temperature, then its function)."""
    probs = postprocess.apply(logits, function, temperature)
    if function == "softmax" and probs.shape[1] > 2:
        return np.flatnonzero(probs.max(axis=1) <= MULTI_TOP)
    if function == "softmax" and probs.shape[1] > 1:
        top2 = np.sort(probs, axis=1)[:, -2:]
        return np.flatnonzero(top2[:, 1] - top2[:, 0] <= MARGIN)
    return np.flatnonzero((np.abs(probs - 0.5) <= MARGIN / 2).any(axis=1))


def rescoring_pays(calibration_logits: np.ndarray, function: str, temperature: float, int8_cost: float) -> tuple[
        bool, str]:  # fmt: skip
    """Whether per-row int8 with its near ties rescored is faster than exact fp32 for this model, judged once per
    model from its fp32 logits on the calibration sentences (onnx/calibration.py, noted when its int8 graph was
    built): each near tie costs a second, fp32 pass, so a model unsure of most texts (a weak or diffuse model, many
    labels) is faster in exact fp32 alone. Decided from the model, never from the traffic: a text's answer does not
    depend on what came before it. Returns the verdict and why, for inspect, /info and -v."""
    texts = len(calibration_logits)
    ties = len(near_ties(calibration_logits, function, temperature))
    cost = int8_cost + ties / texts
    seen = f"{ties} of the {texts} calibration sentences are near ties for this model"
    if cost <= WORTH_IT:
        return True, f"{seen} (int8 + rescoring ~{cost:.2f}x fp32's time)"
    return False, f"exact fp32: {seen}, and int8 with that many scored again would take ~{cost:.2f}x fp32's time"


class RescoringEngine:
    """Per-row int8 (`fast`) whose near ties `exact` (fp32, opened when first needed) scores again."""

    backend = "onnx"
    model = None  # no torch module

    def __init__(
        self,
        fast: OnnxEngine,
        exact: Callable[[], OnnxEngine],
        function: str,
        temperature: float,
        pad_token_id: int,
        reason: str = "",
    ):
        self.fast, self._open_exact, self._exact = fast, exact, None
        self.function, self.temperature, self.pad_token_id = function, temperature, pad_token_id
        self.reason = reason
        self.uses_token_types = fast.uses_token_types
        self.rescored = Rescored()  # texts seen, and how many of them fp32 scored again
        self._failed = False  # the fp32 engine could not be opened
        self._lock = threading.Lock()

    @property
    def dtype(self) -> str:
        return "int8"

    def __call__(self, batch: Batch) -> np.ndarray:  # (rows, num_labels) float32 logits
        return next(self.map([batch]))

    @property
    def lanes(self) -> int:
        return self.fast.lanes

    def map(self, batches: Sequence[Batch], one_thread: bool = False) -> Iterator[np.ndarray]:
        logits = list(self.fast.map(batches, one_thread))
        picks = [(i, int(row)) for i, out in enumerate(logits)
                 for row in near_ties(out, self.function, self.temperature)]  # fmt: skip
        exact = self.exact if picks else None
        if exact is not None:  # the near ties of all batches, batched afresh: a few rows a batch would run slowly
            budget = max(batch.input_ids.size for batch in batches)
            groups = list(regroup(batches, picks, budget, self.pad_token_id))
            for (group, _), again in zip(groups, exact.map([batch for _, batch in groups], one_thread)):
                for position, row_logits in zip(group, again):
                    i, row = picks[position]
                    logits[i][row] = row_logits
        with self._lock:
            self.rescored.texts += sum(len(batch.indices) for batch in batches)
            self.rescored.again += len(picks) if exact is not None else 0
        return iter(logits)

    @property
    def exact(self) -> OnnxEngine | None:
        """The fp32 engine, opened on first use; None (int8's answers stand, with a warning once) if it cannot be:
        an answer is never lost to the second opinion."""
        with self._lock:
            if self._exact is None and not self._failed:
                try:
                    self._exact = self._open_exact()
                except Exception as exc:  # noqa: BLE001 - export or ORT failures of every kind
                    self._failed = True
                    log.warning("textclass: near ties keep their int8 answers: no fp32 engine (%s)", exc)
            return self._exact
