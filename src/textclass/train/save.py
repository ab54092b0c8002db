"""Writing what training produces: a Hugging Face checkpoint folder, and resumable training state.

Both are written into a temporary folder beside the target and renamed into place, so a kill at any
moment leaves either the old complete folder or the new complete one, never half of one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from textclass.checkpoint import Checkpoint
from textclass.fileio import atomic_folder, write_json

# Keys of the base config.json that describe the base's own head, dtype or origin, replaced on export.
_REPLACED_KEYS = ("architectures", "id2label", "label2id", "num_labels", "problem_type", "torch_dtype", "dtype",
                  "_name_or_path", "gradient_checkpointing")  # fmt: skip
DTYPES_OUT = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def hf_state_dict(model: torch.nn.Module, checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    """Our parameters under transformers' *ForSequenceClassification names: the family table inverted."""
    family = checkpoint.family
    params = model.state_dict()
    return {family.hf_name(hf): params[ours] for hf, ours in family.weight_table(model.config).items()}


def hf_config(checkpoint: Checkpoint, dtype: torch.dtype, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    config = checkpoint.config
    raw = {k: v for k, v in config.raw.items() if k not in _REPLACED_KEYS}
    dtype_name = str(dtype).removeprefix("torch.")
    raw.update(
        architectures=[checkpoint.family.architectures[config.model_type]],
        id2label={str(i): label for i, label in enumerate(config.id2label)},
        label2id={label: i for i, label in enumerate(config.id2label)},
        problem_type=config.problem_type,
        torch_dtype=dtype_name,  # transformers 4.x reads torch_dtype, 5.x dtype
        dtype=dtype_name,
    )
    raw.update(extra or {})
    return dict(sorted(raw.items()))


def save_hf_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    checkpoint: Checkpoint,
    dtype_out: str = "fp32",
    config_extra: dict[str, Any] | None = None,
    files: dict[str, str] | None = None,
) -> None:
    """Write config.json, model.safetensors and the base's tokenizer files (plus `files`: name -> text)."""
    dtype = DTYPES_OUT[dtype_out]
    tensors = {name: t.detach().to(dtype).contiguous().clone() for name, t in hf_state_dict(model, checkpoint).items()}
    folder.mkdir(parents=True, exist_ok=True)
    # The folder also holds checkpoints/ (resume state), so files are swapped in one by one, each by rename.
    temp = Path(tempfile.mkdtemp(prefix=".export-tmp-", dir=folder))
    try:
        save_file(tensors, str(temp / "model.safetensors"), metadata={"format": "pt"})
        write_json(temp / "config.json", hf_config(checkpoint, dtype, config_extra))
        for name in checkpoint.family.tokenizer_files:
            source = checkpoint.folder / name
            if source.is_file():
                shutil.copyfile(source, temp / name)
        for name, text in (files or {}).items():
            (temp / name).write_text(text, encoding="utf-8")
        for path in temp.iterdir():
            path.chmod(0o644)  # temp files are private (0600); the checkpoint is for others to read
            os.replace(path, folder / path.name)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


# ---- resumable training state ----------------------------------------------------------------------
def save_state(folder: Path, state: dict[str, Any]) -> None:
    """Everything needed to continue bit-for-bit: weights, optimizer, scheduler, RNG, data position."""
    with atomic_folder(folder) as temp:
        torch.save(state, temp / "state.pt")


def load_state(folder: Path) -> dict[str, Any]:
    # Our own file, but weights_only keeps a tampered one from running code.
    return torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
