"""The book runner: parameter profiles, papermill execution, freshness stamps, the build.

Chapters are parameterised notebooks ``notebooks/NN_topic.ipynb`` (a cell tagged
``parameters``). :func:`run_chapter` executes one with papermill into ``book/NN_topic.ipynb``
(atomically) and stamps the copy's metadata with what produced it; :func:`check_fresh` finds
executed copies that no longer match their source; :func:`build_book` renders ``book/`` with
Jupyter Book 1.x, warnings as errors.

Relative paths given to these functions are resolved against the repository root
(:data:`ROOT`), not the current directory, so the command line works from anywhere.
Heavy imports (papermill, nbformat) happen inside the functions: ``babel build`` needs only
jupyter-book and vl-convert.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from babel_lib.core.errors import BabelError, InputError

if TYPE_CHECKING:  # pandas is imported where tables are built, not when the CLI starts
    import pandas as pd

from babel_lib.core.paths import BOOK_DIR, CONFIG, FAILED_DIR, LIBRARY_DIR, NOTEBOOKS_DIR, ROOT, RUNS_DIR  # noqa: F401

#: The vega bundle the offline charts load (see babel_lib.report.plots), relative to the site
#: root; build_book writes it into the built site (not into book/_static, whose scripts
#: Jupyter Book would load on every page).
VEGA_BUNDLE = Path("_static") / "babel-vega.js"

#: Parameter profiles. A chapter receives a value only if its `parameters` cell declares
#: that name; anything a profile leaves out keeps the notebook's own default.
PROFILES: dict[str, dict] = {
    # Tests and CI: seconds to a minute a chapter on 2 CPU cores.
    "smoke": {
        "model": "gemma-3-270m",
        "models": ["gemma-3-270m", "smollm2-135m-instruct"],
        "languages": ["eng", "fra", "cmn_hans"],
        "max_passages": 4,
        "seeds": [0, 1],
        "seed": 0,
        "n_resamples": 50,
        "permutations": 99,
        "bible_passages": 2,
        "batch_size": 4,
        "max_length": 64,
        "dtype": "float32",
        "device": "cpu",
        # chapter 07: two tuning steps, one example a task and language pair, short answers
        "tune_steps": 2,
        "loss_examples": 1,
        "answer_examples": 1,
        "max_new_tokens": 8,
        # the application chapters' grids (08-10), shrunk to one point each
        "min_tokens": 64,
        "calibration_tokens": 300,
        "rates": [0.3],
        "random_seeds": [0, 1],
        "random_tokens": 48,
        "cross_rates": [0.3],
        "matrix_rate": 0.3,
        "matrix_languages": ["eng", "fra"],
        "keep_fractions": [0.5],
        "timing_batch": 1,
        "timing_rounds": 1,
        "router_steps": 20,
        # chapter 12: a few experts, controls, prompts and tokens; a handful of languages for the routing part
        "m_experts": 4,
        "n_controls": 2,
        "eval_tokens": 48,
        "n_prompts": 2,
        "gen_tokens": 6,
        "n_gen_controls": 1,
        "steer_passages": 2,
        "wide_languages": "families:8",
        "wide_passages": 3,
        "wide_eval_tokens": 32,
        "wide_max_tokens": 48,
        # chapter 05: a few sister trios; the Bible stratum on three languages
        "sister_trios": 3,
        "bible_languages": ["eng", "fra", "cmn_hans"],
        # chapter 06: no size series (its packages are opt-in; the size path is tested on tiny qwen2 models)
        "size_models": [],
    },
    # The book as committed: the offline default model on CPU, minutes a chapter.
    # Budgets and language sets stay the notebooks' own defaults. float32: bfloat16 is faster
    # only on CPUs with bf16 instructions (about twice on an AVX-512 BF16 machine, several times
    # slower on AVX2-only ones), and it moves counts at the top-k boundary and the pruning
    # chapters' paired log-ratios by as much as the effects they compare (README, "The bfloat16
    # lever"; benchmarks/bench_eval_dtype.py).
    "default": {
        "model": "gemma-3-270m",
        "models": ["gemma-3-270m", "smollm2-135m-instruct"],
        "seed": 0,
        "dtype": "float32",
        "device": "cpu",
    },
    # A GPU setting close to the paper: a 7B model, its nine languages, bigger budgets.
    # Needs the model on the Hugging Face hub (or a local folder passed with -p model PATH).
    "paper": {
        "model": "meta-llama/Llama-2-7b-hf",
        "models": ["meta-llama/Llama-2-7b-hf", "mistralai/Mistral-7B-v0.1"],
        # chapter 7: a published base/chat pair instead of tuning here
        "base_model": "meta-llama/Llama-2-7b-hf",
        "tuned_model": "meta-llama/Llama-2-7b-chat-hf",
        "languages": "paper",
        "expert_size": 32,
        "top_k_fraction": 0.2,
        "n_resamples": 2000,
        "permutations": 9999,
        # chapters 08-10: long evaluation, more rates, seeds and keep fractions, the full matrix
        "min_tokens": 50_000,
        "calibration_tokens": 50_000,
        "rates": [0.05, 0.1, 0.2, 0.3, 0.5],
        "random_seeds": list(range(10)),
        "random_tokens": 5_000,
        "matrix_languages": ["eng", "fra", "spa", "por_pt", "ben", "urd", "hin", "arb", "cmn_hans"],
        "keep_fractions": [0.9, 0.8, 0.7, 0.5],
        "timing_rounds": 11,
        # chapter 12: more experts, controls, evaluation text and prompts, longer generations
        "m_experts": 32,
        "n_controls": 20,
        "eval_tokens": 5_000,
        "n_prompts": 64,
        "gen_tokens": 48,
        "n_gen_controls": 5,
        "steer_passages": 64,
        "wide_languages": "families:200",
        "wide_passages": 20,
        "wide_eval_tokens": 1_000,
        "wide_max_tokens": 2_000,
        "batch_size": 16,
        "max_length": 512,
        "seed": 0,
        "dtype": "bfloat16",
        "device": "cuda",
    },
}

_CHAPTER_RE = re.compile(r"^(\d\d)_[A-Za-z0-9_]+$")


class ChapterError(BabelError, RuntimeError):
    """A chapter failed to execute (or the book failed to build); the previous executed copy is left unchanged."""


def _relative(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def resolve_path(path) -> Path:
    """A path given to the runner: relative paths are relative to the repository root (:data:`ROOT`)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else ROOT / path


_resolve = resolve_path


# ---------------------------------------------------------------------------- chapters
def chapters(notebooks_dir=NOTEBOOKS_DIR) -> list[Path]:
    """The chapter sources ``NN_topic.ipynb`` in *notebooks_dir*, sorted by number."""
    notebooks_dir = _resolve(notebooks_dir)
    if not notebooks_dir.is_dir():
        return []
    found = [p for p in notebooks_dir.glob("*.ipynb") if _CHAPTER_RE.match(p.stem)]
    return sorted(found, key=lambda p: (int(p.stem[:2]), p.stem))


def find_chapter(name_or_path, notebooks_dir=NOTEBOOKS_DIR) -> Path:
    """A chapter source from a path, a full name ('01_moefication') or its number ('01', '1')."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix == ".ipynb" and (path.exists() or path.is_absolute()):
        if not path.exists():
            raise FileNotFoundError(f"no notebook {path}")
        return path.resolve()
    stem = path.stem if path.suffix == ".ipynb" else text
    # drafts/: chapters written but not yet executed into the book (not in the toc, not
    # checked for freshness); runnable by name, e.g. by the tests' smoke runs.
    sources = chapters(notebooks_dir) + chapters(_resolve(notebooks_dir) / "drafts")
    for p in sources:
        if p.stem == stem or (stem.isdigit() and int(p.stem[:2]) == int(stem)):
            return p
    names = ", ".join(p.stem for p in sources) or "none"
    raise InputError(f"unknown chapter {text!r}; chapters in {_resolve(notebooks_dir)}: {names}")


def source_sha256(notebook) -> str:
    """Hash of a notebook's cell types and sources (outputs and metadata ignored)."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    h = hashlib.sha256()
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        h.update(json.dumps([cell.get("cell_type"), src]).encode("utf-8"))
    return h.hexdigest()


def library_sha256(library_dir=LIBRARY_DIR) -> str:
    """Hash of the library a chapter runs with: every ``*.py`` file and every file under ``data/``
    (corpus, metadata, pinned partitions), by relative path and content."""
    library_dir = Path(library_dir)
    files = sorted(p for p in library_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                   and (p.suffix == ".py" or "data" in p.relative_to(library_dir).parts))
    h = hashlib.sha256()
    for path in files:
        h.update(path.relative_to(library_dir).as_posix().encode("utf-8") + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def declared_parameters(notebook) -> dict:
    """Names (and papermill's info) declared in the notebook's `parameters` cell."""
    import papermill

    return dict(papermill.inspect_notebook(str(notebook)))


def resolve_parameters(notebook, profile="default", overrides=None) -> dict:
    """The parameters a run passes: profile values and overrides the notebook declares, checked
    against the types of the notebook's declared defaults and the ranges of
    :data:`babel_lib.core.validate.PARAMETER_RULES` (InputError naming the parameter) and, for the
    language lists, resolved against the corpus (UnknownLanguageError) -- before any kernel starts."""
    from babel_lib.core.validate import check_parameters
    from babel_lib.data.corpus import check_languages

    if profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r}; profiles: {', '.join(PROFILES)}")
    wanted = {**PROFILES[profile], **(overrides or {})}
    declared = declared_parameters(notebook)
    params = check_parameters(declared, {k: v for k, v in wanted.items() if k in declared})
    corpus_name = params.get("corpus_name", "udhr")
    for name, corpus in (("languages", corpus_name), ("matrix_languages", corpus_name), ("wide_languages", "udhr"),
                         ("bible_languages", "bible")):
        if name in params:
            check_languages(params[name], corpus)
    return params


# ---------------------------------------------------------------------------- running
@contextlib.contextmanager
def _environ(**values):
    """Set environment variables for the block (the kernel inherits them)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _kernel_manager_class():
    """A kernel manager that always starts ipykernel in this interpreter (this venv),
    whatever `python3` kernelspec a user may have installed elsewhere."""
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec

    class HereKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            # local sockets instead of TCP: nothing listens on the network, and ipykernel has no
            # reason to warn about unencrypted TCP on every run
            kwargs.setdefault("transport", "ipc")
            super().__init__(**kwargs)

        @property
        def kernel_spec(self):
            return KernelSpec(
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name="Python 3 (ipykernel)",
                language="python",
            )

    return HereKernelManager


def stage_folder(output_dir: Path, stem: str) -> Path:
    """A new hidden staging folder for chapter *stem* in *output_dir*, named by this process; the
    stale ones a killed run of the chapter left there are removed first (never a run in progress)."""
    from babel_lib.core.cache import temporary_prefix, remove_stale_temporaries

    remove_stale_temporaries(output_dir, stem)
    return Path(tempfile.mkdtemp(prefix=temporary_prefix(output_dir / stem), suffix=".stage", dir=output_dir))


def run_chapter(name_or_path, profile="default", overrides=None, output_dir=BOOK_DIR,
                *, notebooks_dir=NOTEBOOKS_DIR, progress_bar=True) -> Path:
    """Execute one chapter with papermill into ``output_dir/NN_topic.ipynb``; return its path.

    Only parameters the notebook declares are passed (others are reported and ignored).
    The kernel runs in this interpreter with cwd = the repository root; the environment
    tells babel_lib.report.plots where the book is (BABEL_BOOK_DIR), which chapter runs
    (BABEL_CHAPTER) and to emit the offline book rendering (BABEL_RENDER=book).
    The notebook and the chapter's results/ are written to a hidden staging folder and
    moved into place only on success (stale result files of earlier runs disappear);
    on failure the notebook with the traceback is copied to artifacts/failed/, the
    previous executed copy and results stay, and :class:`ChapterError` is raised.
    """
    import nbformat
    import papermill

    source = find_chapter(name_or_path, notebooks_dir)
    output_dir = _resolve(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / source.name
    overrides = dict(overrides or {})
    params = resolve_parameters(source, profile, overrides)
    ignored = sorted(set(overrides) - set(params))
    if ignored:
        print(f"{source.stem}: does not declare {', '.join(ignored)} (ignored)", file=sys.stderr)

    # Everything the run writes goes to a hidden staging folder first: the notebook and
    # results/<chapter>/ (plots write under $BABEL_BOOK_DIR). Only a successful run
    # replaces the executed copy and that chapter's results.
    sha = source_sha256(source)
    library = library_sha256()
    stage = stage_folder(output_dir, source.stem)
    tmp = stage / source.name
    env = {
        "BABEL_BOOK_DIR": stage,
        "BABEL_CHAPTER": source.stem,
        "BABEL_RENDER": "book",
        # progress bars inside the kernel are invisible here and clutter the book
        "TQDM_DISABLE": "1",
    }
    try:
        with _environ(**env):
            papermill.execute_notebook(
                str(source), str(tmp), parameters=params, cwd=str(ROOT),
                progress_bar=progress_bar, kernel_manager_class=_kernel_manager_class(),
            )
    except BaseException as err:
        failed = None
        if tmp.exists() and tmp.stat().st_size:
            FAILED_DIR.mkdir(parents=True, exist_ok=True)
            failed = FAILED_DIR / source.name
            shutil.copyfile(tmp, failed)
        shutil.rmtree(stage, ignore_errors=True)
        if not isinstance(err, Exception):
            raise
        kept = f"; previous executed copy kept: {target}" if target.exists() else ""
        where = f"; notebook with the traceback: {failed}" if failed else ""
        raise ChapterError(f"chapter {source.stem} failed ({profile} profile): {err}{where}{kept}") from err

    try:
        nb = nbformat.read(tmp, as_version=4)
        nb.metadata["babel"] = {
            "source": _relative(source),
            "source_sha256": sha,
            "library_sha256": library,
            "parameters": params,
            "profile": profile,
            "executed_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        # papermill records absolute paths of this machine: keep them repository-relative
        pm = nb.metadata.get("papermill", {})
        pm["input_path"] = _relative(source)
        pm["output_path"] = _relative(target)
        reader_view(nb, stage / "results" / source.stem)
        nbformat.write(nb, tmp)
        _readable(tmp)
        _swap_dir(stage / "results" / source.stem, output_dir / "results" / source.stem, stage)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return target


def reader_view(nb, results_dir) -> None:
    """What a reader of the book sees of an executed chapter (*nb*, an nbformat notebook, changed in place):

    * papermill's injected-parameters cell is removed from the page (tag ``remove-cell``): the run's
      parameters are stamped in the metadata, and the chapter's own text reports what it ran on;
    * the notebook's own parameters cell is folded (``hide-cell``: a "Show code cell" button);
    * an Answer box (:func:`babel_lib.report.verdicts.answer_cell_source`) generated from the chapter's
      ``results_dir/verdicts.csv`` is put right after the first Markdown cell (title and overview), before
      the method, replacing one an earlier pass put there. No verdicts file: no box.
    """
    import nbformat

    def tag(cell, name):
        tags = list(cell.metadata.get("tags", []))
        if name not in tags:
            cell.metadata["tags"] = tags + [name]

    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags:
            tag(cell, "remove-cell")
        elif "parameters" in tags:
            tag(cell, "hide-cell")
    nb.cells = [c for c in nb.cells if c.metadata.get("babel") != "answer"]
    path = Path(results_dir) / "verdicts.csv"
    if not path.exists():
        return
    import pandas as pd

    from babel_lib.report.verdicts import answer_cell_source

    frame = pd.read_csv(path, keep_default_na=False)
    if frame.empty:
        return
    cell = nbformat.v4.new_markdown_cell(answer_cell_source(frame), metadata={"babel": "answer"})
    first = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
    nb.cells.insert(first + 1, cell)


def markdown_outputs(notebook) -> str:
    """The Markdown a notebook's cells displayed (its generated prose: findings, captions), joined."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    texts = []
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            md = output.get("data", {}).get("text/markdown")
            if md:
                texts.append("".join(md) if isinstance(md, list) else md)
    return "\n".join(texts)


_NUMBER = re.compile(r"(?<![\w.^/])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?%?(?![\w])")


def _numbers(text: str) -> list[tuple[str, str]]:
    """Every decimal number written in *text*: (as written, plain digits without thousands commas).
    Numbers glued to letters (a model name's '270M', 'v1') and powers ('2^n') are not numbers here."""
    return [(m.group(0), m.group(1).replace(",", "") + (m.group(2) or "")) for m in _NUMBER.finditer(text)]


def _produced_text(nb: dict) -> str:
    """What a run wrote or was given: every output's text, plus the parameters and injected-parameters
    cells' source."""
    parts = []
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] == "code" and ({"parameters", "injected-parameters"} & set(tags)):
            parts.append("".join(cell["source"]))
        for output in cell.get("outputs", []):
            if "text" in output:
                parts.append("".join(output["text"]))
            for kind, value in output.get("data", {}).items():
                if kind.startswith("text/"):
                    parts.append("".join(value) if isinstance(value, list) else value)
    return "\n".join(parts)


def hand_typed_numbers(executed) -> list[str]:
    """Numbers in the Markdown cells of an executed chapter that its run did not produce: each one a
    figure typed by hand that a rerun with other parameters would leave wrong.

    A written number is produced when the run's outputs or its parameters hold it: an integer as the
    same integer; a decimal as any produced number (or that number x100 or /100, for percentages)
    that rounds to it at its printed precision. Allowed without a source: integers up to 12 (chapter
    numbers, list positions, 'two halves'), years 1900-2099, '95%' (the level of every interval, the
    library's default), and anything in code spans or fenced
    blocks (commands, formulas). Numbers spelled in words are not seen (a known limit)."""
    nb = json.loads(Path(executed).read_text(encoding="utf-8"))
    produced = [digits for _, digits in _numbers(_produced_text(nb))]
    integers = {float(d) for d in produced if "." not in d}
    decimals = [float(d) for d in produced]
    found = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = re.sub(r"```.*?```", "", "".join(cell["source"]), flags=re.S)
        text = re.sub(r"`[^`]*`", "", text)
        for written, digits in _numbers(text):
            value = float(digits)
            places = len(digits.split(".")[1]) if "." in digits else 0
            if (places == 0 and value <= 12) or re.fullmatch(r"(19|20)\d\d", digits) or written == "95%":
                continue
            if places == 0:
                ok = value in integers
            else:
                ok = any(abs(round(c, places) - value) < 1e-9 for d in decimals for c in (d, d * 100, d / 100))
            if not ok:
                found.append(written)
    return found


def _swap_dir(new: Path, old: Path, trash: Path) -> None:
    """Put folder *new* in place of *old* (which may not exist); no *new*: remove *old*."""
    if old.exists():
        os.replace(old, trash / "replaced")
    if new.exists():
        old.parent.mkdir(parents=True, exist_ok=True)
        os.replace(new, old)


def run_all(profile="default", overrides=None, output_dir=BOOK_DIR, *,
            notebooks_dir=NOTEBOOKS_DIR, names=None, only_stale=False, dry_run=False) -> list[Path]:
    """Run every chapter (or those in *names*; with *only_stale* those of them that
    :func:`stale_chapters` names) in order, then regenerate the toc.

    A failing chapter does not stop the others; a :class:`ChapterError` naming all
    failures is raised at the end. *dry_run*: resolve and check everything (chapters, parameters,
    languages), print each chapter's parameters and return the paths the run would write, without
    starting a kernel.
    """
    sources = [find_chapter(n, notebooks_dir) for n in names] if names else chapters(notebooks_dir)
    if only_stale:
        stale = {p.stem for p in stale_chapters(output_dir, notebooks_dir=notebooks_dir, profile=profile)}
        sources = [s for s in sources if s.stem in stale]
    if overrides and sources:
        declared = set().union(*(declared_parameters(s) for s in sources))
        unused = sorted(set(overrides) - declared)
        if unused:
            raise InputError(f"no chapter declares {', '.join(unused)}")
    resolved = [resolve_parameters(source, profile, overrides) for source in sources]  # all checked first
    if dry_run:
        for source, params in zip(sources, resolved):
            print(f"{source.stem} ({profile} profile): {json.dumps(params)}", file=sys.stderr)
        return [_resolve(output_dir) / source.name for source in sources]
    done, failures = [], []
    for i, source in enumerate(sources, 1):
        print(f"[{i}/{len(sources)}] {source.stem} ({profile} profile)", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            done.append(run_chapter(source, profile, overrides, output_dir, notebooks_dir=notebooks_dir))
            print(f"[{i}/{len(sources)}] {source.stem}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        except ChapterError as err:
            print(f"FAILED after {time.perf_counter() - start:.0f} s: {err}", file=sys.stderr)
            failures.append(str(err))
    if all(s.parent.resolve() == _resolve(notebooks_dir).resolve() for s in sources):
        write_toc(output_dir, notebooks_dir)  # not for notebooks from elsewhere
        from babel_lib.report.verdicts import write_scorecard

        write_scorecard(_resolve(output_dir))
    if failures:
        raise ChapterError(f"{len(failures)} chapter(s) failed:\n" + "\n".join(failures))
    return done


# ---------------------------------------------------------------------------- freshness
def check_fresh(output_dir=BOOK_DIR, *, notebooks_dir=NOTEBOOKS_DIR, profile="default") -> list[str]:
    """Problems with the executed copies in *output_dir*; an empty list means all fresh.

    A problem: a source without an executed copy, a copy without a stamp, a copy whose
    stamped source hash differs from its source, a copy run with another profile or
    other parameters than *profile* gives now (skip this with profile=None), or an
    executed chapter whose source is gone.
    """
    output_dir = _resolve(output_dir)
    problems = []
    sources = chapters(notebooks_dir)
    for source in sources:
        copy = output_dir / source.name
        if not copy.exists():
            problems.append(f"{source.stem}: no executed copy {copy} (run: babel run {source.stem})")
            continue
        stamp = json.loads(copy.read_text(encoding="utf-8")).get("metadata", {}).get("babel")
        if not stamp:
            problems.append(f"{source.stem}: executed copy has no babel stamp (run: babel run {source.stem})")
            continue
        if stamp.get("source_sha256") != source_sha256(source):
            problems.append(f"{source.stem}: source changed since it was executed (run: babel run {source.stem})")
            continue
        if profile is not None:
            if stamp.get("profile") != profile:
                problems.append(f"{source.stem}: executed with profile {stamp.get('profile')!r}, not {profile!r}")
            elif stamp.get("parameters") != resolve_parameters(source, profile):
                problems.append(f"{source.stem}: parameters differ from the {profile!r} profile "
                                f"(stamped {stamp.get('parameters')})")
    names = {s.name for s in sources}
    for copy in sorted(output_dir.glob("*.ipynb")):
        if _CHAPTER_RE.match(copy.stem) and copy.name not in names:
            problems.append(f"{copy.stem}: executed copy without a source in notebooks/ (delete it)")
    return problems


def library_changes(output_dir=BOOK_DIR, *, notebooks_dir=NOTEBOOKS_DIR) -> list[str]:
    """Executed chapters run with another version of the library than the current one.

    These are warnings, not failures of :func:`check_fresh`: a library change can land before its
    chapters are re-executed; ``babel check-fresh --strict`` (used before a release) fails on them.
    """
    output_dir = _resolve(output_dir)
    current = library_sha256()
    found = []
    for source in chapters(notebooks_dir):
        copy = output_dir / source.name
        if not copy.exists():
            continue
        stamp = json.loads(copy.read_text(encoding="utf-8")).get("metadata", {}).get("babel") or {}
        if stamp and stamp.get("library_sha256") != current:
            found.append(f"{source.stem}: executed with another version of babel_lib (run: babel run {source.stem})")
    return found


def stale_chapters(output_dir=BOOK_DIR, *, notebooks_dir=NOTEBOOKS_DIR, profile="default") -> list[Path]:
    """Chapter sources whose executed copy is missing, stale (:func:`check_fresh`) or was run with
    another library version (:func:`library_changes`): what ``babel run --stale`` re-executes."""
    names = {line.split(":", 1)[0] for line in check_fresh(output_dir, notebooks_dir=notebooks_dir, profile=profile)
             + library_changes(output_dir, notebooks_dir=notebooks_dir)}
    return [s for s in chapters(notebooks_dir) if s.stem in names]


def default_output(profile="default", overrides=None) -> Path:
    """Where ``babel run`` writes when no folder is given: ``book/`` for the default profile without
    overrides (the committed book), else ``runs/<profile>/`` (``runs/custom/`` with overrides), so
    that trying other settings never overwrites the committed chapters."""
    if profile == "default" and not overrides:
        return BOOK_DIR
    return RUNS_DIR / ("custom" if profile == "default" else profile)


# ---------------------------------------------------------------------------- reproduction check
def verify_chapter(name_or_path, output_dir=None, *, book_dir=BOOK_DIR, notebooks_dir=NOTEBOOKS_DIR,
                   progress_bar=True) -> "pd.DataFrame":
    """Re-execute a chapter on the default profile into a scratch folder (``runs/verify/``) and
    compare every file of its results with the committed ones in ``book/results/<chapter>/`` under
    the reproduction contract (:func:`babel_lib.book.reproduction.compare_results`). Returns the
    comparison; rows with a status in :data:`babel_lib.book.reproduction.FAILING` mean the committed
    results were not reproduced."""
    source = find_chapter(name_or_path, notebooks_dir)
    book_dir = _resolve(book_dir)
    committed = book_dir / "results" / source.stem
    if not committed.is_dir():
        raise FileNotFoundError(f"no committed results for {source.stem} in {committed}")
    output_dir = _resolve(output_dir) if output_dir else RUNS_DIR / "verify"
    run_chapter(source, "default", None, output_dir, notebooks_dir=notebooks_dir, progress_bar=progress_bar)
    from babel_lib.book.reproduction import compare_results

    return compare_results(committed, output_dir / "results" / source.stem, source.stem)


# ---------------------------------------------------------------------------- toc and build
def toc_text(output_dir=BOOK_DIR, notebooks_dir=NOTEBOOKS_DIR) -> str:
    """The _toc.yml for the chapters whose source exists in *notebooks_dir*."""
    lines = [
        "# Generated by babel_lib.book.runner.write_toc from the notebooks in notebooks/: do not edit.",
        "format: jb-book",
        "root: intro",
    ]
    names = [p.stem for p in chapters(notebooks_dir)]
    if names:
        lines += ["chapters:"] + [f"- file: {n}" for n in names]
    return "\n".join(lines) + "\n"


def write_toc(output_dir=BOOK_DIR, notebooks_dir=NOTEBOOKS_DIR) -> Path:
    """(Re)write ``output_dir/_toc.yml`` from the notebooks present; touch it only if changed."""
    path = _resolve(output_dir) / "_toc.yml"
    text = toc_text(output_dir, notebooks_dir)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        _write_atomic(path, text.encode("utf-8"))
    return path


def _readable(path) -> None:
    """Give a mkstemp file (0600) the permissions a normal new file gets (umask)."""
    from babel_lib.core.cache import normal_mode

    normal_mode(path, 0o666)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write *data* to *path* atomically (see babel_lib.core.cache.atomic_write_bytes)."""
    from babel_lib.core.cache import atomic_write_bytes

    atomic_write_bytes(path, data)


def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one classic script, wrapped in a function scope so
    that its top-level names cannot clash with Sphinx's scripts; exposes window.babelVega."""
    import altair as alt
    import vl_convert

    version = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    snippet = "window.babelVega = {vegaEmbed: vegaEmbed, vega: vega, vegaLite: vegaLite};"
    body = vl_convert.javascript_bundle(snippet=snippet, vl_version=version)
    return f"/* vega {vl_convert.get_vega_version()} bundle from vl-convert */\n(function () {{\n{body}\n}})();\n"


def write_vega_bundle(html_dir) -> Path:
    """Write the vega bundle to ``html_dir/_static/babel-vega.js`` if it changed."""
    path = Path(html_dir) / VEGA_BUNDLE
    data = vega_bundle().encode("utf-8")
    if not path.exists() or path.read_bytes() != data:
        _write_atomic(path, data)
    return path


_EXTERNAL = re.compile(
    r"<(?:script|link|img|iframe)\b[^>]*?\b(?:src|href)\s*=\s*[\"']((?:https?:)?//[^\"']+)",
    re.IGNORECASE)


def external_resources(html_dir) -> list[str]:
    """'page: url' for every script, stylesheet, image or frame a built page loads from
    another host (plain <a> links are fine)."""
    found = []
    for page in sorted(Path(html_dir).rglob("*.html")):
        for url in _EXTERNAL.findall(page.read_text(encoding="utf-8", errors="replace")):
            found.append(f"{page.relative_to(html_dir)}: {url}")
    return found


def jupyter_book_command() -> str:
    """The `jupyter-book` console script of this environment (next to sys.executable)."""
    exe = Path(sys.executable).parent / "jupyter-book"
    if exe.exists():
        return str(exe)
    found = shutil.which("jupyter-book")
    if not found:
        raise FileNotFoundError("jupyter-book not found; install requirements.txt (make setup)")
    return found


#: The book's stylesheet (charts and tables within the column, verdict tables, the Answer box).
BOOK_CSS = Path(__file__).resolve().parent / "book.css"


def write_css(book_dir=BOOK_DIR) -> Path:
    """Copy the book's stylesheet to ``book_dir/_static/babel.css`` if it changed (Jupyter Book loads
    every stylesheet of the source folder's _static/ on every page)."""
    path = _resolve(book_dir) / "_static" / "babel.css"
    data = BOOK_CSS.read_bytes()
    if not path.exists() or path.read_bytes() != data:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, data)
    return path


def build_book(strict=True, *, book_dir=BOOK_DIR, path_output=None,
               notebooks_dir=NOTEBOOKS_DIR) -> Path:
    """Render the executed chapters in *book_dir* to HTML; return the HTML folder.

    Regenerates _toc.yml, runs
    ``jupyter-book build BOOK --config _config.yml --toc BOOK/_toc.yml --all -W --keep-going``
    (no -W unless *strict*), writes the vega bundle to the site's _static/, copies
    BOOK/results/ into the site and, if *strict*, fails when a page loads anything from
    another host. The site lands in
    ``PATH_OUTPUT/_build/html`` (default: BOOK/_build/html).
    """
    from babel_lib.report.verdicts import write_scorecard

    book_dir = _resolve(book_dir)
    path_output = _resolve(path_output) if path_output else book_dir
    write_toc(book_dir, notebooks_dir)
    write_scorecard(book_dir)
    write_css(book_dir)
    missing = [p.stem for p in chapters(notebooks_dir) if not (book_dir / p.name).exists()]
    if missing:
        raise ChapterError(f"no executed copy in {book_dir} of: {', '.join(missing)}; "
                           f"run: python -m babel_lib run {' '.join(missing)}")
    cmd = [jupyter_book_command(), "build", str(book_dir), "--config", str(CONFIG),
           "--toc", str(book_dir / "_toc.yml"), "--path-output", str(path_output), "--all"]
    if strict:
        cmd += ["-W", "--keep-going"]
    proc = subprocess.run(cmd, cwd=ROOT)
    if proc.returncode:
        raise ChapterError(f"jupyter-book build failed (exit {proc.returncode}): {' '.join(cmd)}")
    html = path_output / "_build" / "html"
    write_vega_bundle(html)
    results = book_dir / "results"
    if results.is_dir():
        shutil.copytree(results, html / "results", dirs_exist_ok=True)
    external = external_resources(html)
    if external and strict:
        raise ChapterError("pages load resources from other hosts (not offline-safe):\n"
                           + "\n".join(external))
    return html
