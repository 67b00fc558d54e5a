"""Chapter 10 as library steps (``10_sparse_activation.ipynb``): a language's static expert set (target-language
pruning at inference), the centroid router at equal compute, the per-token oracle, their quality with paired
intervals, measured speed and router recall; its tables and charts, the facts its prose quotes, the prose and its
verdict rows."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import torch

from babel_lib.core.claims import row
from babel_lib.core.definitions import active_count
from babel_lib.interventions import applications as app
from babel_lib.interventions import evaluate, prune, routing, timing
from babel_lib.interventions.applications import (Experiment, over_languages, ratio_interval_text,
                                                  ratio_text, slug)
from babel_lib.interventions.timing import make_batch
from babel_lib.stats import inference as stats

_SPEEDS = {f"{part}_speedup{end}": "{:.2f}" for part in ("ffn", "backbone", "model") for end in ("", "_low", "_high")}
#: The chapter's tables: ``plots.table`` arguments by table name.
TABLES: dict[str, dict] = {
    "speed": {
        "columns": {"keep": "Keep", "experts": "Experts kept a layer", "computed": "FFN computed",
                    "ffn_speedup": "FFN speed-up", "ffn_speedup_low": "FFN low", "ffn_speedup_high": "FFN high",
                    "backbone_speedup": "Backbone speed-up", "backbone_speedup_low": "Backbone low",
                    "backbone_speedup_high": "Backbone high", "model_speedup": "Whole model speed-up",
                    "model_speedup_low": "Whole low", "model_speedup_high": "Whole high", "speed_noisy": "Noisy"},
        "formats": {"keep": "{:g}", "computed": "{:.1%}", **_SPEEDS},
        "caption": "Measured speed-up of the sliced static sets (median and range over the timing rounds)"},
    "tests_over_languages": {
        "columns": {"keep": "Keep", "experts": "Experts", "selector_name": "Selector", "against_label": "Compared",
                    "ratio": "Geometric-mean ratio", "low": "Low", "high": "High",
                    "better_beyond_noise": "Languages better", "worse_beyond_noise": "Languages worse",
                    "p_value": "p", "p_adjusted": "p (Holm)"},
        "formats": {"keep": "{:g}", "ratio": "{:.3g}", "low": "{:.3g}", "high": "{:.3g}", "p_value": "{:.4f}",
                    "p_adjusted": "{:.4f}"},
        "caption": "Tests over languages (exact sign-flip; Holm over the chapter's tests)"},
    "router_recall": {
        "columns": {"selector": "Selector", "top_k_fraction": "k / E", "k": "k", "recall": "Mean recall",
                    "lowest_layer": "Lowest layer", "highest_layer": "Highest layer", "chance": "Chance"},
        "formats": {"top_k_fraction": "{:.2f}", "recall": "{:.3f}", "lowest_layer": "{:.3f}",
                    "highest_layer": "{:.3f}", "chance": "{:.3f}"},
        "caption": "Recall of the oracle top-k experts (mean over layers and languages)"},
}


# ------------------------------------------------------------------------------ sparse activation
def static_plan(exp: Experiment, language: str, keep: float) -> prune.PrunePlan:
    """A language's static expert set at keep fraction ``keep``: its top experts per layer by its
    own frequency, i.e. target-language pruning at rate 1 - keep, uniform (the same plan, so the
    same cached evaluation as chapter 08's grid)."""
    if isinstance(keep, bool) or not 0 < float(keep) <= 1:
        raise prune.PruneRateError(f"keep fraction must be in (0, 1], got {keep!r}")
    return exp.plan("language", 1.0 - float(keep), "uniform", language=language)


def trained_routers(exp: Experiment, keep_fractions, seqs: list[list[int]], seed: int = 0,
                    **train) -> dict[float, routing.TrainedRouter]:
    """MoEfication's trained router for each keep fraction f (:func:`babel_lib.interventions.routing.train_router`:
    a small MLP per layer trained on the dense model's FFN inputs over ``seqs``, calibration text, to predict
    each token's top m experts, m the static set's size at f). {f: router}."""
    E = exp.partition.n_experts
    keeps = [float(keep) for keep in keep_fractions]
    sizes = [int(E - static_plan(exp, exp.targets[0], keep).dropped_per_layer[0]) for keep in keeps]
    routers = routing.train_routers(exp.lm, exp.partition, seqs, [m / E for m in sizes], batch_size=exp.batch_size,
                                    seed=seed, **train)  # one dense pass for every keep fraction
    return dict(zip(keeps, routers))


def sparse_activation(exp: Experiment, keep_fractions=(0.75, 0.5), router_features: str = "gate",
                      oracle: bool = False, languages: list[str] | None = None,
                      trained: dict[float, routing.TrainedRouter] | None = None) -> pd.DataFrame:
    """Static high-frequency sets vs the centroid router at equal compute, per keep fraction.

    For each keep fraction f and language: 'static' (:func:`static_plan`, m = the experts it keeps
    per layer) and 'router' (per token the centroid router's top m experts of each layer,
    :func:`babel_lib.interventions.routing.routed_condition`: the same number of experts per token and layer;
    masked, so it shows quality, not speed), optionally 'oracle' (each token's top m experts by
    sum|a|: needs every neuron computed, an upper bound) and, with ``trained`` ({f: router},
    :func:`trained_routers`), 'trained' (that router's top m experts per token, masked like the
    centroid router). Rows: selector, keep, experts (m),
    experts_per_layer (E), language, corpus, perplexity, bits_per_char, ratio / low / high /
    decision against dense, and for the router and oracle vs_static_ratio / _low / _high /
    _decision (router / static: 'beats static' when the router is better beyond noise).
    """
    langs = [l for l in (exp.targets if languages is None else languages) if l in exp.profile.languages]
    dense = exp.dense(langs)
    router = routing.CentroidRouter.build(exp.lm.model, exp.partition, features=router_features)
    E = exp.partition.n_experts
    rows = []
    for keep in keep_fractions:
        plans = {l: static_plan(exp, l, keep) for l in langs}
        m = int(E - plans[langs[0]].dropped_per_layer[0])
        fraction = m / E
        if active_count(fraction, E) != m:
            raise AssertionError("equal compute: the router's k must equal the static set's size")
        static = {l: exp.results(exp.condition(plans[l]), [l])[l] for l in langs}
        per_token = {"router": exp.results(routing.routed_condition(exp.lm, exp.partition, router, fraction,
                                                                  f"router {m}/{E}"), langs)}
        if trained is not None:
            per_token["trained"] = exp.results(routing.routed_condition(exp.lm, exp.partition, trained[float(keep)],
                                                                      fraction, f"trained router {m}/{E}"), langs)
        if oracle:
            per_token["oracle"] = exp.results(routing.oracle_condition(exp.lm, exp.partition, fraction,
                                                                     f"oracle {m}/{E}"), langs)
        for l in langs:
            for selector, r in [("static", static[l])] + [(k, v[l]) for k, v in per_token.items()]:
                s = evaluate.summarize(r, selector, l, exp.lm)
                c = exp.compare(dense[l], r, ("dense", selector))
                row = {"selector": selector, "keep": float(keep), "experts": m, "experts_per_layer": E,
                       "language": l, "corpus": exp.evalset.source[l], "perplexity": s["perplexity"],
                       "bits_per_char": s["bits_per_char"], "ratio": c["ratio"], "low": c["low"], "high": c["high"],
                       "decision": c["decision"], "vs_static_ratio": np.nan, "vs_static_low": np.nan,
                       "vs_static_high": np.nan, "vs_static_decision": ""}
                if selector != "static":
                    v = exp.compare(static[l], r, ("static", selector))
                    row.update(vs_static_ratio=v["ratio"], vs_static_low=v["low"], vs_static_high=v["high"],
                               vs_static_decision=v["decision"])
                rows.append(row)
    return pd.DataFrame(rows)


def speed_table(exp: Experiment, keep_fractions=(0.75, 0.5), batch: int = 2, length: int | None = None,
                rounds: int = 5, warmup: int = 1, language: str | None = None,
                whole_model: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Measured speed-up of physically sliced models over the dense one, per keep fraction.

    The static set of ``language`` (default: the first target language; under the uniform plan
    every language's sliced model has the same shapes) is sliced into a copy sharing every other
    tensor (:func:`babel_lib.interventions.prune.prune_model` with share=True). Timed interleaved
    (:func:`babel_lib.interventions.timing.time_interleaved`) on one batch of real text (:func:`make_batch`):
    every layer's MLP alone on its recorded input ('FFN'), the backbone forward, and with
    ``whole_model`` the whole model (backbone and LM head on every position: the cost profile of
    generating a token, whose head the pruning does not touch). Returns (speed, times): speed rows
    keep, experts, computed (fraction of FFN neurons kept), ffn_speedup / ffn_speedup_low / ffn_speedup_high,
    backbone_speedup / _low / _high and model_speedup / _low / _high (median and range over rounds
    of dense time / sliced time; NaN without ``whole_model``), speed_noisy (a backbone speed-up above the
    FFN-only one, a whole-model speed-up above the backbone one, or a round in which the sliced FFN
    was slower: the machine's noise exceeds the effect), dense_tokens_per_second (the dense
    backbone); times: the raw timings.
    """
    from babel_lib.core.adapters import backbone

    lang = language or exp.targets[0]
    length = length or exp.evalset.max_length
    ids = make_batch(exp.lm, batch, length)
    inputs = timing.ffn_inputs(exp.lm, ids)
    variants = {"dense": exp.lm}
    plans = {}
    for keep in keep_fractions:
        plans[keep] = static_plan(exp, lang, keep)
        variants[f"keep {keep:g}"] = prune.prune_model(exp.lm, exp.partition, plans[keep], share=True)

    def body_fn(m):
        net = backbone(m.model)

        @torch.inference_mode()
        def run():
            net(input_ids=ids, use_cache=False)
        return run

    def model_fn(m):
        @torch.inference_mode()
        def run():
            m.model(input_ids=ids, use_cache=False)
        return run

    fns = {}
    for name, m in variants.items():
        fns[f"{name} | FFN"] = timing.mlp_callable(m, inputs)
        fns[f"{name} | backbone"] = body_fn(m)
        if whole_model:
            fns[f"{name} | model"] = model_fn(m)
    times = timing.time_interleaved(fns, rounds=rounds, warmup=warmup)
    dense_backbone = float(times[times["name"] == "dense | backbone"]["seconds"].median())
    rows = []
    for keep in keep_fractions:
        name = f"keep {keep:g}"
        f, fl, fh = timing.speedup(times, "dense | FFN", f"{name} | FFN", spread=True)
        b, bl, bh = timing.speedup(times, "dense | backbone", f"{name} | backbone", spread=True)
        w, wl, wh = (timing.speedup(times, "dense | model", f"{name} | model", spread=True) if whole_model
                     else (np.nan, np.nan, np.nan))
        rows.append({"keep": float(keep), "experts": int(exp.partition.n_experts - plans[keep].dropped_per_layer[0]),
                     "computed": 1 - plans[keep].sparsity,
                     "ffn_speedup": f, "ffn_speedup_low": fl, "ffn_speedup_high": fh,
                     "backbone_speedup": b, "backbone_speedup_low": bl, "backbone_speedup_high": bh,
                     "model_speedup": w, "model_speedup_low": wl, "model_speedup_high": wh,
                     "speed_noisy": bool(b > f * 1.02 or fl < 1 or (whole_model and w > b * 1.02)),
                     "batch": int(ids.shape[0]), "length": int(ids.shape[1]), "rounds": rounds,
                     "dense_tokens_per_second": float(ids.numel() / dense_backbone)})
    return pd.DataFrame(rows), times


def quality_vs_speed(sparse: pd.DataFrame, speed: pd.DataFrame, permutations: int = stats.HEADLINE_PERMUTATIONS,
                     seed: int = 0) -> pd.DataFrame:
    """Per keep fraction and selector: the geometric-mean perplexity ratio to dense over languages
    with an interval over languages that inverts the sign-flip test, the range of per-language
    ratios, how many languages are worse than dense beyond noise, and the measured speed-ups of the static set's
    sliced model (the router's masked evaluation has no speed-up of its own)."""
    rows = []
    for (selector, keep), g in sparse.groupby(["selector", "keep"], sort=False):
        d = np.log(g["ratio"].to_numpy())
        gm, lo, hi = over_languages(d, permutations, seed)  # one language: its ratio, no interval
        row = {"selector": selector, "keep": keep, "experts": int(g["experts"].iloc[0]), "languages": len(g),
               "ratio": gm, "low": lo, "high": hi, "best": float(g["ratio"].min()), "worst": float(g["ratio"].max()),
               "worse_than_dense": int((g["decision"] == "worse than dense").sum()),
               "beats_dense": int((g["decision"] == "beats dense").sum())}
        sp = speed[np.isclose(speed["keep"], keep)]
        if selector == "static" and not sp.empty:
            s = sp.iloc[0]
            row.update({k: s[k] for k in ("ffn_speedup", "ffn_speedup_low", "ffn_speedup_high", "backbone_speedup",
                                          "backbone_speedup_low", "backbone_speedup_high", "model_speedup",
                                          "model_speedup_low", "model_speedup_high", "speed_noisy")
                        if k in s.index})
        rows.append(row)
    return pd.DataFrame(rows)


def sparse_tests(sparse: pd.DataFrame, seed: int = 0, permutations: int = stats.HEADLINE_PERMUTATIONS,
                 correction: str = "holm") -> pd.DataFrame:
    """Tests over languages of :func:`sparse_activation`'s rows, per keep fraction: the static set
    against dense (is it worse?), and every per-token selector (router, oracle) against the static
    set at equal compute. Per row: the per-language log ratios d (from the paired comparisons),
    the geometric-mean ratio exp(mean d) with an interval over languages that inverts the sign-flip
    test, a two-sided sign-flip test (:func:`babel_lib.stats.sign_flip_test`), how many languages the
    paired passage intervals decide each way, and ``p_adjusted`` (``correction`` over the rows of
    this table: one family per chapter).

    Rows: keep, experts, selector, against ('dense' or 'static'), languages, ratio, low, high,
    better_beyond_noise, worse_beyond_noise, p_value, test, p_adjusted.
    """
    rows = []
    for keep, g in sparse.groupby("keep", sort=False):
        sides = [("static", "dense", g[g["selector"] == "static"], "ratio", "decision")]
        sides += [(sel, "static", g[g["selector"] == sel], "vs_static_ratio", "vs_static_decision")
                  for sel in dict.fromkeys(g["selector"]) if sel != "static"]
        for selector, against, rows_, col, dec in sides:
            d = np.log(rows_[col].to_numpy(dtype=float))
            d = d[np.isfinite(d)]
            if len(d) < 2:
                continue
            test = stats.sign_flip_test(d, permutations, seed)
            gm, lo, hi = over_languages(d, permutations, seed)
            rows.append({"keep": float(keep), "experts": int(rows_["experts"].iloc[0]), "selector": selector,
                         "against": against, "languages": len(d), "ratio": gm, "low": lo, "high": hi,
                         "better_beyond_noise": int(rows_[dec].str.startswith("beats").sum()),
                         "worse_beyond_noise": int(rows_[dec].str.startswith("worse").sum()),
                         "p_value": test.p_value, "test": test.method})
    table = pd.DataFrame(rows)
    if not table.empty:
        table = stats.correct(table, "p_value", correction, "p_adjusted")
    return table


def router_recall(exp: Experiment, keep_fractions=(0.75, 0.5), top_k_fraction: float | None = None,
                  router_features: str = "gate", languages: list[str] | None = None,
                  trained: dict[float, routing.TrainedRouter] | None = None) -> pd.DataFrame:
    """Recall of each token's oracle top-k experts by the centroid router and by the language's
    static sets (:func:`babel_lib.interventions.routing.router_recall` on each language's evaluation windows;
    one dense pass per language); with ``trained``, each trained router's recall at its own k (one more
    pass per router and language). Adds a language column."""
    langs = [l for l in (exp.targets if languages is None else languages) if l in exp.profile.languages]
    router = routing.CentroidRouter.build(exp.lm.model, exp.partition, features=router_features)
    k = top_k_fraction or exp.profile.definitions.get("top_k_fraction", 0.2)
    frames = []
    for l in langs:
        static = {f"static {q:g}": static_plan(exp, l, q) for q in keep_fractions}
        r = routing.router_recall(exp.lm, exp.partition, router, exp.windows()[l].input_ids,
                                sorted({float(k), *[float(q) for q in keep_fractions]}), exp.batch_size, static=static)
        frames.append(r.assign(language=l))
        for keep, tr in (trained or {}).items():
            E = exp.partition.n_experts
            m = int(E - static[f"static {keep:g}"].dropped_per_layer[0])
            frames.append(routing.router_recall(exp.lm, exp.partition, tr, exp.windows()[l].input_ids, m / E,
                                                exp.batch_size).assign(language=l))
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------ findings and verdicts
def recall_summary(recall: pd.DataFrame) -> pd.DataFrame:
    """Per selector and k (from :func:`router_recall`): mean recall of each token's oracle top-k
    experts over layers and languages (languages weighted equally), its lowest and highest layer,
    and chance (k / E for the router, set size / E for a static set)."""
    per_layer = recall.groupby(["selector", "top_k_fraction", "layer"], sort=False).agg(
        k=("k", "first"), recall=("recall", "mean"), chance=("chance", "mean")).reset_index()
    return per_layer.groupby(["selector", "top_k_fraction"], sort=False).agg(
        k=("k", "first"), recall=("recall", "mean"), lowest_layer=("recall", "min"), highest_layer=("recall", "max"),
        chance=("chance", "mean")).reset_index()


def findings_sparse(quality: pd.DataFrame, sparse: pd.DataFrame | None = None, speed: pd.DataFrame | None = None,
                    comparable: float = 1.05, tests: pd.DataFrame | None = None, recall: pd.DataFrame | None = None,
                    alpha: float = 0.05) -> dict:
    """The facts chapter 10 quotes, from :func:`quality_vs_speed` (``quality``), the per-language
    rows of :func:`sparse_activation` (``sparse``), :func:`speed_table` (``speed``), the tests of
    :func:`sparse_tests` (``tests``) and :func:`recall_summary` (``recall``).

    Keys, per selector s and keep fraction f: ``<s>_<f>`` (text: geometric-mean ratio to dense
    with its interval over languages) and ``<s>_<f>_ratio``; ``<s>_<f>_worse`` (languages worse
    than dense beyond noise); ``speed_<f>`` (text: measured FFN, backbone and whole-model
    speed-ups of the static set, median and range over rounds) and ``model_speedup_<f>``;
    ``keeps`` (list); ``faster_keeps`` (static sets measurably faster: the slowest round above 1);
    ``faster_parts_<f>`` (list of 'FFN', 'backbone', 'whole model': the parts whose slowest round was
    above 1); with an oracle among the tests, ``oracle_better_keeps`` / ``oracle_worse_keeps``;
    ``experts_<f>`` (experts per layer kept) and ``experts_per_layer``; with
    ``sparse``: ``router_beats_static_<f>`` / ``router_worse_than_static_<f>`` (languages
    decided by the paired passage intervals) and ``languages``; with ``tests``: ``test_<s>_<a>_<f>``
    (text: the test of selector s against a, 'dense' or 'static', with raw and Holm-adjusted p),
    ``test_<s>_<a>_<f>_significant`` (bool: adjusted p < alpha), ``n_tests`` and
    ``router_better_keeps`` / ``router_worse_keeps`` (keep fractions at which the router is better /
    worse than the static set over languages, adjusted p < alpha); with ``recall``:
    ``recall_router_<k>`` (text: mean recall of the oracle top-k and chance) for each k, and
    ``recall_static_<f>_<k>`` for the static sets; ``noisy_timings``; ``comparable`` (our
    threshold); ``verdict_sparse_activation``: a suggested word for "accelerate inference while
    maintaining comparable performance" (our threshold: ``comparable`` = a geometric-mean
    perplexity ratio of at most 1.05): 'reproduced' when some static set is measurably faster
    (slowest round of the whole model, or of the backbone where the whole model was not timed,
    above 1) and its interval's upper end is at most ``comparable``; 'partly reproduced' when such a
    faster static set's ratio is within ``comparable`` but its interval is not; else 'not reproduced'.
    """
    out: dict = {"comparable": comparable, "keeps": sorted({float(k) for k in quality["keep"]}, reverse=True),
                 "faster_keeps": 0}
    word = "not reproduced"
    for r in quality.itertuples():
        key = f"{r.selector}_{r.keep:g}"
        out[key] = ratio_interval_text(r.ratio, r.low, r.high) if np.isfinite(r.low) else ratio_text(r.ratio)
        out[f"{key}_ratio"] = float(r.ratio)
        out[f"{key}_worse"] = int(r.worse_than_dense)
        out[f"experts_{r.keep:g}"] = int(r.experts)
        speedup = getattr(r, "backbone_speedup", np.nan)
        if r.selector == "static" and speedup is not None and np.isfinite(speedup):
            whole = getattr(r, "model_speedup", np.nan)
            timed = whole is not None and np.isfinite(whole)
            out[f"speed_{r.keep:g}"] = (
                f"FFN x{r.ffn_speedup:.2f} ({r.ffn_speedup_low:.2f}-{r.ffn_speedup_high:.2f}), backbone x{r.backbone_speedup:.2f} "
                f"({r.backbone_speedup_low:.2f}-{r.backbone_speedup_high:.2f})"
                + (f", whole model x{r.model_speedup:.2f} ({r.model_speedup_low:.2f}-{r.model_speedup_high:.2f})" if timed else ""))
            out[f"model_speedup_{r.keep:g}"] = float(whole) if timed else float("nan")
            faster = (r.model_speedup_low if timed else r.backbone_speedup_low) > 1
            out["faster_keeps"] = out.get("faster_keeps", 0) + int(faster)
            out[f"faster_parts_{r.keep:g}"] = [part for part, low in (
                ("FFN", r.ffn_speedup_low), ("backbone", r.backbone_speedup_low),
                ("whole model", r.model_speedup_low if timed else np.nan)) if np.isfinite(low) and low > 1]
            if faster and r.high <= comparable:
                word = "reproduced"
            elif faster and r.ratio <= comparable and word != "reproduced":
                word = "partly reproduced"
    out["verdict_sparse_activation"] = word
    if sparse is not None and len(sparse):
        out["languages"] = int(sparse["language"].nunique())
        out["experts_per_layer"] = int(sparse["experts_per_layer"].iloc[0])
        for keep, g in sparse[sparse["selector"] == "router"].groupby("keep"):
            out[f"router_beats_static_{keep:g}"] = int((g["vs_static_decision"] == "beats static").sum())
            out[f"router_worse_than_static_{keep:g}"] = int((g["vs_static_decision"] == "worse than static").sum())
    if tests is not None and len(tests):
        out["n_tests"] = int(len(tests))
        for r in tests.itertuples():
            key = f"test_{r.selector}_{r.against}_{r.keep:g}"
            out[key] = f"{ratio_interval_text(r.ratio, r.low, r.high)}, {stats.p_text(r.p_value, r.p_adjusted)}"
            out[f"{key}_significant"] = bool(r.p_adjusted < alpha)
        router = tests[(tests["selector"] == "router") & (tests["against"] == "static")]
        out["router_better_keeps"] = int(((router["p_adjusted"] < alpha) & (router["ratio"] < 1)).sum())
        out["router_worse_keeps"] = int(((router["p_adjusted"] < alpha) & (router["ratio"] > 1)).sum())
        for sel in ("oracle", "trained"):
            t = tests[(tests["selector"] == sel) & (tests["against"] == "static")]
            if len(t):
                out[f"{sel}_better_keeps"] = int(((t["p_adjusted"] < alpha) & (t["ratio"] < 1)).sum())
                out[f"{sel}_worse_keeps"] = int(((t["p_adjusted"] < alpha) & (t["ratio"] > 1)).sum())
    if recall is not None and len(recall):
        for r in recall.itertuples():
            who = {"centroid router": "router", "trained router": "trained"}.get(r.selector, slug(r.selector))
            out[f"recall_{who}_{r.top_k_fraction:g}"] = (f"{r.recall:.2f} (layers {r.lowest_layer:.2f}-"
                                                         f"{r.highest_layer:.2f}; chance {r.chance:.2f})")
    if speed is not None and len(speed):
        out["noisy_timings"] = int(speed["speed_noisy"].sum())
        out["dense_tokens_per_second"] = float(speed["dense_tokens_per_second"].iloc[0]) \
            if "dense_tokens_per_second" in speed.columns else float("nan")
    return out


def verdicts_sparse(f: dict) -> list[dict]:
    """Chapter 10's verdict row ('sparse_activation') from :func:`findings_sparse`'s facts."""

    parts = []
    for keep in f["keeps"]:
        if f"static_{keep:g}" not in f:
            continue
        speed = f.get(f"speed_{keep:g}", "speed not measured")
        parts.append(f"keeping {f.get(f'experts_{keep:g}', '?')} of {f.get('experts_per_layer', '?')} experts a "
                     f"layer (keep {keep:g}): perplexity {f[f'static_{keep:g}']} of dense, {speed}")
    router = "; ".join(f"router at keep {k:g}: {f[f'test_router_static_{k:g}']} against the static set"
                       for k in f["keeps"] if f"test_router_static_{k:g}" in f)
    trained = "; ".join(f"trained router at keep {k:g}: {f[f'test_trained_static_{k:g}']} against the static set"
                        for k in f["keeps"] if f"test_trained_static_{k:g}" in f)
    return [row(
        "sparse_activation",
        "The static high-frequency set (target-language pruning at inference): " + "; ".join(parts) + "."
        + (f" Per-token centroid routing at equal compute: {router}." if router else "")
        + (f" MoEfication's trained router at equal compute: {trained}." if trained else ""),
        f"{f.get('languages', '?')} languages; our threshold for comparable: a geometric-mean perplexity ratio of at "
        f"most {f['comparable']:g} with its interval; intervals over languages from paired passage ratios; timings "
        f"interleaved on a shared CPU ({f.get('noisy_timings', 0)} of {len(f['keeps'])} noisy). "
        + speed_sentence(f) + " " + per_token_sentence(f),
        f["verdict_sparse_activation"])]


def speed_sentence(f: dict) -> str:
    """What the timing table shows, part by part and keep fraction by keep fraction, from
    :func:`findings_sparse`'s ``faster_parts_<f>``: which parts of the sliced model were faster than
    the unpruned one in every timing round (the slowest round above 1), and that the verdict asks it
    of the whole model (the backbone where the whole model was not timed)."""
    keeps = [k for k in f["keeps"] if f"faster_parts_{k:g}" in f]
    if not keeps:
        return "Speed not measured."
    def listed(parts):
        named = [f"the {p}" for p in parts]
        return named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]

    faster = [f"{listed(f[f'faster_parts_{k:g}'])} at keep {k:g}" for k in keeps if f[f"faster_parts_{k:g}"]]
    whole = [k for k in keeps if "whole model" in f[f"faster_parts_{k:g}"]]
    if not faster:
        return "No part of the sliced model (FFN, backbone, whole model) was faster in every timing round."
    text = "Faster than the unpruned model in every timing round: " + "; ".join(faster) + "."
    if not whole and any(np.isfinite(f.get(f"model_speedup_{k:g}", np.nan)) for k in keeps):
        text += (" The whole model (with its output layer, what a user runs) was faster in every round at no keep "
                 "fraction; the verdict asks it of the whole model.")
    return text


def per_token_sentence(f: dict) -> str:
    """What the tests say of choosing experts per token at equal compute, from :func:`findings_sparse`'s
    facts: the centroid router (untrained: MoEfication's similarity rule), the trained router (MoEfication's
    MLP) and the oracle (each token's true top experts: an upper bound), each against the static set."""
    n = len(f["keeps"])
    if "router_better_keeps" not in f:
        return ""
    text = (f"Against the static set at equal compute (Holm-adjusted p < 0.05): the untrained centroid router is better "
            f"at {f['router_better_keeps']} and worse at {f['router_worse_keeps']} of {n} keep fractions")
    if "trained_better_keeps" in f:
        text += (f"; the trained router is better at {f['trained_better_keeps']} and worse at "
                 f"{f['trained_worse_keeps']} of {n}")
    if "oracle_better_keeps" in f:
        text += (f"; the per-token oracle is better at {f['oracle_better_keeps']} and worse at "
                 f"{f['oracle_worse_keeps']} of {n}")
        if f["oracle_better_keeps"] and f["router_worse_keeps"] and "trained_better_keeps" not in f:
            text += (": choosing experts per token can beat the static set, and this router does not; a trained "
                     "router might")
        elif f["oracle_better_keeps"] and "trained_better_keeps" in f:
            text += (": the oracle shows what per-token choice can gain; the trained router "
                     + ("beats the static set at every keep fraction" if f["trained_better_keeps"] == n else
                        "beats the static set at some keep fractions" if f["trained_better_keeps"] else
                        "does not beat the static set at any keep fraction"))
    return text + "."


# ------------------------------------------------------------------------------ tables, charts and prose
def tests_table(tests: pd.DataFrame) -> pd.DataFrame:
    """:func:`sparse_tests`'s rows with readable names: ``selector_name`` and ``against_label`` ('against
    static')."""
    return app.labelled(tests).assign(against_label="against " + tests["against"])


def quality_vs_speed_chart(quality: pd.DataFrame, comparable: float) -> alt.LayerChart:
    """Each static set's measured speed-up (whole model and backbone, the range over timing rounds) against its
    geometric-mean perplexity ratio to the unpruned model with its interval over languages; a dashed rule at
    the ``comparable`` threshold and a cross at the unpruned model. quality: :func:`quality_vs_speed`'s rows
    (selector, keep, experts, languages, ratio, low, high, worse_than_dense, model_speedup / _low / _high,
    backbone_speedup / _low / _high)."""
    static = quality[quality.selector == "static"].assign(keep_name=lambda d: "keep " + d.keep.map("{:g}".format))
    parts = [static.assign(part=name, speedup=static[f"{key}_speedup"], s_low=static[f"{key}_speedup_low"],
                           s_high=static[f"{key}_speedup_high"])
             for name, key in (("whole model", "model"), ("backbone (no output layer)", "backbone"))]
    base = alt.Chart(pd.concat(parts, ignore_index=True)).encode(
        color=alt.Color("part:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=["keep_name:N", "part:N", "experts:Q", alt.Tooltip("speedup:Q", format=".3f"),
                 alt.Tooltip("s_low:Q", format=".3f"), alt.Tooltip("s_high:Q", format=".3f"),
                 alt.Tooltip("ratio:Q", format=".3f"), alt.Tooltip("low:Q", format=".3f"),
                 alt.Tooltip("high:Q", format=".3f"), "worse_than_dense:Q", "languages:Q"])
    x = alt.X("speedup:Q", title="Measured speed-up over the unpruned model", scale=alt.Scale(zero=False))
    y = alt.Y("ratio:Q", title="Perplexity / unpruned (geometric mean)", scale=alt.Scale(type="log", nice=False))
    return (base.mark_rule().encode(x=alt.X("s_low:Q"), x2="s_high:Q", y=y)
            + base.mark_rule().encode(x=x, y=alt.Y("low:Q"), y2="high:Q")
            + base.mark_point(size=90, filled=True).encode(
                x=x, y=y, shape=alt.Shape("keep_name:N", title="Experts kept", legend=alt.Legend(orient="bottom")))
            + alt.Chart(pd.DataFrame({"y": [comparable]})).mark_rule(strokeDash=[6, 4], color="#555").encode(y="y:Q")
            + alt.Chart(pd.DataFrame({"x": [1.0], "y": [1.0]})).mark_point(shape="cross", size=120,
                                                                           color="black").encode(x="x:Q", y="y:Q")
            ).properties(width=480, height=300, title="Static high-frequency sets: quality against measured speed")


def selectors_chart(selectors: pd.DataFrame, languages: list[str]) -> alt.FacetChart:
    """Each selector's perplexity ratio to the unpruned model per language at equal compute, a panel per keep
    fraction. selectors: :func:`sparse_activation`'s rows (selector, keep, experts, language, perplexity,
    ratio, low, high, vs_static_ratio, vs_static_decision, corpus); languages: the rows' order (keys)."""
    return app.ratio_chart(
        app.facet_named(selectors, "keep"), color="selector_name", color_title=None, column="keep_name", step=7,
        legend=alt.Legend(orient="bottom", columns=2, labelLimit=300), x_title="Perplexity / unpruned (log scale)",
        title="Static set, router and oracle at equal compute", order=app.language_order(languages),
        tooltip=["name:N", "selector_name:N", "keep:Q", "experts:Q", alt.Tooltip("perplexity:Q", format=".2f"),
                 alt.Tooltip("ratio:Q", format=".3f"), alt.Tooltip("low:Q", format=".3f"),
                 alt.Tooltip("high:Q", format=".3f"), alt.Tooltip("vs_static_ratio:Q", format=".3f"),
                 "vs_static_decision:N", "corpus:N"])


def _comparable_sentence(word: str, comparable: float) -> str:
    if word == "reproduced":
        return (f"Yes: a static set is measurably faster and its perplexity is within our threshold of "
                f"x{comparable:g}, interval included.")
    if word == "partly reproduced":
        return f"Partly: a faster static set is within x{comparable:g} on average, but its interval is not."
    return (f"No. The paper’s claim of comparable performance is not reproduced here: no static set is both "
            f"measurably faster and within our threshold of x{comparable:g} in perplexity (the keep fractions above "
            f"give the loss and the speed-up of each).")


def _recall_key(f: dict, keep: float) -> str | None:
    """The findings key of the trained router's recall at keep fraction ``keep`` (its k = m / E), if measured."""
    k = f.get(f"experts_{keep:g}", 0) / max(f.get("experts_per_layer", 1), 1)
    key = f"recall_trained_{k:g}"
    return key if key in f else None


def findings_text(f: dict, comparable: float, top_k_fraction: float) -> str:
    """Chapter 10's findings in Markdown, from :func:`findings_sparse`'s facts, our threshold ``comparable`` and
    the profiles' ``top_k_fraction``."""
    lines = [f"- **Keep {q:g}** ({f[f'experts_{q:g}']} of {f['experts_per_layer']} experts a layer). Static set "
             f"(target-language pruning at rate {1 - q:.2g}): perplexity {f[f'static_{q:g}']} of the unpruned model "
             f"(worse beyond noise in {f[f'static_{q:g}_worse']} of {f['languages']} languages); measured speed-up "
             f"{f[f'speed_{q:g}']}. Centroid router at equal compute: {f[f'router_{q:g}']} of the unpruned model; "
             f"against the static set {f[f'test_router_static_{q:g}']} (better in {f[f'router_beats_static_{q:g}']}, "
             f"worse in {f[f'router_worse_than_static_{q:g}']} languages beyond noise)."
             + (f" Trained router: {f[f'trained_{q:g}']} of the unpruned model; against the static set "
                f"{f[f'test_trained_static_{q:g}']}"
                + (f", recall of its top {f[f'experts_{q:g}']} {f[_recall_key(f, q)]}" if _recall_key(f, q) else "")
                + "." if f"trained_{q:g}" in f and f"test_trained_static_{q:g}" in f else "")
             + (f" Oracle: {f[f'oracle_{q:g}']} of the unpruned model." if f"oracle_{q:g}" in f else "")
             for q in f["keeps"]]
    recall, languages, tests = f[f"recall_router_{top_k_fraction:g}"], f["languages"], f["n_tests"]
    return "\n".join(lines) + f"""
- **Comparable performance?** {_comparable_sentence(f['verdict_sparse_activation'], comparable)}
- **Speed.** {speed_sentence(f)}
- **Per token.** At k = {top_k_fraction:g} x E the centroid router picks {recall} of each token's oracle
  experts. {per_token_sentence(f)} A masked router computes every neuron anyway: its speed would need a
  sparse kernel.
- **Strength of evidence.** {languages} languages, intervals from paired passage resampling, {tests} tests over
  languages, Holm-corrected; timings on a shared 2-core CPU ({f['noisy_timings']} of {len(f['keeps'])} keep fractions
  with noisy rounds), dense backbone {f['dense_tokens_per_second']:.0f} tokens/s; one small model whose output layer
  (262k words) is a large part of its cost.
"""
