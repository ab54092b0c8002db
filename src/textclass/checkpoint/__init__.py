"""Reading a Hugging Face checkpoint folder: where it is (locate), its config and weight files (folder), its
tensors mapped onto the family's parameters (weights), its tokenizer, and what it holds (describe).

The names most callers need are re-exported here: `from textclass.checkpoint import open_checkpoint`.
"""

from textclass.checkpoint.folder import Checkpoint, open_checkpoint
from textclass.checkpoint.weights import build_model, map_weights, read_arrays, read_tensors

__all__ = ["Checkpoint", "build_model", "map_weights", "open_checkpoint", "read_arrays", "read_tensors"]
