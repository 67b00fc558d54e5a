"""One module per chapter, named after its notebook (``04_shared_specific.ipynb`` -> ``shared_specific``): the
chapter's experiment steps, the facts its prose quotes and its verdict rows. A chapter module may import any
layer below it and another chapter's module; nothing below imports a chapter.

Modules: moefication, heatmaps, high_frequency, shared_specific, families, model_families, instruction_tuning,
pruning, layerwise_pruning, sparse_activation, language_or_text, language_experts, robustness_map. Import them
by name (``from babel_lib.chapters import moefication``).
"""

__all__ = ["moefication", "heatmaps", "high_frequency", "shared_specific", "families", "model_families",
           "instruction_tuning", "pruning", "layerwise_pruning", "sparse_activation", "language_or_text",
           "language_experts", "robustness_map"]
