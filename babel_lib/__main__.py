"""The command line: ``python -m babel_lib`` or ``babel``.

    babel run [CHAPTER ...] [--profile smoke|default|paper] [-p KEY VALUE ...]
    babel build [--no-strict] [--output DIR]
    babel check-fresh
    babel profiles

To add a subcommand, write one function decorated with :func:`subcommand` that adds its
parser to *subparsers* and sets ``handler`` (a function of the parsed args returning an
exit code); keep heavy imports inside the handler.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

#: The functions that add one subcommand each, in the order they appear in --help.
SUBCOMMANDS = []


def subcommand(add):
    """Register *add(subparsers)*, a function that adds one subcommand."""
    SUBCOMMANDS.append(add)
    return add


def parse_value(text: str):
    """A -p value: JSON when it parses (numbers, lists, true/null), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


@subcommand
def add_run(subparsers):
    p = subparsers.add_parser("run", help="execute chapters with papermill into book/",
                              description="Execute chapters (all when none is named) into book/, "
                                          "then regenerate book/_toc.yml.")
    p.add_argument("chapters", nargs="*", metavar="CHAPTER",
                   help="chapter name, number or notebook path (default: all)")
    p.add_argument("--profile", default="default", choices=["smoke", "default", "paper"],
                   help="parameter profile (default: default)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="override one parameter; VALUE is parsed as JSON when possible")
    p.add_argument("--output", default="book", help="folder for the executed copies (default: book)")

    def handler(args):
        from babel_lib import book

        overrides = {k: parse_value(v) for k, v in args.parameter}
        paths = book.run_all(args.profile, overrides, args.output, names=args.chapters or None)
        for path in paths:
            print(path)
        if not paths:
            print(f"no chapters (NN_topic.ipynb) in {book.NOTEBOOKS_DIR}", file=sys.stderr)
        return 0

    p.set_defaults(handler=handler)


@subcommand
def add_build(subparsers):
    p = subparsers.add_parser("build", help="render the executed chapters as HTML (Jupyter Book)")
    p.add_argument("--no-strict", action="store_true", help="do not turn warnings into errors")
    p.add_argument("--output", default=None,
                   help="folder for _build/ (default: book, so the site is book/_build/html)")

    def handler(args):
        from babel_lib import book

        html = book.build_book(strict=not args.no_strict, path_output=args.output)
        print(f"book: {html / 'index.html'}")
        return 0

    p.set_defaults(handler=handler)


@subcommand
def add_check_fresh(subparsers):
    p = subparsers.add_parser("check-fresh", help="fail if an executed chapter is stale")
    p.add_argument("--output", default="book", help="folder of the executed copies (default: book)")

    def handler(args):
        from babel_lib import book

        problems = book.check_fresh(args.output)
        for problem in problems:
            print(problem)
        if not problems:
            print("all executed chapters are fresh")
        return 1 if problems else 0

    p.set_defaults(handler=handler)


@subcommand
def add_profiles(subparsers):
    p = subparsers.add_parser("profiles", help="print the parameter profiles")

    def handler(args):
        from babel_lib import book

        for name, params in book.PROFILES.items():
            print(f"{name}:")
            for key, value in params.items():
                print(f"  {key} = {json.dumps(value)}")
        return 0

    p.set_defaults(handler=handler)


@subcommand
def add_cache(subparsers):
    p = subparsers.add_parser("cache", help="list or clear the result cache ($BABEL_CACHE)")
    p.add_argument("action", choices=["list", "clear", "path"])
    p.add_argument("--kind", default=None, help="only this kind (partition, counts, eval, tuned, models, ...)")

    def handler(args):
        from collections import Counter

        from babel_lib.cache import Store

        store = Store()
        if args.action == "path":
            print(store.root)
            return 0
        if args.action == "clear":
            n = store.clear(args.kind)
            print(f"removed {n} files from {store.root / (args.kind or '')}")
            return 0
        entries = [e for e in store.entries() if args.kind in (None, e["kind"])]
        sizes, counts = Counter(), Counter()
        for e in entries:
            sizes[e["kind"]] += e["bytes"]
            counts[e["kind"]] += 1
            parts = e["parts"]
            label = ", ".join(f"{k}={parts[k]}" for k in ("language", "method", "expert_size", "split")
                              if parts.get(k) is not None)
            print(f"{e['kind']:10s} {e['key'][:12]} {e['bytes'] / 1024:8.1f} KiB  {label}")
        for kind in sorted(counts):
            print(f"{kind}: {counts[kind]} files, {sizes[kind] / 2**20:.1f} MiB")
        print(f"cache: {store.root}")
        return 0

    p.set_defaults(handler=handler)


def _add_study_arguments(p, dtype: str = "bfloat16") -> None:
    """The arguments of pipeline.study, shared by the commands that profile a model."""
    p.add_argument("--model", default="gemma-3-270m", help="short name, folder, Hugging Face id or random:<spec>")
    p.add_argument("--languages", default="paper", help="'paper', 'wide:N', 'all' or comma-separated codes")
    p.add_argument("--expert-size", type=int, default=32, help="neurons per expert")
    p.add_argument("--top-k-fraction", type=float, default=0.2, help="share of a layer's experts activated per token")
    p.add_argument("--max-tokens", type=int, default=2048, help="token budget per language (calibration split)")
    p.add_argument("--max-length", type=int, default=128, help="tokens per sequence")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="seed of the expert partition (balanced k-means)")
    p.add_argument("--dtype", default=dtype)
    p.add_argument("--device", default="auto")
    p.add_argument("--device-map", default=None,
                   help="'auto' shards a model too big for one device over all GPUs (and CPU) via accelerate")


def _study(args, extra_languages=()):
    """pipeline.study from the shared arguments (languages: a spec or comma-separated codes)."""
    from babel_lib import pipeline

    languages = args.languages.split(",") if "," in args.languages else args.languages
    if extra_languages:
        from babel_lib import corpus

        languages = list(dict.fromkeys(corpus.resolve_languages(languages) + list(extra_languages)))
    return pipeline.study(model=args.model, languages=languages, expert_size=args.expert_size,
                          top_k_fraction=args.top_k_fraction, max_tokens_per_language=args.max_tokens,
                          max_length=args.max_length, batch_size=args.batch_size, seed=args.seed, dtype=args.dtype,
                          device=args.device, device_map=args.device_map)


@subcommand
def add_profile(subparsers):
    p = subparsers.add_parser("profile", help="profile a model's expert activations per language, write a table")
    _add_study_arguments(p)
    p.add_argument("--output", default="profile.csv", help="tidy table (.csv or .parquet)")

    def handler(args):
        import time

        from babel_lib.cache import atomic_write_bytes

        started = time.perf_counter()
        st = _study(args)
        frame = st.profile.to_frame()
        if args.output.endswith(".parquet"):
            import io

            buf = io.BytesIO()
            frame.to_parquet(buf, index=False)
            atomic_write_bytes(args.output, buf.getvalue())
        else:
            atomic_write_bytes(args.output, frame.to_csv(index=False).encode())
        print(st.profile.describe())
        print(f"{st.lm.description}: loaded, partitioned and profiled in {time.perf_counter() - started:.1f} s")
        print(f"wrote {len(frame):,} rows to {args.output}")
        return 0

    p.set_defaults(handler=handler)


@subcommand
def add_prune(subparsers):
    from babel_lib.prune import ALLOCATIONS, RANKINGS

    p = subparsers.add_parser(
        "prune", help="drop the least frequently activated experts of every layer; save the smaller model",
        description="Profile the model, rank every layer's experts by activation frequency, slice the FFN "
                    "weights of the dropped experts out and save_pretrained the smaller model (reload it with "
                    "babel_lib.prune.load_pruned, or plain from_pretrained when every layer keeps the same width).")
    _add_study_arguments(p, dtype="float32")
    p.add_argument("--rate", type=float, required=True, help="fraction of experts to drop, in [0, 1)")
    p.add_argument("--by", default="multilingual", choices=RANKINGS,
                   help="rank by the mean frequency over --languages, one --language's frequency, or at random")
    p.add_argument("--language", default=None, help="the language to keep (with --by language), e.g. fra")
    p.add_argument("--allocation", default="uniform", choices=ALLOCATIONS,
                   help="the same rate in every layer, or per-layer rates from activation levels")
    p.add_argument("--output", required=True, help="folder for the pruned model (written atomically)")

    def handler(args):
        from babel_lib import prune

        prune.check_rate(args.rate)  # before minutes of profiling
        if args.by == "language" and not args.language:
            raise ValueError("--by language needs --language CODE (the language whose frequencies rank the experts)")
        st = _study(args, extra_languages=[args.language] if args.language else ())
        ranking = prune.rank_experts(st.profile, args.by, language=args.language, seed=args.seed)
        plan = prune.prune_plan(ranking, args.rate, allocation=args.allocation)
        small = prune.prune_model(st.lm, st.partition, plan)
        folder = prune.save_pruned(small, args.output)
        print(st.profile.describe())
        print(plan.describe())
        report = prune.size_report(st.lm, small)
        print(f"parameters {report['params_dense']:,} -> {report['params_pruned']:,} "
              f"({report['params_removed']:.1%} removed; FFN {report['ffn_params_removed']:.1%})")
        print(f"saved to {folder}")
        return 0

    p.set_defaults(handler=handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="babel", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: temp files removed, kernel stopped


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one clear line, not a traceback, for expected failures
        from babel_lib.book import ChapterError

        if isinstance(err, (ChapterError, ValueError, FileNotFoundError, RuntimeError)):
            print(f"error: {err}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
