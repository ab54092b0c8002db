"""Find a checkpoint (local folder or hub id), read its config and weights, and build the model.

Weights are mapped through the family's declarative table and loaded strictly: a tensor the table
expects but the file lacks, or a tensor nobody expects, is an error that names it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textclass.errors import CheckpointError
from textclass.models import Family, family_for
from textclass.models.config import EncoderConfig, load_config_json
from textclass.models.family import TOKENIZER_FILES

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from textclass.checkpoint.tokenizer import Tokenizer

# In order of preference when a folder has several formats.
WEIGHT_FILES = (
    ("safetensors", "model.safetensors"),
    ("safetensors", "model.safetensors.index.json"),
    ("bin", "pytorch_model.bin"),
    ("bin", "pytorch_model.bin.index.json"),
    ("h5", "tf_model.h5"),  # transformers 4.x TensorFlow models (read with h5py, no TensorFlow)
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class Checkpoint:
    folder: Path
    family: Family
    config: EncoderConfig
    weight_format: str  # "safetensors", "bin" or "h5"
    weight_files: tuple[Path, ...]

    def load_tokenizer(self) -> Tokenizer:
        """The checkpoint's tokenizer, truncating at what the model holds, with token types if its family has them."""
        from textclass.checkpoint.tokenizer import Tokenizer

        return Tokenizer.from_folder(self.folder, self.config.max_tokens, return_token_type_ids=self.family.token_types)

    @property
    def is_classifier_config(self) -> bool:
        """Whether config.json says it was saved from a *ForSequenceClassification model."""
        architectures = self.config.raw.get("architectures") or []
        return any(a.endswith("ForSequenceClassification") for a in architectures)


def open_checkpoint(path_or_id: str | os.PathLike[str]) -> Checkpoint:
    folder = resolve_folder(path_or_id)
    raw = load_config_json(folder)
    family = family_for(raw.get("model_type"))
    config = family.read_config(raw, raw["model_type"])
    weight_format, files = _weight_files(folder)
    return Checkpoint(folder, family, config, weight_format, files)


def resolve_folder(path_or_id: str | os.PathLike[str]) -> Path:
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; expected a Hugging Face checkpoint folder")
    text = str(path_or_id)
    if _HUB_ID.match(text) and "/" in text and not text.startswith("."):
        return _download(text)
    raise CheckpointError(f"model folder {text} does not exist; pass a checkpoint folder or a hub id (org/name)")


def _download(repo_id: str) -> Path:
    """Fetch only what a classifier needs: config, tokenizer and one weight format."""
    try:
        from huggingface_hub import list_repo_files, snapshot_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a dependency
        raise CheckpointError("downloading from the hub needs huggingface_hub: pip install huggingface_hub") from exc
    try:
        files = set(list_repo_files(repo_id))
        weights = next(
            (name for _, name in WEIGHT_FILES if name in files),
            None,
        )
        if weights is None:
            raise CheckpointError(f"hub repo {repo_id} has no model.safetensors, pytorch_model.bin or tf_model.h5")
        # Every family's tokenizer files (which family this is is only known once config.json is read):
        # SentencePiece models are spm.model (DeBERTa), spiece.model (ALBERT), sentencepiece.bpe.model (XLM-R).
        patterns = ["config.json", *TOKENIZER_FILES, "*.model", weights]
        if weights.endswith(".index.json"):
            patterns.append(weights.split(".")[0] + "-*")
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except CheckpointError:
        raise
    except Exception as online_error:
        try:  # offline: a copy already in the local hub cache still works
            return Path(snapshot_download(repo_id, local_files_only=True))
        except Exception:
            raise CheckpointError(
                f"could not download {repo_id!r} from the Hugging Face hub ({type(online_error).__name__}); "
                "are you offline? pass a local checkpoint folder instead"
            ) from online_error


def _weight_files(folder: Path) -> tuple[str, tuple[Path, ...]]:
    for weight_format, name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            return weight_format, (path,)
        try:
            weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path} is not a valid shard index (needs a 'weight_map')") from exc
        shards = tuple(folder / shard for shard in dict.fromkeys(weight_map.values()))
        for shard in shards:
            if not shard.is_file():
                raise CheckpointError(f"{path} lists shard {shard.name}, which is missing")
        return weight_format, shards
    expected = ", ".join(name for _, name in WEIGHT_FILES)
    raise CheckpointError(f"{folder} has no weights; expected one of {expected}")


def read_tensors(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors as torch tensors, under their checkpoint names (the torch engine, training)."""
    from textclass.extras import require_torch

    if checkpoint.weight_format == "bin":
        require_torch(f"reading {checkpoint.weight_files[0].name} (a PyTorch pickle)")
    require_torch("reading weights as torch tensors")
    import torch

    tensors: dict[str, torch.Tensor] = {}
    for path in checkpoint.weight_files:
        try:
            if checkpoint.weight_format == "safetensors":
                from safetensors.torch import load_file

                part = load_file(str(path), device="cpu")
            elif checkpoint.weight_format == "h5":
                from textclass.checkpoint.keras_h5 import read_keras_h5

                part = {name: torch.from_numpy(array) for name, array in read_keras_h5(path).items()}
            else:
                # weights_only refuses pickled code: a .bin from the internet cannot run anything.
                part = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except CheckpointError:
            raise
        except Exception as exc:
            raise CheckpointError(f"cannot read weights from {path}: {exc} (corrupt or truncated file?)") from exc
        if not isinstance(part, dict):
            raise CheckpointError(f"{path} does not hold a state dict of tensors")
        tensors.update(part)
    return tensors


def read_arrays(checkpoint: Checkpoint) -> dict[str, np.ndarray]:
    """The checkpoint's float tensors as float32 numpy arrays, under their checkpoint names: what the ONNX
    builder reads. safetensors (bf16 included) and tf_model.h5 need no torch; pytorch_model.bin does."""
    import numpy as np

    if checkpoint.weight_format == "bin":
        return {name: tensor.float().numpy() for name, tensor in read_tensors(checkpoint).items()
                if tensor.is_floating_point()}  # fmt: skip
    arrays: dict[str, np.ndarray] = {}
    for path in checkpoint.weight_files:
        try:
            if checkpoint.weight_format == "safetensors":
                from textclass.onnx.link import read_sources

                arrays.update((name, values) for name, (_, values) in read_sources([path]).items())
            else:
                from textclass.checkpoint.keras_h5 import read_keras_h5

                arrays.update((name, array.astype(np.float32)) for name, array in read_keras_h5(path).items())
        except CheckpointError:
            raise
        except Exception as exc:
            raise CheckpointError(f"cannot read weights from {path}: {exc} (corrupt or truncated file?)") from exc
    return arrays


def tensor_names(checkpoint: Checkpoint) -> list[str]:
    """Names of the checkpoint's tensors; for safetensors read from the header alone (no torch, no data)."""
    if checkpoint.weight_format == "h5":
        return list(read_arrays(checkpoint))
    if checkpoint.weight_format != "safetensors":
        return list(read_tensors(checkpoint))
    from safetensors import safe_open

    names: list[str] = []
    for path in checkpoint.weight_files:
        try:
            with safe_open(str(path), framework="numpy") as handle:
                names.extend(handle.keys())
        except Exception as exc:
            raise CheckpointError(f"cannot read weights from {path}: {exc} (corrupt or truncated file?)") from exc
    return names


def missing_head(checkpoint: Checkpoint) -> list[str]:
    """Head parameters the checkpoint lacks (a bare encoder); checks the whole weight table on the way."""
    return map_weights(checkpoint, dict.fromkeys(tensor_names(checkpoint)))[1]


def normalise_name(name: str, base_prefix: str) -> str:
    if name.startswith(base_prefix + "."):
        name = name[len(base_prefix) + 1 :]
    # Old TF-converted checkpoints name LayerNorm parameters gamma/beta.
    if name.endswith(".gamma"):
        name = name[: -len("gamma")] + "weight"
    elif name.endswith(".beta"):
        name = name[: -len("beta")] + "bias"
    return name


def map_weights(checkpoint: Checkpoint, tensors: dict[str, Any]) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """Rename checkpoint tensors to our parameter names.

    Returns the state dict, the head parameters the checkpoint lacks (a bare encoder: the caller
    initialises them), and which checkpoint tensor became which parameter. Anything else missing
    or unexpected raises, naming the tensors.
    """
    family = checkpoint.family
    table = family.weight_table(checkpoint.config)
    # Keras names were translated (models/tf_names.py); say so, or the PyTorch names look unrelated to the file.
    via = ""
    if checkpoint.weight_format == "h5":
        via = " (translated from tf_model.h5 names: layer_._1/ffn/lin1/kernel:0 is layer.1.ffn.lin1.weight)"
    state: dict[str, Any] = {}
    state_sources: dict[str, str] = {}  # checkpoint name -> our name, for messages
    unexpected = []
    for name in list(tensors):
        key = normalise_name(name, family.base_prefix)
        if key in table:
            state[table[key]] = tensors.pop(name)
            state_sources[name] = table[key]
        elif not key.startswith(family.ignored_prefixes):
            unexpected.append(name)
    if unexpected:
        raise CheckpointError(
            f"unexpected tensors in {checkpoint.folder} for a {checkpoint.config.model_type} model: "
            f"{', '.join(sorted(unexpected)[:10])}{via}"
        )
    head = family.head_names(checkpoint.config)
    # Name missing tensors as this checkpoint spells them: with the base prefix when it uses one.
    prefixed = any(name.startswith(family.base_prefix + ".") for name in state_sources)
    missing = [family.hf_name(hf) if prefixed else hf for hf, ours in table.items() if ours not in state]
    missing_body = [name for name in missing if normalise_name(name, family.base_prefix) not in head]
    if missing_body:
        raise CheckpointError(
            f"checkpoint {checkpoint.folder} lacks tensors: {', '.join(missing_body[:10])}"
            + (f" and {len(missing_body) - 10} more" if len(missing_body) > 10 else "")
            + via
        )
    if missing and checkpoint.is_classifier_config:
        raise CheckpointError(
            f"config.json says {checkpoint.config.raw['architectures'][0]} but the weights lack its head: "
            f"{', '.join(missing)}{via}"
        )
    return state, [table[normalise_name(name, family.base_prefix)] for name in missing], state_sources


def build_model(
    checkpoint: Checkpoint, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, list[str]]:
    """The model with the checkpoint's weights, and the head parameters that were freshly initialised."""
    import torch

    dtype = dtype or torch.float32
    state, new_head, sources = map_weights(checkpoint, read_tensors(checkpoint))
    # Built on the meta device, then the loaded tensors become the parameters: one copy of the weights.
    with torch.device("meta"):
        model = checkpoint.family.build(checkpoint.config)
    params = dict(model.named_parameters())
    for source, name in sources.items():
        shape, expected = tuple(state[name].shape), tuple(params[name].shape)
        if shape != expected:
            raise CheckpointError(f"tensor {source} has shape {shape}, config.json implies {expected}")
    for name, tensor in state.items():
        state[name] = tensor.to(device=device, dtype=dtype)
    for name in new_head:
        state[name] = torch.empty(params[name].shape, dtype=dtype, device=device)
    model.load_state_dict(state, strict=True, assign=True)
    init_parameters(model, new_head, checkpoint.config.initializer_range, seed=0)
    return model.eval(), new_head


def init_parameters(model: torch.nn.Module, names: list[str], std: float, seed: int) -> None:
    """Initialise new parameters as transformers does: norms at identity, other weights normal(0, std), biases 0."""
    import torch

    generator = None
    with torch.no_grad():
        for name in names:
            param = model.get_parameter(name)
            if name.endswith("bias"):
                param.zero_()
            elif isinstance(model.get_submodule(name.rpartition(".")[0]), torch.nn.LayerNorm):
                param.fill_(1.0)
            else:
                if generator is None:  # seeded on the parameters' device, once per call
                    generator = torch.Generator(device=param.device).manual_seed(seed)
                param.normal_(0.0, std, generator=generator)
