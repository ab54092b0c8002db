"""Are attributions faithful? Delete the words they rank highest and see the score fall (an AOPC deletion test).

For k = 1..K, the k words with the highest attribution to the explained label are cut out of the text, and the
label's score drop is measured; the same with k words picked at random. AOPC (area over the perturbation curve)
is the mean drop over k and texts. Faithful attributions drop the score clearly more than random words do.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from textclass.classifier import Classifier


@dataclass(frozen=True)
class Aopc:
    top: float  # mean drop of the label's score when its top-k words are deleted, over k = 1..K and texts
    random: float  # the same for k random words (averaged over several draws)
    top_by_k: list[float]
    random_by_k: list[float]


def delete_words(text: str, words: Sequence[dict[str, Any]]) -> str:
    """The text without these words (dicts with character "start"/"end"), spaces around them collapsed."""
    kept, position = [], 0
    for word in sorted(words, key=lambda w: w["start"]):
        kept.append(text[position : word["start"]])
        position = word["end"]
    kept.append(text[position:])
    return " ".join("".join(kept).split())


def aopc(
    clf: Classifier, texts: Sequence[str], explanations: Sequence[dict[str, Any]], k_max: int = 3, draws: int = 5,
    seed: int = 0,
) -> Aopc:  # fmt: skip
    """Deletion AOPC of the explanations' word attributions against random words; all variants in one run call."""
    rng = random.Random(seed)
    variants: list[str] = []
    plan = []  # per text: label index, then rows of its variants
    for text, explanation in zip(texts, explanations, strict=True):
        words = explanation["words"]
        ranked = sorted(words, key=lambda w: -w["attribution"])
        rows = [len(variants)]
        variants.append(text)
        for k in range(1, k_max + 1):
            variants.append(delete_words(text, ranked[:k]))
            for _ in range(draws):
                variants.append(delete_words(text, rng.sample(words, min(k, len(words)))))
        plan.append((clf.labels.index(explanation["label"]), rows[0]))
    scores = clf.scores(clf.run(clf.encode(variants)))
    top = np.zeros((len(texts), k_max))
    rand = np.zeros((len(texts), k_max))
    for row, (label, first) in enumerate(plan):
        base = scores[first, label]
        for k in range(k_max):
            at = first + 1 + k * (1 + draws)
            top[row, k] = base - scores[at, label]
            rand[row, k] = base - scores[at + 1 : at + 1 + draws, label].mean()
    return Aopc(float(top.mean()), float(rand.mean()), top.mean(0).tolist(), rand.mean(0).tolist())
