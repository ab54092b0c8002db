"""Postprocess follows the pipeline's rules; pure functions, no model needed."""

from __future__ import annotations

import numpy as np
import pytest

from textclass import postprocess
from textclass.errors import InputError


@pytest.mark.parametrize(
    ("problem_type", "num_labels", "expected"),
    [
        (None, 2, "softmax"),
        (None, 5, "softmax"),
        (None, 1, "sigmoid"),
        ("multi_label_classification", 4, "sigmoid"),
        ("single_label_classification", 1, "sigmoid"),  # num_labels == 1 wins, as in the pipeline
        ("regression", 1, "none"),
    ],
)
def test_default_function(problem_type, num_labels, expected):
    assert postprocess.resolve_function(None, problem_type, num_labels) == expected


def test_functions():
    logits = np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 1000.0]], dtype=np.float32)
    soft = postprocess.apply(logits, "softmax")
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    assert soft[1, 2] == pytest.approx(1.0) and np.isfinite(soft).all()  # stable for large logits
    np.testing.assert_allclose(postprocess.apply(logits[:1], "sigmoid"), 1 / (1 + np.exp(-logits[:1])), rtol=1e-6)
    np.testing.assert_array_equal(postprocess.apply(logits, "none"), logits)
    with pytest.raises(InputError, match="softmax, sigmoid, none"):
        postprocess.resolve_function("relu", None, 2)


def test_rank_and_shapes():
    labels = ("neg", "neu", "pos")
    scores = np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]], dtype=np.float32)
    ranked = postprocess.rank(scores[0], labels, None)
    assert [r["label"] for r in ranked] == ["neu", "pos", "neg"]
    assert postprocess.rank(scores[1], labels, 2) == [
        {"label": "pos", "score": pytest.approx(0.8)},
        {"label": "neg", "score": pytest.approx(0.1)},  # ties keep label order
    ]
    legacy = postprocess.format_output(scores, labels, 1, legacy=True, single=False)
    assert legacy == [{"label": "neu", "score": pytest.approx(0.5)}, {"label": "pos", "score": pytest.approx(0.8)}]
    single = postprocess.format_output(scores[:1], labels, None, legacy=False, single=True)
    assert isinstance(single, list) and len(single) == 3 and isinstance(single[0], dict)
    with pytest.raises(InputError, match="top_k"):
        postprocess.rank(scores[0], labels, 0)


def test_rank_matches_a_stable_sort_and_puts_nan_last():
    rng = np.random.default_rng(0)
    labels = [f"l{i}" for i in range(40)]
    scores = rng.choice(np.array([0.1, 0.25, 0.5], dtype=np.float32), size=40)  # many ties
    ranked = postprocess.rank(scores, labels, None)
    want = sorted(range(40), key=lambda i: -float(scores[i]))  # Python's sort is stable: label order among ties
    assert [r["label"] for r in ranked] == [labels[i] for i in want]
    assert all(type(r["score"]) is float and r["score"] == float(scores[int(r["label"][1:])]) for r in ranked)
    with_nan = np.array([0.3, np.nan, 0.7], dtype=np.float32)
    assert [r["label"] for r in postprocess.rank(with_nan, ["a", "b", "c"], None)] == ["c", "a", "b"]
