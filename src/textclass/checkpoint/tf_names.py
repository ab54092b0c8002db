"""TensorFlow (Keras) weight names → the Hugging Face PyTorch names that the family tables map.

transformers' TF models name their variables after the same module paths as the PyTorch models, in Keras
spelling: `/` between modules, `layer_._3` for the fourth item of a list, and the variable's own name last.
The translation is therefore the same for every family (checked against TF-saved BERT, DistilBERT and RoBERTa
in tests/fixtures/tf); what differs per family is only the PyTorch table the result is looked up in.

    distilbert/transformer/layer_._0/attention/q_lin/kernel:0 → distilbert.transformer.layer.0.attention.q_lin.weight
    bert/embeddings/position_embeddings/embeddings:0          → bert.embeddings.position_embeddings.weight
    classifier/out_proj/bias:0                                 → classifier.out_proj.bias
"""

from __future__ import annotations

# Keras variable name → (PyTorch parameter name, stored transposed?). Dense kernels are (in, out); nn.Linear
# keeps (out, in). A name not listed is kept as it is, so the strict loader reports it as unexpected.
LEAVES: dict[str, tuple[str, bool]] = {
    "kernel": ("weight", True),
    "bias": ("bias", False),
    "gamma": ("weight", False),  # LayerNorm scale
    "beta": ("bias", False),  # LayerNorm shift
    "embeddings": ("weight", False),  # keras Embedding layers: position and token-type tables
    "weight": ("weight", False),  # the word-embedding table, a bare add_weight named "weight"
}
LIST_ITEM = "_._"  # Keras "layer_._3" is PyTorch "layer.3"
# Pretraining heads are scoped like "mlm___cls": the part after "___" is the PyTorch module name.
RENAMED_SCOPE = "___"


def pytorch_name(tf_name: str) -> tuple[str, bool]:
    """The PyTorch name of a TF weight (model scope already removed), and whether its array must be transposed."""
    name = tf_name.removesuffix(":0")
    parts = [part.split(RENAMED_SCOPE)[-1] for part in name.replace(LIST_ITEM, "/").split("/") if part]
    leaf, transposed = LEAVES.get(parts[-1], (parts[-1], False))
    return ".".join([*parts[:-1], leaf]), transposed
