"""The book: the papermill runner with its parameter profiles, freshness and the ``babel`` command's work
(``runner``), the reproduction contract checked by ``babel verify`` (``reproduction``), and the book's
stylesheet (``book.css``). Nothing below this layer imports it.

``babel_lib.book.<name>`` for a name of :mod:`babel_lib.book.runner` still works for one release, with a
DeprecationWarning: import ``babel_lib.book.runner`` instead.
"""

import importlib
import warnings

__all__ = ["runner", "reproduction"]


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    runner = importlib.import_module("babel_lib.book.runner")
    if not hasattr(runner, name):
        raise AttributeError(f"module 'babel_lib.book' has no attribute {name!r}")
    warnings.warn(f"babel_lib.book.{name} moved to babel_lib.book.runner.{name}; the old path goes in the next "
                  "release", DeprecationWarning, stacklevel=2)
    return getattr(runner, name)
