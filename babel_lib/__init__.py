"""babel_lib: MoEfication, expert-activation profiling, analysis and pruning of dense LLMs.

Layers, each importing only the layers before it (a test reads the imports): ``core`` (errors, checks,
definitions, adapters, hooks, models, cache, paths, claims), ``data`` (corpora), ``stats``, ``experts``
(partitions, profiles, studies), ``interventions`` (evaluation, pruning, routing, tuning), ``report``
(charts, verdict tables), ``chapters`` (one module per notebook), ``book`` (runner, command line) and
``testing`` (tiny models for tests).

The flat module paths of the previous release (``babel_lib.profile``, ``babel_lib.prune.load_pruned``, ...)
still import for one release, with a DeprecationWarning naming the new path (:data:`MOVED`).
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# tqdm.auto (imported by dependencies) warns inside notebooks without ipywidgets; bars still work.
warnings.filterwarnings("ignore", message="IProgress not found")

#: Old flat module -> its module now (merged modules point at the chapter module that holds them).
MOVED = {
    "errors": "core.errors", "validate": "core.validate", "definitions": "core.definitions",
    "adapters": "core.adapters", "hooks": "core.hooks", "models": "core.models", "cache": "core.cache",
    "corpus": "data.corpus", "bible": "data.bible", "genealogy": "data.genealogy", "instructions": "data.instructions",
    "permutation": "stats.permutation", "distances": "stats.distances", "analysis": "stats.analysis",
    "compare": "stats.compare", "family_tests": "stats.family_tests",
    "clustering": "experts.clustering", "moefy": "experts.moefy", "profile": "experts.profile",
    "pipeline": "experts.pipeline", "quality": "experts.quality",
    "evaluate": "interventions.evaluate", "prune": "interventions.prune", "routing": "interventions.routing",
    "timing": "interventions.timing", "tune": "interventions.tune", "answers": "interventions.answers",
    "applications": "interventions.applications", "plots": "report.plots", "verdicts": "report.verdicts",
    "heatmaps": "chapters.heatmaps", "high_frequency": "chapters.high_frequency",
    "sharing": "chapters.shared_specific", "families": "chapters.families",
    "model_families": "chapters.model_families", "model_sizes": "chapters.model_families",
    "tuning_pair": "chapters.instruction_tuning", "tuning_effect": "chapters.instruction_tuning",
    "sparse": "chapters.sparse_activation", "domains": "chapters.language_or_text",
    "language_experts": "chapters.language_experts", "robustness_map": "chapters.robustness_map",
    "reproduction": "book.reproduction",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``babel_lib.<old>`` as a copy of the module's namespace at its new path, with a warning."""

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, old = fullname.partition(".")
        if prefix == "babel_lib" and old in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        new = "babel_lib." + MOVED[module.__name__.partition(".")[2]]
        warnings.warn(f"{module.__name__} moved to {new}; the old path goes in the next release",
                      DeprecationWarning, stacklevel=2)
        module.__dict__.update({k: v for k, v in vars(importlib.import_module(new)).items()
                                if not k.startswith("__")})


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())
