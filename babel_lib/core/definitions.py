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
import re
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


# ---------------------------------------------------------------------------- byte-fallback languages
#: A language is "written mainly in byte-fallback tokens" under a tokenizer when more than this share
#: of its tokens are raw-byte pieces (our rule; under Gemma 3's tokenizer the 120 UDHR languages of
#: chapters 03-05 split at a gap: 7 at 0.51-0.99 on their profiled passages, the next at 0.14).
BYTE_FALLBACK_SHARE = 0.5

_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def byte_token_counts(tokenizer, texts: list[str]) -> tuple[int, int]:
    """(raw-byte tokens, all tokens) of ``texts`` under ``tokenizer``, special tokens excluded.
    A raw-byte token is a SentencePiece byte-fallback piece ``<0xNN>``; byte-level BPE vocabularies
    (GPT-2 style, e.g. SmolLM2's) have none, so every language there counts 0."""
    byte = total = 0
    for text in texts:
        pieces = tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])
        total += len(pieces)
        byte += sum(1 for p in pieces if isinstance(p, str) and _BYTE_PIECE.fullmatch(p))
    return byte, total
