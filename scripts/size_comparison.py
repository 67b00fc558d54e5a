"""Chapter 6's size comparison on the real models, outside the notebook: Gemma 3 270M, SmolLM2-135M and
Qwen2.5-Coder 0.5B / 1.5B (``make setup-sizes``) on the same passages, one model in memory at a time.

    python scripts/size_comparison.py --out runs/sizes [--corpus udhr bible] [--max-passages 5]
        [--bible-passages 0] [--seeds 0] [--min-tokens 500] [--resamples 1000] [--dtype float32]

Languages: the paper's nine plus the Bible's 22 (24 keys on the UDHR: European and Brazilian Portuguese;
the Bible's 22 on the Bible). Writes per corpus ``summary``, ``pairs``, ``contrast``, ``by_layer`` CSVs,
the bits-per-character and memorisation tables, ``facts.json`` and the verdict row; prints the wall time
of each step. Profiles, partitions and evaluations are cached: a rerun takes seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

MODELS = ["gemma-3-270m", "smollm2-135m-instruct", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--corpus", nargs="+", default=["udhr", "bible"], choices=["udhr", "bible"])
    ap.add_argument("--max-passages", type=int, default=5, help="UDHR passages")
    ap.add_argument("--bible-passages", type=int, default=0,
                    help="Bible chapters a language for a second size comparison (0: the Bible is only evaluated for "
                         "memorisation; a chapter is about 1,000 tokens)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--min-tokens", type=int, default=500, help="evaluation tokens per language and corpus")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()

    from babel_lib.chapters import model_families as model_sizes
    from babel_lib.experts import pipeline

    args.out.mkdir(parents=True, exist_ok=True)
    languages = model_sizes.size_language_sets()
    timings, verdicts = {}, {}
    t0 = time.perf_counter()

    def memorisation():
        start = time.perf_counter()
        tok = pipeline.get_model(args.models[0], args.dtype, "cpu").tokenizer
        texts = model_sizes.evaluation_texts(tok, languages["udhr"], corpora=tuple(args.corpus),
                                             min_tokens=args.min_tokens)
        bpc = model_sizes.bits_per_character(args.models, texts, dtype=args.dtype, device="cpu",
                                             batch_size=args.batch_size)
        bpc.to_csv(args.out / "bits_per_character.csv", index=False)
        memorised.clear()
        if len(texts) > 1:
            mem = model_sizes.memorisation_table(bpc)
            mem.to_csv(args.out / "memorisation.csv", index=False)
            memorised.update(model_sizes.memorised_languages(mem))
        timings["bits per character"] = time.perf_counter() - start
        print(f"bits per character: {timings['bits per character']:.0f} s; memorised: {memorised}", flush=True)
        return memorised

    memorised = {}
    for c in args.corpus:
        if c == "bible" or (c == args.corpus[-1] and "bible" not in args.corpus):
            memorisation()
        if c == "bible" and not args.bible_passages:
            continue
        start = time.perf_counter()
        studies = model_sizes.size_studies(
            args.models, languages=languages[c], corpus_name=c,
            max_passages=args.max_passages if c == "udhr" else args.bible_passages, seeds=args.seeds,
            dtype=args.dtype, device="cpu", batch_size=args.batch_size, progress=False)
        timings[f"profiles {c}"] = time.perf_counter() - start
        start = time.perf_counter()
        res = model_sizes.size_results(studies, n_resamples=args.resamples)
        timings[f"results {c}"] = time.perf_counter() - start
        for name in ("summary", "pairs", "contrast", "by_layer"):
            res[name].to_csv(args.out / f"{c}_{name}.csv", index=False)
        size_models = {m for pair in res["facts"]["size_pairs"] for m in pair}
        flagged = sorted({x for m, names in memorised.items() if m in size_models for x in names}) if c == "bible" \
            else []
        words = "the UDHR" if c == "udhr" else "the Bible"
        verdicts[c] = model_sizes.size_verdict(res["facts"], flagged, words)
        (args.out / f"{c}_facts.json").write_text(json.dumps(res["facts"], indent=1, default=str))
        print(f"{c}: profiles {timings[f'profiles {c}']:.0f} s, results {timings[f'results {c}']:.0f} s", flush=True)
        print(res["summary"].round(4).to_string(), flush=True)
        print(res["contrast"].round(3).to_string(), flush=True)
        print(verdicts[c]["verdict"], "|", verdicts[c]["result"], flush=True)
    timings["total"] = time.perf_counter() - t0
    (args.out / "verdicts.json").write_text(json.dumps(verdicts, indent=1))
    (args.out / "timings.json").write_text(json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=1))
    print("RESULT " + " ".join(f"{k.replace(' ', '_')}_s={v:.0f}" for k, v in timings.items()))


if __name__ == "__main__":
    main()
