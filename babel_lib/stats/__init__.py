"""Statistics: intervals, nulls and tests, and distances between activation profiles.

``babel_lib.stats.<name>`` is the public API of :mod:`babel_lib.stats.inference` (bootstrap over passages,
crossed bootstrap over languages and passages, nulls that keep each expert's busyness, multiple testing,
how numbers are written in prose) and of the permutation tests it re-exports. Modules: inference,
permutation, distances (Hellinger distances, noise floor), analysis (frequencies, high-frequency experts,
depth thirds), compare (two profiles of one model), family_tests (family, tree and script tests).
"""

from babel_lib.stats.inference import *  # noqa: F401,F403 (the public API, listed in inference.__all__)
from babel_lib.stats.inference import __all__  # noqa: F401
