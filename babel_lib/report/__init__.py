"""What a chapter shows: Altair charts and formatted tables (``plots``), verdict tables, the Answer box and the
scorecard (``verdicts``, which re-exports the verdict rows of :mod:`babel_lib.core.claims`).

Modules: plots, verdicts. Import them by name (``from babel_lib.report import plots``).
"""

__all__ = ["plots", "verdicts"]
