"""schemathesis hooks for tests/server/test_contract.py: drop generated bodies whose validity depends on the served
model or on two fields together, which a static OpenAPI schema cannot state (each rule is in the field's description):

- /explain `target` must be one of the model's labels (GET /info lists them), integrated gradients takes
  baseline pad or mask (delete is occlusion's), and each text must give the model's tokenizer a token (a text of
  only control characters has none);
- with long_text "chunk": `stride` below the text tokens of the window `chunk_tokens` asks for (the schema states
  the bound of the longest window), and single texts only (a TEI pair, alone or in a batch, is refused);
- an OIP inference request's tensors: `shape` is [len(data)] (set here, so generated requests keep their texts),
  `text` is there once, `text_pair` at most once and as long, and `binary_data_size` needs binary data after the
  JSON with an Inference-Header-Content-Length header (the binary extension, tested with tritonclient instead).

Everything else the server checks is in the schema, and schemathesis holds the server to it.
"""

from __future__ import annotations

import functools

import schemathesis

# The bundled model the contract test serves: its labels, its limit and the special tokens around a text.
LABELS = ("NEGATIVE", "POSITIVE")
LIMIT, SPECIALS = 512, 2


def _number(value: object) -> float | None:
    """JSON numbers as the server reads integers (3 and 3.0 alike); None for anything else."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _chunk_options_fit(options: object, inputs: object) -> bool:
    if not isinstance(options, dict) or options.get("long_text") != "chunk":
        return True
    window = _number(options.get("chunk_tokens"))
    window = LIMIT if window is None else window
    stride = _number(options.get("stride"))
    if stride is not None and stride >= window - SPECIALS:
        return False
    one_pair = isinstance(inputs, list) and len(inputs) == 2 and all(isinstance(item, str) for item in inputs)
    pairs = isinstance(inputs, list) and any(isinstance(item, list) and len(item) == 2 for item in inputs)
    return not (one_pair or pairs)


@functools.cache
def _tokenizer():
    from textclass.checkpoint import open_checkpoint
    from textclass.checkpoint.locate import resolve_model

    return open_checkpoint(resolve_model(None)).load_tokenizer()


def _explainable(inputs: object) -> bool:
    """Every text gives the bundled model's tokenizer a token, as explain.tokens_of asks (other bodies: True)."""
    texts = [inputs] if isinstance(inputs, str) else inputs if isinstance(inputs, list) else []
    for text in texts:
        if isinstance(text, str) and text.strip():
            encoding = _tokenizer().encoding(text)
            if all(special for special in encoding.special_tokens_mask):
                return False
    return True


@schemathesis.hook
def filter_body(context, body) -> bool:
    if not isinstance(body, dict):
        return True
    if "target" in body and body["target"] is not None and body["target"] not in LABELS:
        return False

    if body.get("method") == "integrated_gradients" and body.get("baseline") == "delete":
        return False
    return _chunk_options_fit(body.get("parameters", body), body.get("inputs"))


def _tensors_fit(inputs: object) -> bool:
    if not isinstance(inputs, list) or not all(isinstance(t, dict) for t in inputs):
        return True  # not a list of tensors: the schema refuses it
    names = [t.get("name") for t in inputs]
    if not all(isinstance(n, str) for n in names):
        return True  # the schema refuses it
    if len(set(names)) < len(names) or "text" not in names:
        return False
    if any(isinstance(t.get("parameters"), dict) and "binary_data_size" in t["parameters"] for t in inputs):
        return False
    lengths = {len(t["data"]) for t in inputs if isinstance(t.get("data"), list)}
    return len(lengths) <= 1


# Case hooks, not body hooks: schemathesis' coverage phase applies only these.
@schemathesis.hook("filter_case").apply_to(path_regex=r"/explain$")
def explain_texts_have_tokens(context, case) -> bool:
    return not isinstance(case.body, dict) or _explainable(case.body.get("inputs"))



@schemathesis.hook("filter_case").apply_to(path_regex=r"/infer$")
def oip_tensors_fit(context, case) -> bool:
    return not isinstance(case.body, dict) or _tensors_fit(case.body.get("inputs"))


@schemathesis.hook("map_case").apply_to(path_regex=r"/infer$")
def oip_shapes(context, case):
    """A shape the schema allows ([one count]) is set to its data's length; any other is left to be refused."""
    body = case.body
    for tensor in body.get("inputs", []) if isinstance(body, dict) and isinstance(body.get("inputs"), list) else []:
        shape, data = (tensor.get("shape"), tensor.get("data")) if isinstance(tensor, dict) else (None, None)
        whole = isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], (int, float)) \
            and not isinstance(shape[0], bool) and float(shape[0]).is_integer() and shape[0] >= 0  # fmt: skip
        if isinstance(data, list) and whole:
            tensor["shape"] = [len(data)]
    return case
