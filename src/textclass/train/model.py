"""The model to fine-tune: a base checkpoint with a classification head for the training labels.

A bare encoder gets a new head; a classifier keeps its head when its labels cover the data and gets a
new output layer ("relabelled") when they do not. New parameters are initialised as transformers does:
normal(0, initializer_range) weights, zero biases.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from textclass.checkpoint import Checkpoint, open_checkpoint
from textclass.checkpoint.tokenizer import Tokenizer
from textclass.checkpoint.weights import map_weights, read_tensors
from textclass.errors import TextclassError
from textclass.models.build import init_parameters
from textclass.train.data import PROBLEM_TYPES, Task

_OUTPUT_LAYER = ("head.out.weight", "head.out.bias")


@dataclass
class Prepared:
    model: torch.nn.Module
    checkpoint: Checkpoint  # the base, with its config carrying the training labels and problem type
    tokenizer: Tokenizer
    new_parameters: list[str]  # our names of freshly initialised parameters
    notes: list[str]  # what happened to the head, for the user


def choose_labels(
    checkpoint: Checkpoint, task: Task, data_labels: Sequence[str], uses_ids: bool, names: Sequence[str] | None
) -> tuple[str, ...]:
    """id2label for the fine-tuned model."""
    old = checkpoint.config.id2label if checkpoint.is_classifier_config else None
    if task == "regression":
        return ("LABEL_0",)
    if names:
        if not uses_ids:
            raise TextclassError(
                "--label-names names integer class ids 0..K-1, but the labels in the training file are "
                f"{list(data_labels)[:10]}; leave --label-names out to use them as they are"
            )
        if len(names) != len(data_labels):
            raise TextclassError(
                f"--label-names gives {len(names)} names but the training file has {len(data_labels)} classes (0.."
                f"{len(data_labels) - 1})"
            )
        return tuple(names)
    if uses_ids:
        if old is not None and len(old) == len(data_labels):
            return old  # ids index the classifier's own labels
        return tuple(f"LABEL_{i}" for i in range(len(data_labels)))
    if old is not None and set(data_labels) <= set(old):
        return old
    return tuple(data_labels)


def prepare_model(
    base: str,
    task: Task,
    data_labels: Sequence[str],
    uses_ids: bool,
    names: Sequence[str] | None = None,
    seed: int = 0,
) -> Prepared:
    checkpoint = open_checkpoint(base)
    id2label = choose_labels(checkpoint, task, data_labels, uses_ids, names)
    old = checkpoint.config
    config = dataclasses.replace(old, id2label=id2label, problem_type=PROBLEM_TYPES[task])
    state, missing_head, _ = map_weights(checkpoint, read_tensors(checkpoint))
    notes = []
    if checkpoint.is_classifier_config and id2label != old.id2label:
        # Same body and pooler; the output layer's rows would mean other labels, so it starts afresh.
        for name in _OUTPUT_LAYER:
            state.pop(name, None)
        notes.append(f"relabelled: the classifier's labels {list(old.id2label)} become {list(id2label)}")
    elif checkpoint.is_classifier_config:
        notes.append(f"continuing the classifier's head (labels {list(id2label)})")

    model = checkpoint.family.build(config)
    expected = dict(model.named_parameters())
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise TextclassError(f"{base}: tensor for {name} has shape {tuple(tensor.shape)}, expected "
                                 f"{tuple(expected[name].shape)}")  # fmt: skip
    new_parameters = sorted(set(expected) - set(state))
    init_parameters(model, new_parameters, config.initializer_range, seed)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if new_parameters and not checkpoint.is_classifier_config:
        notes.append(f"{base} is a bare encoder: new classification head initialised ({', '.join(new_parameters)})")
    elif missing_head and checkpoint.is_classifier_config:
        notes.append(f"head parameters initialised: {', '.join(new_parameters)}")
    tokenizer = checkpoint.load_tokenizer()
    return Prepared(model, dataclasses.replace(checkpoint, config=config), tokenizer, new_parameters, notes)
