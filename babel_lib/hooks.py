"""Hook context managers on the FFN down projections (removed on exit, even on error).

- :func:`ffn_pre_hooks` calls ``fn(layer, a)`` with every layer's neuron values
  ``a`` [batch, seq, n_neurons]; ``fn`` may return a replacement tensor.
- :func:`experts_contiguous` permutes each layer's neurons once so that every expert
  of a partition is a contiguous block (expert e = columns [e*size, (e+1)*size));
  the model's outputs are unchanged, and group sums become a reshape.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from .adapters import ffn_layers


@contextmanager
def ffn_pre_hooks(model: torch.nn.Module, fn: Callable[[int, torch.Tensor], torch.Tensor | None]) -> Iterator[None]:
    """Register a forward pre-hook on every layer's down projection for the duration of the block."""
    handles = []

    def make(index: int):
        def hook(_module, args):
            out = fn(index, args[0])
            if out is not None:
                return (out,) + tuple(args[1:])
            return None

        return hook

    try:
        for layer in ffn_layers(model):
            handles.append(layer.down.register_forward_pre_hook(make(layer.index)))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def experts_contiguous(model: torch.nn.Module, partition) -> Iterator[None]:
    """Reorder neurons so each expert is a contiguous block; restore the original order on exit."""
    layers = ffn_layers(model)
    done = []
    try:
        for layer in layers:
            order = partition.order(layer.index)
            layer.select_neurons(order)
            done.append((layer, order))
        yield
    finally:
        for layer, order in done:
            layer.select_neurons(torch.argsort(order))
