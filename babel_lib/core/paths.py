"""Where the book lives: the repository root and its folders (one place, read by the runner and the charts)."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository root (the folder holding notebooks/ and book/); override with BABEL_ROOT.
ROOT = Path(os.environ.get("BABEL_ROOT") or Path(__file__).resolve().parents[2])
NOTEBOOKS_DIR = ROOT / "notebooks"
BOOK_DIR = ROOT / "book"
CONFIG = ROOT / "_config.yml"
#: Where a failed run's notebook (with its traceback) is kept; ignored by git.
FAILED_DIR = ROOT / "artifacts" / "failed"
#: Runs with other profiles or parameters (never over the committed book), and `babel verify`.
RUNS_DIR = ROOT / "runs"
#: The library's folder: the code and data a chapter's numbers depend on beyond its own source (hashed
#: into its stamp, every subpackage included).
LIBRARY_DIR = Path(__file__).resolve().parents[1]
