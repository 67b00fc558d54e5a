"""The definitions every count rests on, in one place (each a field of :class:`Definitions`).

- expert score of a token: ``s_e = sum_{i in e} |a_i|`` over the expert's neuron values ``a``
  (the input of the down projection), accumulated in float32; ``score='relu'``: ``sum max(a_i, 0)``;
- activated: the expert is among the top ``k = active_count(top_k_fraction, n_experts)``
  experts of its layer for that token (default 0.2, MoEfication's level; our choice), or, with
  ``activation='threshold'``, its mean neuron score ``s_e / size`` exceeds ``threshold``;
- frequency ``f[lang, layer, expert]`` = tokens of lang on which the expert is activated /
  tokens of lang (padding and BOS excluded).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

#: Default share of a layer's experts activated per token (MoEfication's level; our choice).
TOP_K_FRACTION = 0.2


def active_count(fraction, n: int) -> int:
    """How many of ``n`` experts a top-``fraction`` rule keeps: ``floor(fraction * n + 0.5)`` (half
    rounds up, never Python's round-half-to-even), at least 1 and at most n. The one definition of k
    used by counting, analysis, pruning and routing."""
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < float(fraction) <= 1:
        raise ValueError(f"top_k_fraction must be a number in (0, 1], got {fraction!r}")
    return max(1, min(int(n), int(math.floor(float(fraction) * n + 0.5))))


@dataclass(frozen=True)
class Definitions:
    """How an expert's activation is scored and decided (see the module docstring)."""

    score: str = "abs"
    activation: str = "topk"
    top_k_fraction: float = TOP_K_FRACTION
    threshold: float | None = None

    def __post_init__(self):
        if self.score not in ("abs", "relu"):
            raise ValueError(f"score must be 'abs' or 'relu', got {self.score!r}")
        if self.activation not in ("topk", "threshold"):
            raise ValueError(f"activation must be 'topk' or 'threshold', got {self.activation!r}")
        if self.activation == "topk":
            active_count(self.top_k_fraction, 1)  # validates the fraction
        if self.activation == "threshold" and (self.threshold is None or not math.isfinite(self.threshold)):
            raise ValueError("activation='threshold' needs a finite threshold (mean |a| per neuron of the expert)")

    def k(self, n_experts: int) -> int:
        """Experts activated per token under the top-k rule (:func:`active_count`)."""
        return active_count(self.top_k_fraction, n_experts)

    def describe(self) -> str:
        rule = (f"top {self.top_k_fraction:.0%} of a layer's experts per token" if self.activation == "topk"
                else f"mean |a| per neuron > {self.threshold}")
        return f"score sum {'|a|' if self.score == 'abs' else 'max(a, 0)'} over an expert's neurons; activated = {rule}"
