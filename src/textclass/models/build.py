"""A family's nn.Module with its weights loaded: built on the meta device, the tensors then become its parameters
(one copy of the weights in memory), head parameters a bare encoder lacks initialised as transformers does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from textclass.errors import CheckpointError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from textclass.models.config import EncoderConfig
    from textclass.models.family import Family


def build_module(
    family: Family,
    config: EncoderConfig,
    state: dict[str, Any],
    new_head: list[str],
    sources: Mapping[str, str],
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """The family's module in eval mode. state: our parameter name -> tensor (the weight table's output);
    new_head: parameters to initialise (seed 0); sources: checkpoint name -> ours, for shape errors."""
    import torch

    dtype = dtype or torch.float32
    with torch.device("meta"):
        model = family.build(config)
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
    init_parameters(model, new_head, config.initializer_range, seed=0)
    return model.eval()


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
