"""schemathesis hooks for tests/test_contract.py: drop generated bodies whose validity depends on the served model
or on two fields together, which a static OpenAPI schema cannot state (each rule is in the field's description):

- /explain `target` must be one of the model's labels (GET /info lists them);
- `chunk_tokens` at most the model's limit, `stride` below a window's text tokens, and long_text "chunk" splits
  single texts only (TEI pairs are refused), all with long_text "chunk".

Everything else the server checks is in the schema, and schemathesis holds the server to it.
"""

from __future__ import annotations

import schemathesis

# The bundled model the contract test serves: its labels, its limit and the special tokens around a text.
LABELS = ("NEGATIVE", "POSITIVE")
LIMIT, SPECIALS = 512, 2


def _chunk_options_fit(options: object, inputs: object) -> bool:
    if not isinstance(options, dict) or options.get("long_text") != "chunk":
        return True
    window = options.get("chunk_tokens")
    window = LIMIT if not isinstance(window, int) else window
    if window > LIMIT:
        return False
    stride = options.get("stride")
    if isinstance(stride, int) and stride >= window - SPECIALS:
        return False
    pairs = isinstance(inputs, list) and any(isinstance(item, list) and len(item) == 2 for item in inputs)
    return not pairs


@schemathesis.hook
def filter_body(context, body) -> bool:
    if not isinstance(body, dict):
        return True
    if "target" in body and body["target"] is not None and body["target"] not in LABELS:
        return False
    return _chunk_options_fit(body.get("parameters", body), body.get("inputs"))
