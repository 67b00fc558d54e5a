"""Shared by the benchmarks: a device-aware clock."""

from __future__ import annotations

import torch


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a wall-clock reading covers it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
