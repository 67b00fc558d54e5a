"""The applications of chapters 08-10: pruning, per-layer pruning rates and sparse activation,
tested fairly. Notebooks call these as short steps; every number their prose quotes comes from
a ``findings_*`` function.

An :class:`Experiment` holds what every step shares: the model, its partition, the calibration
profile (frequencies rank the experts), the neuron importances (the language-agnostic
baselines), the evaluation text (:class:`babel_lib.evaluate.EvalSet`) and the protocol
(batch size, bootstrap resamples and seed). It builds plans and evaluates them **masked** by
default (:func:`babel_lib.prune.masked_condition`: the dropped experts' neuron values are zeroed,
the outputs of the pruned model; ``view='slice'`` evaluates the physically sliced model instead:
the same outputs up to summation order, and faster) with the evaluation cache, so a plan
evaluated by one chapter is read back by the next: the same plan (same dropped experts) on the
same text under the same view has the same cache key.

Methods (rankings; :data:`METHODS`): ``'language'`` (the evaluated language's own activation
frequency; each language is evaluated with the plan made for it), ``'multilingual'`` (mean
frequency over the calibration languages), ``'magnitude'`` and ``'wanda'`` (language-agnostic
importance on calibration text pooled over languages, see :mod:`babel_lib.prune`) and
``'random'`` (one plan per seed). Allocations: ``'uniform'``, ``'layerwise'``, ``'entropy'``
(per-layer rules drop exactly as many experts as the uniform plan). Per-layer rules use the
ranking's own frequencies as activation levels for the frequency rankings and the multilingual
mean frequencies for the others.

Statistics (the design's conventions): every comparison of two conditions in one language is a
perplexity ratio with a 95% percentile interval from a paired bootstrap over passages (the same
passage resample for both conditions; ``n_resamples`` >= 1,000, seeded) and a decision from the
interval ('beats X' when it lies wholly below 1, 'worse than X' wholly above, else
'indistinguishable'). Claims over languages are tested over languages, never over cells: per
rate (not pooled over rates), a sign-flip permutation test of the per-language log ratios (exact
over all 2^n sign patterns up to 16 languages), with the geometric-mean ratio and a bootstrap
interval over languages as the effect size, Holm-corrected within the table. Random pruning
with several seeds enters as the geometric mean of its seeds' perplexities; the seed-to-seed
spread is reported, not folded into the passage interval.

Sparse activation: a language's static set at keep fraction f (its top-f experts per layer by
its own frequency) *is* target-language pruning at rate 1 - f, uniform: the same plans and the
same cached evaluations as chapter 08. The centroid router is compared with it at equal
compute: the same number of experts per token and layer (plus the router's own E x hidden
multiply-adds). Speed is measured on physically sliced copies (:func:`speed_table`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from . import evaluate, prune, stats
from .cache import Store, cache_key
from .definitions import active_count
from .evaluate import DENSE, Condition, EvalSet
from .models import LoadedModel
from .moefy import Partition
from .profile import Profile

#: Every ranking method, in table order.
METHODS = ("language", "multilingual", "magnitude", "wanda", "random")
#: The language-agnostic rankings (no language's frequencies; "best agnostic" is chosen among these).
AGNOSTIC = ("magnitude", "wanda")
#: Readable names of the methods for tables and charts.
METHOD_LABELS = {"dense": "dense", "language": "target-language frequency",
                 "multilingual": "multilingual frequency", "magnitude": "activation magnitude",
                 "wanda": "Wanda-style (|W| x ||a||)", "random": "random"}
#: Readable names of the allocation rules.
RULE_LABELS = {"uniform": "uniform", "layerwise": "layer-wise (by share)", "entropy": "entropy rule"}
#: Readable names of the sparse-activation selectors.
SELECTOR_LABELS = {"static": "static set (target-language pruning)", "router": "centroid router (per token)",
                   "oracle": "oracle top-k (upper bound)"}
#: Sign-flip tests enumerate every sign pattern up to this many languages (exact p-values).
EXACT_SIGN_FLIP = 16
#: The fewest bootstrap resamples of a reported interval (the design's conventions); fewer only in a test run.
MIN_RESAMPLES = 1000


# ------------------------------------------------------------------------------ the experiment
@dataclass
class Experiment:
    """Model, partition, calibration profile, importances, evaluation text and protocol (module
    docstring). ``importance`` is needed for the 'magnitude' and 'wanda' methods
    (:func:`babel_lib.prune.neuron_importance`, or :func:`calibration_importance`). ``view``:
    how plans are applied, 'mask' (default) or 'slice'. ``max_deviation``: the bound (and the
    entropy rule's strength) of the per-layer rules. ``n_resamples`` below :data:`MIN_RESAMPLES`
    is accepted for quick test runs (the smoke profile) and flagged (:attr:`test_run`)."""

    lm: LoadedModel
    partition: Partition
    profile: Profile
    evalset: EvalSet
    importance: prune.NeuronImportance | None = None
    store: Store | None = None
    batch_size: int = 8
    head_dtype: str | None = "float32"
    n_resamples: int = 1000
    seed: int = 0
    max_deviation: float = 0.2
    progress: bool = False
    view: str = "mask"
    _windows: dict | None = field(default=None, repr=False)
    _results: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.view not in ("mask", "slice"):
            raise ValueError(f"view must be 'mask' (moe_view) or 'slice' (physically sliced), got {self.view!r}")
        if isinstance(self.n_resamples, bool) or not isinstance(self.n_resamples, (int, np.integer)) or \
                self.n_resamples < 1:
            raise ValueError(f"n_resamples must be a positive integer, got {self.n_resamples!r}")
        self.store = self.store or Store()
        self.partition.check_fits(self.lm)
        if self.profile.partition_key != self.partition.key:
            raise ValueError("the profile was counted under another partition than the one given")

    @property
    def test_run(self) -> bool:
        """Fewer bootstrap resamples than :data:`MIN_RESAMPLES` (the smoke profile): runs, but not evidence
        (:meth:`describe` says so)."""
        return self.n_resamples < MIN_RESAMPLES

    # -- what is evaluated --------------------------------------------------------
    @property
    def languages(self) -> list[str]:
        """The evaluated languages (the evaluation set's)."""
        return list(self.evalset.languages)

    @property
    def targets(self) -> list[str]:
        """Evaluated languages that have their own calibration frequencies (the 'language' method)."""
        return [l for l in self.languages if l in self.profile.languages]

    def windows(self) -> dict:
        """{lang: evaluation windows}, tokenised once."""
        if self._windows is None:
            self._windows = {l: evaluate.make_windows(self.lm.tokenizer, self.evalset(l), self.evalset.max_length)
                             for l in self.languages}
        return self._windows

    def levels(self) -> np.ndarray:
        """[L, E] multilingual mean activation frequency (levels of per-layer rules for rankings
        that are not frequencies)."""
        return self.profile.frequencies().mean(axis=0)

    # -- plans ----------------------------------------------------------------------
    def ranking(self, method: str, language: str | None = None, seed: int = 0) -> prune.Ranking:
        if method in prune.RANKINGS:
            return prune.rank_experts(self.profile, method, language=language if method == "language" else None,
                                      seed=seed)
        if method in prune.IMPORTANCE_RANKINGS:
            if self.importance is None:
                raise ValueError(f"method {method!r} needs the experiment's importance (prune.neuron_importance)")
            return prune.importance_ranking(self.importance, self.partition, method)
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")

    def plan(self, method: str, rate: float, allocation: str = "uniform", language: str | None = None,
             seed: int = 0) -> prune.PrunePlan:
        """The plan of ``method`` at ``rate`` (``language`` for 'language', ``seed`` for 'random')."""
        ranking = self.ranking(method, language, seed)
        levels = None if ranking.frequency_based or allocation == "uniform" else self.levels()
        return prune.prune_plan(ranking, rate, allocation=allocation, levels=levels,
                                max_deviation=self.max_deviation)

    def condition(self, plan: prune.PrunePlan, name: str | None = None) -> Condition:
        """The plan as an evaluation condition: masked (``view='mask'``, the default) or physically
        sliced (``'slice'``: the same outputs up to summation order, faster; other cache entries)."""
        make = prune.masked_condition if self.view == "mask" else prune.sliced_condition
        return make(self.lm, self.partition, plan, name)

    # -- evaluation -----------------------------------------------------------------
    def results(self, condition: Condition, languages: list[str] | None = None) -> dict[str, dict]:
        """{lang: window result} of ``condition`` (evaluated once; cached in memory and in the Store)."""
        langs = self.languages if languages is None else list(languages)
        spec = cache_key(condition.spec)
        todo = [l for l in langs if (spec, l) not in self._results]
        if todo:
            got = evaluate.window_results(self.lm, todo, condition, batch_size=self.batch_size,
                                          head_dtype=self.head_dtype, store=self.store, windows=self.windows(),
                                          evalset=self.evalset)
            for l, r in got.items():
                self._results[(spec, l)] = r
        return {l: self._results[(spec, l)] for l in langs}

    def dense(self, languages: list[str] | None = None) -> dict[str, dict]:
        return self.results(DENSE, languages)

    def method_results(self, method: str, rate: float, allocation: str = "uniform", seed: int = 0,
                       languages: list[str] | None = None) -> tuple[dict[str, dict], dict[str, prune.PrunePlan]]:
        """({lang: result}, {lang: plan}) of one grid condition; 'language' evaluates each language
        with its own plan (languages without calibration frequencies are left out)."""
        langs = self.languages if languages is None else list(languages)
        if method == "language":
            out, plans = {}, {}
            for l in [l for l in langs if l in self.profile.languages]:
                plans[l] = self.plan("language", rate, allocation, language=l)
                out[l] = self.results(self.condition(plans[l]), [l])[l]
            return out, plans
        plan = self.plan(method, rate, allocation, seed=seed)
        return self.results(self.condition(plan), langs), {l: plan for l in langs}

    def compare(self, reference: list[dict] | dict, other: list[dict] | dict, names=("reference", "other"),
                level: float = 0.95) -> dict:
        """Ratio of the geometric-mean perplexity of ``other`` over ``reference`` (results of one
        language; a list = several conditions, e.g. random seeds) with its paired passage
        bootstrap interval and decision (:func:`paired_ratio`)."""
        return paired_ratio(reference, other, self.n_resamples, self.seed, names, level)

    def dense_table(self) -> pd.DataFrame:
        """The dense model's perplexity table (with the corpus of each language)."""
        return evaluate.perplexity(self.lm, self.languages, DENSE, batch_size=self.batch_size,
                                   head_dtype=self.head_dtype, store=self.store, windows=self.windows(),
                                   evalset=self.evalset)

    def text_table(self) -> pd.DataFrame:
        """Per evaluated language: name, corpus, the text used, passages, characters, tokens, tokens per
        character (:meth:`babel_lib.evaluate.EvalSet.table` with readable names)."""
        table = self.evalset.table()
        table.insert(1, "name", table["language"].map(evaluate.language_labels(table["language"])))
        table["text"] = table["text"].map(evaluate.language_labels(table["text"]))
        return table

    def describe(self, text: bool = True) -> str:
        """The evaluation protocol, generated from the run: the text chosen (``text=False``: left out,
        e.g. where :meth:`babel_lib.evaluate.EvalSet.describe` was shown already), then the windows and
        tokens and the intervals."""
        warning = (f" **Test run**: fewer than the {MIN_RESAMPLES:,} resamples a reported interval needs; "
                   "these numbers are not evidence." if self.test_run else "")
        return (f"{self.evalset.describe() + ' ' if text else ''}{evaluate.describe(self.dense_table())} Intervals: "
                f"95% percentile "
                f"intervals of a paired bootstrap over passages ({self.n_resamples:,} resamples, seed "
                f"{self.seed}).{warning}")


def calibration_importance(lm: LoadedModel, profile: Profile, passages, max_length: int | None = None,
                           batch_size: int = 8, store: Store | None = None,
                           progress: bool = False) -> prune.NeuronImportance:
    """Neuron importances on the same calibration passages as ``profile`` (those it kept), pooled
    over its languages (:func:`babel_lib.prune.neuron_importance`)."""
    keep = [passages.ids.index(i) for i in profile.passage_ids if i in passages.ids]
    if len(keep) != len(profile.passage_ids):
        raise ValueError("the passages given are not the ones the profile was counted on")
    text = passages.select(keep)
    if list(text.languages) != list(profile.languages):
        text = type(passages)(text.corpus, text.split, text.ids, list(profile.languages),
                              {l: text.text[l] for l in profile.languages})
    return prune.neuron_importance(lm, text, max_length or profile.corpus.get("max_length", 128), batch_size, store,
                                   progress)


# ------------------------------------------------------------------------------ paired ratios
def _losses(results: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [evaluate.passage_losses(r) for r in results]
    for r in results[1:]:
        evaluate._check_paired(results[0], r)
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]).astype(np.float64)


def paired_ratio(reference, other, n_resamples: int = 1000, seed: int = 0, names=("reference", "other"),
                 level: float = 0.95) -> dict:
    """exp(mean log ppl(other) - mean log ppl(reference)) on the same windows of one language, with a
    paired bootstrap over passages: each resample draws one set of passages for every condition.

    reference, other: a window result or a list of them (the mean of log perplexities over a
    list is the log of their geometric mean, e.g. over random seeds). With one result each this
    is exactly :func:`babel_lib.evaluate.paired_comparison`. Returns {'ratio', 'low', 'high',
    'decision' ('beats <reference>' / 'worse than <reference>' / 'indistinguishable'), 'passages'}.
    """
    ref = reference if isinstance(reference, list) else [reference]
    oth = other if isinstance(other, list) else [other]
    if not ref or not oth:
        raise ValueError("both sides need at least one result")
    nll, tok = _losses(ref + oth)
    a = len(ref)

    def stat(W):
        lp = (W @ nll.T) / (W @ tok.T)  # [m, conditions]
        return np.exp(lp[:, a:].mean(axis=1) - lp[:, :a].mean(axis=1))

    res = stats.bootstrap_units(stat, nll.shape[1], n_resamples, seed, "percentile", level, batched=True)
    return {"ratio": float(res.estimate), "low": float(res.low), "high": float(res.high),
            "decision": decision(res.low, res.high, names[0]), "passages": int(nll.shape[1])}


def decision(low: float, high: float, reference: str) -> str:
    """'beats <reference>' (interval of other / reference wholly below 1), 'worse than <reference>'
    (wholly above) or 'indistinguishable' (from :func:`babel_lib.stats.ratio_decision`)."""
    word = stats.ratio_decision((low, high), a="ref", b="other")
    return {"other better": f"beats {reference}", "ref better": f"worse than {reference}"}.get(word, word)


# ------------------------------------------------------------------------------ the grid
@dataclass
class Grid:
    """The conditions of a pruning grid: every (method, rate, allocation) and, for 'random', every
    seed. ``baseline``: the method every row is also compared with (None: none), matched by
    language, rate and allocation (several random seeds: their geometric mean)."""

    rates: tuple = (0.25, 0.5)
    methods: tuple = METHODS
    allocations: tuple = ("uniform",)
    seeds: tuple = (0,)
    baseline: str | None = "random"

    def __post_init__(self):
        self.rates = tuple(float(prune.check_rate(r)) for r in self.rates)
        self.methods = tuple(self.methods)
        self.allocations = tuple(self.allocations)
        self.seeds = tuple(int(s) for s in self.seeds)
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ValueError(f"methods must be among {METHODS}, got {bad}")
        bad = [a for a in self.allocations if a not in prune.ALLOCATIONS]
        if bad:
            raise ValueError(f"allocations must be among {prune.ALLOCATIONS}, got {bad}")
        if "random" in self.methods and not self.seeds:
            raise ValueError("the random method needs at least one seed")
        if self.baseline is not None and self.baseline not in self.methods:
            raise ValueError(f"the baseline {self.baseline!r} is not among the methods {self.methods}")

    def conditions(self) -> list[tuple[str, float, str, int | None]]:
        """(method, rate, allocation, seed) in evaluation order (seed None for deterministic methods)."""
        out = []
        for allocation, rate, method in itertools.product(self.allocations, self.rates, self.methods):
            for seed in (self.seeds if method == "random" else (None,)):
                out.append((method, rate, allocation, seed))
        return out

    def evaluations(self, n_languages: int) -> int:
        """Language evaluations the grid needs (dense included), before caching."""
        return n_languages * (1 + len(self.conditions()))


def _row(exp: Experiment, lang: str, res: dict, dense: dict, method: str, rate: float, allocation: str,
         seed, plan) -> dict:
    s = evaluate.summarize(res, METHOD_LABELS.get(method, method), lang, exp.lm)
    row = {"language": lang, "corpus": exp.evalset.source[lang], "method": method, "rate": rate,
           "allocation": allocation, "seed": seed,
           "sparsity": 0.0 if plan is None else plan.sparsity,
           "lowest_layer_rate": 0.0 if plan is None else float(plan.layer_rates.min()),
           "highest_layer_rate": 0.0 if plan is None else float(plan.layer_rates.max()),
           "perplexity": s["perplexity"], "bits_per_char": s["bits_per_char"], "tokens": s["tokens"],
           "passages": s["passages"], "plan": "" if plan is None else plan.key}
    if plan is None:
        row.update(ratio=1.0, low=1.0, high=1.0, decision="dense")
    else:
        c = exp.compare(dense, res, ("dense", method))
        row.update(ratio=c["ratio"], low=c["low"], high=c["high"], decision=c["decision"])
    return row


def run_grid(exp: Experiment, grid: Grid) -> pd.DataFrame:
    """Evaluate every condition of ``grid`` on the evaluation set (cached) and return a tidy table.

    One row per (language, method, rate, allocation, seed), dense rows first (method 'dense',
    rate 0). Columns: language, corpus, method, rate, allocation, seed, sparsity (measured
    fraction of experts dropped), lowest/highest_layer_rate, perplexity, bits_per_char, tokens,
    passages, plan (its key); ratio, low, high, decision: perplexity / dense with its paired 95%
    interval and 'beats dense' / 'worse than dense' / 'indistinguishable'; baseline,
    baseline_ratio, baseline_low, baseline_high, baseline_decision: the same against
    ``grid.baseline`` ('beats random', ...), NaN on the baseline's own rows.
    """
    from tqdm import tqdm

    dense = exp.dense()
    rows = [_row(exp, l, dense[l], dense[l], "dense", 0.0, "", None, None) for l in exp.languages]
    keys: list[tuple | None] = [None] * len(rows)
    store: dict[tuple, dict] = {}
    for method, rate, allocation, seed in tqdm(grid.conditions(), desc="grid", disable=not exp.progress):
        results, plans = exp.method_results(method, rate, allocation, seed if seed is not None else 0)
        for l, r in results.items():
            store[(method, rate, allocation, seed, l)] = r
            rows.append(_row(exp, l, r, dense[l], method, rate, allocation, seed, plans[l]))
            keys.append((method, rate, allocation, seed, l))
    extra = []
    seeds = grid.seeds if grid.baseline == "random" else (None,)
    for key in keys:
        cols = {"baseline": grid.baseline, "baseline_ratio": np.nan, "baseline_low": np.nan, "baseline_high": np.nan,
                "baseline_decision": ""}
        if grid.baseline is not None and key is not None and key[0] != grid.baseline:
            method, rate, allocation, _, lang = key
            refs = [store.get((grid.baseline, rate, allocation, s, lang)) for s in seeds]
            if all(x is not None for x in refs):
                c = exp.compare(refs, store[key], (grid.baseline, method))
                cols.update(baseline_ratio=c["ratio"], baseline_low=c["low"], baseline_high=c["high"],
                            baseline_decision=c["decision"])
        extra.append(cols)
    table = pd.concat([pd.DataFrame(rows), pd.DataFrame(extra)], axis=1)
    table["seed"] = table["seed"].astype("Int64")
    return table


# ------------------------------------------------------------------------------ tests over languages
def sign_flip_test(d, permutations: int = stats.HEADLINE_PERMUTATIONS, seed: int = 0,
                   alternative: str = "two-sided") -> stats.PermutationResult:
    """Paired test over languages: is the mean of the per-language differences ``d`` (e.g. log
    perplexity ratios) zero? Under the null each sign is equally likely, so the null
    distribution of the mean comes from flipping signs: over all 2^n patterns (exact) for n <=
    16 languages, else ``permutations`` random patterns (p = (1 + hits) / (1 + permutations)).
    Two-sided by default ('less': the mean is below 0). NaN differences are left out."""
    d = np.asarray(d, dtype=np.float64)
    d = d[np.isfinite(d)]
    n = len(d)
    if n < 2:
        raise ValueError("a test over languages needs at least 2 languages")
    obs = float(d.mean())
    if n <= EXACT_SIGN_FLIP:
        signs = 1.0 - 2.0 * ((np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]) & 1)
        null = signs @ d / n
        tol = 1e-12 * max(1.0, np.abs(d).max())
        if alternative == "two-sided":
            hits = np.abs(null) >= abs(obs) - tol
        elif alternative == "less":
            hits = null <= obs + tol
        elif alternative == "greater":
            hits = null >= obs - tol
        else:
            raise ValueError(f"alternative must be 'two-sided', 'less' or 'greater', got {alternative!r}")
        return stats.PermutationResult(obs, float(hits.mean()), int(2 ** n), n, "sign-flip (exact)", alternative,
                                       "signs of the per-language differences flipped, all patterns")
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(permutations, n))
    null = signs @ d / n
    p = stats.permutation_p(obs, null, alternative, permutations)
    return stats.PermutationResult(obs, p, int(permutations), n, "sign-flip (random)", alternative,
                                   "signs of the per-language differences flipped at random")


def _over_languages(d: np.ndarray, n_resamples: int, seed: int) -> tuple[float, float, float]:
    """Geometric-mean ratio exp(mean d) with a percentile bootstrap interval over languages."""
    res = stats.bootstrap_units(lambda W: np.exp((W @ d) / W.sum(axis=1)), len(d), max(n_resamples, 1000), seed,
                                batched=True)
    return float(res.estimate), float(res.low), float(res.high)


def _log_ppl(results: list[dict]) -> float:
    """Mean over the results of log perplexity (several random seeds: the log of their geometric mean)."""
    return float(np.mean([float(np.sum(r["window_nll"])) / float(np.sum(r["window_tokens"])) for r in results]))


def _side(exp: Experiment, grid_table: pd.DataFrame, method: str, rate: float, allocation: str,
          seeds) -> dict[str, list[dict]]:
    """{lang: [results]} of one side of a comparison (random: every seed of the grid table)."""
    if method == "dense":
        return {l: [r] for l, r in exp.dense().items()}
    rows = grid_table[(grid_table["method"] == method) & np.isclose(grid_table["rate"], rate) &
                      (grid_table["allocation"] == allocation)]
    out: dict[str, list[dict]] = {}
    for s in (sorted(set(rows["seed"].dropna().astype(int))) if method == "random" else [None]):
        res, _ = exp.method_results(method, rate, allocation, 0 if s is None else s)
        for l, r in res.items():
            out.setdefault(l, []).append(r)
    return out


def best_agnostic(grid_table: pd.DataFrame, rate: float, allocation: str = "uniform",
                  candidates=AGNOSTIC) -> str | None:
    """The language-agnostic method with the lowest mean log ratio to dense over languages at this
    rate and allocation (chosen once per rate, on the same data: this favours the baseline, so a
    method that beats it faces the harder test)."""
    rows = grid_table[grid_table["method"].isin(candidates) & np.isclose(grid_table["rate"], rate) &
                      (grid_table["allocation"] == allocation)]
    if rows.empty:
        return None
    return str(rows.assign(lr=np.log(rows["ratio"])).groupby("method")["lr"].mean().idxmin())


def _compared_sides(exp: Experiment, grid_table: pd.DataFrame, comparisons, allocation: str, rates):
    """For every (method, against) pair and rate (default: the grid's pruned rates): (method,
    against, resolved against, rate, method's evaluations, against's evaluations), each {language:
    results}; 'best agnostic' is resolved per rate, and skipped where the grid has none."""
    rates = sorted(set(grid_table.loc[grid_table["method"] != "dense", "rate"])) if rates is None else list(rates)
    for (method, against), rate in itertools.product(comparisons, rates):
        resolved = best_agnostic(grid_table, rate, allocation) if against == "best agnostic" else against
        if resolved is None:
            continue
        yield (method, against, resolved, rate, _side(exp, grid_table, method, rate, allocation, None),
               _side(exp, grid_table, resolved, rate, allocation, None))


def language_tests(exp: Experiment, grid_table: pd.DataFrame, comparisons=(("language", "best agnostic"),
                                                                          ("language", "random")),
                   allocation: str = "uniform", rates=None, permutations: int = stats.HEADLINE_PERMUTATIONS,
                   correction: str = "holm") -> pd.DataFrame:
    """Tests over languages, per rate: does ``method`` give lower perplexity than ``against``?

    comparisons: (method, against) pairs; against may be a method, 'dense' or 'best agnostic'
    (:func:`best_agnostic`, resolved per rate). Per (comparison, rate): the per-language log
    ratio d = log ppl(method) - log ppl(against) (random: geometric mean over seeds) over the
    languages both sides have; effect = geometric-mean ratio exp(mean d) with a bootstrap
    interval over languages; a two-sided sign-flip test (:func:`sign_flip_test`); and how many
    languages the paired passage intervals decide each way. ``p_adjusted``: ``correction``
    ('holm' or 'bh') over the rows of this table (one family per chapter: concatenate tables
    first when a chapter has several, then :func:`babel_lib.stats.correct`).
    """
    rows = []
    for method, against, resolved, rate, a, b in _compared_sides(exp, grid_table, comparisons, allocation, rates):
        langs = [l for l in exp.languages if l in a and l in b]
        if len(langs) < 2:
            continue
        d = np.array([_log_ppl(a[l]) - _log_ppl(b[l]) for l in langs])
        per = [exp.compare(b[l], a[l], (resolved, method)) for l in langs]
        test = sign_flip_test(d, permutations, exp.seed)
        gm, lo, hi = _over_languages(d, exp.n_resamples, exp.seed)
        rows.append({"method": method, "against": against, "against_method": resolved, "rate": rate,
                     "allocation": allocation, "languages": len(langs), "ratio": gm, "low": lo, "high": hi,
                     "wins": int((d < 0).sum()),
                     "wins_beyond_noise": sum(c["decision"].startswith("beats") for c in per),
                     "losses_beyond_noise": sum(c["decision"].startswith("worse") for c in per),
                     "p_value": test.p_value, "test": test.method, "permutations": test.permutations})
    table = pd.DataFrame(rows)
    if not table.empty:
        table = stats.correct(table, "p_value", correction, "p_adjusted")
    return table


def comparison_cells(exp: Experiment, grid_table: pd.DataFrame, comparisons=(("language", "best agnostic"),),
                     allocation: str = "uniform", rates=None) -> pd.DataFrame:
    """The per-language side of :func:`language_tests`: for every (method, against) pair, rate and
    language, the perplexity ratio method / against on the same passages with its paired 95%
    interval and decision ('beats <against>' / 'worse than <against>' / 'indistinguishable';
    random: the geometric mean over the grid's seeds). ``against`` may be a method, 'dense' or
    'best agnostic' (resolved per rate by :func:`best_agnostic`, named in ``against_method``).

    Rows: method, against, against_method, rate, allocation, language, corpus, ratio, low, high,
    decision. Evaluations come from the cache (the grid has run them).
    """
    rows = []
    for method, against, resolved, rate, a, b in _compared_sides(exp, grid_table, comparisons, allocation, rates):
        for l in [l for l in exp.languages if l in a and l in b]:
            c = exp.compare(b[l], a[l], (resolved, method))
            rows.append({"method": method, "against": against, "against_method": resolved, "rate": rate,
                         "allocation": allocation, "language": l, "corpus": exp.evalset.source[l],
                         "ratio": c["ratio"], "low": c["low"], "high": c["high"],
                         "decision": decision(c["low"], c["high"], against if against != "best agnostic"
                                              else "best agnostic")})
    return pd.DataFrame(rows, columns=["method", "against", "against_method", "rate", "allocation", "language",
                                       "corpus", "ratio", "low", "high", "decision"])


# ------------------------------------------------------------------------------ cross-language matrix
def cross_language_matrix(exp: Experiment, rate: float, allocation: str = "uniform",
                          languages: list[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """Pruned for A (its own frequency ranking, ``rate``), evaluated on B, for every A, B.

    Returns (cells, summary). cells: pruned_for, evaluated_on, own (A == B), perplexity, ratio_dense
    (ppl / dense on B), ratio_own, low, high (ppl / ppl of B's own-language model on B, paired 95%
    interval: above 1 = B's own model is better), decision ('beats own' / 'worse than own' /
    'indistinguishable'). summary: languages, own_best (languages whose own model has the lowest
    perplexity of the column), own_best_beyond_noise (those where every other language's model
    is worse beyond noise: each interval wholly above 1), with their keys in own_best_languages /
    own_best_beyond_noise_languages, language_keys (the matrix's languages),
    mean_ratio_dense_diagonal / _off and mean_ratio_own_off (geometric means), cells_worse_than_own
    / cells_better_than_own (off-diagonal cells decided by their intervals) and cells_off.
    """
    langs = [l for l in (exp.targets if languages is None else languages) if l in exp.profile.languages]
    if len(langs) < 2:
        raise ValueError("a cross-language matrix needs at least 2 languages with calibration frequencies")
    dense = exp.dense(langs)
    res = {}
    for a in langs:
        got = exp.results(exp.condition(exp.plan("language", rate, allocation, language=a)), langs)
        for b in langs:
            res[(a, b)] = got[b]
    rows = []
    for a, b in itertools.product(langs, langs):
        s = evaluate.summarize(res[(a, b)], a, b, exp.lm)
        dn = evaluate.summarize(dense[b], "dense", b, exp.lm)
        c = exp.compare(res[(b, b)], res[(a, b)], ("own", a)) if a != b else \
            {"ratio": 1.0, "low": 1.0, "high": 1.0, "decision": "own"}
        rows.append({"pruned_for": a, "evaluated_on": b, "own": a == b, "rate": rate, "allocation": allocation,
                     "perplexity": s["perplexity"], "ratio_dense": s["perplexity"] / dn["perplexity"],
                     "ratio_own": c["ratio"], "low": c["low"], "high": c["high"], "decision": c["decision"]})
    cells = pd.DataFrame(rows)
    best, beyond = [], []
    for b in langs:
        col = cells[cells["evaluated_on"] == b]
        if col.loc[col["perplexity"].idxmin(), "pruned_for"] == b:
            best.append(b)
        others = col[~col["own"]]
        if (others["low"] > 1).all():
            beyond.append(b)
    diag = cells[cells["own"]]
    off = cells[~cells["own"]]
    summary = {"languages": len(langs), "rate": rate, "own_best": len(best), "own_best_languages": best,
               "own_best_beyond_noise": len(beyond), "own_best_beyond_noise_languages": beyond, "language_keys": langs,
               "mean_ratio_dense_diagonal": float(np.exp(np.log(diag["ratio_dense"]).mean())),
               "mean_ratio_dense_off": float(np.exp(np.log(off["ratio_dense"]).mean())),
               "mean_ratio_own_off": float(np.exp(np.log(off["ratio_own"]).mean())),
               "cells_worse_than_own": int((off["low"] > 1).sum()),
               "cells_better_than_own": int((off["high"] < 1).sum()), "cells_off": len(off)}
    return cells, summary


# ------------------------------------------------------------------------------ per-layer rates
def allocation_comparison(exp: Experiment, grid_table: pd.DataFrame, rules=("layerwise", "entropy"),
                          reference: str = "uniform", methods=None, rates=None,
                          permutations: int = stats.HEADLINE_PERMUTATIONS,
                          correction: str = "holm") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-layer rules against one uniform rate, per method and rate (never pooled over rates).

    Returns (cells, tests). cells: one row per (method, rule, rate, language): ratio = ppl(rule) /
    ppl(uniform) with its paired passage interval and decision ('beats uniform' / 'worse than
    uniform' / 'indistinguishable'); random: the geometric means over seeds. tests: per (method,
    rule, rate) a sign-flip test over languages of the log ratios, geometric-mean ratio with a
    bootstrap interval over languages, wins, p_value and p_adjusted (``correction`` over the
    rows of this table). Plans come from ``exp`` (cached), so the grid table only lists what was
    run: methods and rates default to those it holds for both allocations.
    """
    g = grid_table[grid_table["method"] != "dense"]
    methods = list(dict.fromkeys(g["method"])) if methods is None else list(methods)
    rates = sorted(set(g["rate"])) if rates is None else list(rates)
    cells, tests = [], []
    for method, rule, rate in itertools.product(methods, rules, rates):
        a = _side(exp, grid_table, method, rate, rule, None)
        b = _side(exp, grid_table, method, rate, reference, None)
        langs = [l for l in exp.languages if l in a and l in b]
        if not langs:
            continue
        d = []
        for l in langs:
            c = exp.compare(b[l], a[l], (reference, rule))
            d.append(_log_ppl(a[l]) - _log_ppl(b[l]))
            cells.append({"method": method, "rule": rule, "rate": rate, "language": l, "corpus": exp.evalset.source[l],
                          "ratio": c["ratio"], "low": c["low"], "high": c["high"], "decision": c["decision"]})
        if len(langs) >= 2:
            d = np.array(d)
            test = sign_flip_test(d, permutations, exp.seed)
            gm, lo, hi = _over_languages(d, exp.n_resamples, exp.seed)
            tests.append({"method": method, "rule": rule, "rate": rate, "languages": len(langs), "ratio": gm,
                          "low": lo, "high": hi, "wins": int((d < 0).sum()),
                          "wins_beyond_noise": sum(c["decision"] == f"beats {reference}" for c in cells[-len(langs):]),
                          "losses_beyond_noise": sum(c["decision"] == f"worse than {reference}"
                                                     for c in cells[-len(langs):]),
                          "p_value": test.p_value, "test": test.method})
    tests = pd.DataFrame(tests)
    if not tests.empty:
        tests = stats.correct(tests, "p_value", correction, "p_adjusted")
    return pd.DataFrame(cells), tests


def layer_rates(exp: Experiment, rates, rules=("uniform", "layerwise", "entropy"),
                method: str = "multilingual") -> pd.DataFrame:
    """Per-layer rates of each rule (one ranking): rule, rate, layer, layer_rate, entropy (normalised
    entropy of the layer's activation levels), bottom_half_share (share of the layer's activations
    in its least-used half of experts), measured_sparsity."""
    ranking = exp.ranking(method)
    levels = ranking.scores if ranking.frequency_based else exp.levels()
    h = prune.layer_entropy(levels)
    share = np.sort(levels / np.maximum(levels.sum(axis=1, keepdims=True), 1e-300), axis=1)
    bottom = share[:, : share.shape[1] // 2].sum(axis=1)
    rows = []
    for rule, rate in itertools.product(rules, rates):
        plan = exp.plan(method, rate, rule)
        rows += [{"rule": rule, "rate": float(rate), "layer": l, "layer_rate": float(plan.layer_rates[l]),
                  "entropy": float(h[l]), "bottom_half_share": float(bottom[l]), "measured_sparsity": plan.sparsity}
                 for l in range(plan.n_layers)]
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ sparse activation
def static_plan(exp: Experiment, language: str, keep: float) -> prune.PrunePlan:
    """A language's static expert set at keep fraction ``keep``: its top experts per layer by its
    own frequency, i.e. target-language pruning at rate 1 - keep, uniform (the same plan, so the
    same cached evaluation as chapter 08's grid)."""
    if isinstance(keep, bool) or not 0 < float(keep) <= 1:
        raise prune.PruneRateError(f"keep fraction must be in (0, 1], got {keep!r}")
    return exp.plan("language", 1.0 - float(keep), "uniform", language=language)


def sparse_activation(exp: Experiment, keep_fractions=(0.75, 0.5), router_features: str = "gate",
                      oracle: bool = False, languages: list[str] | None = None) -> pd.DataFrame:
    """Static high-frequency sets vs the centroid router at equal compute, per keep fraction.

    For each keep fraction f and language: 'static' (:func:`static_plan`, m = the experts it keeps
    per layer) and 'router' (per token the centroid router's top m experts of each layer,
    :func:`babel_lib.prune.routed_condition`: the same number of experts per token and layer;
    masked, so it shows quality, not speed), optionally 'oracle' (each token's top m experts by
    sum|a|: needs every neuron computed, an upper bound). Rows: selector, keep, experts (m),
    experts_per_layer (E), language, corpus, perplexity, bits_per_char, ratio / low / high /
    decision against dense, and for the router and oracle vs_static_ratio / _low / _high /
    _decision (router / static: 'beats static' when the router is better beyond noise).
    """
    langs = [l for l in (exp.targets if languages is None else languages) if l in exp.profile.languages]
    dense = exp.dense(langs)
    router = prune.CentroidRouter.build(exp.lm.model, exp.partition, features=router_features)
    E = exp.partition.n_experts
    rows = []
    for keep in keep_fractions:
        plans = {l: static_plan(exp, l, keep) for l in langs}
        m = int(E - plans[langs[0]].dropped_per_layer[0])
        fraction = m / E
        if active_count(fraction, E) != m:
            raise AssertionError("equal compute: the router's k must equal the static set's size")
        static = {l: exp.results(exp.condition(plans[l]), [l])[l] for l in langs}
        per_token = {"router": exp.results(prune.routed_condition(exp.lm, exp.partition, router, fraction,
                                                                  f"router {m}/{E}"), langs)}
        if oracle:
            per_token["oracle"] = exp.results(prune.oracle_condition(exp.lm, exp.partition, fraction,
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


def make_batch(lm: LoadedModel, batch: int, length: int, language: str = "eng",
               corpus_name: str = "udhr") -> torch.Tensor:
    """[batch, length] token ids of real text for timing: ``language``'s whole text of the corpus
    (repeated as needed), cut into rows that start with BOS, on the model's device."""
    from . import corpus

    text = " ".join(corpus.texts(language, "all", corpus=corpus_name))
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = lm.tokenizer.bos_token_id
    body = length - 1 if bos is not None else length
    need = batch * body
    ids = (ids * (need // len(ids) + 1))[:need]
    head = [bos] if bos is not None else []
    rows = [head + ids[i * body:(i + 1) * body] for i in range(batch)]
    return torch.tensor(rows, device=lm.device)


def speed_table(exp: Experiment, keep_fractions=(0.75, 0.5), batch: int = 2, length: int | None = None,
                rounds: int = 5, warmup: int = 1, language: str | None = None,
                whole_model: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Measured speed-up of physically sliced models over the dense one, per keep fraction.

    The static set of ``language`` (default: the first target language; under the uniform plan
    every language's sliced model has the same shapes) is sliced into a copy sharing every other
    tensor (:func:`babel_lib.prune.prune_model` with share=True). Timed interleaved
    (:func:`babel_lib.prune.time_interleaved`) on one batch of real text (:func:`make_batch`):
    every layer's MLP alone on its recorded input ('FFN'), the backbone forward, and with
    ``whole_model`` the whole model (backbone and LM head on every position: the cost profile of
    generating a token, whose head the pruning does not touch). Returns (speed, times): speed rows
    keep, experts, computed (fraction of FFN neurons kept), ffn_speedup / ffn_low / ffn_high,
    backbone_speedup / _low / _high and model_speedup / _low / _high (median and range over rounds
    of dense time / sliced time; NaN without ``whole_model``), noisy (a backbone speed-up above the
    FFN-only one, a whole-model speed-up above the backbone one, or a round in which the sliced FFN
    was slower: the machine's noise exceeds the effect), dense_tokens_per_second (the dense
    backbone); times: the raw timings.
    """
    from .adapters import backbone

    lang = language or exp.targets[0]
    length = length or exp.evalset.max_length
    ids = make_batch(exp.lm, batch, length)
    inputs = prune.ffn_inputs(exp.lm, ids)
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
        fns[f"{name} | FFN"] = prune.mlp_callable(m, inputs)
        fns[f"{name} | backbone"] = body_fn(m)
        if whole_model:
            fns[f"{name} | model"] = model_fn(m)
    times = prune.time_interleaved(fns, rounds=rounds, warmup=warmup)
    dense_backbone = float(times[times["name"] == "dense | backbone"]["seconds"].median())
    rows = []
    for keep in keep_fractions:
        name = f"keep {keep:g}"
        f, fl, fh = prune.speedup(times, "dense | FFN", f"{name} | FFN", spread=True)
        b, bl, bh = prune.speedup(times, "dense | backbone", f"{name} | backbone", spread=True)
        w, wl, wh = (prune.speedup(times, "dense | model", f"{name} | model", spread=True) if whole_model
                     else (np.nan, np.nan, np.nan))
        rows.append({"keep": float(keep), "experts": int(exp.partition.n_experts - plans[keep].dropped_per_layer[0]),
                     "computed": 1 - plans[keep].sparsity, "ffn_speedup": f, "ffn_low": fl, "ffn_high": fh,
                     "backbone_speedup": b, "backbone_low": bl, "backbone_high": bh,
                     "model_speedup": w, "model_low": wl, "model_high": wh,
                     "noisy": bool(b > f * 1.02 or fl < 1 or (whole_model and w > b * 1.02)),
                     "batch": int(ids.shape[0]), "length": int(ids.shape[1]), "rounds": rounds,
                     "dense_tokens_per_second": float(ids.numel() / dense_backbone)})
    return pd.DataFrame(rows), times


def quality_vs_speed(sparse: pd.DataFrame, speed: pd.DataFrame, n_resamples: int = 10000,
                     seed: int = 0) -> pd.DataFrame:
    """Per keep fraction and selector: the geometric-mean perplexity ratio to dense over languages
    with a bootstrap interval over languages, the range of per-language ratios, how many
    languages are worse than dense beyond noise, and the measured speed-ups of the static set's
    sliced model (the router's masked evaluation has no speed-up of its own)."""
    rows = []
    for (selector, keep), g in sparse.groupby(["selector", "keep"], sort=False):
        d = np.log(g["ratio"].to_numpy())
        gm, lo, hi = _over_languages(d, n_resamples, seed) if len(d) >= 2 else (float(np.exp(d[0])), np.nan, np.nan)
        row = {"selector": selector, "keep": keep, "experts": int(g["experts"].iloc[0]), "languages": len(g),
               "ratio": gm, "low": lo, "high": hi, "best": float(g["ratio"].min()), "worst": float(g["ratio"].max()),
               "worse_than_dense": int((g["decision"] == "worse than dense").sum()),
               "beats_dense": int((g["decision"] == "beats dense").sum())}
        sp = speed[np.isclose(speed["keep"], keep)]
        if selector == "static" and not sp.empty:
            s = sp.iloc[0]
            row.update({k: s[k] for k in ("ffn_speedup", "ffn_low", "ffn_high", "backbone_speedup", "backbone_low",
                                          "backbone_high", "model_speedup", "model_low", "model_high", "noisy")
                        if k in s.index})
        rows.append(row)
    return pd.DataFrame(rows)


def sparse_tests(sparse: pd.DataFrame, n_resamples: int = 1000, seed: int = 0,
                 permutations: int = stats.HEADLINE_PERMUTATIONS, correction: str = "holm") -> pd.DataFrame:
    """Tests over languages of :func:`sparse_activation`'s rows, per keep fraction: the static set
    against dense (is it worse?), and every per-token selector (router, oracle) against the static
    set at equal compute. Per row: the per-language log ratios d (from the paired comparisons),
    the geometric-mean ratio exp(mean d) with a bootstrap interval over languages, a two-sided
    sign-flip test (:func:`sign_flip_test`: exact up to 16 languages), how many languages the
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
            test = sign_flip_test(d, permutations, seed)
            gm, lo, hi = _over_languages(d, n_resamples, seed)
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
                  router_features: str = "gate", languages: list[str] | None = None) -> pd.DataFrame:
    """Recall of each token's oracle top-k experts by the centroid router and by the language's
    static sets (:func:`babel_lib.prune.router_recall` on each language's evaluation windows;
    one dense pass per language). Adds a language column."""
    langs = [l for l in (exp.targets if languages is None else languages) if l in exp.profile.languages]
    router = prune.CentroidRouter.build(exp.lm.model, exp.partition, features=router_features)
    k = top_k_fraction or exp.profile.definitions.get("top_k_fraction", 0.2)
    frames = []
    for l in langs:
        static = {f"static {q:g}": static_plan(exp, l, q) for q in keep_fractions}
        r = prune.router_recall(exp.lm, exp.partition, router, exp.windows()[l].input_ids,
                                sorted({float(k), *[float(q) for q in keep_fractions]}), exp.batch_size, static=static)
        frames.append(r.assign(language=l))
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------ readable tables
def labelled(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of a table of this module with readable names beside the keys, for charts and tables:
    ``name`` (from ``language``), ``pruned_for_name`` / ``evaluated_on_name`` (the matrix),
    ``ranking`` (from ``method``, :data:`METHOD_LABELS`), ``against_name`` (from
    ``against_method``) and ``against_label`` ('best agnostic (activation magnitude)', or the
    method's name), ``rule_name`` (from ``rule``, :data:`RULE_LABELS`), ``selector_name``
    (from ``selector``) and ``seed_name`` (from ``seed``: 'seed 0', '' for deterministic methods)."""
    out = table.copy()
    for key, name in (("language", "name"), ("pruned_for", "pruned_for_name"), ("evaluated_on", "evaluated_on_name")):
        if key in out.columns:
            out[name] = out[key].map(evaluate.language_labels(sorted(set(out[key]))))
    if "method" in out.columns:
        out["ranking"] = out["method"].map(lambda m: METHOD_LABELS.get(m, m))
    if "against_method" in out.columns:
        out["against_name"] = out["against_method"].map(lambda m: METHOD_LABELS.get(m, m))
        if "against" in out.columns:
            out["against_label"] = [f"{a} ({METHOD_LABELS.get(m, m)})" if a != m else METHOD_LABELS.get(a, a)
                                    for a, m in zip(out["against"], out["against_method"])]
    if "rule" in out.columns:
        out["rule_name"] = out["rule"].map(lambda r: RULE_LABELS.get(r, r))
    if "selector" in out.columns:
        out["selector_name"] = out["selector"].map(lambda s: SELECTOR_LABELS.get(s, s))
    if "seed" in out.columns:
        out["seed_name"] = [f"seed {int(x)}" if pd.notna(x) else "" for x in out["seed"]]
    return out


# ------------------------------------------------------------------------------ findings
def _num(v) -> str:
    """3 significant digits, without an exponent: '1.04', '0.00153', '4,030'."""
    v = float(v)
    if not np.isfinite(v):
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if v == 0:
        return "0"
    digits = max(0, 2 - int(math.floor(math.log10(abs(v)))))
    return f"{v:.{digits}f}"


def _x(v) -> str:
    """'x1.04': a ratio."""
    return f"x{_num(v)}"


def _fmt_ratio(ratio, low, high) -> str:
    """'x1.04 [1.01, 1.08]': a perplexity ratio and its interval, 3 significant digits."""
    return f"x{_num(ratio)} [{_num(low)}, {_num(high)}]"


def _cells_text(rows: pd.DataFrame, limit: int = 6) -> str:
    names = evaluate.language_labels(sorted(set(rows["language"])))
    items = [f"{names[r.language]} at {r.rate:g} ({_fmt_ratio(r.ratio, r.low, r.high)})" for r in rows.itertuples()]
    return "; ".join(items[:limit]) + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _tests_text(tests: pd.DataFrame) -> str:
    return "; ".join(f"rate {r.rate:g}: {_fmt_ratio(r.ratio, r.low, r.high)} vs {METHOD_LABELS.get(r.against_method, r.against_method)}, "
                     f"{stats.p_text(r.p_value, r.p_adjusted)}" for r in tests.itertuples())


def _claim_word(significant: list[bool]) -> str:
    if significant and all(significant):
        return "reproduced"
    if any(significant):
        return "partly reproduced"
    return "not reproduced"


def _slug(text: str) -> str:
    return str(text).replace(" ", "_").replace("-", "_")


def _names(keys) -> str:
    """Readable language names joined by commas ('none' for none)."""
    keys = list(keys)
    return ", ".join(evaluate.language_labels(keys).values()) if keys else "none"


def findings_pruning(grid_table: pd.DataFrame, tests: pd.DataFrame | None = None, matrix: dict | None = None,
                     alpha: float = 0.05, allocation: str = "uniform", cells: pd.DataFrame | None = None) -> dict:
    """The facts chapter 08 quotes (plain numbers and short strings).

    Keys: languages, rates, methods, tokens_min / tokens_max, passages_min / passages_max, sparsity
    (text: the measured fraction of experts dropped per rate), udhr_languages (names of the
    languages evaluated on the UDHR, 'none' if none) and corpora (text: which corpus each language
    is evaluated on); per method m:
    beats_dense_<m> / worse_than_dense_<m> / cells_<m> (language-rate cells decided by the
    paired intervals), beats_random_<m> (cells beating the random baseline beyond noise);
    beats_dense_cells (text listing the target-language cells that beat dense); best_cell (text:
    the target-language cell closest to dense, with its interval); median_ratio (text: median
    ratio to dense per rate and method); random_seeds and random_range (text per rate: the
    geometric mean over languages of each seed's ratio to dense, lowest to highest seed);
    from ``tests`` (:func:`language_tests`): n_tests and, for every ``against`` a of the
    target-language rows, tests_<a> (text per rate), tests_<a>_significant (rates where the
    target-language ranking is better, Holm-adjusted p < alpha), tests_<a>_worse (rates where
    it is worse), tests_<a>_rates; best_agnostic (text: which agnostic ranking was the best per
    rate); from ``cells`` (:func:`comparison_cells`): for every ``against`` a, vs_<a>_better /
    vs_<a>_worse (language-rate cells decided by the paired intervals), vs_<a>_cells and
    vs_<a>_better_text / vs_<a>_worse_text (which languages, per rate); verdict_beats_random /
    verdict_beats_dense (suggested verdict words: rules below); from the cross-language summary
    (:func:`cross_language_matrix`): matrix_* numbers, own_best, own_best_beyond_noise,
    matrix_languages, own_best_names, own_best_beyond_noise_names, matrix_names.

    Only the rows of ``allocation`` count (chapter 08: one uniform rate). Keys with spaces in the
    ``against`` name use underscores ('best agnostic' -> tests_best_agnostic).

    Verdict rules (our choices): beats_random is 'reproduced' when the target-language ranking
    beats random over languages (Holm-adjusted sign-flip p < alpha with a ratio below 1) at every
    rate, 'partly reproduced' at some rates, else 'not reproduced'; beats_dense is 'reproduced'
    when some (language, rate) cell of the target-language ranking beats dense beyond noise (its
    95% passage interval wholly below 1; per-cell intervals, not corrected for the number of cells:
    the count of cells is given beside it), else 'not reproduced'.
    """
    g = grid_table[(grid_table["method"] != "dense") & (grid_table["allocation"] == allocation)]
    dense = grid_table[grid_table["method"] == "dense"]
    out: dict = {"languages": int(dense["language"].nunique()), "rates": sorted(set(g["rate"])),
                 "methods": list(dict.fromkeys(g["method"])),
                 "tokens_min": int(dense["tokens"].min()), "tokens_max": int(dense["tokens"].max()),
                 "passages_min": int(dense["passages"].min()), "passages_max": int(dense["passages"].max()),
                 "udhr_languages": _names(dense.loc[dense["corpus"] == "udhr", "language"])
                 if "corpus" in dense.columns else "none"}
    n_udhr = int((dense["corpus"] == "udhr").sum()) if "corpus" in dense.columns else 0
    out["corpora"] = ("all on the Bible" if n_udhr == 0 else "all on the UDHR" if n_udhr == len(dense) else
                      f"{out['udhr_languages']} on the UDHR, the other {len(dense) - n_udhr} on the Bible")
    for m, rows in g.groupby("method", sort=False):
        out[f"cells_{m}"] = int(len(rows))
        out[f"beats_dense_{m}"] = int((rows["decision"] == "beats dense").sum())
        out[f"worse_than_dense_{m}"] = int((rows["decision"] == "worse than dense").sum())
        if rows["baseline"].notna().any() and rows["baseline"].iloc[0] != m:
            out[f"beats_{rows['baseline'].iloc[0]}_{m}"] = int(rows["baseline_decision"].str.startswith("beats").sum())
    sp = g.groupby("rate")["sparsity"].first()
    out["sparsity"] = "; ".join(f"rate {r:g}: {v:.2%} of the experts" for r, v in sp.items())
    target = g[g["method"] == "language"]
    winners = target[target["decision"] == "beats dense"]
    out["beats_dense_cells"] = _cells_text(winners) if len(winners) else "none"
    if len(target):
        b = target.loc[target["ratio"].idxmin()]
        out["best_cell"] = (f"{_names([b['language']])} at rate {b['rate']:g}, "
                            f"{_fmt_ratio(b['ratio'], b['low'], b['high'])}")
    med = g.groupby(["rate", "method"], sort=False)["ratio"].median()
    out["median_ratio"] = "; ".join(
        f"rate {r:g}: " + ", ".join(f"{METHOD_LABELS.get(m, m)} {_x(med[(r, m)])}" for m in out["methods"]
                                   if (r, m) in med.index) for r in out["rates"])
    rnd = g[g["method"] == "random"]
    out["random_seeds"] = int(rnd["seed"].nunique()) if len(rnd) else 0
    if len(rnd):
        per_seed = rnd.assign(lr=np.log(rnd["ratio"])).groupby(["rate", "seed"])["lr"].mean()
        out["random_range"] = "; ".join(
            f"rate {r:g}: {_x(math.exp(v.min()))}-{_x(math.exp(v.max()))}"
            for r, v in per_seed.groupby(level="rate"))
    if tests is not None and not tests.empty:
        tests = tests[tests["allocation"] == allocation]
        out["n_tests"] = int(len(tests))
        own = tests[tests["method"] == "language"]
        for against in dict.fromkeys(["best agnostic", "random", *own["against"]]):
            key = f"tests_{_slug(against)}"
            t = own[own["against"] == against]
            out[key] = _tests_text(t) if len(t) else "not run"
            out[f"{key}_significant"] = int(((t["p_adjusted"] < alpha) & (t["ratio"] < 1)).sum())
            out[f"{key}_worse"] = int(((t["p_adjusted"] < alpha) & (t["ratio"] > 1)).sum())
            out[f"{key}_rates"] = int(len(t))
        t = own[own["against"] == "best agnostic"]
        out["best_agnostic"] = "; ".join(f"rate {r.rate:g}: {METHOD_LABELS.get(r.against_method, r.against_method)}"
                                         for r in t.itertuples()) or "not run"
        t = own[own["against"] == "random"]
        out["verdict_beats_random"] = _claim_word(list((t["p_adjusted"] < alpha) & (t["ratio"] < 1))) \
            if len(t) else "not testable here"
    else:
        out["verdict_beats_random"] = "not testable here"
    if cells is not None and not cells.empty:
        own = cells[(cells["method"] == "language") & (cells["allocation"] == allocation)]
        for against, c in own.groupby("against", sort=False):
            key = f"vs_{_slug(against)}"
            better = c[c["decision"].str.startswith("beats")]
            worse = c[c["decision"].str.startswith("worse")]
            out[f"{key}_cells"] = int(len(c))
            out[f"{key}_better"] = int(len(better))
            out[f"{key}_worse"] = int(len(worse))
            for word, rows in (("better", better), ("worse", worse)):
                out[f"{key}_{word}_text"] = "; ".join(
                    f"rate {r:g}: {_names(rows.loc[np.isclose(rows['rate'], r), 'language'])}"
                    for r in sorted(set(c["rate"])))
    out["verdict_beats_dense"] = "reproduced" if len(winners) else "not reproduced"
    if matrix:
        out.update({f"matrix_{k}": v for k, v in matrix.items() if not isinstance(v, list)})
        out["own_best"] = matrix["own_best"]
        out["own_best_beyond_noise"] = matrix["own_best_beyond_noise"]
        out["matrix_languages"] = matrix["languages"]
        out["own_best_names"] = _names(matrix.get("own_best_languages", []))
        out["own_best_beyond_noise_names"] = _names(matrix.get("own_best_beyond_noise_languages", []))
        out["matrix_names"] = _names(matrix.get("language_keys", []))
    return out


def findings_layerwise(tests: pd.DataFrame, cells: pd.DataFrame, rates_table: pd.DataFrame | None = None,
                       alpha: float = 0.05) -> dict:
    """The facts chapter 09 quotes: per (method, rule) the rates at which the rule beats uniform
    over languages (Holm-adjusted p < alpha and ratio < 1) and at which it is worse; text per
    rule; cells decided each way; the largest |layer rate - rate| of each rule; a suggested
    verdict word (rule: 'reproduced' when some per-layer rule beats uniform at every rate for
    some method, 'partly reproduced' when at some rates, else 'not reproduced').

    Keys: tests, cells, cells_better, cells_worse; methods, rules, rates (lists); per (rule r,
    method m): r_m_better_rates / r_m_worse_rates / r_m_text (the tests, per rate) and
    r_m_cells_text (per rate: languages better and worse than uniform beyond noise, by the
    paired passage intervals); with ``rates_table`` (:func:`layer_rates`): r_max_deviation,
    r_range (text: the layers' lowest and highest rate at the highest overall rate, with their
    layers) and sparsity_gap (the largest difference in measured sparsity between rules)."""
    out: dict = {"tests": int(len(tests)), "cells": int(len(cells)),
                 "cells_better": int((cells["decision"] == "beats uniform").sum()) if len(cells) else 0,
                 "cells_worse": int((cells["decision"] == "worse than uniform").sum()) if len(cells) else 0,
                 "methods": list(dict.fromkeys(tests["method"])) if len(tests) else [],
                 "rules": list(dict.fromkeys(tests["rule"])) if len(tests) else [],
                 "rates": sorted(set(float(r) for r in tests["rate"])) if len(tests) else []}
    words = []
    for (m, rule), t in tests.groupby(["method", "rule"], sort=False):
        good = (t["p_adjusted"] < alpha) & (t["ratio"] < 1)
        bad = (t["p_adjusted"] < alpha) & (t["ratio"] > 1)
        out[f"{rule}_{m}_better_rates"] = int(good.sum())
        out[f"{rule}_{m}_worse_rates"] = int(bad.sum())
        out[f"{rule}_{m}_text"] = "; ".join(
            f"rate {r.rate:g}: {_fmt_ratio(r.ratio, r.low, r.high)}, {stats.p_text(r.p_value, r.p_adjusted)}"
            for r in t.itertuples())
        c = cells[(cells["method"] == m) & (cells["rule"] == rule)] if len(cells) else cells
        out[f"{rule}_{m}_cells_text"] = "; ".join(
            f"rate {r:g}: better in {int((g['decision'] == 'beats uniform').sum())}, worse in "
            f"{int((g['decision'] == 'worse than uniform').sum())} of {len(g)} languages"
            for r, g in c.groupby("rate")) if len(c) else "none"
        words.append(_claim_word(list(good)))
    out["verdict_layerwise"] = ("reproduced" if "reproduced" in words else
                                "partly reproduced" if "partly reproduced" in words else "not reproduced")
    if rates_table is not None and len(rates_table):
        for rule, r in rates_table.groupby("rule"):
            out[f"{rule}_max_deviation"] = float((r["layer_rate"] - r["rate"]).abs().max())
            top = r[np.isclose(r["rate"], r["rate"].max())]
            lo, hi = top.loc[top["layer_rate"].idxmin()], top.loc[top["layer_rate"].idxmax()]
            out[f"{rule}_range"] = (f"at rate {lo['rate']:g} from {lo['layer_rate']:.2f} (layer {int(lo['layer'])}) "
                                    f"to {hi['layer_rate']:.2f} (layer {int(hi['layer'])})")
        sp = rates_table.groupby(["rule", "rate"])["measured_sparsity"].first().unstack("rule")
        out["sparsity_gap"] = float(sp.sub(sp.iloc[:, 0], axis=0).abs().to_numpy().max())
    return out


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
        out[key] = _fmt_ratio(r.ratio, r.low, r.high) if np.isfinite(r.low) else _x(r.ratio)
        out[f"{key}_ratio"] = float(r.ratio)
        out[f"{key}_worse"] = int(r.worse_than_dense)
        out[f"experts_{r.keep:g}"] = int(r.experts)
        speedup = getattr(r, "backbone_speedup", np.nan)
        if r.selector == "static" and speedup is not None and np.isfinite(speedup):
            whole = getattr(r, "model_speedup", np.nan)
            timed = whole is not None and np.isfinite(whole)
            out[f"speed_{r.keep:g}"] = (
                f"FFN x{r.ffn_speedup:.2f} ({r.ffn_low:.2f}-{r.ffn_high:.2f}), backbone x{r.backbone_speedup:.2f} "
                f"({r.backbone_low:.2f}-{r.backbone_high:.2f})"
                + (f", whole model x{r.model_speedup:.2f} ({r.model_low:.2f}-{r.model_high:.2f})" if timed else ""))
            out[f"model_speedup_{r.keep:g}"] = float(whole) if timed else float("nan")
            faster = (r.model_low if timed else r.backbone_low) > 1
            out["faster_keeps"] = out.get("faster_keeps", 0) + int(faster)
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
            out[key] = f"{_fmt_ratio(r.ratio, r.low, r.high)}, {stats.p_text(r.p_value, r.p_adjusted)}"
            out[f"{key}_significant"] = bool(r.p_adjusted < alpha)
        router = tests[(tests["selector"] == "router") & (tests["against"] == "static")]
        out["router_better_keeps"] = int(((router["p_adjusted"] < alpha) & (router["ratio"] < 1)).sum())
        out["router_worse_keeps"] = int(((router["p_adjusted"] < alpha) & (router["ratio"] > 1)).sum())
    if recall is not None and len(recall):
        for r in recall.itertuples():
            who = "router" if r.selector == "centroid router" else _slug(r.selector)
            out[f"recall_{who}_{r.top_k_fraction:g}"] = (f"{r.recall:.2f} (layers {r.lowest_layer:.2f}-"
                                                         f"{r.highest_layer:.2f}; chance {r.chance:.2f})")
    if speed is not None and len(speed):
        out["noisy_timings"] = int(speed["noisy"].sum())
        out["dense_tokens_per_second"] = float(speed["dense_tokens_per_second"].iloc[0]) \
            if "dense_tokens_per_second" in speed.columns else float("nan")
    return out


# ------------------------------------------------------------------------------ verdicts


def _strength(significant: int, total: int) -> str:
    if total and significant == total:
        return "Strong for this comparison"
    if significant:
        return "Mixed"
    return "Weak"


def verdicts_pruning(f: dict) -> list[dict]:
    """Chapter 08's verdict rows (:func:`babel_lib.verdicts.row`) from :func:`findings_pruning`'s facts:
    'beats_random' and 'beats_dense', each with our result, its interval and the evidence in words."""
    from . import verdicts

    n = f["languages"]
    text = f"{n} languages, {f['tokens_min']:,}-{f['tokens_max']:,} held-out tokens each ({f['corpora']})"
    rows = []
    sig, total = f.get("tests_random_significant", 0), f.get("tests_random_rates", 0)
    rows.append(verdicts.row(
        "beats_random",
        f"Target-language frequency ranking against random pruning ({f.get('random_seeds', 0)} seeds, geometric "
        f"mean), over {n} languages: {f.get('tests_random', 'not run')}.",
        f"{_strength(sig, total)}: {text}; {f.get('beats_random_language', 0)} of {f.get('cells_language', 0)} "
        f"language-rate cells better than random beyond noise; exact sign-flip tests over languages, Holm over the "
        f"chapter's {f.get('n_tests', 0)} tests. Random pruning is a weak baseline: against the best language-agnostic "
        f"ranking ({f.get('best_agnostic', 'not run')}) the target-language ranking gives "
        f"{f.get('tests_best_agnostic', 'not run')}.",
        f["verdict_beats_random"]))
    won = f.get("beats_dense_language", 0)
    rows.append(verdicts.row(
        "beats_dense",
        f"{won} of {f.get('cells_language', 0)} target-language cells (language x rate) beat the unpruned model "
        f"beyond noise{': ' + f['beats_dense_cells'] if won else ''}; the closest to it: {f.get('best_cell', 'none')}.",
        f"{'Weak' if won <= 1 else 'Moderate'}: per-cell 95% paired passage intervals, not corrected for the "
        f"{f.get('cells_language', 0)} cells; {text}; rates {', '.join(f'{r:g}' for r in f['rates'])}.",
        f["verdict_beats_dense"]))
    return rows


def verdicts_layerwise(f: dict) -> list[dict]:
    """Chapter 09's verdict row ('layerwise') from :func:`findings_layerwise`'s facts."""
    from . import verdicts

    parts = [f"{RULE_LABELS.get(rule, rule)} against uniform, {METHOD_LABELS.get(m, m)} ranking: "
             f"{f[f'{rule}_{m}_text']}" for m in f["methods"] for rule in f["rules"] if f"{rule}_{m}_text" in f]
    better = sum(f.get(f"{rule}_{m}_better_rates", 0) for m in f["methods"] for rule in f["rules"])
    return [verdicts.row(
        "layerwise", "; ".join(parts) + ".",
        f"{_strength(better, f['tests'])}: geometric-mean ratio over languages with a bootstrap interval, exact "
        f"sign-flip tests over languages, Holm over the chapter's {f['tests']} tests ({better} significant in favour "
        f"of a per-layer rule); {f['cells_better']} of {f['cells']} language cells better than uniform beyond noise, "
        f"{f['cells_worse']} worse. The rules are ours: the paper's formula is not published.",
        f["verdict_layerwise"])]


def verdicts_sparse(f: dict) -> list[dict]:
    """Chapter 10's verdict row ('sparse_activation') from :func:`findings_sparse`'s facts."""
    from . import verdicts

    parts = []
    for keep in f["keeps"]:
        if f"static_{keep:g}" not in f:
            continue
        speed = f.get(f"speed_{keep:g}", "speed not measured")
        parts.append(f"keeping {f.get(f'experts_{keep:g}', '?')} of {f.get('experts_per_layer', '?')} experts a "
                     f"layer (keep {keep:g}): perplexity {f[f'static_{keep:g}']} of dense, {speed}")
    router = "; ".join(f"router at keep {k:g}: {f[f'test_router_static_{k:g}']} against the static set"
                       for k in f["keeps"] if f"test_router_static_{k:g}" in f)
    return [verdicts.row(
        "sparse_activation",
        "The static high-frequency set (target-language pruning at inference): " + "; ".join(parts) + "."
        + (f" Per-token centroid routing at equal compute: {router}." if router else ""),
        f"{f.get('languages', '?')} languages; our threshold for comparable: a geometric-mean perplexity ratio of at "
        f"most {f['comparable']:g} with its interval; intervals over languages from paired passage ratios; timings "
        f"interleaved on a shared CPU ({f.get('noisy_timings', 0)} of {len(f['keeps'])} noisy). "
        + ("The speed-up is measured; the loss of quality decides." if f.get("faster_keeps", 0) else
           "No static set was measurably faster in every timing round on this machine."),
        f["verdict_sparse_activation"])]
