"""schemathesis hooks for tests/test_contract.py: drop generated bodies whose validity depends on the served model
or on two fields together, which a static OpenAPI schema cannot state (each rule is in the field's description):

- /explain `target` must be one of the model's labels (GET /info lists them), and integrated gradients takes
  baseline pad or mask (delete is occlusion's);
- with long_text "chunk": `stride` below the text tokens of the window `chunk_tokens` asks for (the schema states
  the bound of the longest window), and single texts only (a TEI pair, alone or in a batch, is refused).

Everything else the server checks is in the schema, and schemathesis holds the server to it.
"""

from __future__ import annotations

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


@schemathesis.hook
def filter_body(context, body) -> bool:
    if not isinstance(body, dict):
        return True
    if "target" in body and body["target"] is not None and body["target"] not in LABELS:
        return False
    if body.get("method") == "integrated_gradients" and body.get("baseline") == "delete":
        return False
    return _chunk_options_fit(body.get("parameters", body), body.get("inputs"))
