"""The foundations every layer uses: errors, input checks, the definitions, the FFN adapter table, hooks and the
one batch loop, model loading, the cache, the book's paths and the claims with their verdict rule set.

Modules: errors, validate, definitions, adapters, hooks, models, cache, paths, claims. Import them by name
(``from babel_lib.core import errors``).
"""

__all__ = ["errors", "validate", "definitions", "adapters", "hooks", "models", "cache", "paths", "claims"]
