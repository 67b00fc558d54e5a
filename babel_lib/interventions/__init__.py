"""Changing the model and measuring it: held-out perplexity and bits per character (``evaluate``), pruning plans
and masks (``prune``), routers, timing, fine-tuning (``tune``), generated answers, and the pruning experiment
of chapters 8-10 (``applications``).

Modules: evaluate, prune, routing, timing, tune, answers, applications. Import them by name (``from
babel_lib.interventions import evaluate``).
"""

__all__ = ["evaluate", "prune", "routing", "timing", "tune", "answers", "applications"]
