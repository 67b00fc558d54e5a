"""The applications of chapters 08-10: pruning, per-layer pruning rates and sparse activation,
tested fairly. Notebooks call these as short steps; every number their prose quotes comes from
a ``findings_*`` function of their chapter modules (:mod:`babel_lib.chapters.pruning`,
:mod:`babel_lib.chapters.layerwise_pruning`, :mod:`babel_lib.chapters.sparse_activation`); chapter 10's
selectors and timing live in :mod:`babel_lib.chapters.sparse_activation`. The table arguments and chart
shapes chapters 08-12 share are at the end (:func:`ratio_chart`, :func:`annotated_matrix`).

An :class:`Experiment` holds what every step shares: the model, its partition, the calibration
profile (frequencies rank the experts), the neuron importances (the language-agnostic
baselines), the evaluation text (:class:`babel_lib.interventions.evaluate.EvalSet`) and the protocol
(batch size, bootstrap resamples and seed). It builds plans and evaluates them **masked** by
default (:func:`babel_lib.interventions.prune.masked_condition`: the dropped experts' neuron values are zeroed,
the outputs of the pruned model; ``view='slice'`` evaluates the physically sliced model instead:
the same outputs up to summation order, and faster) with the evaluation cache, so a plan
evaluated by one chapter is read back by the next: the same plan (same dropped experts) on the
same text under the same view has the same cache key.

Methods (rankings; :data:`METHODS`): ``'language'`` (the evaluated language's own activation
frequency; each language is evaluated with the plan made for it), ``'multilingual'`` (mean
frequency over the calibration languages), ``'magnitude'`` and ``'wanda'`` (language-agnostic
importance on calibration text pooled over languages, see :mod:`babel_lib.interventions.prune`) and
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
over all 2^n sign patterns when 2^n <= permutations + 1), with the geometric-mean ratio and the
interval that inverts that test as the effect size, Holm-corrected within the table. Random pruning
with several seeds enters every comparison as its median seed (:func:`median_seed`: the seed whose
geometric-mean ratio to dense over languages is the median at that rate); the seed-to-seed spread
is reported as a band, not folded into the passage interval.

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

import altair as alt
import numpy as np
import pandas as pd

from babel_lib.core.cache import Store, cache_key
from babel_lib.core.claims import decide
from babel_lib.core.models import LoadedModel
from babel_lib.experts.moefy import Partition
from babel_lib.experts.profile import Profile
from babel_lib.interventions import evaluate, prune
from babel_lib.interventions.evaluate import DENSE, Condition, EvalSet
from babel_lib.stats import inference as stats

#: Every ranking method, in table order.
METHODS = ("language", "multilingual", "magnitude", "wanda", "random")
#: The language-agnostic rankings (no language's frequencies; "best agnostic" is chosen among these).
AGNOSTIC = ("magnitude", "wanda")
#: Readable names of the methods for tables and charts.
METHOD_LABELS = {"dense": "dense", "language": "target-language frequency",
                 "multilingual": "multilingual frequency", "magnitude": "activation magnitude",
                 "wanda": "Wanda-style (|W| x ||a||)", "random": "random"}
#: The multiple-testing family of each per-layer rule: ours stand for the paper's claim, the field's are
#: baselines (:func:`allocation_comparison` corrects within each family: one family per claim).
RULE_FAMILIES = {"layerwise": "ours", "entropy": "ours", "owl": "field", "crosslingual": "field"}
#: Readable names of the allocation rules.
RULE_LABELS = {"uniform": "uniform", "layerwise": "layer-wise (by share)", "entropy": "entropy rule",
               "owl": "OWL (outlier ratio)", "crosslingual": "cross-lingual correlation"}
#: Readable names of the sparse-activation selectors.
SELECTOR_LABELS = {"static": "static set (target-language pruning)", "router": "centroid router (per token)",
                   "trained": "trained router (per token)", "oracle": "oracle top-k (upper bound)"}
#: Sign-flip tests enumerate every sign pattern up to this many languages (exact p-values).
#: The fewest bootstrap resamples of a reported interval (the design's conventions); fewer only in a test run.
MIN_RESAMPLES = 1000


# ------------------------------------------------------------------------------ the experiment
@dataclass
class Experiment:
    """Model, partition, calibration profile, importances, evaluation text and protocol (module
    docstring). ``importance`` is needed for the 'magnitude' and 'wanda' methods
    (:func:`babel_lib.interventions.prune.neuron_importance`, or :func:`calibration_importance`). ``view``:
    how plans are applied, 'mask' (default) or 'slice'. ``max_deviation``: the bound (and the
    entropy rule's strength) of the per-layer rules. ``n_resamples`` below :data:`MIN_RESAMPLES`
    is accepted for quick test runs (the smoke profile) and flagged (:attr:`test_run`). ``multilingual``:
    the profile the 'multilingual' ranking (and the per-layer rules' levels) comes from, when it is not
    ``profile`` (:class:`Calibration`: the pooled rankings see the target-language budget in all)."""

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
    multilingual: Profile | None = None
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
        for prof in (self.profile, self.multilingual):
            if prof is not None and prof.partition_key != self.partition.key:
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
        that are not frequencies): of :attr:`multilingual` when given (the pooled budget), else of
        the profile."""
        return (self.multilingual or self.profile).frequencies().mean(axis=0)

    # -- plans ----------------------------------------------------------------------
    def ranking(self, method: str, language: str | None = None, seed: int = 0) -> prune.Ranking:
        if method == "multilingual" and self.multilingual is not None:
            return prune.rank_experts(self.multilingual, "multilingual")
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
                                max_deviation=self.max_deviation, layer_scores=self.layer_scores(allocation))

    def layer_scores(self, allocation: str) -> np.ndarray | None:
        """[L] the per-layer score of a scored allocation (None for the others): 'owl', the outlier ratio
        of the Wanda-style neuron scores (needs the importances); 'crosslingual', the mean correlation
        between the languages' expert frequencies (the target-language profile: each language at its
        own budget)."""
        if allocation == "owl":
            if self.importance is None:
                raise ValueError("the 'owl' allocation needs the experiment's importance (its Wanda-style scores)")
            return prune.outlier_ratios(self.importance.wanda())
        if allocation == "crosslingual":
            return prune.crosslingual_correlation(self.profile.frequencies())
        return None

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
        character (:meth:`babel_lib.interventions.evaluate.EvalSet.table` with readable names)."""
        table = self.evalset.table()
        table.insert(1, "name", table["language"].map(evaluate.language_labels(table["language"])))
        table["text"] = table["text"].map(evaluate.language_labels(table["text"]))
        return table

    def describe(self, text: bool = True) -> str:
        """The evaluation protocol, generated from the run: the text chosen (``text=False``: left out,
        e.g. where :meth:`babel_lib.interventions.evaluate.EvalSet.describe` was shown already), then the windows and
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
    over its languages (:func:`babel_lib.interventions.prune.neuron_importance`)."""
    keep = [passages.ids.index(i) for i in profile.passage_ids if i in passages.ids]
    if len(keep) != len(profile.passage_ids):
        raise ValueError("the passages given are not the ones the profile was counted on")
    text = passages.select(keep)
    if list(text.languages) != list(profile.languages):
        text = type(passages)(text.corpus, text.split, text.ids, list(profile.languages),
                              {l: text.text[l] for l in profile.languages})
    return prune.neuron_importance(lm, text, max_length or profile.corpus.get("max_length", 128), batch_size, store,
                                   progress)


# ------------------------------------------------------------------------------ in-domain calibration
@dataclass
class Calibration:
    """Calibration at equal budgets, in the evaluation's domain (:func:`in_domain_calibration`).

    profile: every language counted on its own ``budget`` tokens (the target-language rankings);
    multilingual: every language counted on its first ``budget / n`` of them, so the pooled
    ranking sees ``budget`` tokens in all; importance: the language-agnostic importances
    (magnitude, Wanda-style) on those same pooled tokens; text / pooled_text: the calibration
    text chosen (:class:`babel_lib.interventions.evaluate.EvalSet` of the calibration split).
    """

    profile: Profile
    multilingual: Profile
    importance: prune.NeuronImportance
    text: EvalSet
    pooled_text: EvalSet
    budget: int

    def table(self) -> pd.DataFrame:
        """Per language: name, corpus, text, passages and tokens for its own ranking, passages and
        tokens it gives the pooled rankings."""
        t = self.text.table()
        p = self.pooled_text.table().set_index("language")
        t.insert(1, "name", t["language"].map(evaluate.language_labels(t["language"])))
        t["text"] = t["text"].map(evaluate.language_labels(t["text"]))
        t["pooled_passages"] = t["language"].map(p["passages"])
        t["pooled_tokens"] = t["language"].map(p["tokens"])
        return t

    def windows(self, tokenizer, max_length: int = 128, pooled: bool = False) -> list[list[int]]:
        """Every language's calibration windows (token ids; ``pooled``: the pooled share only), in language
        order: e.g. a trained router's training text."""
        from babel_lib.data.corpus import Passages
        from babel_lib.experts.profile import pooled_windows

        text = self.pooled_text if pooled else self.text
        return [w for l in text.languages for w in pooled_windows(
            tokenizer, Passages(text.source[l], "calibration", list(text.ids[l]), [l], {l: list(text.texts[l])}),
            max_length)[0]]

    def describe(self) -> str:
        """What each ranking was calibrated on, generated from the text chosen."""
        own, pooled = self.text.tokens, self.pooled_text.tokens
        n = len(own)
        short = self.text.short
        return (f"**Calibration, in domain and at equal budgets.** Every language is calibrated on the calibration "
                f"split of the corpus it is evaluated on ({self.text.describe().removeprefix('Calibration text. ')}) "
                f"The target-language ranking of each language reads its own {min(own.values()):,}-"
                f"{max(own.values()):,} tokens (our budget: {self.budget:,}); the rankings that pool the languages "
                f"(multilingual frequency, activation magnitude, Wanda-style) read each language's first "
                f"{min(pooled.values()):,}-{max(pooled.values()):,} of them, {sum(pooled.values()):,} tokens in all "
                f"over the {n} languages: every ranking sees about the same number of calibration tokens."
                + (f" {names_text(short)}: the whole calibration split is shorter than the budget." if short else ""))


def in_domain_calibration(lm: LoadedModel, partition: Partition, languages, budget: int = 4000,
                          top_k_fraction: float = 0.2, aliases: dict | None = None,
                          prefer=evaluate.EVAL_CORPORA, max_length: int = 128, batch_size: int = 8, seed: int = 0,
                          store: Store | None = None, progress: bool = False) -> Calibration:
    """Rank experts on calibration text from each language's evaluation corpus, at equal budgets.

    Each language's calibration text is drawn from the *calibration* split of the first corpus of
    ``prefer`` that has it (the Bible's books other than the evaluation ones; Urdu, absent from the
    Bible, the UDHR's calibration articles), in aligned units in a seeded random order, until it
    has ``budget`` tokens (:func:`babel_lib.interventions.evaluate.evaluation_set` with
    ``split='calibration'``; ``aliases`` as there). The target-language profile counts all of it;
    the multilingual profile and the importances count each language's first ``budget / n``
    tokens (n languages), a prefix of the same text: the pooled rankings see ``budget`` tokens in
    all, as the target-language ranking does. Cached like every count (kind 'counts', 'importance').
    """
    from babel_lib.core.definitions import Definitions
    from babel_lib.data.corpus import Passages
    from babel_lib.experts.profile import joined, pooled_windows, profile_passages

    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget must be a positive integer (calibration tokens per language), got {budget!r}")
    partition.check_fits(lm)
    keys = list(languages)
    share = max(1, math.ceil(int(budget) / len(keys)))
    choose = dict(aliases=aliases, prefer=prefer, max_length=max_length, seed=seed, split="calibration")
    text = evaluate.evaluation_set(lm.tokenizer, keys, min_tokens=int(budget), max_tokens=int(budget), **choose)
    pooled_text = evaluate.evaluation_set(lm.tokenizer, keys, min_tokens=share, max_tokens=share, **choose)
    definitions = Definitions(top_k_fraction=top_k_fraction)

    def passages(evalset: EvalSet, lang: str) -> Passages:
        return Passages(evalset.source[lang], "calibration", list(evalset.ids[lang]), [lang],
                        {lang: list(evalset.texts[lang])})

    def count(evalset: EvalSet) -> Profile:
        profiles = [profile_passages(lm, partition, passages(evalset, l), definitions, max_length, batch_size,
                                     store=store, progress=progress) for l in keys]
        return joined(profiles, {"name": "in-domain calibration", "corpus": "per language", "split": "calibration",
                                 "max_length": max_length, "batch_size": batch_size})

    seqs = [s for l in keys for s in pooled_windows(lm.tokenizer, passages(pooled_text, l), max_length)[0]]
    importance = prune.neuron_importance(lm, seqs, max_length, batch_size, store, progress)
    return Calibration(count(text), count(pooled_text), importance, text, pooled_text, int(budget))


# ------------------------------------------------------------------------------ paired ratios
def _losses(results: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [evaluate.passage_losses(r) for r in results]
    for r in results[1:]:
        evaluate.check_paired(results[0], r)
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]).astype(np.float64)


def paired_ratio(reference, other, n_resamples: int = 1000, seed: int = 0, names=("reference", "other"),
                 level: float = 0.95) -> dict:
    """exp(mean log ppl(other) - mean log ppl(reference)) on the same windows of one language, with a
    paired bootstrap over passages: each resample draws one set of passages for every condition.

    reference, other: a window result or a list of them (the mean of log perplexities over a
    list is the log of their geometric mean, e.g. over random seeds). With one result each this
    is exactly :func:`babel_lib.interventions.evaluate.paired_comparison`. Returns {'ratio', 'low', 'high',
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
    language, rate and allocation (several random seeds: the median seed, :func:`median_seed`)."""

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
    frame = pd.DataFrame(rows)
    for key in keys:
        cols = {"baseline": grid.baseline, "baseline_ratio": np.nan, "baseline_low": np.nan, "baseline_high": np.nan,
                "baseline_decision": ""}
        if grid.baseline is not None and key is not None and key[0] != grid.baseline:
            method, rate, allocation, _, lang = key
            seed = median_seed(frame, rate, allocation, grid.baseline) if grid.baseline == "random" else None
            ref = store.get((grid.baseline, rate, allocation, seed, lang))
            if ref is not None:
                c = exp.compare(ref, store[key], (grid.baseline, method))
                cols.update(baseline_ratio=c["ratio"], baseline_low=c["low"], baseline_high=c["high"],
                            baseline_decision=c["decision"])
        extra.append(cols)
    table = pd.concat([pd.DataFrame(rows), pd.DataFrame(extra)], axis=1)
    table["seed"] = table["seed"].astype("Int64")
    return table


def median_seed(grid_table: pd.DataFrame, rate: float, allocation: str = "uniform", method: str = "random") -> int | None:
    """The seed of ``method`` whose geometric-mean perplexity ratio to dense over languages is the median of
    the table's seeds at ``rate`` and ``allocation`` (the lower median for an even count; ties: the lower
    seed); None when the table has none. The random baseline of every comparison is this seed."""
    rows = grid_table[(grid_table["method"] == method) & np.isclose(grid_table["rate"], rate) &
                      (grid_table["allocation"] == allocation)]
    if rows.empty:
        return None
    per = rows.assign(lr=np.log(rows["ratio"].astype(float))).groupby("seed")["lr"].mean()
    order = sorted(per.index, key=lambda s: (per[s], int(s)))
    return int(order[(len(order) - 1) // 2])


def random_band(grid_table: pd.DataFrame, allocation: str = "uniform") -> pd.DataFrame:
    """Per rate, the random seeds' geometric-mean ratio to dense over languages: lowest, median seed's
    (:func:`median_seed`) and highest, with the number of seeds (the band a chart shows)."""
    rows = grid_table[(grid_table["method"] == "random") & (grid_table["allocation"] == allocation)]
    out = []
    for rate, g in rows.groupby("rate"):
        per = np.exp(g.assign(lr=np.log(g["ratio"].astype(float))).groupby("seed")["lr"].mean())
        med = median_seed(grid_table, rate, allocation)
        out.append({"rate": float(rate), "seeds": int(len(per)), "lowest": float(per.min()),
                    "median": float(per[med]), "highest": float(per.max()), "median_seed": med})
    return pd.DataFrame(out, columns=["rate", "seeds", "lowest", "median", "highest", "median_seed"])


def combined_tests(*tables: pd.DataFrame, by: str | None = "against", correction: str = "holm") -> pd.DataFrame:
    """Tables of tests over languages (:func:`language_tests`, on one or several experiments) in one table,
    ``p_adjusted`` recomputed: one family per claim, i.e. per value of ``by`` (default: the comparison,
    'against'; each claim is tested at every rate), or over all rows with ``by=None``. (With nine languages
    the smallest exact two-sided p is 2/512: a Holm family of 13 or more tests could never reject.)"""
    parts = [t for t in tables if t is not None and not t.empty]
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, ignore_index=True).drop(columns=["p_adjusted"], errors="ignore")
    if by is None:
        return stats.correct(table, "p_value", correction, "p_adjusted")
    table["p_adjusted"] = np.nan
    for _, idx in table.groupby(by, sort=False).groups.items():
        table.loc[idx, "p_adjusted"] = stats.correct(table.loc[idx], "p_value", correction, "p_adjusted")[
            "p_adjusted"].to_numpy()
    return table


# ------------------------------------------------------------------------------ tests over languages
def over_languages(d: np.ndarray, permutations: int = stats.HEADLINE_PERMUTATIONS, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float, float]:
    """Geometric-mean ratio exp(mean d) over languages (d: per-language log ratios [n]) with the
    interval that inverts the exact sign-flip test (:func:`babel_lib.stats.sign_flip_interval`): it
    excludes 1 exactly when :func:`babel_lib.stats.sign_flip_test` of d gives p < 1 - level. (A
    percentile bootstrap over nine languages gave [0.959, 0.997] for a test with p = 0.086.)"""
    mean, lo, hi = stats.sign_flip_interval(d, level, permutations, seed)
    return float(np.exp(mean)), float(np.exp(lo)), float(np.exp(hi))


def _log_ppl(results: list[dict]) -> float:
    """Mean over the results of log perplexity (several random seeds: the log of their geometric mean)."""
    return float(np.mean([float(np.sum(r["window_nll"])) / float(np.sum(r["window_tokens"])) for r in results]))


def _side(exp: Experiment, grid_table: pd.DataFrame, method: str, rate: float, allocation: str,
          seeds) -> dict[str, list[dict]]:
    """{lang: [results]} of one side of a comparison (random: the median seed of the grid table)."""
    if method == "dense":
        return {l: [r] for l, r in exp.dense().items()}
    rows = grid_table[(grid_table["method"] == method) & np.isclose(grid_table["rate"], rate) &
                      (grid_table["allocation"] == allocation)]
    out: dict[str, list[dict]] = {}
    seeds = [median_seed(grid_table, rate, allocation)] if method == "random" else [None]
    if seeds == [None] and method == "random":
        return out  # the table ran no random plan here: nothing to compare (never evaluated on the side)
    for s in seeds:
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
    ratio d = log ppl(method) - log ppl(against) (random: its median seed) over the
    languages both sides have; effect = geometric-mean ratio exp(mean d) with a bootstrap
    interval over languages; a two-sided sign-flip test (:func:`babel_lib.stats.sign_flip_test`); and how many
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
        test = stats.sign_flip_test(d, permutations, exp.seed)
        gm, lo, hi = over_languages(d, permutations, exp.seed)
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
    random: the grid's median seed). ``against`` may be a method, 'dense' or
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
    uniform' / 'indistinguishable'); random: the median seed. tests: per (method,
    rule, rate) a sign-flip test over languages of the log ratios, geometric-mean ratio with a
    bootstrap interval over languages, wins, p_value, family (:data:`RULE_FAMILIES`) and p_adjusted
    (``correction`` within each family). Plans come from ``exp`` (cached), so the grid table only lists what was
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
            test = stats.sign_flip_test(d, permutations, exp.seed)
            gm, lo, hi = over_languages(d, permutations, exp.seed)
            tests.append({"method": method, "rule": rule, "rate": rate, "languages": len(langs), "ratio": gm,
                          "low": lo, "high": hi, "wins": int((d < 0).sum()),
                          "wins_beyond_noise": sum(c["decision"] == f"beats {reference}" for c in cells[-len(langs):]),
                          "losses_beyond_noise": sum(c["decision"] == f"worse than {reference}"
                                                     for c in cells[-len(langs):]),
                          "p_value": test.p_value, "test": test.method})
    tests = pd.DataFrame(tests)
    if not tests.empty:
        tests["family"] = tests["rule"].map(lambda r: RULE_FAMILIES.get(r, r))
        tests = combined_tests(tests, by="family", correction=correction)
    return pd.DataFrame(cells), tests


def layer_rates(exp: Experiment, rates, rules=("uniform", "layerwise", "entropy", "owl", "crosslingual"),
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



# ------------------------------------------------------------------------------ readable tables and numbers (chapters 08-10)
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


def number_text(v) -> str:
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


def ratio_text(v) -> str:
    """'x1.04': a ratio."""
    return f"x{number_text(v)}"


def ratio_interval_text(ratio, low, high) -> str:
    """'x1.04 [1.01, 1.08]': a perplexity ratio and its interval, 3 significant digits."""
    return f"x{number_text(ratio)} [{number_text(low)}, {number_text(high)}]"


def cells_text(rows: pd.DataFrame, limit: int = 6) -> str:
    names = evaluate.language_labels(sorted(set(rows["language"])))
    items = [f"{names[r.language]} at {r.rate:g} ({ratio_interval_text(r.ratio, r.low, r.high)})" for r in rows.itertuples()]
    return "; ".join(items[:limit]) + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def tests_text(tests: pd.DataFrame) -> str:
    return "; ".join(f"rate {r.rate:g}: {ratio_interval_text(r.ratio, r.low, r.high)} vs {METHOD_LABELS.get(r.against_method, r.against_method)}, "
                     f"{stats.p_text(r.p_value, r.p_adjusted)}" for r in tests.itertuples())


def claim_word(significant: list[bool]) -> str:
    """The verdict word of a claim tested once per rate (or keep fraction): :func:`babel_lib.core.claims.decide`
    on whether each passed; 'not reproduced' when none was tested."""
    return decide(list(significant)) if len(significant) else "not reproduced"


def slug(text: str) -> str:
    return str(text).replace(" ", "_").replace("-", "_")


def names_text(keys) -> str:
    """Readable language names joined by commas ('none' for none)."""
    keys = list(keys)
    return ", ".join(evaluate.language_labels(keys).values()) if keys else "none"


def strength_words(significant: int, total: int) -> str:
    if total and significant == total:
        return "Strong for this comparison"
    if significant:
        return "Mixed"
    return "Weak"


# ------------------------------------------------------------------------------ tables and charts chapters 08-12 share
#: Text-table columns (:meth:`babel_lib.experts.pipeline.Study.text_table`: the calibration text).
CALIBRATION_TEXT_COLUMNS = {"name": "Language", "script": "Script", "passages": "Passages", "characters": "Characters",
                            "tokens": "Tokens", "tokens_per_character": "Tokens per character"}
#: The ``plots.table`` arguments of :meth:`Experiment.text_table` (the held-out evaluation text).
EVALUATION_TEXT_TABLE = {
    "columns": {"name": "Language", "corpus": "Corpus", "text": "Text", "passages": "Passages",
                "characters": "Characters", "tokens": "Tokens", "tokens_per_character": "Tokens per character"},
    "formats": {"tokens_per_character": "{:.2f}"}, "caption": "Held-out evaluation text per language"}


def facet_named(table: pd.DataFrame, key: str) -> pd.DataFrame:
    """:func:`labelled` ``table`` with ``<key>_name`` ('rate 0.3', 'keep 0.5') for a chart's panels."""
    return labelled(table).assign(**{f"{key}_name": [f"{key} {v:g}" for v in table[key]]})


def language_order(languages) -> list[str]:
    """The readable names of ``languages`` (keys) in their order: a chart's rows."""
    return list(labelled(pd.DataFrame({"language": list(languages)})).name)


def ratio_chart(rows: pd.DataFrame, *, color: str, color_title, x_title: str, title: str, order: list[str],
                tooltip: list, column: str, row: str | None = None, color_sort=alt.Undefined, legend=None,
                step: int = 8, size: int = 36, columns: int | None = None) -> alt.FacetChart:
    """Perplexity ratios per language with their 95% paired intervals, one panel per ``column`` value (a row
    of panels per ``row`` value): for each ``color`` group side by side, a point at the ratio (log scale) and a
    rule from low to high, with a dashed rule at 1. rows: name, ratio, low, high and the nominal columns
    ``color``, ``column`` (and ``row``); order: the languages' names top to bottom; legend: an ``alt.Legend``
    (default: below the chart); columns: wrap the ``column`` panels into rows of this many (without ``row``),
    so that many panels (e.g. five rates) stay within the page."""
    base = alt.Chart().encode(
        y=alt.Y("name:N", sort=order, title=None),
        color=alt.Color(f"{color}:N", title=color_title, sort=color_sort,
                        legend=legend or alt.Legend(orient="bottom")),
        yOffset=alt.YOffset(f"{color}:N", sort=color_sort), tooltip=tooltip)
    chart = alt.layer(
        base.mark_rule().encode(x="low:Q", x2="high:Q"),
        base.mark_point(filled=True, size=size).encode(
            x=alt.X("ratio:Q", scale=alt.Scale(type="log", nice=False), title=x_title)),
        alt.Chart().mark_rule(color="black", strokeDash=[3, 3]).encode(x=alt.datum(1)),
        data=rows).properties(width=230, height=alt.Step(step))
    if columns is not None and row is None:
        return chart.facet(facet=alt.Facet(f"{column}:N", title=None), columns=columns).properties(title=title)
    facets = {"column": alt.Column(f"{column}:N", title=None)}
    if row is not None:
        facets["row"] = alt.Row(f"{row}:N", title=None, header=alt.Header(
            labelAngle=0, labelOrient="top", labelAnchor="start", labelFontWeight="bold"))
    return chart.facet(**facets).properties(title=title)


def annotated_matrix(df: pd.DataFrame, *, x: str, y: str, value: str, names: list[str], x_title: str, y_title: str,
                     scale: alt.Scale, color_title: str, text_format: str, faint: str, tooltip: list, title: str,
                     legend_format=alt.Undefined, faint_opacity: float = 0.45, font_size: int = 11,
                     cell_width: int = 64) -> alt.LayerChart:
    """A language-by-language matrix: one cell per (``x``, ``y``) coloured by ``value`` on ``scale``, its value
    written in it (``text_format``), faint where the Vega expression ``faint`` holds (e.g. the interval includes
    the null). df: the nominal columns x and y (names, both in the order ``names``) and ``value``."""
    base = alt.Chart(df).encode(x=alt.X(f"{x}:N", sort=names, title=x_title, axis=alt.Axis(labelAngle=-30)),
                                y=alt.Y(f"{y}:N", sort=names, title=y_title))
    heat = base.mark_rect().encode(
        color=alt.Color(f"{value}:Q", scale=scale, title=color_title,
                        legend=alt.Legend(orient="bottom", format=legend_format, gradientLength=240, titleLimit=400)),
        tooltip=tooltip)
    text = base.mark_text(fontSize=font_size).encode(
        text=alt.Text(f"{value}:Q", format=text_format),
        opacity=alt.condition(faint, alt.value(faint_opacity), alt.value(1.0)))
    return (heat + text).properties(width=cell_width * len(names), height=34 * len(names), title=title)
