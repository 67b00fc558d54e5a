"""MoEfication and profiling: balanced k-means partitions, pinned partitions, counting which experts each
language activates (``profile``), the cached study of a chapter (``pipeline.study``) and partition quality.

Modules: clustering, moefy, profile, pipeline, quality. Import them by name (``from babel_lib.experts import
clustering``).
"""

__all__ = ["clustering", "moefy", "profile", "pipeline", "quality"]
