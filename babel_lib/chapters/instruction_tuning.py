"""How instruction tuning changes a model and its activation profiles, as chapter steps (chapter 7).

No base/instruct pair of one model ships offline, so the chapter makes one (:func:`babel_lib.chapters.instruction_tuning.make_pair`: the
base model fine-tuned by :mod:`babel_lib.interventions.tune` on the instruction set's calibration split), or takes
a published instruct release. It then measures, always on held-out text:

- whether the tuning did what instruction tuning should do: the held-out response loss
  (:func:`babel_lib.chapters.instruction_tuning.heldout_loss`) and cheap checks of greedy answers (:func:`babel_lib.chapters.instruction_tuning.answer_checks`), base and tuned
  on the same examples, with paired intervals;
- how far the tuning moves each language's activation profile (:func:`profile_pair`,
  :func:`shift_results`), against two references measured on the same amount of held-out text: a
  new sample of the same language and a change of language; which layers move; whether the
  high-frequency, shared and language-specific experts stay; how far the weights moved
  (:func:`weight_change`).

Our choices (the paper compared publishers' base and chat releases of 7B models and is silent on
its measures):

- **Held-out text.** Profiles use the corpus' evaluation passages (never seen in tuning, which uses
  the calibration split), the same passages for both models and every language, under the *base*
  model's partition (tuning moves weights, not neurons, so neuron i of a layer is the same unit in
  both models and one partition makes their expert frequencies comparable).
- **Distance** between two profiles: the Hellinger distance (as in chapters 5 and 6),
  H(p, q) = sqrt(1 - sum_k sqrt(p_k q_k)) in [0, 1], each profile normalised to sum 1: over all layers
  x experts for a language's whole profile (under top-k every layer sums to k, so the layers weigh
  equally), over one layer's experts for a layer.
- **Halves.** The held-out passages are split into two interleaved halves, A (passages 1, 3, 5, ...)
  and B (2, 4, 6, ...; an odd last passage is left out), so that every comparison uses the same
  number of passages:

  - *tuning shift* of a language = (H(base on A, tuned on A) + H(base on B, tuned on B)) / 2: the
    two models on the same tokens;
  - *a new sample of the same language* = H(base on A, base on B): what a different text sample of
    the same language changes (the same-language resampling reference);
  - *a new language* = the mean over the other languages j of (H(base_i on A, base_j on A) +
    H(base_i on B, base_j on B)) / 2.

- **Intervals**: a bootstrap over passage pairs (passage 2m of A with passage 2m + 1 of B, one
  unit; the same resample for every language, both halves and both models), 95% centred percentile
  intervals (:func:`babel_lib.stats.distances.centred_interval`: resampling repeats passages, which
  inflates every distance as a whole; the interval keeps the spread and drops that shift). The
  robustness views (other partition seeds, the neuron view) report point estimates and the test.
- **Tests** over languages (the unit): a paired sign-flip permutation test of the mean over
  languages of (tuning shift - same-language reference), one-sided (shift larger), and of (new
  language - tuning shift) (shift smaller than a change of language); all 2^n sign patterns when
  that is at most the number of permutations asked for (exact), else random flips. Holm over the
  chapter's two headline tests, Benjamini-Hochberg over the per-layer tests.
- **Retention** of the base's experts (:func:`retention_fractions`; high-frequency = frequency at
  least ``hf_ratio`` x k/E, shared = high-frequency in every language, specific = in exactly one,
  as in :func:`babel_lib.stats.compare.expert_retention`): the share of the base's experts of each kind
  that are of the same kind in the tuned model (pooled over languages), on each half and averaged;
  its reference is the share kept between the base's profiles on the two halves.
- **Held-out loss and answers**: intervals resample the held-out *paragraphs* an example is built
  from (every example of one paragraph, in every language and task, together: examples of one
  paragraph are not independent), paired (the same resample for both models), 95% percentile.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import altair as alt
import numpy as np
import pandas as pd

from babel_lib.data import corpus, instructions
from babel_lib.data.corpus import language_labels
from babel_lib.interventions import answers, tune
from babel_lib.experts import pipeline
from babel_lib.report import plots
from babel_lib.stats import analysis, compare, distances, inference as stats
from babel_lib.stats.analysis import DEPTH_THIRDS, depth_third

#: The three comparisons of a profile: the tuning shift and its two references.
COMPARISONS = {"shift": "tuning (base vs tuned, same text)", "resample": "a new sample of the same language",
               "language": "a new language"}
#: Kinds of experts whose retention is measured.
RETENTION_KINDS = ("high-frequency", "shared", "specific")


# ============================================================================ profiles of the two models
@dataclass
class PairProfiles:
    """Both models profiled on the same held-out passages under the base model's partitions.

    study: the base model's :class:`babel_lib.experts.pipeline.Study` on the evaluation split (every view:
    k-means seeds, then the neuron view); tuned: the tuned model's profiles, one per view, same order."""

    study: object
    tuned: list
    dropped: tuple = ()

    @property
    def views(self) -> dict:
        """{view name: (base profile, tuned profile)}, the main view first."""
        return {name: (b, t) for (name, b), t in zip(self.study.views.items(), self.tuned)}

    @property
    def main(self) -> tuple:
        return next(iter(self.views.values()))

    def describe(self) -> str:
        halves = self.study.profile.n_passages // 2
        lacking = (f" The profiled corpus has no text for {', '.join(language_labels(self.dropped).values())}: "
                   "not profiled (it is still tuned and measured on the UDHR)." if self.dropped else "")
        return (self.study.describe() + lacking + f" The tuned model is counted on the same windows with the same "
                f"{len(self.tuned)} views (the base model's partitions). Halves: {halves} passages each "
                "(interleaved)." + (" The last passage has no partner and is left out of the halves."
                                    if self.study.profile.n_passages % 2 else ""))

    def text_table(self) -> pd.DataFrame:
        return self.study.text_table()


def profile_pair(pair: Pair, languages="paper", corpus_name: str = "udhr", max_passages: int | None = None,
                 expert_size: int = 32, top_k_fraction: float = 0.2, seeds=(0,), neurons: bool = True,
                 max_length: int = 128, batch_size: int = 8, progress: bool = False) -> PairProfiles:
    """Profile the base model (:func:`babel_lib.experts.pipeline.study` on the evaluation split: partitions
    of every seed, the neuron view) and the tuned model on the same held-out passages with the base
    model's partitions (``allow_other_model``: tuning keeps the neurons, so the same partition
    applies). Languages the corpus lacks are left out (``dropped``; e.g. Urdu on the Bible).
    Cached like every profile."""
    from babel_lib.data.corpus import resolve_languages
    from babel_lib.experts.moefy import Partition
    from babel_lib.experts.pipeline import study as make_study
    from babel_lib.experts.profile import profile_passages

    chosen = resolve_languages(languages, corpus_name, missing="drop")
    st = make_study(model=pair.base_spec, languages=list(chosen), corpus_name=corpus_name, split="evaluation",
                    max_passages=max_passages, expert_size=expert_size, top_k_fraction=top_k_fraction, seeds=seeds,
                    neurons=neurons, max_length=max_length, batch_size=batch_size, dtype=pair.dtype,
                    device=pair.device, progress=progress)
    if st.profile.n_passages < 4:
        raise ValueError(f"the halves need at least 4 held-out passages, got {st.profile.n_passages}")
    views = list(st.partitions) + ([Partition.neurons(pair.base)] if neurons else [])
    tuned = profile_passages(pair.tuned, views, st.passages, definitions=st.definitions, max_length=max_length,
                             batch_size=batch_size, allow_other_model=True, progress=progress)
    return PairProfiles(st, list(tuned), tuple(chosen.dropped))


# ============================================================================ distances
def _roots(freq: np.ndarray, per_layer: bool) -> np.ndarray:
    """sqrt of the profiles normalised to sum 1 (over E per layer, or over L x E)."""
    f = np.asarray(freq, dtype=float)
    s = f.sum(axis=-1 if per_layer else (-2, -1), keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(np.where(s > 0, f / np.where(s > 0, s, 1.0), np.nan))


def aligned_distance(fa: np.ndarray, fb: np.ndarray, per_layer: bool = False) -> np.ndarray:
    """Hellinger distance between matching profiles: fa, fb [..., n, L, E] -> [..., n] (whole
    profiles, normalised over L x E) or [..., n, L] (per layer, normalised over E). In [0, 1];
    NaN for an all-zero profile."""
    fa, fb = np.asarray(fa, dtype=float), np.asarray(fb, dtype=float)
    if fa.shape != fb.shape or fa.ndim < 3:
        raise ValueError(f"two profiles [..., n, L, E] of one shape are needed, got {fa.shape} and {fb.shape}")
    # 1 - sum sqrt(p q) = sum (sqrt p - sqrt q)^2 / 2 for distributions: exact for nearby profiles
    gap = (_roots(fa, per_layer) - _roots(fb, per_layer)) ** 2
    return np.sqrt(np.clip(gap.sum(axis=-1 if per_layer else (-2, -1)) / 2, 0.0, 1.0))


def language_distances(freq: np.ndarray, per_layer: bool = False) -> np.ndarray:
    """Hellinger distances between the languages of one profile (:mod:`babel_lib.stats.distances`):
    [..., n, L, E] -> [..., n, n] or, per layer, [..., L, n, n] (zero diagonal)."""
    freq = np.asarray(freq, dtype=float)
    return distances.layer_distances(freq) if per_layer else distances.profile_distances(freq)


def _mean_other(D: np.ndarray) -> np.ndarray:
    """Mean distance of each language to the others: [..., n, n] -> [..., n] (NaN for n < 2)."""
    n = D.shape[-1]
    if n < 2:
        return np.full(D.shape[:-1], np.nan)
    return D.sum(axis=-1) / (n - 1)


def retention_fractions(fa: np.ndarray, fb: np.ndarray, threshold: float) -> np.ndarray:
    """Share of the experts of each kind in profile ``fa`` that are of the same kind in ``fb``
    (both [..., n, L, E]; high-frequency = frequency >= threshold): [..., 3] for
    :data:`RETENTION_KINDS`, pooled over languages (kept / experts of that kind in fa, summed over
    languages and layers; NaN when fa has none). The counts of
    :func:`babel_lib.stats.compare.expert_retention`, summed."""
    ha = np.asarray(fa, dtype=float) >= threshold
    hb = np.asarray(fb, dtype=float) >= threshold
    sa, sb = ha.all(axis=-3), hb.all(axis=-3)
    oa = ha & (ha.sum(axis=-3, keepdims=True) == 1)
    ob = hb & (hb.sum(axis=-3, keepdims=True) == 1)
    out = []
    for a, b, axes in ((ha, hb, (-3, -2, -1)), (sa, sb, (-2, -1)), (oa, ob, (-3, -2, -1))):
        n = a.sum(axis=axes)
        kept = (a & b).sum(axis=axes)
        with np.errstate(divide="ignore", invalid="ignore"):
            out.append(np.where(n > 0, kept / np.where(n > 0, n, 1), np.nan))
    return np.stack(out, axis=-1)


def shift_statistics(freq: np.ndarray, threshold: float) -> dict:
    """Every profile statistic of the chapter from the four half profiles.

    freq float [..., 4, n, L, E]: base on half A, base on B, tuned on A, tuned on B (leading axes:
    bootstrap resamples). threshold: the high-frequency bar (``hf_ratio`` x k/E). Returns arrays
    with the leading axes: shift, resample, language, excess (= shift - resample) [..., n];
    shift_layer, resample_layer, language_layer [..., n, L]; mean_shift, mean_resample,
    mean_language, ratio_resample, ratio_language [...]; by_layer_shift, by_layer_resample,
    by_layer_language [..., L] (means over languages); by_third [..., 3]; common_share [...]
    (share of the squared change, tuned - base, that is common to all languages);
    retention_tuning, retention_reference [..., 3] (:func:`retention_fractions`)."""
    freq = np.asarray(freq, dtype=float)
    if freq.ndim < 4 or freq.shape[-4] != 4:
        raise ValueError(f"expected [..., 4, n, L, E] (base A, base B, tuned A, tuned B), got {freq.shape}")
    bA, bB, tA, tB = (freq[..., k, :, :, :] for k in range(4))
    out = {}
    for suffix, per_layer in (("", False), ("_layer", True)):
        out["shift" + suffix] = (aligned_distance(bA, tA, per_layer) + aligned_distance(bB, tB, per_layer)) / 2
        out["resample" + suffix] = aligned_distance(bA, bB, per_layer)
        DA, DB = language_distances(bA, per_layer), language_distances(bB, per_layer)
        other = _mean_other((DA + DB) / 2)  # [..., n] or [..., L, n]
        out["language" + suffix] = np.swapaxes(other, -1, -2) if per_layer else other
    out["excess"] = out["shift"] - out["resample"]
    for name in ("shift", "resample", "language"):
        out[f"mean_{name}"] = out[name].mean(axis=-1)
        out[f"by_layer_{name}"] = out[f"{name}_layer"].mean(axis=-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ratio_resample"] = out["mean_shift"] / out["mean_resample"]
        out["ratio_language"] = out["mean_shift"] / out["mean_language"]
    with warnings.catch_warnings():  # a model of fewer than 3 layers leaves a third empty (NaN)
        warnings.simplefilter("ignore", RuntimeWarning)
        out["by_third"] = analysis.by_third(out["by_layer_shift"])
    shares = []
    for b, t in ((bA, tA), (bB, tB)):
        change = t - b
        common = change.mean(axis=-3, keepdims=True)
        total = (change ** 2).sum(axis=(-3, -2, -1))
        with np.errstate(divide="ignore", invalid="ignore"):
            shares.append(np.where(total > 0, (np.broadcast_to(common, change.shape) ** 2).sum(axis=(-3, -2, -1))
                                   / np.where(total > 0, total, 1.0), np.nan))
    out["common_share"] = (shares[0] + shares[1]) / 2
    out["retention_tuning"] = (retention_fractions(bA, tA, threshold) + retention_fractions(bB, tB, threshold)) / 2
    out["retention_reference"] = (retention_fractions(bA, bB, threshold) + retention_fractions(bB, bA, threshold)) / 2
    return out


def half_counts(base, tuned) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit counts of the four half profiles, stacked for :func:`babel_lib.stats.bootstrap`:
    counts [4n, U, L, E] (rows: base on A, base on B, tuned on A, tuned on B, n languages each) and
    tokens [4n, U]. Unit m = passage pair (2m in A, 2m + 1 in B); U = passages // 2."""
    compare.check_pair(base, tuned)
    if base.passage_ids != tuned.passage_ids or not np.array_equal(base.passage_tokens, tuned.passage_tokens):
        raise ValueError("the two profiles must count the same passages and tokens")
    U = base.n_passages // 2
    if U < 2:
        raise ValueError(f"the halves need at least 4 passages, got {base.n_passages}")
    parts = [p.passage_counts[:, h:2 * U:2] for p in (base, tuned) for h in (0, 1)]
    toks = [p.passage_tokens[:, h:2 * U:2] for p in (base, tuned) for h in (0, 1)]
    return np.concatenate(parts, axis=0), np.concatenate(toks, axis=0)


def _flatten(values: dict) -> tuple[np.ndarray, list]:
    """{name: array [m, ...]} -> [m, K] and the layout [(name, shape)]."""
    layout, parts = [], []
    for name, v in values.items():
        v = np.asarray(v, dtype=float)
        layout.append((name, v.shape[1:]))
        parts.append(v.reshape(v.shape[0], -1))
    return np.concatenate(parts, axis=1), layout


def _unflatten(vector: np.ndarray, layout: list) -> dict:
    out, i = {}, 0
    for name, shape in layout:
        size = int(np.prod(shape)) if shape else 1
        out[name] = vector[i:i + size].reshape(shape) if shape else float(vector[i])
        i += size
    return out


def point_statistics(base, tuned, hf_ratio: float = analysis.HF_RATIO) -> dict:
    """:func:`shift_statistics` of one view (base and tuned :class:`~babel_lib.experts.profile.Profile` on the
    same passages) on the full data, without intervals."""
    counts, tokens = half_counts(base, tuned)
    n, L, E = len(base.languages), base.n_layers, base.n_experts
    freq = counts.sum(axis=1) / tokens.sum(axis=1)[:, None, None]
    return shift_statistics(freq.reshape(4, n, L, E), float(hf_ratio * analysis.base_rate(base)))


def view_statistics(base, tuned, hf_ratio: float = analysis.HF_RATIO, n_resamples: int = 1000, seed: int = 0,
                    level: float = 0.95) -> dict:
    """:func:`shift_statistics` of one view with 95% intervals from a bootstrap over passage pairs
    (:func:`half_counts`; the same resample for every language, half and model):
    {'estimate': {...}, 'low': {...}, 'high': {...}, 'inflation': {...}} (dicts of
    :func:`shift_statistics`' names).

    The intervals are centred percentile intervals (:func:`babel_lib.stats.distances.centred_interval`):
    a resample repeats some passages, so every resampled half holds less distinct text and every
    distance is larger; with a few passage pairs that shift is large, BCa then fails (the
    estimate lies below almost every sample) and a plain percentile interval misses the estimate.
    The centred interval keeps the spread and drops the shift (``inflation``: median of the
    resamples - estimate)."""
    counts, tokens = half_counts(base, tuned)
    n, L, E = len(base.languages), base.n_layers, base.n_experts
    threshold = float(hf_ratio * analysis.base_rate(base))
    layout: list = []

    def statistic(F):  # [m, 4n, L, E]
        parts = shift_statistics(F.reshape(F.shape[0], 4, n, L, E), threshold)
        vec, lay = _flatten(parts)
        layout[:] = lay
        return vec

    with warnings.catch_warnings():  # a statistic without a value (e.g. no shared expert) stays NaN
        warnings.filterwarnings("ignore", r"(Mean of empty slice|All-NaN slice)", RuntimeWarning)
        res = stats.bootstrap(statistic, counts, tokens, n_resamples, seed, method="percentile", level=level,
                              batched=True)
        low, high, inflation = distances.centred_interval(res, level)
    return {k: _unflatten(np.atleast_1d(np.asarray(v, dtype=float)), layout)
            for k, v in (("estimate", res.estimate), ("low", low), ("high", high), ("inflation", inflation))}


# ============================================================================ chapter 7 in one call
def shift_results(views: dict, n_resamples: int = 1000, permutations: int = stats.HEADLINE_PERMUTATIONS,
                  seed: int = 0, hf_ratio: float = analysis.HF_RATIO) -> dict:
    """Everything the chapter reports about the profiles, from {view name: (base profile, tuned
    profile)} (:attr:`PairProfiles.views`, the main view first).

    Returns tables and facts:
    - ``by_language``: language, name, shift, resample, language_distance (each with _low/_high),
      excess (shift - resample, with interval), ratio (shift / resample), beyond_noise (the
      interval of the excess above 0), below_language (the shift's interval below the new-language
      reference's);
    - ``by_language_long`` / ``by_layer_long``: the three comparisons in long form for charts (name or
      layer, comparison, value, low, high);
    - ``by_layer``: layer, third, shift, resample, language (each with interval), excess, p_value,
      p_bh (sign-flip over languages, Benjamini-Hochberg over layers), moves (p_bh < 0.05);
    - ``by_language_layer``: language, name, layer, shift with interval;
    - ``tests``: the two headline sign-flip tests with Holm's correction;
    - ``retention``: kind, tuning, reference, each with interval (and as text: tuning_text,
      reference_text), below_reference (the tuning's interval below the reference's);
    - ``robustness``: one row per view (point estimates; the sign-flip test; ``above``: languages
      whose shift exceeds the same-language reference);
    - ``facts``: the scalars the findings quote.
    """
    names = list(views)
    base, tuned = views[names[0]]
    main = view_statistics(base, tuned, hf_ratio, n_resamples, seed)
    est, low, high = main["estimate"], main["low"], main["high"]
    per_view = {names[0]: est, **{name: point_statistics(b, t, hf_ratio) for name, (b, t) in list(views.items())[1:]}}
    labels = language_labels(base.languages)
    n, L = len(base.languages), base.n_layers

    def ci(name):
        return {name: est[name], f"{name}_low": low[name], f"{name}_high": high[name]}

    by_language = pd.DataFrame({
        "language": base.languages, "name": [labels[k] for k in base.languages],
        **ci("shift"), **ci("resample"),
        "language_distance": est["language"], "language_distance_low": low["language"],
        "language_distance_high": high["language"], **ci("excess"),
    })
    with np.errstate(divide="ignore", invalid="ignore"):
        by_language["ratio"] = by_language["shift"] / by_language["resample"]
    by_language["beyond_noise"] = by_language["excess_low"] > 0
    by_language["below_language"] = by_language["shift_high"] < by_language["language_distance_low"]
    by_language_long = pd.concat([pd.DataFrame({
        "name": by_language["name"], "comparison": COMPARISONS[key], "value": by_language[col],
        "low": by_language[f"{col}_low"], "high": by_language[f"{col}_high"]})
        for key, col in (("shift", "shift"), ("resample", "resample"), ("language", "language_distance"))],
        ignore_index=True)

    layer_diff = est["shift_layer"] - est["resample_layer"]  # [n, L]
    _, p_layer, _ = stats.sign_flip(layer_diff, permutations, seed, "greater")
    by_layer = pd.DataFrame({
        "layer": np.arange(L), "third": depth_third(L),
        "shift": est["by_layer_shift"], "shift_low": low["by_layer_shift"], "shift_high": high["by_layer_shift"],
        "resample": est["by_layer_resample"], "resample_low": low["by_layer_resample"],
        "resample_high": high["by_layer_resample"],
        "language": est["by_layer_language"], "language_low": low["by_layer_language"],
        "language_high": high["by_layer_language"],
        "excess": layer_diff.mean(axis=0), "p_value": p_layer, "p_bh": stats.benjamini_hochberg(p_layer),
    })
    by_layer["moves"] = by_layer["p_bh"] < 0.05
    by_layer_long = pd.concat([pd.DataFrame({
        "layer": by_layer["layer"], "comparison": COMPARISONS[key], "value": by_layer[key],
        "low": by_layer[f"{key}_low"], "high": by_layer[f"{key}_high"]}) for key in COMPARISONS], ignore_index=True)
    by_language_layer = pd.DataFrame({
        "language": np.repeat(base.languages, L), "name": np.repeat([labels[k] for k in base.languages], L),
        "layer": np.tile(np.arange(L), n), "shift": est["shift_layer"].reshape(-1),
        "low": low["shift_layer"].reshape(-1), "high": high["shift_layer"].reshape(-1),
        "resample": est["resample_layer"].reshape(-1)})

    s1, p1, used = stats.sign_flip(est["shift"] - est["resample"], permutations, seed, "greater")
    s2, p2, _ = stats.sign_flip(est["language"] - est["shift"], permutations, seed, "greater")
    tests = pd.DataFrame({
        "test": ["tuning shift larger than a new sample of the same language",
                 "tuning shift smaller than a change of language"],
        "statistic": [s1, s2], "p_value": [p1, p2], "languages": n, "patterns": used,
        "exact": 2 ** n <= permutations + 1})
    tests["p_holm"] = stats.holm(tests["p_value"].to_numpy())

    retention = pd.DataFrame({
        "kind": list(RETENTION_KINDS),
        "tuning": est["retention_tuning"], "tuning_low": low["retention_tuning"],
        "tuning_high": high["retention_tuning"],
        "reference": est["retention_reference"], "reference_low": low["retention_reference"],
        "reference_high": high["retention_reference"]})
    retention["below_reference"] = retention["tuning_high"] < retention["reference_low"]
    for col in ("tuning", "reference"):
        retention[f"{col}_text"] = [stats.interval_text(e, lo, hi) for e, lo, hi in
                                    zip(retention[col], retention[f"{col}_low"], retention[f"{col}_high"])]

    robustness = pd.DataFrame([_robust_row(name, per_view[name], views[name][0], est["shift"], permutations, seed)
                               for name in names])
    thirds = pd.DataFrame({"third": list(DEPTH_THIRDS), "shift": est["by_third"], "low": low["by_third"],
                           "high": high["by_third"]}).sort_values("shift", ascending=False)
    top = by_layer.sort_values("shift", ascending=False)
    moved = by_layer[by_layer["moves"]]["layer"].tolist()
    facts = {
        "languages": n, "layers": L, "experts": base.n_experts, "passages": base.n_passages,
        "half": base.n_passages // 2, "resamples": n_resamples, "permutations": permutations,
        "patterns": used, "exact": bool(2 ** n <= permutations + 1), "min_p": 1 / used if 2 ** n <= permutations + 1
        else 1 / (permutations + 1),
        "views": len(names), "view_names": names,
        "mean_shift": _ci(main, "mean_shift"), "mean_resample": _ci(main, "mean_resample"),
        "mean_language": _ci(main, "mean_language"), "ratio_resample": _ci(main, "ratio_resample"),
        "ratio_language": _ci(main, "ratio_language"),
        "beyond_noise": int(by_language["beyond_noise"].sum()),
        "below_language": int(by_language["below_language"].sum()),
        "p_resample": p1, "p_resample_holm": float(tests["p_holm"][0]),
        "p_language": p2, "p_language_holm": float(tests["p_holm"][1]),
        "most_moved": _pick(by_language, "shift", max), "least_moved": _pick(by_language, "shift", min),
        "top_layers": top["layer"].head(3).tolist(), "layers_moved": moved, "layers_tested": L,
        "largest_third": thirds["third"].iloc[0],
        "thirds": {r.third: (float(r.shift), float(r.low), float(r.high)) for r in thirds.itertuples()},
        "largest_third_separated": bool(thirds["low"].iloc[0] > thirds["high"].iloc[1]),
        "common_share": _ci(main, "common_share"),
        "retention": {r.kind: {"tuning": (r.tuning, r.tuning_low, r.tuning_high),
                               "reference": (r.reference, r.reference_low, r.reference_high),
                               "below": bool(r.below_reference)} for r in retention.itertuples()},
        "hf_ratio": hf_ratio, "threshold": float(hf_ratio * analysis.base_rate(base)),
    }
    facts["holds"] = bool(facts["p_resample_holm"] < 0.05 and facts["ratio_resample"][1] > 1)
    facts["robust"] = bool((robustness["ratio_resample"] > 1).all() and (robustness["p_value"] < 0.05).all())
    facts["robust_below_language"] = bool((robustness["ratio_language"] < 1).all())
    facts["robust_third"] = bool((robustness["largest_third"] == facts["largest_third"]).all())
    facts["robust_retention"] = bool((robustness["hf_kept"] < robustness["hf_kept_reference"]).all())
    facts["min_spearman"] = float(robustness["spearman_with_main"].min())
    facts["view_ratio_range"] = (float(robustness["ratio_resample"].min()), float(robustness["ratio_resample"].max()))
    facts["view_language_ratio_range"] = (float(robustness["ratio_language"].min()),
                                          float(robustness["ratio_language"].max()))
    facts["view_p_max"] = float(robustness["p_value"].max())
    facts["view_above_min"] = int(robustness["above"].min())
    facts["language_holds"] = bool(facts["p_language_holm"] < 0.05)
    return {"by_language": by_language, "by_language_long": by_language_long, "by_layer": by_layer,
            "by_layer_long": by_layer_long, "by_language_layer": by_language_layer, "tests": tests,
            "retention": retention, "robustness": robustness, "facts": facts}


def _ci(view: dict, name: str) -> tuple[float, float, float]:
    return float(view["estimate"][name]), float(view["low"][name]), float(view["high"][name])


def _pick(frame: pd.DataFrame, column: str, fn) -> tuple:
    i = frame[column].idxmax() if fn is max else frame[column].idxmin()
    r = frame.loc[i]
    return r["name"], float(r[column]), float(r[f"{column}_low"]), float(r[f"{column}_high"])


def _robust_row(name: str, est: dict, base, main_shift: np.ndarray, permutations: int, seed: int) -> dict:
    _, p, _ = stats.sign_flip(est["shift"] - est["resample"], permutations, seed, "greater")
    return {"view": name, "mean_shift": float(est["mean_shift"]), "mean_resample": float(est["mean_resample"]),
            "mean_language": float(est["mean_language"]), "ratio_resample": float(est["ratio_resample"]),
            "ratio_language": float(est["ratio_language"]), "above": int((est["excess"] > 0).sum()),
            "languages": len(base.languages), "p_value": p,
            "largest_third": DEPTH_THIRDS[int(np.nanargmax(est["by_third"]))],
            "top_layer": int(np.nanargmax(est["by_layer_shift"])),
            "hf_kept": float(est["retention_tuning"][0]), "hf_kept_reference": float(est["retention_reference"][0]),
            "spearman_with_main": stats.spearman(est["shift"], main_shift)}


# ============================================================================ maps and weights
def difference_map(base, tuned) -> pd.DataFrame:
    """Tuned minus base frequency of every expert on all held-out passages (one row per language,
    layer, expert: language, name, layer, expert, rank (position in its layer by the base's mean
    frequency over the languages), base, tuned, difference)."""
    from babel_lib.chapters.heatmaps import rank_within_layer

    frame = compare.difference_frame(base, tuned)
    rank = rank_within_layer(base.frequencies().mean(axis=0))
    frame["rank"] = rank[frame["layer"].to_numpy(), frame["expert"].to_numpy()]
    frame.insert(1, "name", frame["language"].map(language_labels(base.languages)))
    return frame


def weight_change(pair: Pair, by_layer: pd.DataFrame | None = None) -> dict:
    """How far the weights moved: :func:`babel_lib.interventions.tune.weight_change` per layer (relative change
    ||W_tuned - W_base|| / ||W_base|| of the FFN and of the rest of the block), with the profile
    shift per layer from ``by_layer`` (:func:`shift_results`) beside it.

    Returns ``table`` (layer, ffn, attention[, profile_shift]), ``long`` (layer, part, relative_change,
    for a chart) and ``facts`` (mean change of each part, the layer whose FFN moved most, Spearman
    correlation over layers of the FFN change with the profile shift: descriptive, layers are not
    independent units)."""
    long = tune.weight_change(pair.base.model, pair.tuned.model)
    table = long.pivot(index="layer", columns="part", values="relative_change").reset_index()
    table.columns.name = None
    facts = {"ffn_mean": float(table["ffn"].mean()), "attention_mean": float(table["attention"].mean()),
             "ffn_top_layer": int(table.loc[table["ffn"].idxmax(), "layer"]),
             "attention_top_layer": int(table.loc[table["attention"].idxmax(), "layer"])}
    if by_layer is not None:
        table = table.merge(by_layer[["layer", "shift"]].rename(columns={"shift": "profile_shift"}), on="layer")
        facts["spearman_ffn_shift"] = stats.spearman(table["ffn"], table["profile_shift"])
    long["part"] = long["part"].map({"ffn": "feed-forward (gate, up, down)", "attention": "rest of the block"})
    return {"table": table, "long": long, "facts": facts}


# ============================================================================ placebos
def profile_placebos(pp: PairProfiles, placebos: dict, batch_size: int = 8, progress: bool = False) -> dict:
    """Each placebo model (:func:`babel_lib.chapters.instruction_tuning.placebo_models`) profiled like the tuned model:
    on the same held-out windows under the base model's views. {kind: [Profile per view]}."""
    from babel_lib.experts.moefy import Partition
    from babel_lib.experts.profile import profile_passages

    st = pp.study
    views = list(st.partitions) + ([Partition.neurons(st.lm)] if "neurons" in st.names else [])
    max_length = int(st.profile.corpus.get("max_length", 128))
    return {kind: list(profile_passages(model, views, st.passages, definitions=st.definitions, max_length=max_length,
                                        batch_size=batch_size, allow_other_model=True, progress=progress))
            for kind, model in placebos.items()}


def placebo_results(views: dict, placebo_profiles: dict, n_resamples: int = 1000,
                    permutations: int = stats.HEADLINE_PERMUTATIONS, seed: int = 0, level: float = 0.95) -> dict:
    """The tuning shift against each placebo's shift, from {view: (base, tuned)} (:attr:`PairProfiles.views`)
    and {kind: [Profile per view]} (:func:`profile_placebos`).

    Shift of a model: a language's distance from the base on half A and on half B, averaged (as
    :func:`shift_statistics`). Main view: one bootstrap over passage pairs for the tuned and every
    placebo model together (the same resample), centred intervals (the resampling inflates a small
    distance more than a large one, so a plain percentile interval of their ratio can miss the
    estimate) for the shifts and for the ratio tuning shift / placebo shift (mean over languages);
    a one-sided sign-flip test over
    languages of tuning shift - placebo shift, Holm over the placebos. Other views: the ratio only.

    Returns ``table`` (one row per placebo), ``by_language`` (language, name, tuning shift, one column
    per placebo) and ``facts``."""
    names = list(views)
    kinds = list(placebo_profiles)
    base, tuned = views[names[0]]
    n, L, E = len(base.languages), base.n_layers, base.n_experts
    counts, tokens = half_counts(base, tuned)
    for kind in kinds:
        c, t = half_counts(base, placebo_profiles[kind][0])
        counts, tokens = np.concatenate([counts, c[2 * n:]]), np.concatenate([tokens, t[2 * n:]])
    M = 1 + len(kinds)  # models compared with the base: tuned, then the placebos

    def shifts(F):  # [m, (2 + 2M) n, L, E] -> [m, M, n]
        F = F.reshape(F.shape[0], 2 + 2 * M, n, L, E)
        bA, bB = F[:, 0], F[:, 1]
        return np.stack([(aligned_distance(bA, F[:, 2 + 2 * k]) + aligned_distance(bB, F[:, 3 + 2 * k])) / 2
                         for k in range(M)], axis=1)

    def statistic(F):  # per-language shifts, mean shifts, ratios tuned / placebo
        s = shifts(F)
        mean = s.mean(axis=-1)  # [m, M]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = mean[:, :1] / mean[:, 1:]
        return np.concatenate([s.reshape(len(s), -1), mean, ratio], axis=1)

    res = stats.bootstrap(statistic, counts, tokens, n_resamples, seed, method="percentile", level=level,
                          batched=True)
    c_low, c_high, _ = distances.centred_interval(res, level)
    est = np.asarray(res.estimate, dtype=float)
    cut = M * n
    per_language = est[:cut].reshape(M, n)
    labels = language_labels(base.languages)
    by_language = pd.DataFrame({"language": base.languages, "name": [labels[k] for k in base.languages],
                                "tuning": per_language[0], **{kind: per_language[1 + k] for k, kind in enumerate(kinds)}})
    rows, facts = [], {"placebos": kinds, "languages": n, "tuning_shift": [float(est[cut]), float(c_low[cut]),
                                                                         float(c_high[cut])]}
    for k, kind in enumerate(kinds):
        diff = per_language[0] - per_language[1 + k]
        stat, p, used = stats.sign_flip(diff, permutations, seed, "greater")
        m_i, r_i = cut + 1 + k, cut + M + k
        view_ratios = []
        for name in names[1:]:
            b, t = views[name]
            v = names.index(name)
            st_t = point_statistics(b, t)["mean_shift"]
            st_p = point_statistics(b, placebo_profiles[kind][v])["mean_shift"]
            view_ratios.append(float(st_t / st_p) if st_p > 0 else float("nan"))
        rows.append({"placebo": kind, "words": tuning_pair_words(kind),
                     "shift": float(est[m_i]), "shift_low": float(c_low[m_i]), "shift_high": float(c_high[m_i]),
                     "tuning_shift": float(est[cut]), "ratio": float(est[r_i]),
                     "ratio_low": float(c_low[r_i]), "ratio_high": float(c_high[r_i]),
                     "languages_larger": int((diff > 0).sum()), "languages": n, "p_value": float(p),
                     "patterns": int(used), "view_ratio_min": float(np.nanmin(view_ratios)) if view_ratios else float("nan")})
    table = pd.DataFrame(rows)
    if len(table):
        table["p_holm"] = stats.holm(table["p_value"].to_numpy())
        table["passes"] = (table["p_holm"] < 0.05) & (table["ratio_low"] > 1)
        table["robust"] = table["passes"] & ~(table["view_ratio_min"] <= 1)
    for r in table.itertuples():
        facts[r.placebo] = {"shift": (r.shift, r.shift_low, r.shift_high), "ratio": (r.ratio, r.ratio_low, r.ratio_high),
                            "p": r.p_value, "p_holm": r.p_holm, "larger": r.languages_larger, "passes": bool(r.passes),
                            "robust": bool(r.robust), "view_ratio_min": r.view_ratio_min}
    facts["views"] = len(names)
    facts["resamples"] = n_resamples
    return {"table": table, "by_language": by_language, "facts": facts}


def tuning_pair_words(kind: str) -> str:

    return PLACEBOS.get(kind, kind)


def placebo_verdict(facts: dict) -> list[dict]:
    """The verdict row for claim 'tuning_beyond_placebo' from :func:`placebo_results`' facts: every
    placebo a test that could fail (a placebo moving the profile as far would fail it), decided by
    :func:`babel_lib.report.verdicts.decide`; robust when the ratio stays above 1 in every other view."""
    from babel_lib.core.claims import decide, row

    f = facts
    kinds = f["placebos"]
    if not kinds:
        return [row("tuning_beyond_placebo", "no placebo was run", "a placebo needs the tuning's recipe or norm",
                    "not testable here")]
    parts = [f"{stats.interval_text(*f[k]['ratio'], digits=2)} times the shift of {tuning_pair_words(k)} "
             f"({f[k]['larger']} of {f['languages']} languages larger; {stats.p_text(f[k]['p'], f[k]['p_holm'])})"
             for k in kinds]
    # the tested ratios lead (the Answer box quotes the first clause)
    result = (f"the tuning shift is " + "; ".join(parts) + f"; tuning moved the profiles by "
              f"{stats.interval_text(*f['tuning_shift'], digits=4)} (mean Hellinger over {f['languages']} languages)")
    robust = all(f[k]["robust"] for k in kinds)
    evidence = (f"the same held-out passages and bootstrap over passage pairs ({f['resamples']:,} resamples) for "
                f"every model; one-sided sign-flip tests over languages, Holm over the {len(kinds)} placebos; "
                + ("the ratios stay above 1 under every partition seed and the neuron view" if robust
                   else "a ratio is not above 1 in every view")
                + "; one recipe and one seed per placebo")
    return [row("tuning_beyond_placebo", result, evidence, decide([f[k]["passes"] for k in kinds], robust=robust))]


# ============================================================================ verdict
def verdict_rows(facts: dict, pair_facts: dict) -> list[dict]:
    """The chapter's verdict row for claim 'instruction_tuning' from :func:`shift_results`' facts and
    :meth:`Pair.facts`."""
    from babel_lib.core.claims import row

    f = facts
    result = (f"tuning moves a language's profile {stats.interval_text(*f['ratio_resample'], digits=2)} times as far "
              f"as a new sample of the same language ({stats.p_text(f['p_resample'], f['p_resample_holm'])}; beyond "
              f"sampling noise in {f['beyond_noise']} of {f['languages']} languages) and "
              f"{stats.interval_text(*f['ratio_language'], digits=2)} times as far as a change of language; the shift "
              f"is {stats.interval_text(*f['mean_shift'], digits=4)} (Hellinger, mean over {f['languages']} languages, "
              f"{f['half']} held-out passages)")
    here = pair_facts.get("made_here", True)
    pair = (f"a pair made here ({pair_facts.get('steps', '?')} steps of {pair_facts.get('batch_size', '?')} "
            "UDHR instructions on a 270M base model) stands for light supervised instruction tuning only, not for a "
            "publisher's chat release (broad data, preference tuning, 7B models as in the paper)"
            if here else f"a published pair ({pair_facts['base']} / {pair_facts['tuned']})")
    evidence = (f"bootstrap over {f['half']} passage pairs ({f['resamples']:,} resamples); sign-flip test over "
                f"{f['languages']} languages ({'exact, ' if f['exact'] else ''}smallest possible p "
                f"{f['min_p']:.3g}); "
                + ("holds under every partition seed and the neuron view" if f["robust"]
                   else "does not hold under every partition seed and the neuron view") + f"; {pair}")
    if f["holds"] and f["robust"]:
        word = "partly reproduced" if here else "reproduced"
    elif f["holds"] or f["beyond_noise"]:
        word = "partly reproduced"
    else:
        word = "not reproduced"
    return [row("instruction_tuning", result, evidence, word)]


# ====================================================================================================
# The base/tuned pair and its behaviour (formerly babel_lib.chapters.instruction_tuning)
#: Readable names of the instruction tasks.
TASK_NAMES = {"translate": "translate from English", "to_english": "translate into English",
              "continue": "continue a text", "repeat": "repeat a text"}
#: The answer checks of :func:`babel_lib.interventions.answers.score_answers` reported here, with readable names.
CHECKS = {"ok": "well-formed and in the right language", "well_formed": "well-formed",
          "right_language": "in the right language", "stopped": "ends its answer itself"}


# ============================================================================ the pair
@dataclass
class Pair:
    """A base model and its instruction-tuned version.

    base, tuned: the loaded models (the same dtype and device); base_spec: the base's model spec;
    run: the tuning run (:class:`babel_lib.interventions.tune.TunedModel`) when the pair was made here, None when
    ``tuned`` is a given release; format_tokenizer, template: how prompts are formatted (the way the
    tuned model was trained); languages, tasks: the instruction set's; seconds: wall time of
    :func:`make_pair` (training, or loading from the cache).
    """

    base: object
    tuned: object
    base_spec: str
    tuned_spec: str | None
    dtype: str
    device: str
    run: tune.TunedModel | None
    format_tokenizer: object
    template: str
    languages: list[str]
    tasks: list[str]
    seconds: float

    @property
    def made_here(self) -> bool:
        return self.run is not None

    def training_curve(self, window: int = 10) -> pd.DataFrame | None:
        """The training loss of every step and its running mean over ``window`` steps (None for a
        given release): step, loss, mean."""
        if self.run is None:
            return None
        log = self.run.log[["step", "loss"]].copy()
        log["mean"] = log["loss"].rolling(window, min_periods=1).mean()
        return log

    def describe(self) -> str:
        """The pair in one paragraph (Markdown): what was tuned, how, how long it took."""
        from babel_lib.core.cache import shown_path

        if self.run is None:
            return (f"**Base model** {self.base.description} (`{self.base_spec}`). **Tuned model** "
                    f"{self.tuned.description} (`{self.tuned_spec}`, fingerprint `{self.tuned.fingerprint}`), given "
                    "as a parameter; prompts use its own chat template.")
        m = self.run.meta
        when = (f"Loaded from the cache in {self.seconds:.0f} s (trained earlier in {m['train_seconds'] / 60:.1f} min "
                f"with {m['threads']} torch thread(s))." if self.run.cached else
                f"Trained in this run: {m['train_seconds'] / 60:.1f} min with {m['threads']} torch thread(s) "
                f"(load average {_number(m.get('load_average_at_start')):.1f} on {m['cpu_count']} CPUs when it "
                "started).")
        return (f"**Tuned model** {self.run.describe()}. {when} Folder: `{shown_path(self.run.path)}` (pass it as "
                "`tuned_model`, or to `babel_lib.core.models.load_model`).")

    def facts(self) -> dict:
        """The pair's numbers for the findings."""
        f = {"made_here": self.made_here, "base": self.base_spec, "tuned": self.tuned_spec}
        if self.run is not None:
            m, h = self.run.meta, self.run.meta["hyperparameters"]
            log = self.run.log
            f.update(steps=h["steps"], batch_size=h["batch_size"], learning_rate=h["learning_rate"],
                     train=h["train"], examples=m["examples_used"], tokens=m["tokens_seen"],
                     response_tokens=m["response_tokens_seen"], minutes=m["train_seconds"] / 60,
                     threads=m["threads"], cached=self.run.cached, languages=len(m["languages"]),
                     first_loss=float(log["loss"].head(10).mean()), last_loss=float(log["loss"].tail(10).mean()),
                     trainable=m["trainable_parameters"], total=m["total_parameters"])
        return f


def _number(x) -> float:
    return float("nan") if x is None else float(x)


def make_pair(base_model: str = "gemma-3-270m", tuned_model: str | None = None, languages="paper",
              tasks=instructions.TASKS, steps: int | None = None, batch_size: int | None = None,
              learning_rate: float | None = None, train: str | None = None, max_length: int | None = None,
              seed: int = 0,
              dtype: str = "float32", device: str = "auto", progress: bool = False) -> Pair:
    """Load ``base_model`` and make its tuned version: fine-tune it on the instruction set
    (:func:`babel_lib.data.instructions.instruction_set` on ``languages``' calibration split, ``tasks``)
    with :class:`babel_lib.interventions.tune.TuneConfig`'s recipe (``steps``, ``batch_size``, ``learning_rate``,
    ``train``, ``max_length``: None keeps the recipe's default), cached; or, with ``tuned_model``, load that
    release (same architecture and FFN shape). Both models in ``dtype`` on ``device``."""
    from babel_lib.experts.pipeline import get_model

    langs = list(corpus.resolve_languages(languages))
    tasks = list(tasks)
    base = get_model(base_model, dtype, device)
    started = time.perf_counter()
    if tuned_model is None:
        train_set = instructions.instruction_set(langs, "calibration", tasks=tasks, tokenizer=base.tokenizer,
                                                 seed=seed)
        chosen = {k: v for k, v in dict(steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                                        train=train, max_length=max_length).items() if v is not None}
        run = tune.instruction_tune(base, train_set, tune.TuneConfig(seed=seed, **chosen), progress=progress)
        return Pair(base, run.lm, base_model, None, dtype, device, run, base.tokenizer, train_set[0]["template"],
                    langs, tasks, time.perf_counter() - started)
    tuned = get_model(tuned_model, dtype, device)
    return Pair(base, tuned, base_model, tuned_model, dtype, device, None, tuned.tokenizer, "auto", langs, tasks,
                time.perf_counter() - started)


#: The placebos of :func:`placebo_models`, in words.
PLACEBOS = {"plain text": "the same recipe on plain text of the same languages (no instructions)",
            "noise": "a random weight change of the tuning's norm, tensor by tensor"}


def placebo_models(pair: Pair, kinds=tuple(PLACEBOS), seed: int = 0, progress: bool = False) -> dict:
    """Placebo versions of the tuned model, {kind: LoadedModel}: ``'plain text'`` fine-tunes the base
    with the pair's own recipe (steps, batch, learning rate, what is trained) on
    :func:`babel_lib.data.instructions.continuation_set` of the same languages (cached like any tuning);
    ``'noise'`` is :func:`babel_lib.interventions.tune.random_perturbation` (the tuning's norm, no direction). A
    pair given as a release has no recipe here, so it gets the noise placebo only."""
    unknown = set(kinds) - set(PLACEBOS)
    if unknown:
        raise ValueError(f"unknown placebo {sorted(unknown)}: choose from {list(PLACEBOS)}")
    out = {}
    for kind in kinds:
        if kind == "plain text":
            if pair.run is None:
                continue
            text = instructions.continuation_set(pair.languages, "calibration", seed=seed)
            config = tune.TuneConfig(**pair.run.meta["hyperparameters"])
            out[kind] = tune.instruction_tune(pair.base, text, config, progress=progress).lm
        else:
            out[kind] = tune.random_perturbation(pair.base, pair.tuned, seed)
    return out


def heldout_set(pair: Pair, languages=None, tasks=None, seed: int = 0):
    """The held-out instruction set: the evaluation split of the pair's languages (or ``languages``)
    and tasks, formatted the way the tuned model was trained."""
    langs = pair.languages if languages is None else list(corpus.resolve_languages(languages))
    return instructions.instruction_set(langs, "evaluation", tasks=list(tasks or pair.tasks),
                                        tokenizer=pair.format_tokenizer, template=pair.template, seed=seed)


# ============================================================================ paired means with intervals
def example_language(frame: pd.DataFrame) -> pd.Series:
    """The language an example is about: the target for every task but 'to_english', whose
    source is the language (its answers are all in English)."""
    return frame["source_lang"].where(frame["task"] == "to_english", frame["lang"])


def paragraph_units(frame: pd.DataFrame) -> np.ndarray:
    """int [rows]: one unit per held-out paragraph (article, paragraph), the bootstrap's unit."""
    keys = frame["article"].astype(int).astype(str) + "." + frame["paragraph"].astype(int).astype(str)
    return pd.factorize(keys, sort=True)[0]


def paired_summary(units, base_num, tuned_num, base_den=None, tuned_den=None, n_resamples: int = 1000,
                   seed: int = 0, level: float = 0.95) -> dict:
    """Ratio-of-sums means of two models on the same examples, and their difference, with a paired
    bootstrap over ``units`` (int [rows]: examples of one unit are resampled together, the same
    resample for both models; percentile intervals).

    base_num, tuned_num float [rows]; base_den, tuned_den the weights (default 1: plain means; e.g.
    summed NLL and token counts give the loss per token). Returns base, base_low, base_high, tuned,
    tuned_low, tuned_high, difference (tuned - base), low, high, examples, units."""
    units = np.asarray(units, dtype=np.int64)
    rows = len(units)
    ones = np.ones(rows)
    cols = [np.asarray(x, dtype=float) for x in (base_num, ones if base_den is None else base_den,
                                                  tuned_num, ones if tuned_den is None else tuned_den)]
    if any(c.shape != (rows,) for c in cols):
        raise ValueError("every column must have one value per example")
    _, units = np.unique(units, return_inverse=True)
    U = int(units.max()) + 1 if rows else 0
    if U < 2:
        raise ValueError("a paired bootstrap needs examples from at least 2 units")
    M = np.zeros((U, 4))
    for j, c in enumerate(cols):
        np.add.at(M[:, j], units, c)

    def statistic(W):
        S = np.atleast_2d(W) @ M
        with np.errstate(divide="ignore", invalid="ignore"):
            b, t = S[:, 0] / S[:, 1], S[:, 2] / S[:, 3]
        return np.stack([b, t, t - b], axis=1)

    res = stats.bootstrap_units(statistic, U, n_resamples, seed, method="percentile", level=level, batched=True)
    est, low, high = (np.asarray(x, dtype=float) for x in (res.estimate, res.low, res.high))
    return {"base": est[0], "base_low": low[0], "base_high": high[0], "tuned": est[1], "tuned_low": low[1],
            "tuned_high": high[1], "difference": est[2], "low": low[2], "high": high[2], "examples": rows,
            "units": U}


# ============================================================================ held-out loss
def heldout_loss(pair: Pair, dataset, examples: int | None = None, max_length: int = 256, batch_size: int = 8,
                 seed: int = 0, n_resamples: int = 1000) -> dict:
    """Held-out response loss of both models (:func:`babel_lib.interventions.answers.response_loss`, nats per
    response token) on ``dataset`` (:func:`heldout_set`; ``examples``: at most that many per task
    and language pair, None: all), the examples both models score (at most ``max_length`` tokens).

    Returns ``examples`` (one row per example: task, lang, language, article, paragraph,
    nll_base, tokens_base, nll_tuned, tokens_tuned), ``table`` (one row per group: kind 'all' /
    'task' / 'language', group, name, examples, tokens, then :func:`paired_summary`'s columns),
    ``by_task`` (long, for a chart: name, model, loss, low, high) and ``facts``."""
    chosen = dataset if examples is None else answers.sample_prompts(dataset, examples, seed)
    meta = chosen.to_pandas()
    b = answers.response_loss(pair.base, chosen, max_length, batch_size)
    t = answers.response_loss(pair.tuned, chosen, max_length, batch_size)
    frame = b.merge(t[["row", "nll", "tokens"]], on="row", suffixes=("_base", "_tuned"))
    frame["language"] = example_language(meta.loc[frame["row"]]).to_numpy()
    frame["article"] = meta.loc[frame["row"], "article"].to_numpy()
    frame["paragraph"] = meta.loc[frame["row"], "paragraph"].to_numpy()
    frame["unit"] = paragraph_units(frame)
    labels = language_labels(sorted(set(frame["language"])))
    rows = []
    groups = [("all", "all", "All examples", frame)]
    groups += [("task", k, TASK_NAMES.get(k, k), g) for k, g in frame.groupby("task", sort=False)]
    groups += [("language", k, labels[k], g) for k, g in frame.groupby("language", sort=False)]
    for kind, key, name, g in groups:
        s = paired_summary(g["unit"], g["nll_base"], g["nll_tuned"], g["tokens_base"], g["tokens_tuned"],
                           n_resamples, seed) if g["unit"].nunique() >= 2 else _single(g)
        rows.append({"kind": kind, "group": key, "name": name, "tokens": int(g["tokens_base"].sum()), **s})
    table = pd.DataFrame(rows)
    long = pd.concat([table[table["kind"] == "task"].assign(model=m, loss=table[m], low=table[f"{m}_low"],
                                                             high=table[f"{m}_high"])
                      [["name", "model", "loss", "low", "high", "examples", "tokens"]] for m in ("base", "tuned")],
                     ignore_index=True)
    tasks = table[table["kind"] == "task"].set_index("name")
    langs = table[table["kind"] == "language"].set_index("name")
    a = table.iloc[0]
    facts = {"examples": int(a["examples"]), "tokens": int(a["tokens"]), "units": int(a["units"]),
             "base": _triple(a, "base"), "tuned": _triple(a, "tuned"), "difference": _triple(a, ""),
             "ppl_base": math.exp(a["base"]), "ppl_tuned": math.exp(a["tuned"]),
             "lower_beyond_noise": bool(a["high"] < 0),
             "tasks_lower": int((tasks["high"] < 0).sum()), "tasks": len(tasks),
             "largest_drop": (tasks["difference"].idxmin(), float(tasks["difference"].min())),
             "smallest_drop": (tasks["difference"].idxmax(), float(tasks["difference"].max())),
             "languages_lower": int((langs["high"] < 0).sum()), "languages": len(langs),
             "resamples": n_resamples}
    return {"examples": frame, "table": table, "by_task": long, "facts": facts}


def _single(g: pd.DataFrame) -> dict:
    """Point estimates only (a group with one unit has no interval)."""
    b = g["nll_base"].sum() / g["tokens_base"].sum()
    t = g["nll_tuned"].sum() / g["tokens_tuned"].sum()
    nan = float("nan")
    return {"base": b, "base_low": nan, "base_high": nan, "tuned": t, "tuned_low": nan, "tuned_high": nan,
            "difference": t - b, "low": nan, "high": nan, "examples": len(g), "units": int(g["unit"].nunique())}


def _triple(row, prefix: str) -> tuple[float, float, float]:
    if prefix:
        return float(row[prefix]), float(row[f"{prefix}_low"]), float(row[f"{prefix}_high"])
    return float(row["difference"]), float(row["low"]), float(row["high"])


# ============================================================================ answers
def answer_checks(pair: Pair, dataset, examples: int = 3, max_new_tokens: int = 48, batch_size: int = 8,
                  seed: int = 0, n_resamples: int = 1000) -> dict:
    """Greedy answers of both models to the same held-out prompts (at most ``examples`` per task and
    language pair of ``dataset``), judged by :func:`babel_lib.interventions.answers.score_answers`.

    Returns ``answers`` (one row per prompt and model: model, task, lang, language, the checks, chrf,
    answer), ``rates`` (one row per check and chrF: check, name, then :func:`paired_summary`'s
    columns: rates, chrF 0-100), ``by_task`` (task name, model, the checks' rates, chrf),
    ``by_language`` (model, language, name, the checks and chrf), ``prompts`` (the prompts' table)
    and ``facts`` (with the language identifier's accuracy on the held-out references)."""
    chosen = answers.sample_prompts(dataset, examples, seed + 1)
    prompts = chosen.to_pandas()
    everything = dataset.to_pandas()
    identifier = answers.LanguageIdentifier(sorted(set(everything["lang"]) | set(everything["source_lang"])))
    lid = float(np.mean([identifier.identify(t) == l for t, l in zip(everything["reference"], everything["lang"])]))
    scored = []
    for label, lm in (("base", pair.base), ("tuned", pair.tuned)):
        got = answers.generate_answers(lm, chosen, max_new_tokens=max_new_tokens, batch_size=batch_size)
        scored.append(answers.score_answers(chosen, got, identifier).assign(model=label))
    scored = pd.concat(scored, ignore_index=True)
    scored["language"] = example_language(prompts.loc[scored["row"]].reset_index(drop=True)).to_numpy()
    scored["article"] = prompts.loc[scored["row"], "article"].to_numpy()
    scored["paragraph"] = prompts.loc[scored["row"], "paragraph"].to_numpy()
    labels = language_labels(sorted(set(scored["language"])))
    scored["name"] = scored["language"].map(labels)
    base = scored[scored["model"] == "base"].set_index("row").sort_index()
    tuned = scored[scored["model"] == "tuned"].set_index("row").loc[base.index]
    units = paragraph_units(base)
    rows = []
    for check, name in list(CHECKS.items()) + [("chrf", "chrF (0-100)")]:
        rows.append({"check": check, "name": name,
                     **paired_summary(units, base[check].astype(float), tuned[check].astype(float),
                                      n_resamples=n_resamples, seed=seed)})
    rates = pd.DataFrame(rows)
    shown = rates[rates["check"] != "chrf"]
    rates_long = pd.concat([pd.DataFrame({"name": shown["name"], "model": m, "rate": shown[m],
                                          "low": shown[f"{m}_low"], "high": shown[f"{m}_high"]})
                            for m in ("base", "tuned")], ignore_index=True)
    by_task = scored.groupby(["task", "model"], as_index=False, sort=False)[list(CHECKS) + ["chrf"]].mean()
    by_task["task"] = by_task["task"].map(lambda k: TASK_NAMES.get(k, k))
    by_language = scored.groupby(["model", "language", "name"], as_index=False)[list(CHECKS) + ["chrf"]].mean()
    chrf_task = scored.groupby(["task", "model"])["chrf"].mean().unstack()
    r = rates.set_index("check")
    facts = {"prompts": len(base), "units": int(r.loc["ok", "units"]), "identifier_accuracy": lid,
             "resamples": n_resamples, "max_new_tokens": max_new_tokens,
             **{f"{c}_{m}": _triple(r.loc[c], m) for c in list(CHECKS) + ["chrf"] for m in ("base", "tuned")},
             **{f"{c}_difference": _triple(r.loc[c], "") for c in list(CHECKS) + ["chrf"]},
             "chrf_by_task": {TASK_NAMES.get(k, k): (float(v["base"]), float(v["tuned"]))
                              for k, v in chrf_task.iterrows()}}
    return {"answers": scored, "rates": rates, "rates_long": rates_long, "by_task": by_task,
            "by_language": by_language, "prompts": prompts, "facts": facts}


def answer_examples(checks: dict, language: str | None = None, width: int = 240) -> pd.DataFrame:
    """A few answers side by side: for one language (default: the first that is not English), the
    first prompt of each task; columns task, instruction, base (answer), tuned (answer), reference,
    base_ok, tuned_ok, base_chrf, tuned_chrf (answers cut at ``width`` characters)."""
    scored, prompts = checks["answers"], checks["prompts"]
    langs = list(dict.fromkeys(scored["language"]))
    language = language or next((l for l in langs if l != "eng"), langs[0])
    mine = scored[scored["language"] == language]
    rows = []
    for task, g in mine.groupby("task", sort=False):
        row = int(g["row"].min())
        b = g[(g["row"] == row) & (g["model"] == "base")].iloc[0]
        t = g[(g["row"] == row) & (g["model"] == "tuned")].iloc[0]
        p = prompts.loc[row]
        rows.append({"task": TASK_NAMES.get(task, task), "instruction": p["head"], "base": _cut(b["answer"], width),
                     "tuned": _cut(t["answer"], width), "reference": _cut(p["reference"], width),
                     "base_ok": bool(b["ok"]), "tuned_ok": bool(t["ok"]), "base_chrf": float(b["chrf"]),
                     "tuned_chrf": float(t["chrf"])})
    return pd.DataFrame(rows)


def _cut(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


# ====================================================================================================
# The notebook's display: charts, table options and prose
def training_curve_chart(curve: pd.DataFrame) -> alt.Chart:
    """The training loss of each step and its running mean, one line each. ``curve``: step, loss, mean
    (:meth:`Pair.training_curve`)."""
    long = curve.melt("step", var_name="series", value_name="value").replace(
        {"series": {"loss": "each step", "mean": "mean of 10 steps"}})
    return alt.Chart(long).mark_line().encode(
        x=alt.X("step:Q", title="Step"), y=alt.Y("value:Q", title="Training loss (nats per response token)"),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=["step", "series", alt.Tooltip("value:Q", format=".3f")]
    ).properties(width=520, height=220, title="Training curve (training batches)")


def _side_by_side_intervals(df: pd.DataFrame, x: alt.X, group: str, color: alt.Color, tooltip: list, size: int,
                            width: int, height: int, title: str) -> alt.LayerChart:
    """Estimates with their intervals along x, one row per ``name`` and the rows of each ``group`` side by side
    within it (y offset): a point at ``x`` and a rule from ``low`` to ``high``. ``df``: name, group, low, high
    and the value ``x`` encodes."""
    points = alt.Chart(df).mark_point(filled=True, size=size).encode(
        x=x, y=alt.Y("name:N", title=None), yOffset=alt.YOffset(f"{group}:N"), color=color, tooltip=tooltip)
    rules = points.mark_rule().encode(x="low:Q", x2="high:Q")
    return (rules + points).properties(width=width, height=height, title=title)


def heldout_loss_chart(by_task: pd.DataFrame) -> alt.LayerChart:
    """Held-out loss of each model per task (and overall) with its 95% interval. ``by_task``: name, model, loss,
    low, high, examples, tokens (:func:`heldout_loss`' ``by_task``)."""
    return _side_by_side_intervals(
        by_task, alt.X("loss:Q", title="Held-out loss (nats per response token)", scale=alt.Scale(zero=False)),
        "model", alt.Color("model:N", title="Model", legend=alt.Legend(orient="bottom")),
        ["name", "model", alt.Tooltip("loss:Q", format=".3f"), alt.Tooltip("low:Q", format=".3f"),
         alt.Tooltip("high:Q", format=".3f"), "examples", "tokens"],
        size=70, width=520, height=200, title="Held-out loss by task, with 95% intervals")


def answer_rates_chart(rates: pd.DataFrame) -> alt.LayerChart:
    """Each model's share of held-out answers passing each check, with its 95% interval. ``rates``: name (the
    check), model, rate, low, high (:func:`answer_checks`' ``rates_long``)."""
    return _side_by_side_intervals(
        rates, alt.X("rate:Q", title="Share of held-out prompts", scale=alt.Scale(domain=[0, 1]),
                     axis=alt.Axis(format="%")),
        "model", alt.Color("model:N", title="Model", legend=alt.Legend(orient="bottom")),
        ["name", "model", alt.Tooltip("rate:Q", format=".0%"), alt.Tooltip("low:Q", format=".0%"),
         alt.Tooltip("high:Q", format=".0%")],
        size=70, width=480, height=200, title="Held-out answers, with 95% intervals")


def shift_chart(by_language: pd.DataFrame) -> alt.LayerChart:
    """Per language, the tuning shift and its two references with 95% intervals (logarithmic axis). ``by_language``:
    name, comparison, value, low, high (:func:`shift_results`' ``by_language_long``)."""
    return _side_by_side_intervals(
        by_language, alt.X("value:Q", title="Hellinger distance between two profiles", scale=alt.Scale(type="log")),
        "comparison", alt.Color("comparison:N", title="Two profiles of",
                                legend=alt.Legend(orient="bottom", columns=1, labelLimit=400)),
        ["name", "comparison", alt.Tooltip("value:Q", format=".4f"), alt.Tooltip("low:Q", format=".4f"),
         alt.Tooltip("high:Q", format=".4f")],
        size=60, width=520, height=30 * by_language["name"].nunique(),
        title="Tuning shift and its references, by language")


def distances_by_layer_chart(by_layer: pd.DataFrame) -> alt.LayerChart:
    """Per layer, the mean over languages of the tuning shift and its two references: a line with points over its
    95% band (logarithmic axis). ``by_layer``: layer, comparison, value, low, high (:func:`shift_results`'
    ``by_layer_long``)."""
    base = alt.Chart(by_layer).encode(x=alt.X("layer:O", title="Layer"),
                                      color=alt.Color("comparison:N", title="Two profiles of",
                                                      legend=alt.Legend(orient="bottom", columns=1, labelLimit=400)))
    chart = (base.mark_area(opacity=0.2).encode(y=alt.Y("low:Q", title="Hellinger distance (log scale)",
                                                        scale=alt.Scale(type="log")), y2="high:Q")
             + base.mark_line(point=True).encode(y="value:Q", tooltip=["layer", "comparison",
                                                                       alt.Tooltip("value:Q", format=".4f")]))
    return chart.properties(width=560, height=240, title="Distances by layer (mean over languages)")


def difference_chart(difference: pd.DataFrame) -> alt.FacetChart:
    """Tuned minus base frequency of every expert, one heatmap a language (experts ranked within their layer).
    ``difference``: name, layer, rank, difference (:func:`difference_map`)."""
    return plots.heatmap(difference, "rank:O", "layer:O", "difference:Q", facet="name", columns=3, width=180,
                         height=150, x_title="Expert (rank in its layer)", y_title="Layer", color_title="Difference",
                         diverging=True, title="Tuned minus base expert frequency")


def weight_change_chart(long: pd.DataFrame) -> alt.Chart:
    """The relative change of each layer's weights, one line a part. ``long``: layer, part, relative_change
    (:func:`weight_change`'s ``long``)."""
    return alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("layer:O", title="Layer"), y=alt.Y("relative_change:Q", title="Relative weight change"),
        color=alt.Color("part:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=["layer", "part", alt.Tooltip("relative_change:Q", format=".4f")]
    ).properties(width=520, height=220, title="Relative change of each layer's weights")


def heldout_loss_tables(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """:func:`heldout_loss`' ``table`` split into ``heldout_loss`` (the rows of every kind but language: overall
    and by task) and ``heldout_loss_by_language``."""
    by_language = table["kind"] == "language"
    return {"heldout_loss": table[~by_language], "heldout_loss_by_language": table[by_language]}


_LOSS_COLUMNS = {"name": "Examples of", "examples": "Examples", "tokens": "Response tokens", "base": "Base",
                 "tuned": "Tuned", "difference": "Tuned - base", "low": "Low", "high": "High"}
_LOSS_FORMATS = {c: "{:.3f}" for c in ("base", "tuned")} | {c: "{:+.3f}" for c in ("difference", "low", "high")}

#: Display options of the chapter's tables, keyed by the table's name: ``plots.table(df, name, **TABLES[name])``
#: (``shift_by_layer``: the per-layer table, shown without a file).
TABLES: dict[str, dict] = {
    "text": {**pipeline.TEXT_TABLE, "caption": "Held-out text profiled per language (both models)"},
    "heldout_loss": {
        "columns": _LOSS_COLUMNS, "formats": _LOSS_FORMATS,
        "caption": "Held-out loss (nats per response token), paired difference with its 95% interval"},
    "heldout_loss_by_language": {"columns": _LOSS_COLUMNS, "formats": _LOSS_FORMATS,
                                 "caption": "Held-out loss by language"},
    "answer_rates_by_task": {
        "columns": {"task": "Task", "model": "Model", **{c: w.capitalize() for c, w in CHECKS.items()},
                    "chrf": "chrF"},
        "formats": {**{c: "{:.0%}" for c in CHECKS}, "chrf": "{:.1f}"}, "caption": "Answers by task"},
    "answer_examples": {
        "columns": {"task": "Task", "instruction": "Instruction", "base": "Base answer", "tuned": "Tuned answer",
                    "reference": "Reference", "base_chrf": "chrF base", "tuned_chrf": "chrF tuned"},
        "formats": {"base_chrf": "{:.1f}", "tuned_chrf": "{:.1f}"}, "caption": "Answers side by side"},
    "tests": {
        "columns": {"test": "Test (over languages)", "statistic": "Mean difference", "p_value": "p",
                    "p_holm": "p (Holm)", "languages": "Languages", "patterns": "Sign patterns"},
        "formats": {"statistic": "{:+.4f}", "p_value": "{:.4f}", "p_holm": "{:.4f}"},
        "caption": "Sign-flip permutation tests over languages"},
    "shift_by_layer": {
        "columns": {"layer": "Layer", "third": "Third", "shift": "Tuning shift", "shift_low": "Low",
                    "shift_high": "High", "resample": "New sample", "p_value": "p", "p_bh": "p (BH)"},
        "formats": {c: "{:.4f}" for c in ("shift", "shift_low", "shift_high", "resample", "p_value", "p_bh")},
        "caption": "Tuning shift by layer, tested against a new sample of the same language"},
    "expert_retention": {
        "columns": {"kind": "Experts of the base", "tuning_text": "Kept after tuning [95% interval]",
                    "reference_text": "Kept in a new sample [95% interval]",
                    "below_reference": "Fewer kept after tuning, beyond noise"},
        "caption": "Share of the base's experts of each kind that keep their kind (pooled over languages)"},
    "robustness": {
        "columns": {"view": "View", "mean_shift": "Tuning shift", "mean_resample": "New sample",
                    "mean_language": "New language", "ratio_resample": "Shift / new sample",
                    "ratio_language": "Shift / new language", "above": "Languages above the reference",
                    "p_value": "p", "largest_third": "Third moving most", "top_layer": "Layer moving most",
                    "hf_kept": "High-frequency kept", "hf_kept_reference": "Kept in a new sample",
                    "spearman_with_main": "Spearman with main view"},
        "formats": {"mean_shift": "{:.4f}", "mean_resample": "{:.4f}", "mean_language": "{:.4f}",
                    "ratio_resample": "{:.2f}", "ratio_language": "{:.2f}", "p_value": "{:.4f}",
                    "hf_kept": "{:.3f}", "hf_kept_reference": "{:.3f}", "spearman_with_main": "{:+.2f}"},
        "caption": "The chapter's statistics in every view"},
    "placebos": {
        "columns": {"words": "Placebo", "shift": "Placebo shift", "shift_low": "Low", "shift_high": "High",
                    "tuning_shift": "Tuning shift", "ratio": "Tuning / placebo", "ratio_low": "Low ",
                    "ratio_high": "High ", "languages_larger": "Languages where tuning moves more",
                    "p_value": "p", "p_holm": "p (Holm)", "view_ratio_min": "Lowest ratio in another view"},
        "formats": {"shift": "{:.4f}", "shift_low": "{:.4f}", "shift_high": "{:.4f}", "tuning_shift": "{:.4f}",
                    "ratio": "{:.2f}", "ratio_low": "{:.2f}", "ratio_high": "{:.2f}", "p_value": "{:.4f}",
                    "p_holm": "{:.4f}", "view_ratio_min": "{:.2f}"},
        "caption": "The tuning shift against placebo fine-tunes of the same size (mean over languages)"},
}


def findings_text(f: dict, pair_facts: dict, loss_facts: dict, answer_facts: dict, weight_facts: dict,
                  placebo_facts: dict, corpus_name: str) -> str:
    """The chapter's findings (Markdown) from :func:`shift_results`' facts, :meth:`Pair.facts`, the facts of
    :func:`heldout_loss`, :func:`answer_checks`, :func:`weight_change` and :func:`placebo_results`, and the
    profiled corpus' name."""
    bullets = [_pair_finding(pair_facts), _placebo_finding(placebo_facts), _loss_finding(loss_facts),
               _answer_finding(answer_facts), _shift_finding(f), _layer_finding(f), _retention_finding(f),
               _weight_finding(weight_facts), _robustness_finding(f), _evidence_finding(f, pair_facts, corpus_name)]
    return "\n" + "\n".join(bullets) + "\n"


def _pair_finding(pf: dict) -> str:
    if not pf["made_here"]:
        return f"""- **The pair.** The published pair {pf['base']} / {pf['tuned']}."""
    return f"""\
- **The pair.** {pf['base']} was fine-tuned for {pf['steps']} steps of {pf['batch_size']} examples
  ({pf['tokens']:,} tokens, {pf['response_tokens']:,} of them in responses; {pf['trainable'] / 1e6:.0f}M of
  {pf['total'] / 1e6:.0f}M parameters trained) in {pf['minutes']:.1f} min. The training loss averaged
  {pf['first_loss']:.2f} over the first 10 steps and {pf['last_loss']:.2f} over the last 10 (single batches of 4
  examples of mixed tasks and lengths: a noisy measure; the held-out loss below is the one to read)."""


def _placebo_finding(pl: dict) -> str:
    line = "; ".join(
        f"{stats.interval_text(*pl[k]['ratio'], digits=2)} times the shift of {PLACEBOS[k]} "
        f"({pl[k]['larger']} of {pl['languages']} languages larger, {stats.p_text(pl[k]['p'], pl[k]['p_holm'])})"
        for k in pl["placebos"]) or "no placebo was run"
    return f"- **Against placebos.** The tuning moved the profiles {line}."


def _loss_finding(lf: dict) -> str:
    it = stats.interval_text
    lower = "lower beyond noise" if lf["lower_beyond_noise"] else "not lower beyond noise"
    tasks = f"{lf['tasks_lower']} of {lf['tasks']}"
    return f"""\
- **Held-out loss.** On {lf['examples']:,} held-out examples ({lf['tokens']:,} response tokens from {lf['units']}
  paragraphs) the loss is {it(*lf['base'])} nats per token for the base and {it(*lf['tuned'])}
  for the tuned model: {it(*lf['difference'])} (perplexity {lf['ppl_base']:.1f} -> {lf['ppl_tuned']:.1f}),
  {lower}. It is lower beyond noise in
  {tasks} tasks and {lf['languages_lower']} of {lf['languages']} languages; the largest drop
  is on *{lf['largest_drop'][0]}* ({lf['largest_drop'][1]:+.3f}), the smallest on *{lf['smallest_drop'][0]}*
  ({lf['smallest_drop'][1]:+.3f})."""


def _answer_finding(af: dict) -> str:
    it = stats.interval_text
    sh = {k: f"{af[k][0]:.0%}" for m in ("base", "tuned") for k in
          (f"well_formed_{m}", f"right_language_{m}", f"stopped_{m}")}
    return f"""\
- **Answers.** Of {af['prompts']} held-out prompts, the base answers well-formed and in the right language
  {it(*af['ok_base'], digits=2)} of the time and the tuned model {it(*af['ok_tuned'], digits=2)}
  (difference {it(*af['ok_difference'], digits=2)}); well-formed {sh['well_formed_base']} ->
  {sh['well_formed_tuned']}, in the right language {sh['right_language_base']} ->
  {sh['right_language_tuned']}, ends its answer itself {sh['stopped_base']} -> {sh['stopped_tuned']};
  chrF {it(*af['chrf_base'], digits=1)} -> {it(*af['chrf_tuned'], digits=1)}. The language
  identifier recognises {af['identifier_accuracy']:.0%} of the held-out reference paragraphs themselves."""


def _shift_finding(f: dict) -> str:
    it = stats.interval_text
    below = ("stays below a change of language" if f["language_holds"]
             else "is not clearly below a change of language")
    common = f["common_share"]
    return f"""\
- **How far the profiles move.** On halves of {f['half']} held-out passages, a language's profile moves by
  {it(*f['mean_shift'], digits=4)} under tuning (Hellinger distance, mean over {f['languages']} languages),
  against {it(*f['mean_resample'], digits=4)} for a new sample of the same language and
  {it(*f['mean_language'], digits=4)} for a new language: tuning moves a profile
  {it(*f['ratio_resample'], digits=2)} times as far as a new text sample and
  {it(*f['ratio_language'], digits=2)} times as far as a change of language. The shift exceeds the
  same-language reference beyond noise in {f['beyond_noise']} of {f['languages']} languages
  ({stats.p_text(f['p_resample'], f['p_resample_holm'])}, sign-flip test over languages) and
  {below}
  ({stats.p_text(f['p_language'], f['p_language_holm'])}). The most moved language is {f['most_moved'][0]}
  ({it(*f['most_moved'][1:], digits=4)}), the least {f['least_moved'][0]}
  ({it(*f['least_moved'][1:], digits=4)}). {common[0]:.0%}
  [{common[1]:.0%}, {common[2]:.0%}] of the squared frequency change is common to all
  languages; the rest differs by language."""


def _layer_finding(f: dict) -> str:
    it = stats.interval_text
    thirds = f["thirds"]
    moved = (" (" + ", ".join(map(str, f["layers_moved"])) + ")") if f["layers_moved"] else ""
    separated = (" beyond noise" if f["largest_third_separated"]
                 else " (not clear of the next third: weak evidence)")
    views = ", in every view" if f["robust_third"] else "; not in every view"
    return f"""\
- **Which layers move.** The largest shifts are in layers {', '.join(map(str, f['top_layers']))}; the shift exceeds
  a new sample of the same language (Benjamini-Hochberg q < 0.05) in {len(f['layers_moved'])} of {f['layers_tested']}
  layers{moved}. By thirds: early
  {it(*thirds['early'], digits=4)}, middle {it(*thirds['middle'], digits=4)}, late
  {it(*thirds['late'], digits=4)}: the {f['largest_third']} third moves most{separated}{views}."""


def _retention_finding(f: dict) -> str:
    ret = {k: {w: stats.interval_text(*v[w], digits=3) for w in ("tuning", "reference")}
           for k, v in f["retention"].items()}
    fewer = "fewer beyond noise" if f["retention"]["high-frequency"]["below"] else "not fewer beyond noise"
    return f"""\
- **Experts kept.** Of the base's high-frequency experts (frequency at least {f['threshold']:.2f}),
  {ret['high-frequency']['tuning']} stay high-frequency after tuning, against
  {ret['high-frequency']['reference']} between two samples of the same language
  ({fewer}); shared experts
  {ret['shared']['tuning']} against {ret['shared']['reference']};
  language-specific experts {ret['specific']['tuning']} against
  {ret['specific']['reference']}."""


def _weight_finding(wf: dict) -> str:
    return f"""\
- **Weights.** The FFN weights moved by {wf['ffn_mean']:.4f} of their norm on average and the rest of the block by
  {wf['attention_mean']:.4f}; the FFN of layer {wf['ffn_top_layer']} moved most. Across layers the FFN change and the
  profile shift have Spearman rho = {wf['spearman_ffn_shift']:+.2f} (descriptive: layers are not independent units)."""


def _robustness_finding(f: dict) -> str:
    resample, language = f["view_ratio_range"], f["view_language_ratio_range"]
    noise = ("the shift exceeds sampling noise in every view" if f["robust"]
             else "the shift does not exceed sampling noise in every view")
    kept = ("in every view the point estimate of high-frequency experts kept is lower after tuning than between two "
            "samples (see Experts kept for whether that is beyond noise)" if f["robust_retention"] else
            "not every view keeps fewer high-frequency experts after tuning than between two samples")
    return f"""\
- **Robustness.** Over the {f['views']} views the tuning shift is {resample[0]:.2f}-{resample[1]:.2f}
  times a new sample of the same language and {language[0]:.2f}-{language[1]:.2f}
  times a new language (largest p {f['view_p_max']:.3g}; in each view at least {f['view_above_min']} of {f['languages']}
  languages move more under tuning than in a new sample); {noise};
  {kept}.
  The languages' shifts keep their order across views (lowest Spearman with the main view {f['min_spearman']:+.2f})."""


def _evidence_finding(f: dict, pf: dict, corpus_name: str) -> str:
    passages = ("Bible chapters: another domain than the tuning text" if corpus_name == "bible"
                else "UDHR articles: the tuning text, other articles")
    made_here = ("The pair was made here: the effect measured is that of " + str(pf["steps"]) + " steps of light "
                 "supervised tuning of a 270M model on UDHR instructions, not of a publisher chat release (broad data, "
                 "preference tuning, 7B models as in the paper)." if pf["made_here"] else "")
    return f"""\
- **Strength of evidence.** {f['languages']} languages are the unit of the tests ({'exact' if f['exact'] else 'random'}
  sign flips: no p below {f['min_p']:.3g}); {f['passages']} held-out passages ({passages}), {f['resamples']:,}
  bootstrap resamples of passage pairs. {made_here}
  The UDHR is among the most translated texts, so the base model has probably seen it in pre-training: held-out
  articles are new to the tuning, not to the model. The answer checks are cheap and say nothing about
  correctness beyond chrF."""


def run_time_text(started: float) -> str:
    """The run's time so far in seconds, as the chapter's last line (Markdown); ``started``: a
    :func:`time.perf_counter` reading taken at the chapter's start."""
    return f"*This run: {time.perf_counter() - started:.0f} s.*"
