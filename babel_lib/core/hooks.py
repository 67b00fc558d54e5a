"""Hooks on the FFN and the one loop that runs token sequences through a model in batches.

- :func:`ffn_pre_hooks` calls ``fn(layer, a)`` with every layer's neuron values
  ``a`` [batch, seq, n_neurons]; ``fn`` may return a replacement tensor.
- :func:`module_pre_hooks` registers forward pre-hooks on any modules (e.g. each layer's up
  projection, whose input is the FFN input a router scores).
- :func:`experts_contiguous` permutes each layer's neurons once so that every expert
  of a partition is a contiguous block (expert e = columns [e*size, (e+1)*size));
  the model's outputs are unchanged, and group sums become a reshape.
- :class:`BatchRunner` is the counting loop every caller shares: sequences sorted by length,
  right-padded batches, the rows to count (no padding, no BOS) published as
  :attr:`BatchRunner.current` for the hooks to read, the forward under inference mode.

Every context manager removes its hooks (and restores weights) on exit, even on error.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from babel_lib.core.adapters import backbone, ffn_layers


@contextmanager
def module_pre_hooks(modules: list[torch.nn.Module], fns: list[Callable]) -> Iterator[None]:
    """Register ``fns[i]`` as a forward pre-hook ``fn(module, args)`` of ``modules[i]`` for the block."""
    handles = []
    try:
        for module, fn in zip(modules, fns):
            handles.append(module.register_forward_pre_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def ffn_pre_hooks(model: torch.nn.Module, fn: Callable[[int, torch.Tensor], torch.Tensor | None]) -> Iterator[None]:
    """Call ``fn(layer, a)`` before every layer's down projection, a [batch, seq, n_neurons] its input
    (the neuron values); a tensor returned by ``fn`` replaces ``a``."""

    def make(index: int):
        def hook(_module, args):
            out = fn(index, args[0])
            if out is not None:
                return (out,) + tuple(args[1:])
            return None

        return hook

    layers = ffn_layers(model)
    with module_pre_hooks([layer.down for layer in layers], [make(layer.index) for layer in layers]):
        yield


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


@contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch CPU threads (None: leave as is), then restore the setting.

    Many small tensor operations (clustering steps, batched statistics, tiny models) are several
    times faster on one thread than on a busy multi-core pool, where thread hand-offs dominate."""
    old = torch.get_num_threads()
    if n is None or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ---------------------------------------------------------------------------- batches
def pad_id(tokenizer) -> int:
    """The padding token: the tokenizer's pad token, else its EOS, else 0 (padding is never counted)."""
    for candidate in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if candidate is not None:
            return int(candidate)
    return 0


def check_batch_size(batch_size) -> int:
    """``batch_size`` as a positive int, or ValueError saying what is wrong."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer (sequences per forward pass), got {batch_size!r}")
    return batch_size


def batches_by_length(seqs: list[list[int]], batch_size: int) -> Iterator[list[int]]:
    """Indices of ``seqs`` in batches of similar length (longest first; ties in list order)."""
    check_batch_size(batch_size)
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    for i in range(0, len(order), batch_size):
        yield order[i:i + batch_size]


def pad_batch(batch: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists: input_ids and attention_mask, int64 [len(batch), longest] on the CPU."""
    width = max(len(s) for s in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    attn = torch.zeros((len(batch), width), dtype=torch.long)
    for i, s in enumerate(batch):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attn[i, : len(s)] = 1
    return ids, attn


@dataclass
class Batch:
    """One batch in flight.

    index: positions of its sequences in the full list, in batch order.
    input_ids, attention_mask: int64 [B, T] on the model's device.
    counted: bool [B, T] on the CPU, the tokens to count (no padding; no first token when
    the runner skips BOS). rows: flat indices into B*T of the counted tokens, int64 [R] on the
    device; row_sequence: for each counted row the index of its sequence in the full list [R].
    """

    index: list[int]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    counted: torch.Tensor
    rows: torch.Tensor
    row_sequence: torch.Tensor

    @property
    def n_counted(self) -> int:
        return int(self.rows.numel())


class BatchRunner:
    """Run token sequences through ``lm`` in right-padded batches of similar length.

    Iterating yields ``(batch, output)`` after each forward; inside the forward, hooks read
    :attr:`current` (the :class:`Batch` in flight) to know which positions count. The backbone
    runs without its LM head unless ``full_model`` (logits wanted). ``skip_first``: the first
    position of every sequence is not counted (it holds BOS when the tokenizer has one).
    Sequences must not be empty.
    """

    def __init__(self, lm, seqs: list[list[int]], batch_size: int = 8, *, full_model: bool = False,
                 skip_first: bool | None = None):
        self.lm = lm
        self.seqs = seqs
        self.batch_size = check_batch_size(batch_size)
        self.full_model = full_model
        if skip_first is None:
            skip_first = getattr(lm.tokenizer, "bos_token_id", None) is not None
        self.skip_first = skip_first
        self.current: Batch | None = None
        self.tokens = 0

    def __len__(self) -> int:
        return -(-len(self.seqs) // self.batch_size)

    def batches(self) -> Iterator[Batch]:
        """The batches without running the model (device tensors included)."""
        device = self.lm.device
        pad = pad_id(self.lm.tokenizer)
        for index in batches_by_length(self.seqs, self.batch_size):
            ids, attn = pad_batch([self.seqs[i] for i in index], pad)
            counted = attn.bool()
            if self.skip_first:
                counted[:, 0] = False
            flat = counted.reshape(-1).nonzero().squeeze(1)
            owner = torch.tensor(index, dtype=torch.long).repeat_interleave(ids.shape[1])[flat]
            yield Batch(index, ids.to(device), attn.to(device), counted, flat.to(device, non_blocking=True),
                        owner.to(device, non_blocking=True))

    @torch.inference_mode()
    def __iter__(self) -> Iterator[tuple[Batch, object]]:
        model = self.lm.model if self.full_model else backbone(self.lm.model)
        try:
            for batch in self.batches():
                self.current = batch
                out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
                self.tokens += batch.n_counted
                yield batch, out
        finally:
            self.current = None


def run_all(runner: BatchRunner, contexts: list = (), progress=None) -> int:
    """Run every batch of ``runner`` with ``contexts`` (context managers, e.g. hooks) held open;
    returns the number of counted tokens. ``progress``: a tqdm bar advanced by counted tokens."""
    with ExitStack() as stack:
        for ctx in contexts:
            stack.enter_context(ctx)
        for batch, _ in runner:
            if progress is not None:
                progress.update(batch.n_counted)
    return runner.tokens
