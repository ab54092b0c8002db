"""Zero-shot classification with an NLI model, as transformers' ZeroShotClassificationPipeline does it: each
(text, label) becomes a premise/hypothesis pair, and the entailment logit says how well the label fits.

Pure functions of inputs, config and logits (the model runs in `Classifier.run`), shared by the Python API and
the server."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from textclass import postprocess
from textclass.errors import InputError
from textclass.models.config import EncoderConfig
from textclass.tasks.inputs import require_text, strings

DEFAULT_HYPOTHESIS_TEMPLATE = "This example is {}."


# Every label is one more model input per text; past this a request is more likely a mistake than a task.
MAX_CANDIDATE_LABELS = 64


# ---- zero-shot classification ---------------------------------------------------------------------------
def entailment_id(config: EncoderConfig) -> int:
    """The class id of the first label starting with "entail" in label2id, as the pipeline looks it up."""
    label2id = config.raw.get("label2id") or {name: index for index, name in enumerate(config.id2label)}
    for label, index in label2id.items():
        if str(label).lower().startswith("entail") and 0 <= int(index) < config.num_labels:
            return int(index)
    raise InputError(
        f"zero-shot classification needs an NLI model with an 'entailment' label, but this checkpoint's labels are "
        f"{', '.join(config.id2label)}; load one fine-tuned on NLI (e.g. *-mnli) or name its labels in config.json"
    )


def parse_candidate_labels(candidate_labels: str | Sequence[str]) -> list[str]:
    """A list of labels, or one comma-separated string ("a, b" -> ["a", "b"]), as the pipeline accepts."""
    if isinstance(candidate_labels, str):
        candidate_labels = [label.strip() for label in candidate_labels.split(",") if label.strip()]
    labels = strings(candidate_labels, "candidate_labels", "label")
    if len(labels) > MAX_CANDIDATE_LABELS:
        raise InputError(f"{len(labels)} candidate labels but at most {MAX_CANDIDATE_LABELS}; split them into groups")
    return labels


def hypothesis(template: str, label: str) -> str:
    """The template with the label in its "{}"; a template the label does not change is an error."""
    try:
        text = template.format(label)
    except (IndexError, KeyError, ValueError) as exc:
        raise InputError(f'hypothesis_template {template!r} cannot be formatted ({exc}); use "{{}}" for the label, '
                         'e.g. "This example is {}."') from exc  # fmt: skip
    if text == template:
        raise InputError(f'hypothesis_template {template!r} has no "{{}}" where the label goes; '
                         'e.g. "This example is {}."')  # fmt: skip
    return text


@dataclass(frozen=True)
class ZeroShotJob:
    """What to score: every text against every label's hypothesis, text-major."""

    sequences: list[str]
    labels: list[str]
    single: bool  # one str in: one result out, as the pipeline returns
    pairs: list[tuple[str, str]]


def zero_shot_job(
    texts: str | Sequence[str], candidate_labels: str | Sequence[str], hypothesis_template: str
) -> ZeroShotJob:
    single = isinstance(texts, str)
    sequences = [texts] if single else strings(texts, "texts", "text to classify")
    require_text(sequences)
    labels = parse_candidate_labels(candidate_labels)
    if not isinstance(hypothesis_template, str):
        raise InputError(f"hypothesis_template must be a string, got {type(hypothesis_template).__name__}")
    hypotheses = [hypothesis(hypothesis_template, label) for label in labels]
    return ZeroShotJob(sequences, labels, single, [(text, h) for text in sequences for h in hypotheses])


def zero_shot_scores(logits: np.ndarray, num_candidates: int, entailment: int, multi_label: bool) -> np.ndarray:
    """(texts × labels, num_labels) logits -> (texts, labels) scores, by the pipeline's postprocess rules.

    Single-label: softmax of the entailment logits over the labels. Multi-label (or one label): per label,
    softmax over [contradiction, entailment]; the contradiction id is 0, or the last class when entailment is 0.
    """
    per_text = np.asarray(logits, dtype=np.float32).reshape(-1, num_candidates, logits.shape[-1])
    if multi_label or num_candidates == 1:
        contradiction = -1 if entailment == 0 else 0
        return postprocess.apply(per_text[..., [contradiction, entailment]], "softmax")[..., 1]
    return postprocess.apply(per_text[..., entailment], "softmax")


def zero_shot_results(job: ZeroShotJob, scores: np.ndarray) -> list[dict[str, Any]] | dict[str, Any]:
    """{"sequence", "labels", "scores"} per text, labels best first: one dict for a str input, else a list."""
    results = []
    for sequence, row in zip(job.sequences, scores, strict=True):
        order = row.argsort()[::-1]  # the pipeline's own ordering, ties included
        results.append({"sequence": sequence, "labels": [job.labels[i] for i in order],
                        "scores": [float(row[i]) for i in order]})  # fmt: skip
    return results[0] if job.single else results
