"""Shared by the benchmarks: a batch of real text and a device-aware clock."""

from __future__ import annotations

import torch


def make_batch(lm, batch: int, length: int) -> torch.Tensor:
    """[batch, length] token ids of the English UDHR (repeated as needed), BOS first, on the model's device."""
    from babel_lib import corpus

    text = " ".join(corpus.texts("eng", "all"))
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    need = batch * (length - 1)
    ids = (ids * (need // len(ids) + 1))[:need]
    bos = lm.tokenizer.bos_token_id if lm.tokenizer.bos_token_id is not None else ids[0]
    rows = [[bos] + ids[i * (length - 1):(i + 1) * (length - 1)] for i in range(batch)]
    return torch.tensor(rows, device=lm.device)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a wall-clock reading covers it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
