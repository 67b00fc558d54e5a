"""The command line: ``python -m babel_lib`` or ``babel``.

    babel run [CHAPTER ...] [--profile smoke|default|paper] [-p KEY VALUE ...]
    babel build [--no-strict] [--output DIR]
    babel check-fresh [--strict]
    babel verify CHAPTER ... | --all
    babel profiles
    babel cache list|clear|path [--kind KIND] [--yes]
    babel profile ... --output profile.csv [--force]
    babel prune ... --output FOLDER [--force]

To add a subcommand, write one function decorated with :func:`subcommand` that adds its
parser to *subparsers* and sets ``handler`` (a function of the parsed args returning an
exit code). Building the parser imports nothing heavy (no torch, transformers, pandas):
keep heavy imports inside the handler, and check every argument there before any heavy work.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import textwrap
import threading

#: The functions that add one subcommand each, in the order they appear in --help.
SUBCOMMANDS = []

#: babel_lib.interventions.prune's rankings and the allocations made from a profile's activation levels (kept
#: here so that --help does not import torch; a test checks them against the library's; the field's rules,
#: 'owl' and 'crosslingual', need importances or several languages' scores and are library-only).
RANKINGS = ("language", "multilingual", "random")
ALLOCATIONS = ("uniform", "layerwise", "entropy")

DESCRIPTION = ("Unraveling Babel: convert a dense LLM's feed-forward layers into experts (MoEfication), profile "
               "which experts each language activates, prune by activation frequency, and run the book's "
               "chapters.")

EPILOG = """\
examples:
  babel run 02_heatmaps -p languages '["eng","deu"]'    one chapter with other parameters
  babel run --profile smoke                             every chapter, tiny budgets (minutes)
  babel run --stale                                     re-execute stale chapters only
  babel build                                           render the executed chapters as HTML
  babel verify 02                                       rerun a chapter, check it against the committed results
  babel verify --all                                    every chapter (the reproduction contract)
  babel profile --languages paper --output profile.csv  per-language expert counts as a table
  babel prune --rate 0.5 --output pruned/               a model without its least used experts
  babel cache list                                      what the result cache holds

Models: the offline models gemma-3-270m and smollm2-135m-instruct, a local folder holding
config.json, or a Hugging Face id (only with --hub or BABEL_ALLOW_HUB=1: the hub is off by
default). Results are cached in $BABEL_CACHE (default ~/.cache/babel).
"""


def subcommand(add):
    """Register *add(subparsers)*, a function that adds one subcommand."""
    SUBCOMMANDS.append(add)
    return add


#: The deepest nesting a -p value may have (a parameter is at most a list of lists).
MAX_DEPTH = 8


def parse_value(text: str):
    """A -p value: JSON when it parses (numbers, lists, true/null), else the string. A value nested
    deeper than :data:`MAX_DEPTH` is refused (InputError) before it is parsed."""
    depth = 0
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if depth > MAX_DEPTH:
            from babel_lib.core.errors import InputError

            raise InputError(f"-p value {text[:40]!r}... is nested more than {MAX_DEPTH} levels deep; a parameter is "
                             "a number, a string or a list")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("babel_lib")
    except PackageNotFoundError:
        return "unknown (not installed)"


@subcommand
def add_run(subparsers):
    from babel_lib.book import runner as book  # cheap: the standard library only

    names = ", ".join(p.stem for p in book.chapters()) or "none found"
    p = subparsers.add_parser(
        "run", help="execute chapters with papermill (book/ for the default profile, else runs/<profile>/)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill("Execute chapters (all when none is named) with papermill; writes the executed "
                                  "copies and results into --output and regenerates the table of contents. "
                                  "Without --output, the default profile without -p overrides writes the "
                                  "committed book (book/); any other profile writes runs/<profile>/ and a "
                                  "default-profile run with overrides writes runs/custom/, so trying other "
                                  "settings never overwrites the book.", 88)
        + "\n\n" + textwrap.fill(f"chapters: {names}", 88, subsequent_indent="  "))
    p.add_argument("chapters", nargs="*", metavar="CHAPTER",
                   help="chapter name, number or notebook path (default: all)")
    p.add_argument("--profile", default="default", choices=["smoke", "default", "paper"],
                   help="parameter profile (default: default)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="override one parameter; VALUE is parsed as JSON when possible")
    p.add_argument("--output", default=None,
                   help="folder for the executed copies (default: book/ or runs/<profile>/, see above); an "
                        "existing folder that is not empty is written into only with --force")
    p.add_argument("--force", action="store_true",
                   help="write into an existing --output (its chapters' notebooks, results/<chapter>/, _toc.yml "
                        "and scorecard.md are replaced)")
    p.add_argument("--stale", action="store_true",
                   help="only chapters whose executed copy is missing or stale (source, parameters or library "
                        "changed); none on a fresh clone")
    p.add_argument("--dry-run", action="store_true",
                   help="check the chapters and parameters and print what would run, without running it")

    def handler(args):
        from babel_lib.book import runner as book

        overrides = {k: parse_value(v) for k, v in args.parameter}
        if args.output is not None:  # the default folders (book/, runs/) are the project's own
            from babel_lib.core import validate

            validate.check_output(book.resolve_path(args.output), "contents", force=args.force)
        output = args.output or book.default_output(args.profile, overrides)
        paths = book.run_all(args.profile, overrides, output, names=args.chapters or None, only_stale=args.stale,
                             dry_run=args.dry_run)
        for path in paths:
            print(path)
        if not paths:
            print("nothing to run: every chapter is fresh" if args.stale
                  else f"no chapters (NN_topic.ipynb) in {book.NOTEBOOKS_DIR}", file=sys.stderr)
        return 0

    p.set_defaults(handler=handler)


@subcommand
def add_build(subparsers):
    p = subparsers.add_parser("build", help="render the executed chapters as HTML (Jupyter Book)")
    p.add_argument("--no-strict", action="store_true", help="do not turn warnings into errors")
    p.add_argument("--output", default=None,
                   help="folder for _build/ (default: book, so the site is book/_build/html)")

    def handler(args):
        from babel_lib.book import runner as book

        html = book.build_book(strict=not args.no_strict, path_output=args.output)
        print(f"book: {html / 'index.html'}")
        return 0

    p.set_defaults(handler=handler)


@subcommand
def add_check_fresh(subparsers):
    p = subparsers.add_parser(
        "check-fresh", help="fail if an executed chapter is stale",
        description="Fail when an executed chapter no longer matches its source or the default profile's "
                    "parameters. Chapters executed with another version of babel_lib are reported as warnings "
                    "(a library change may land before its chapters are re-executed); --strict fails on them too.")
    p.add_argument("--output", default="book", help="folder of the executed copies (default: book)")
    p.add_argument("--strict", action="store_true", help="also fail on chapters run with another library version")

    def handler(args):
        from babel_lib.book import runner as book

        problems = book.check_fresh(args.output)
        warnings = book.library_changes(args.output)
        for problem in problems:
            print(problem)
        for warning in warnings:
            print(f"warning: {warning}")
        if not problems and not warnings:
            print("all executed chapters are fresh")
        return 1 if problems or (args.strict and warnings) else 0

    p.set_defaults(handler=handler)


@subcommand
def add_verify(subparsers):
    p = subparsers.add_parser(
        "verify", help="re-execute chapters into runs/verify/ and check them against the committed results",
        description="Re-execute chapters on the default profile into a scratch folder (runs/verify/) and compare "
                    "every file of their results with the committed ones in book/results/ under the reproduction "
                    "contract (babel_lib.book.reproduction): text, labels, verdicts and the fixed text's counts "
                    "exactly; numbers computed through the model's float arithmetic within 1e-3 absolute plus "
                    "1e-3 relative; timings reported, not compared. Fails only outside the contract. For a "
                    "cold check, point BABEL_CACHE at an empty folder.")
    p.add_argument("chapters", nargs="*", metavar="CHAPTER", help="chapter name or number")
    p.add_argument("--all", action="store_true", help="every chapter of the book, in order")
    p.add_argument("--all-rows", action="store_true", help="print every compared column, not only the failures")

    def handler(args):
        import time

        from babel_lib.book import reproduction, runner as book
        from babel_lib.core.errors import BabelError

        if args.all == bool(args.chapters):
            raise BabelError("name the chapters to verify, or pass --all (not both)")
        names = [c.stem for c in book.chapters()] if args.all else args.chapters
        for name in names:
            book.find_chapter(name)  # every name checked before the first run
        failed = []
        for name in names:
            start = time.perf_counter()
            report = book.verify_chapter(name)
            bad = report[report.status.isin(reproduction.FAILING)]
            shown = report if args.all_rows else bad
            if len(shown):
                print(shown.to_string(index=False))
            print(f"{name}: {reproduction.summary(report)} [{time.perf_counter() - start:.0f} s]", flush=True)
            if not bad.empty:
                failed.append(name)
        if len(names) > 1:
            print(f"verified {len(names)} chapters: " + (f"NOT REPRODUCED: {', '.join(failed)}" if failed else
                                                         "all reproduced within the contract"))
        return 1 if failed else 0

    p.set_defaults(handler=handler)


@subcommand
def add_profiles(subparsers):
    p = subparsers.add_parser("profiles", help="print the parameter profiles")

    def handler(args):
        from babel_lib.book import runner as book

        for name, params in book.PROFILES.items():
            print(f"{name}:")
            for key, value in params.items():
                print(f"  {key} = {json.dumps(value)}")
        return 0

    p.set_defaults(handler=handler)


@subcommand
def add_cache(subparsers):
    from babel_lib.core.cache import KINDS

    p = subparsers.add_parser(
        "cache", help="list or clear the result cache ($BABEL_CACHE)",
        description="List, clear or locate the result cache. Clearing removes only the files this project "
                    "writes there (results, damaged results set aside, converted and tuned models); other files "
                    "in the folder stay.")
    p.add_argument("action", choices=["list", "clear", "path"])
    p.add_argument("--kind", default=None, help=f"only this kind: {', '.join(KINDS)}")
    p.add_argument("--yes", action="store_true", help="clear everything without asking")

    def handler(args):
        from collections import Counter

        from babel_lib.core.cache import Store

        store = Store()
        if args.action == "path":
            print(store.root)
            return 0
        if args.kind is not None and args.kind not in KINDS:
            from babel_lib.core.errors import InputError

            raise InputError(f"unknown cache kind {args.kind!r}; kinds: {', '.join(KINDS)}")
        if args.action == "clear":
            if args.kind is None and not args.yes and not _confirm(store.root):
                print("nothing removed", file=sys.stderr)
                return 1
            n = store.clear(args.kind)
            print(f"removed {n} files from {store.root / (args.kind or '')}")
            return 0
        entries = [e for e in store.entries() if args.kind in (None, e["kind"])]
        sizes, counts, bad = Counter(), Counter(), 0
        for e in entries:
            sizes[e["kind"]] += e["bytes"]
            counts[e["kind"]] += 1
            parts = e["parts"]
            label = ", ".join(f"{k}={parts[k]}" for k in ("language", "method", "expert_size", "split")
                              if parts.get(k) is not None)
            if e["problem"]:
                bad += 1
                label = f"UNREADABLE: {e['problem']}"
            print(f"{e['kind']:10s} {e['key'][:16]:16s} {e['bytes'] / 1024:10.1f} KiB  {label}")
        for kind in sorted(counts):
            print(f"{kind}: {counts[kind]} entries, {sizes[kind] / 2**20:.1f} MiB")
        if bad:
            print(f"{bad} unreadable entries: results are set aside and recomputed when next needed, converted "
                  f"models rebuilt; `babel cache clear --kind KIND` removes them now")
        print(f"cache: {store.root}")
        return 0

    p.set_defaults(handler=handler)


def _confirm(root) -> bool:
    """Ask on a terminal before clearing the whole cache; without one, refuse (the caller passes --yes)."""
    if not sys.stdin.isatty():
        from babel_lib.core.errors import InputError

        raise InputError(f"clearing the whole cache ({root}) needs confirmation: pass --yes, or --kind KIND to "
                         "clear one kind (stdin is not a terminal, so there is no one to ask)")
    print(f"Remove every cached result (converted and tuned models, partitions, counts, ...) in {root}? [y/N] ",
          end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _add_study_arguments(p, dtype: str = "bfloat16") -> None:
    """The arguments of pipeline.study, shared by the commands that profile a model."""
    p.add_argument("--model", default="gemma-3-270m", help="short name, folder, Hugging Face id (with --hub) or "
                                                           "random:<spec>")
    p.add_argument("--languages", default="paper", help="'paper', 'wide:N', 'all' or comma-separated codes or names")
    p.add_argument("--expert-size", type=int, default=32, help="neurons per expert")
    p.add_argument("--top-k-fraction", type=float, default=0.2, help="share of a layer's experts activated per token")
    p.add_argument("--corpus", default="udhr", choices=["udhr", "bible"], help="the parallel text (default: udhr)")
    p.add_argument("--max-passages", type=int, default=None,
                   help="budget in passages of the calibration split, the same in every language (default: all)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="safety cap on tokens per language: keeps the leading passages every language fits in")
    p.add_argument("--max-length", type=int, default=128, help="tokens per sequence (at least 2)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="seed of the expert partition (balanced k-means)")
    p.add_argument("--dtype", default=dtype)
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:1, ...")
    p.add_argument("--device-map", default=None,
                   help="'auto' shards a model too big for one device over all GPUs (and CPU) via accelerate")
    p.add_argument("--force", action="store_true", help="replace an existing --output")


def _check_study_arguments(args, output_kind: str, extra_language: str | None = None):
    """Every argument of a profiling command checked before any heavy work (model load, profiling).
    Returns (language keys, output path, the key of ``extra_language`` or None)."""
    from babel_lib.core import validate
    from babel_lib.core.errors import InputError
    from babel_lib.data.corpus import check_languages

    for name in ("expert_size", "batch_size", "max_passages", "max_tokens", "max_length", "top_k_fraction", "seed",
                 "dtype"):
        validate.check_parameter(name, getattr(args, name), option="--" + name.replace("_", "-"))
    languages = check_languages(args.languages, args.corpus)
    extra = None
    if extra_language is not None:
        keys = check_languages(extra_language, args.corpus)
        if len(keys) != 1:
            raise InputError(f"--language names one language, got {extra_language!r} ({', '.join(keys)})")
        extra = keys[0]
        languages = list(dict.fromkeys(languages + [extra]))
    output = validate.check_output(args.output, kind=output_kind, force=args.force)
    if args.device_map is None:
        validate.check_device(args.device)
    return languages, output, extra


def _study(args, languages):
    """pipeline.study from the shared arguments and the resolved language keys."""
    from babel_lib.experts import pipeline

    return pipeline.study(model=args.model, languages=languages, corpus_name=args.corpus,
                          max_passages=args.max_passages, expert_size=args.expert_size,
                          top_k_fraction=args.top_k_fraction, max_tokens_per_language=args.max_tokens,
                          max_length=args.max_length, batch_size=args.batch_size, seeds=(args.seed,), dtype=args.dtype,
                          device=args.device, device_map=args.device_map)


@subcommand
def add_profile(subparsers):
    p = subparsers.add_parser("profile", help="profile a model's expert activations per language, write a table")
    _add_study_arguments(p)
    p.add_argument("--output", default="profile.csv", help="tidy table (.csv or .parquet); never replaced "
                                                           "without --force")

    def handler(args):
        import time

        from babel_lib.core.cache import atomic_write_bytes

        languages, output, _ = _check_study_arguments(args, "file")
        started = time.perf_counter()
        st = _study(args, languages)
        frame = st.profile.to_frame()
        if output.suffix == ".parquet":
            import io

            buf = io.BytesIO()
            frame.to_parquet(buf, index=False)
            atomic_write_bytes(output, buf.getvalue(), replace=args.force)
        else:
            atomic_write_bytes(output, frame.to_csv(index=False).encode(), replace=args.force)
        print(st.profile.describe())
        print(f"{st.lm.description}: loaded, partitioned and profiled in {time.perf_counter() - started:.1f} s")
        print(f"wrote {len(frame):,} rows to {output}")
        return 0

    p.set_defaults(handler=handler)


@subcommand
def add_prune(subparsers):
    p = subparsers.add_parser(
        "prune", help="drop the least frequently activated experts of every layer; save the smaller model",
        description="Profile the model, rank every layer's experts by activation frequency, slice the FFN "
                    "weights of the dropped experts out and save_pretrained the smaller model (reload it with "
                    "babel_lib.interventions.prune.load_pruned, or plain from_pretrained when every layer keeps the same width).")
    _add_study_arguments(p, dtype="float32")
    p.add_argument("--rate", type=float, required=True, help="fraction of experts to drop, in [0, 1)")
    p.add_argument("--by", default="multilingual", choices=RANKINGS,
                   help="rank by the mean frequency over --languages, one --language's frequency, or at random")
    p.add_argument("--language", default=None, help="the language to keep (with --by language), e.g. fra or French")
    p.add_argument("--allocation", default="uniform", choices=ALLOCATIONS,
                   help="the same rate in every layer, or per-layer rates from activation levels")
    p.add_argument("--output", required=True, help="folder for the pruned model (written atomically; an existing "
                                                   "folder is replaced only with --force)")

    def handler(args):
        from babel_lib.core.errors import InputError
        from babel_lib.interventions import prune

        prune.check_rate(args.rate)  # before minutes of profiling
        if args.by == "language" and not args.language:
            raise InputError("--by language needs --language CODE (the language whose frequencies rank the experts)")
        if args.by != "language" and args.language:
            raise InputError(f"--language ranks the experts only with --by language (got --by {args.by}); add a "
                             "language to the ranked ones with --languages instead")
        languages, output, language = _check_study_arguments(args, "folder", extra_language=args.language)
        st = _study(args, languages)
        ranking = prune.rank_experts(st.profile, args.by, language=language, seed=args.seed)
        plan = prune.prune_plan(ranking, args.rate, allocation=args.allocation)
        small = prune.prune_model(st.lm, st.partition, plan)
        folder = prune.save_pruned(small, output, force=args.force)
        print(st.profile.describe())
        print(plan.describe())
        report = prune.size_report(st.lm, small)
        print(f"parameters {report['params_dense']:,} -> {report['params_pruned']:,} "
              f"({report['params_removed']:.1%} removed; FFN {report['ffn_params_removed']:.1%})")
        print(f"saved to {folder}")
        return 0

    p.set_defaults(handler=handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="babel", description=textwrap.fill(DESCRIPTION, 88), epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"babel {_version()}")
    parser.add_argument("--hub", action="store_true",
                        help="allow downloads from the Hugging Face hub for this run (same as BABEL_ALLOW_HUB=1)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: temp files removed, kernel stopped


def _user_error(err: Exception) -> bool:
    """Whether *err* comes from the user's input or machine (one line, no traceback): the project's own
    errors (BabelError: bad input, a failed chapter, ...), a missing or protected file, a full disk. Any
    other exception, a ValueError included, is a bug and keeps its traceback."""
    import errno

    from babel_lib.core.errors import BabelError

    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(err, (BabelError, FileNotFoundError, FileExistsError, PermissionError))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.hub:
        os.environ["BABEL_ALLOW_HUB"] = "1"  # read by babel_lib.core.models when it is first imported
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if _user_error(err):
            print(f"error: {err}", file=sys.stderr)
            return 1
        raise  # a bug: keep the traceback


if __name__ == "__main__":
    sys.exit(main())
