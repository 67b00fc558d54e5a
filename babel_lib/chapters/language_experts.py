"""Chapter 12 as library steps: are language-specific experts necessary? Switching them off against
matched controls, the language of what the model writes, steering, and whether routing predicts
the model's competence in a language; the notebook's tables (:data:`TABLES`), charts and findings prose are at
the end.

Our choices (the paper is silent; each is a parameter):

- **A language's experts**: chapter 04's robust definition turned into a ranking with one budget
  for every language: expert e's specificity to language i is
  ``min(low_i(e) - bar, bar - max_{j != i} high_j(e))``, where low / high are the 95% passage
  bootstrap interval of the expert's frequency (:func:`babel_lib.chapters.shared_specific.frequency_bounds`) and the
  bar is the high-frequency bar (``hf_ratio`` x k/E). It is positive exactly when the expert is
  robustly specific to i in chapter 04's sense; the ``m`` experts of highest specificity form the
  language's set (so every language loses the same number of experts; how many of them pass the
  robust definition is reported).
- **Switching off**: the experts' neuron values are zeroed before the down projection (the masking
  of the pruning chapters, :func:`babel_lib.interventions.prune.masked_condition`).
- **Damage**: the relative change of the bits per character on held-out text (the same text, so
  equal to the relative change of the total bits): ``nll_off / nll_dense - 1``.
- **Matched controls**: per language, ``n_controls`` random sets of the same size, each expert
  replaced by a random expert of the same layer in the same decile (within the layer) of the
  pooled frequency (mean over the languages), never one of the language's own experts
  (:func:`matched_controls`).
- **Selectivity**: damage to the target language minus the mean damage to the other languages;
  and the target damage over (and minus) the mean matched-control damage on the target language.
  Intervals: percentile bootstrap over passages (the same resample for every language of one
  corpus); tests over languages: exact sign-flip tests, Holm over the chapter.
- **Language of the output**: greedy continuations identified by ``py3langid`` (its model ships in
  the wheel) restricted to the study's languages (:class:`LanguageID`).
- **Steering**: language M's experts' neuron values multiplied by ``scale`` while prompting in
  English, against DiffMean (adding the difference of the mean residual-stream states of M and
  English text after one decoder layer); matched strength: DiffMean's coefficient is set so that the
  mean change of the final hidden states on the prompts equals the expert scaling's
  (:func:`match_strength`).
- **Routing and competence**: the Hellinger distance of a language's expert profile from English's
  and from the mean profile against its bits per character on held-out UDHR text, Spearman and
  partial Spearman beyond tokens per character and script, with a crossed bootstrap over languages
  and passages.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import altair as alt
import numpy as np
import pandas as pd
import torch

from babel_lib.chapters.high_frequency import hf_threshold
from babel_lib.chapters.shared_specific import frequency_bounds
from babel_lib.core.adapters import backbone, ffn_spec
from babel_lib.core.cache import Store, cache_key
from babel_lib.core.hooks import ffn_pre_hooks, pad_batch, pad_id
from babel_lib.core.models import LoadedModel
from babel_lib.data.corpus import language_labels, language_table
from babel_lib.experts.moefy import Partition, moe_view
from babel_lib.interventions import applications as app
from babel_lib.interventions import evaluate, prune
from babel_lib.stats import inference as stats

#: Bump when a change here changes cached generations.
GENERATION_VERSION = "1"

_PERCENT = ["target", "others", "selectivity", "selectivity_low", "selectivity_high", "control"]
#: The chapter's tables: ``plots.table`` arguments by table name.
TABLES: dict[str, dict] = {
    "calibration_text": {"columns": app.CALIBRATION_TEXT_COLUMNS, "formats": {"tokens_per_character": "{:.2f}"},
                         "caption": "Calibration text per language (defines the experts)"},
    "experts_and_controls": {
        "columns": {"name": "Language", "experts": "Experts off", "robust_in_set": "Of them robustly specific (ch. 4)",
                    "pooled_frequency": "Pooled frequency (set)",
                    "control_pooled_frequency": "Pooled frequency (controls)",
                    "same_decile": "Controls in the same decile", "control_sets": "Control sets"},
        "formats": {"pooled_frequency": "{:.3f}", "control_pooled_frequency": "{:.3f}", "same_decile": "{:.0%}"},
        "caption": "The experts switched off per language and how well the random controls match them"},
    "selectivity_by_language": {
        "columns": {"name": "Language", "target": "Own damage", "others": "Others' damage",
                    "selectivity": "Selectivity", "selectivity_low": "Low", "selectivity_high": "High",
                    "control": "Control damage", "ratio": "Own / control", "ratio_low": "Low ",
                    "ratio_high": "High "},
        "formats": {c: "{:.2%}" for c in _PERCENT} | {c: "{:.2f}" for c in ["ratio", "ratio_low", "ratio_high"]},
        "caption": "Selectivity per language (95% intervals over passages; the damage by the other languages' sets "
                   "in the downloadable table)"},
    "continuations": {
        "columns": {"name": "Language", "condition": "Condition", "continuation": "Continuation",
                    "identified": "Identified as"},
        "caption": "The first continuation of each language, dense and with its experts off (every continuation in "
                   "the table's file)"},
    "tests": {
        "columns": {"part": "Part", "test": "Test", "observed": "Observed", "low": "Low", "high": "High",
                    "languages": "Languages", "p_value": "p", "p_holm": "Holm-adjusted p"},
        "formats": {"observed": "{:.3g}", "low": "{:.3g}", "high": "{:.3g}", "p_value": "{:.4f}",
                    "p_holm": "{:.4f}"},
        "caption": "Every test of the chapter (over languages; Holm over the chapter)"},
}
#: The steering methods' names in the chart.
STEERING_NAMES = {"none": "no steering", "experts": "experts scaled", "diffmean": "DiffMean, matched strength"}


# ------------------------------------------------------------------------------ language identification
def iso639_1(key: str) -> str:
    """The two-letter code py3langid uses for a language key (from the language table's BCP 47 tag)."""
    tag = str(language_table().loc[key, "bcp47"])
    return tag.split("-")[0].lower()


class LanguageID:
    """py3langid (langid.py's model, inside the wheel) restricted to ``languages`` (keys; None: every
    language the model knows). :meth:`identify` returns the key of the language identified (or the
    model's code for a language outside the keys), None for a text without letters."""

    def __init__(self, languages=None):
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self.identifier = LanguageIdentifier.from_model_file(MODEL_FILE)
        self.languages = None if languages is None else list(languages)
        self.codes = {}
        if self.languages is not None:
            self.codes = {iso639_1(k): k for k in self.languages}
            if len(self.codes) != len(self.languages):
                raise ValueError(f"two languages share an identifier code: {self.languages}")
            self.identifier.set_languages(sorted(self.codes))

    def identify(self, text: str) -> str | None:
        if not text or not any(ch.isalpha() for ch in text):
            return None
        code = self.identifier.classify(text)[0]
        return self.codes.get(code, code)

    def describe(self) -> str:
        import py3langid

        among = (f"restricted to the {len(self.languages)} languages of the study ({', '.join(sorted(self.codes))})"
                 if self.languages is not None else "over every language its model knows")
        return f"py3langid {py3langid.__version__} (langid.py's model, shipped in the wheel), {among}"


# ------------------------------------------------------------------------------ language-specific sets
@dataclass
class SpecificSets:
    """Each language's ``m`` most specific experts (module docstring).

    cells: {lang: int [m, 2] (layer, expert)}; table: one row per chosen expert (language, rank,
    layer, expert, specificity, robust: passes chapter 04's robust definition, own / max other
    frequency); pooled: float [L, E], the mean frequency over the languages; bar: the
    high-frequency bar; specificity: float [n, L, E]."""

    languages: list[str]
    cells: dict[str, np.ndarray]
    table: pd.DataFrame
    pooled: np.ndarray
    bar: float
    specificity: np.ndarray
    n_experts: int

    @property
    def m(self) -> int:
        return int(len(next(iter(self.cells.values()))))

    def robust_counts(self) -> dict[str, int]:
        return self.table.groupby("language", sort=False)["robust"].sum().astype(int).to_dict()


def specificity(counts: np.ndarray, tokens: np.ndarray, bar: float, n_resamples: int = 1000, seed: int = 0,
                level: float = 0.95) -> np.ndarray:
    """float [n, L, E]: ``min(low_i - bar, bar - max_{j != i} high_j)`` from the passage bootstrap
    interval of every expert's frequency (positive = robustly specific to i, chapter 04)."""
    counts = np.asarray(counts)
    n, P, L, E = counts.shape
    if n < 2:
        raise ValueError("specificity needs at least two languages")
    layers, experts = np.divmod(np.arange(L * E), E)
    low, high = frequency_bounds(counts, tokens, layers, experts, n_resamples, seed, level)
    low, high = low.reshape(n, L, E), high.reshape(n, L, E)
    out = np.empty((n, L, E))
    for i in range(n):
        others = np.delete(high, i, axis=0).max(axis=0)
        out[i] = np.minimum(low[i] - bar, bar - others)
    return out


def specific_sets(profile, m: int = 16, hf_ratio: float = 2.0, n_resamples: int = 1000, seed: int = 0,
                  level: float = 0.95) -> SpecificSets:
    """The ``m`` most specific experts of every language of ``profile`` (ties: the higher own
    frequency, then the lower layer and expert id)."""
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"m must be a positive integer, got {m!r}")
    L, E = profile.n_layers, profile.n_experts
    if m > L * E // 2:
        raise ValueError(f"m = {m} is more than half of the {L * E} experts: no room for matched controls")
    bar = hf_threshold(profile, hf_ratio)
    spec = specificity(profile.passage_counts, profile.passage_tokens, bar, n_resamples, seed, level)
    freq = profile.frequencies()
    cells, rows = {}, []
    for i, lang in enumerate(profile.languages):
        flat = spec[i].reshape(-1)
        ids = np.arange(L * E)
        order = np.lexsort((ids, -freq[i].reshape(-1), -flat))[:m]
        cell = np.stack(np.divmod(order, E), axis=1)
        cells[lang] = cell
        other = np.delete(freq, i, axis=0).max(axis=0)
        for r, (l, e) in enumerate(cell):
            rows.append({"language": lang, "rank": r + 1, "layer": int(l), "expert": int(e),
                         "specificity": float(spec[i, l, e]), "robust": bool(spec[i, l, e] > 0),
                         "frequency": float(freq[i, l, e]), "max_other_frequency": float(other[l, e])})
    return SpecificSets(list(profile.languages), cells, pd.DataFrame(rows), freq.mean(axis=0), bar, spec, E)


def frequency_deciles(pooled: np.ndarray) -> np.ndarray:
    """int [L, E]: the decile (0-9) of each expert's pooled frequency within its layer (rank-based,
    ties by expert id)."""
    pooled = np.asarray(pooled, dtype=float)
    L, E = pooled.shape
    out = np.empty((L, E), dtype=np.int64)
    for l in range(L):
        rank = np.empty(E, dtype=np.int64)
        rank[np.lexsort((np.arange(E), pooled[l]))] = np.arange(E)
        out[l] = rank * 10 // E
    return out


def matched_controls(cells: np.ndarray, pooled: np.ndarray, n_sets: int = 10, seed: int = 0,
                     exclude: np.ndarray | None = None) -> list[np.ndarray]:
    """``n_sets`` random expert sets matched to ``cells`` (int [m, 2], layer and expert): each expert
    is replaced by a random expert of the same layer in the same within-layer decile of ``pooled``
    frequency (float [L, E]), drawn without replacement within a set, never one of ``cells`` (nor of
    ``exclude``, int [k, 2]). Where a decile has no expert left, the nearest deciles of the layer are
    used (the nearest pooled frequency first). Seeded; returns a list of int [m, 2]."""
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    pooled = np.asarray(pooled, dtype=float)
    L, E = pooled.shape
    dec = frequency_deciles(pooled)
    banned = np.zeros((L, E), dtype=bool)
    banned[cells[:, 0], cells[:, 1]] = True
    if exclude is not None and len(exclude):
        ex = np.asarray(exclude, dtype=np.int64).reshape(-1, 2)
        banned[ex[:, 0], ex[:, 1]] = True
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(n_sets)):
        used = banned.copy()
        chosen = []
        for l, e in cells:
            free = np.flatnonzero(~used[l])
            if not len(free):
                raise ValueError(f"layer {l} has no expert left for a matched control")
            same = free[dec[l, free] == dec[l, e]]
            if len(same):
                pick = int(rng.choice(same))
            else:  # nearest decile, then nearest pooled frequency
                gap = np.abs(dec[l, free] - dec[l, e]) * 10.0 + np.abs(pooled[l, free] - pooled[l, e])
                near = free[gap == gap.min()]
                pick = int(rng.choice(near))
            used[l, pick] = True
            chosen.append((int(l), pick))
        out.append(np.array(chosen, dtype=np.int64))
    return out


def control_sets(sets: SpecificSets, n_sets: int = 10, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """{lang: its matched control sets} (:func:`matched_controls`; seed offset by the language's position)."""
    return {lang: matched_controls(sets.cells[lang], sets.pooled, n_sets, seed + 1000 * i)
            for i, lang in enumerate(sets.languages)}


def control_table(sets: SpecificSets, controls: dict[str, list[np.ndarray]]) -> pd.DataFrame:
    """Per language: the set's and the controls' mean pooled frequency, the share of control experts in
    the same decile, and the layers (a check that the controls are matched)."""
    dec = frequency_deciles(sets.pooled)
    rows = []
    for lang in sets.languages:
        c = sets.cells[lang]
        ctrl = np.concatenate(controls[lang])
        reps = len(controls[lang])
        rows.append({"language": lang, "experts": len(c), "control_sets": reps,
                     "pooled_frequency": float(sets.pooled[c[:, 0], c[:, 1]].mean()),
                     "control_pooled_frequency": float(sets.pooled[ctrl[:, 0], ctrl[:, 1]].mean()),
                     "same_decile": float((dec[ctrl[:, 0], ctrl[:, 1]] == np.tile(dec[c[:, 0], c[:, 1]], reps)).mean()),
                     "same_layer": bool((ctrl[:, 0] == np.tile(c[:, 0], reps)).all()),
                     "robust_in_set": int(sets.table[sets.table.language == lang]["robust"].sum())})
    return pd.DataFrame(rows)


def cells_plan(cells: np.ndarray, n_layers: int, n_experts: int, name: str) -> prune.PrunePlan:
    """A plan that drops exactly ``cells`` (int [m, 2]): the masked condition switches them off."""
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    drop = [np.unique(cells[cells[:, 0] == l, 1]) for l in range(n_layers)]
    return prune.PrunePlan(drop, n_experts, len(cells) / (n_layers * n_experts), "chosen experts", name,
                           {"cells": cells.tolist()})


# ------------------------------------------------------------------------------ ablation matrix
def _passage_arrays(result: dict, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(nll [P], characters [P]) of a window result, per passage with scored windows."""
    nll, _ = evaluate.passage_losses(result)
    idx = np.unique(np.asarray(result["window_passage"], dtype=np.int64))
    return nll, np.array([len(texts[i]) for i in idx], dtype=np.float64)


def _group_weights(exp, languages, n_resamples: int, seed: int) -> dict[str, np.ndarray]:
    """{lang: W [1 + R, P]}: row 0 all ones, then passage resamples shared by the languages of one corpus."""
    dense = exp.dense(languages)
    out, groups = {}, {}
    for lang in languages:
        groups.setdefault(exp.evalset.source[lang], []).append(lang)
    for g, (corpus_name, langs) in enumerate(groups.items()):
        P = {len(evaluate.passage_losses(dense[l])[0]) for l in langs}
        for j, lang in enumerate(langs):
            n = len(evaluate.passage_losses(dense[lang])[0])
            s = seed + (0 if len(P) == 1 else 7919 * (j + 1)) + 104729 * g
            W = stats.multiplicities(stats.passage_resamples(n, n_resamples, s), n)
            out[lang] = np.vstack([np.ones((1, n)), W])
    return out


def ablation_results(exp, sets: SpecificSets, controls: dict[str, list[np.ndarray]],
                     permutations: int = stats.HEADLINE_PERMUTATIONS, level: float = 0.95) -> dict:
    """Switch each language's set off and evaluate every language; switch each control set off and
    evaluate its language. ``exp``: an :class:`babel_lib.interventions.applications.Experiment` on the same model,
    partition and languages (its evaluation set and protocol).

    Returns a dict: ``matrix`` (one row per set switched off x language evaluated: bits per
    character dense and off, damage with interval), ``selectivity`` (per language: target damage,
    mean damage to the others, selectivity, mean matched-control damage, ratio and excess, each with
    its interval), ``controls`` (per language and control set: damage), ``tests`` (sign-flip tests
    over languages, raw p) and ``facts``."""
    langs = list(sets.languages)
    missing = [l for l in langs if l not in exp.languages]
    if missing:
        raise ValueError(f"the experiment does not evaluate {missing}")
    L, E = exp.partition.n_layers, exp.partition.n_experts
    R = exp.n_resamples
    W = _group_weights(exp, langs, R, exp.seed)
    dense = exp.dense(langs)
    base = {l: _passage_arrays(dense[l], exp.evalset.texts[l]) for l in langs}

    def damage(result, lang):
        nll, _ = _passage_arrays(result, exp.evalset.texts[lang])
        evaluate.check_paired(dense[lang], result)
        return (W[lang] @ nll) / (W[lang] @ base[lang][0]) - 1.0  # [1 + R]

    n = len(langs)
    D = np.zeros((n, n, R + 1))
    rows = []
    for t, lang in enumerate(langs):
        plan = cells_plan(sets.cells[lang], L, E, f"{lang} experts off")
        res = exp.results(exp.condition(plan, f"{lang} experts off"), langs)
        for j, other in enumerate(langs):
            D[t, j] = damage(res[other], other)
            bits_dense = base[other][0].sum() / math.log(2) / base[other][1].sum()
            lo, hi = _interval(D[t, j, 1:], level)
            rows.append({"switched_off": lang, "evaluated_on": other, "own": t == j,
                         "bits_per_char_dense": bits_dense, "bits_per_char_off": bits_dense * (1 + D[t, j, 0]),
                         "damage": D[t, j, 0], "low": lo, "high": hi})
    matrix = pd.DataFrame(rows)
    C = np.zeros((n, R + 1))
    crow = []
    for t, lang in enumerate(langs):
        per = []
        for k, cells in enumerate(controls[lang]):
            plan = cells_plan(cells, L, E, f"{lang} control {k}")
            res = exp.results(exp.condition(plan, f"{lang} control {k}"), [lang])[lang]
            d = damage(res, lang)
            per.append(d)
            crow.append({"language": lang, "control": k, "damage": d[0]})
        C[t] = np.mean(per, axis=0)
    target = D[np.arange(n), np.arange(n)]  # [n, 1 + R]
    others = np.stack([np.delete(D[t], t, axis=0).mean(axis=0) for t in range(n)])
    # damage to t by the other languages' sets (the column of t without the diagonal)
    by_others = np.stack([np.delete(D[:, t], t, axis=0).mean(axis=0) for t in range(n)])
    sel = target - others
    excess = target - C
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = target / C
    srows = []
    for t, lang in enumerate(langs):
        row = {"language": lang}
        for name, arr in (("target", target), ("others", others), ("selectivity", sel), ("control", C),
                          ("excess", excess), ("ratio", ratio), ("by_other_sets", by_others)):
            row[name] = float(arr[t, 0])
            row[f"{name}_low"], row[f"{name}_high"] = _interval(arr[t, 1:], level)
        row["robust_in_set"] = int(sets.table[sets.table.language == lang]["robust"].sum())
        srows.append(row)
    selectivity = pd.DataFrame(srows)
    tests, over = [], {}
    for name, arr, what in (("selectivity", sel, "damage to the target language minus mean damage to the others"),
                            ("excess", excess, "damage to the target language minus matched-control damage"),
                            ("own_vs_other_sets", target - by_others,
                             "damage to a language by its own set minus by the other languages' sets")):
        if n >= 2:
            res = stats.sign_flip_test(arr[:, 0], permutations, exp.seed)
            p = res.p_value
        else:
            p = float("nan")
        mean, lo, hi = _crossed_mean(arr, exp.seed, level)
        if n >= 2:  # widened to hold the interval that inverts the test: it excludes 0 only if the test rejects
            _, t_lo, t_hi = stats.sign_flip_interval(arr[:, 0], level, permutations, exp.seed)
            lo, hi = min(lo, t_lo), max(hi, t_hi)
        over[name] = (mean, lo, hi, p)
        tests.append({"part": "ablation", "test": f"{what} (exact sign-flip over languages)", "key": name,
                      "observed": mean, "low": lo, "high": hi, "languages": n, "p_value": p})
    facts = {"languages": n, "m": sets.m, "n_controls": len(next(iter(controls.values()))), "resamples": R,
             "layers": L, "experts": E,
             "robust_total": int(sets.table["robust"].sum()),
             "languages_with_robust": int((selectivity["robust_in_set"] > 0).sum()),
             "selective_languages": int((selectivity["selectivity_low"] > 0).sum()),
             "beyond_control_languages": int((selectivity["excess_low"] > 0).sum()),
             "harmful_languages": int((selectivity["target_low"] > 0).sum()),
             **{f"{k}_mean": v[0] for k, v in over.items()}, **{f"{k}_low": v[1] for k, v in over.items()},
             **{f"{k}_high": v[2] for k, v in over.items()}, **{f"p_{k}": v[3] for k, v in over.items()},
             "median_ratio": float(np.nanmedian(ratio[:, 0])) if np.isfinite(ratio[:, 0]).any() else float("nan"),
             "max_target": float(target[:, 0].max()), "max_target_language": langs[int(target[:, 0].argmax())],
             **dict(zip(("mean_target", "mean_target_low", "mean_target_high"), _crossed_mean(target, exp.seed, level))),
             **dict(zip(("mean_control", "mean_control_low", "mean_control_high"), _crossed_mean(C, exp.seed, level)))}
    return {"matrix": matrix, "selectivity": selectivity, "controls": pd.DataFrame(crow), "tests": pd.DataFrame(tests),
            "facts": facts}


def _interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if len(s) < 2:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(s, a)), float(np.quantile(s, 1 - a))


def _crossed_mean(arr: np.ndarray, seed: int, level: float = 0.95) -> tuple[float, float, float]:
    """Mean over languages of arr [n, 1 + R] (row 0 the estimate, then passage resamples) with a crossed
    bootstrap: each passage resample b paired with a resample of the languages."""
    n, B = arr.shape
    est = float(arr[:, 0].mean())
    if B < 3 or n < 2:
        return est, float("nan"), float("nan")
    rng = np.random.default_rng(seed + 17)
    idx = rng.integers(0, n, size=(B - 1, n))
    draws = arr[idx, np.arange(1, B)[:, None]].mean(axis=1)
    lo, hi = _interval(draws, level)
    return est, lo, hi


# ------------------------------------------------------------------------------ prompts and generation
def continuation_prompts(languages, n_prompts: int = 8, seed: int = 0, aliases: dict | None = None) -> pd.DataFrame:
    """Held-out prompts with their reference continuations, one row per language and prompt.

    Bible languages (the evaluation books): a verse as the prompt and the next verse of the same
    chapter as the reference, the same ``n_prompts`` verse pairs (seeded) in every Bible language,
    so a reference exists in every language for every prompt. Languages without a Bible (Urdu): UDHR
    evaluation paragraphs cut at the space nearest their middle. Columns: language, prompt_id,
    corpus, prompt, reference."""
    from babel_lib.data import corpus

    keys = list(languages)
    aliases = dict(aliases or {})
    bible = [k for k in keys if corpus.has_language(aliases.get(k, k), "bible")]
    rows = []
    if bible:
        tk = {k: corpus.resolve_languages([aliases.get(k, k)], "bible")[0] for k in bible}
        ids, text = evaluate.verse_units(list(dict.fromkeys(tk.values())), 1)
        chapter = [i.rsplit(".", 1)[0] for i in ids]
        pairs = [i for i in range(len(ids) - 1) if chapter[i] == chapter[i + 1]]
        pick = np.sort(np.random.default_rng(seed).choice(pairs, size=min(n_prompts, len(pairs)), replace=False))
        for k in bible:
            for i in pick:
                rows.append({"language": k, "prompt_id": ids[i], "corpus": "bible", "prompt": text[tk[k]][i],
                             "reference": text[tk[k]][i + 1]})
    for k in [k for k in keys if k not in bible]:
        ps = corpus.passages([aliases.get(k, k)], corpus="udhr", split="evaluation")
        key = ps.languages[0]
        usable = [(pid, t) for pid, t in zip(ps.ids, ps.text[key]) if len(t.split()) >= 6]
        pick = np.sort(np.random.default_rng(seed).choice(len(usable), size=min(n_prompts, len(usable)), replace=False))
        for i in pick:
            pid, t = usable[i]
            spaces = [j for j, ch in enumerate(t) if ch == " "]
            cut = min(spaces, key=lambda j: abs(j - len(t) / 2))
            rows.append({"language": k, "prompt_id": pid, "corpus": "udhr", "prompt": t[:cut], "reference": t[cut + 1:]})
    return pd.DataFrame(rows, columns=["language", "prompt_id", "corpus", "prompt", "reference"])


def generate(lm: LoadedModel, prompts: list[str], max_new_tokens: int = 24, batch_size: int = 8) -> list[str]:
    """Greedy continuations of ``prompts`` (BOS + prompt, left-padded batches with the KV cache:
    :func:`babel_lib.interventions.answers.greedy_decode`), decoded without special tokens; stops at EOS. Run it
    inside an intervention's context to generate under it."""
    from babel_lib.interventions.answers import greedy_decode, left_padded

    tok = lm.tokenizer
    enc = [tok(p, add_special_tokens=True)["input_ids"] for p in prompts]
    eos = getattr(tok, "eos_token_id", None)
    stop = torch.tensor([eos] if eos is not None else [-1], device=lm.device)
    pad = pad_id(tok)
    out = [""] * len(prompts)
    order = sorted(range(len(enc)), key=lambda i: -len(enc[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        ids, attn = left_padded([enc[i] for i in idx], pad)
        with torch.inference_mode():
            new = greedy_decode(lm.model, ids.to(lm.device), attn.to(lm.device), max_new_tokens, stop)
        for i, seq in zip(idx, new.tolist()):
            hit = next((k for k, t in enumerate(seq) if eos is not None and t == eos), None)
            out[i] = tok.decode(seq if hit is None else seq[:hit], skip_special_tokens=True).strip()
    return out


def cached_generate(lm: LoadedModel, prompts: list[str], spec: dict, context=None, max_new_tokens: int = 24,
                    batch_size: int = 8, store: Store | None = None) -> list[str]:
    """:func:`generate` under ``context`` (a zero-argument callable returning a context manager, or
    None), cached (kind 'tune_eval', the kind of greedy generations) under the model's fingerprint,
    the prompts, ``spec`` (what the intervention is) and the settings."""
    parts = {"measure": "language_experts_generation", "version": GENERATION_VERSION,
             "model_fingerprint": lm.fingerprint, "dtype": str(lm.dtype), "prompts": cache_key({"prompts": list(prompts)}),
             "spec": spec, "max_new_tokens": int(max_new_tokens), "batch_size": int(batch_size)}

    def compute():
        from contextlib import nullcontext

        with (context() if context is not None else nullcontext()):
            texts = generate(lm, prompts, max_new_tokens, batch_size)
        return {"text": np.array(texts, dtype=str)}, {}

    arrays, _ = (store or Store()).get_or_compute("tune_eval", parts, compute)
    return [str(t) for t in arrays["text"]]


def _mask_context(lm, partition, cells):
    plan = cells_plan(cells, partition.n_layers, partition.n_experts, "off")
    return lambda: moe_view(lm.model, partition, experts=plan.keep)


def _share_interval(x: np.ndarray, n_resamples: int, seed: int, level: float = 0.95) -> tuple[float, float, float]:
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return float(x.mean()) if len(x) else float("nan"), float("nan"), float("nan")
    res = stats.bootstrap_units(lambda W: (W @ x) / W.sum(axis=1), len(x), n_resamples, seed, batched=True,
                                level=level)
    return float(res.estimate), float(res.low), float(res.high)


def generation_results(lm: LoadedModel, partition: Partition, sets: SpecificSets,
                       controls: dict[str, list[np.ndarray]], prompts: pd.DataFrame, lid: LanguageID,
                       max_new_tokens: int = 24, n_gen_controls: int = 3, batch_size: int = 8,
                       n_resamples: int = 1000, seed: int = 0, permutations: int = stats.HEADLINE_PERMUTATIONS,
                       store: Store | None = None) -> dict:
    """Greedy continuations of each language's prompts: dense, with the language's experts off, and
    with each of its first ``n_gen_controls`` matched control sets off; the language of each
    continuation identified by ``lid``. A continuation *changes language* when it is not identified as
    the prompt's language (a continuation without letters counts as changed).

    Returns {'continuations' (one row per language, condition, prompt), 'summary' (per language and
    condition: share changed with its bootstrap interval over prompts), 'by_language' (per language:
    own-off minus control-off share, interval over prompts), 'tests', 'facts'}."""
    rows = []
    for lang in sets.languages:
        sub = prompts[prompts.language == lang]
        texts = sub["prompt"].tolist()
        conds = [("dense", {"kind": "dense"}, None),
                 ("own experts off", {"kind": "mask", "partition": partition.key,
                                      "cells": sets.cells[lang].tolist()},
                  _mask_context(lm, partition, sets.cells[lang]))]
        for k, c in enumerate(controls[lang][:n_gen_controls]):
            conds.append((f"control {k} off", {"kind": "mask", "partition": partition.key, "cells": c.tolist()},
                          _mask_context(lm, partition, c)))
        for name, spec, ctx in conds:
            outs = cached_generate(lm, texts, spec, ctx, max_new_tokens, batch_size, store)
            for (_, r), out in zip(sub.iterrows(), outs):
                got = lid.identify(out)
                rows.append({"language": lang, "condition": name,
                             "kind": "control off" if name.startswith("control") else name,
                             "prompt_id": r.prompt_id, "continuation": out, "identified": got, "changed": got != lang})
    cont = pd.DataFrame(rows)
    summary, by_lang = [], []
    for lang in sets.languages:
        g = cont[cont.language == lang]
        per = {}
        for kind in ("dense", "own experts off", "control off"):
            x = g[g.kind == kind].groupby("prompt_id", sort=True)["changed"].mean().to_numpy(dtype=float)
            per[kind] = x
            est, lo, hi = _share_interval(x, n_resamples, seed)
            summary.append({"language": lang, "condition": kind, "prompts": len(x), "changed": est, "low": lo, "high": hi})
        d = per["own experts off"] - per["control off"]
        est, lo, hi = _share_interval(d, n_resamples, seed)
        by_lang.append({"language": lang, "own_off": float(per["own experts off"].mean()),
                        "control_off": float(per["control off"].mean()), "dense": float(per["dense"].mean()),
                        "difference": est, "low": lo, "high": hi})
    by_lang = pd.DataFrame(by_lang)
    d = by_lang["difference"].to_numpy()
    if len(d) >= 2 and np.any(d != 0):
        p = stats.sign_flip_test(d, permutations, seed).p_value
    elif len(d) >= 2:
        p = 1.0
    else:
        p = float("nan")
    mean, lo, hi = _lang_bootstrap(d, n_resamples, seed)
    tests = pd.DataFrame([{"part": "generation", "key": "language_change",
                           "test": "share of continuations changing language, own experts off minus matched controls off "
                                   "(exact sign-flip over languages)",
                           "observed": mean, "low": lo, "high": hi, "languages": len(d), "p_value": p}])
    facts = {"gen_prompts": int(prompts.groupby("language").size().min()), "gen_tokens": int(max_new_tokens),
             "gen_controls": int(n_gen_controls), "gen_dense": float(by_lang["dense"].mean()),
             "gen_own": float(by_lang["own_off"].mean()), "gen_control": float(by_lang["control_off"].mean()),
             "gen_difference": mean, "gen_difference_low": lo, "gen_difference_high": hi, "p_gen": p,
             "gen_languages_beyond": int((by_lang["low"] > 0).sum())}
    return {"continuations": cont, "summary": pd.DataFrame(summary), "by_language": by_lang, "tests": tests,
            "facts": facts}


def _lang_bootstrap(d: np.ndarray, n_resamples: int, seed: int) -> tuple[float, float, float]:
    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return (float(d.mean()) if len(d) else float("nan")), float("nan"), float("nan")
    return _share_interval(d, max(n_resamples, 1000), seed + 1)


# ------------------------------------------------------------------------------ steering
def decoder_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The decoder blocks of ``model`` in depth order (the adapter table's ``layers`` path)."""
    return list(backbone(model).get_submodule(ffn_spec(model).layers))


@contextmanager
def scaled_experts(model: torch.nn.Module, partition: Partition, cells: np.ndarray, scale: float) -> Iterator[None]:
    """Multiply the neuron values of the experts ``cells`` (int [m, 2]) by ``scale`` for the block
    (scale 1: the model unchanged; 0: switched off)."""
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    neurons = {}
    for l, e in cells:
        neurons.setdefault(int(l), []).append(partition.members(int(l), int(e)))
    index = {l: torch.from_numpy(np.concatenate(v)) for l, v in neurons.items()}

    def fn(layer, a):
        if layer not in index:
            return None
        out = a.clone()
        idx = index[layer].to(a.device)
        out[..., idx] = out[..., idx] * scale
        return out

    with ffn_pre_hooks(model, fn):
        yield


@contextmanager
def added_vector(model: torch.nn.Module, layer: int, vector: torch.Tensor, coefficient: float) -> Iterator[None]:
    """Add ``coefficient`` x ``vector`` to the residual stream after decoder block ``layer`` at every position."""
    block = decoder_blocks(model)[layer]

    def hook(_module, _args, output):
        if isinstance(output, tuple):
            h = output[0]
            return (h + coefficient * vector.to(h.dtype).to(h.device),) + tuple(output[1:])
        return output + coefficient * vector.to(output.dtype).to(output.device)

    handle = block.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@torch.inference_mode()
def mean_residuals(lm: LoadedModel, texts: dict[str, list[str]], layer: int, max_length: int = 128,
                   batch_size: int = 8) -> dict[str, torch.Tensor]:
    """{lang: the mean residual-stream state after decoder block ``layer`` over the tokens of its
    texts} (each text truncated to ``max_length`` tokens with BOS; BOS and padding excluded)."""
    tok = lm.tokenizer
    pad = pad_id(tok)
    block = decoder_blocks(lm.model)[layer]
    body = backbone(lm.model)
    out = {}
    for lang, items in texts.items():
        seqs = [tok(t, add_special_tokens=True)["input_ids"][:max_length] for t in items if t.strip()]
        total, count = None, 0
        for s in range(0, len(seqs), batch_size):
            ids, attn = pad_batch(seqs[s:s + batch_size], pad)
            got = {}

            def hook(_m, _a, output):
                got["h"] = output[0] if isinstance(output, tuple) else output

            handle = block.register_forward_hook(hook)
            try:
                body(input_ids=ids.to(lm.device), attention_mask=attn.to(lm.device), use_cache=False)
            finally:
                handle.remove()
            keep = attn.to(lm.device).bool().clone()
            if getattr(tok, "bos_token_id", None) is not None:
                keep[:, 0] = False
            h = got["h"].float()[keep]
            total = h.sum(0) if total is None else total + h.sum(0)
            count += h.shape[0]
        out[lang] = (total / max(count, 1)).cpu()
    return out


class FinalStates:
    """The final hidden states (the backbone's output) of ``prompts``, computed once, and how far an
    intervention moves them: :meth:`change` is the mean over the prompts' tokens (BOS and padding
    excluded) of the L2 norm of the change of the final state under ``context`` (a zero-argument
    callable returning a context manager)."""

    @torch.inference_mode()
    def __init__(self, lm: LoadedModel, prompts: list[str], batch_size: int = 8):
        tok = lm.tokenizer
        pad = pad_id(tok)
        self.body = backbone(lm.model)
        seqs = [tok(p, add_special_tokens=True)["input_ids"] for p in prompts]
        self.batches = []
        for s in range(0, len(seqs), batch_size):
            ids, attn = (t.to(lm.device) for t in pad_batch(seqs[s:s + batch_size], pad))
            keep = attn.bool().clone()
            if getattr(tok, "bos_token_id", None) is not None:
                keep[:, 0] = False
            plain = self.body(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state.float()
            self.batches.append((ids, attn, keep, plain))

    @torch.inference_mode()
    def change(self, context) -> float:
        total, count = 0.0, 0
        for ids, attn, keep, plain in self.batches:
            with context():
                moved = self.body(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state.float()
            total += float((moved - plain).norm(dim=-1)[keep].sum())
            count += int(keep.sum())
        return total / max(count, 1)


def match_strength(lm: LoadedModel, states: FinalStates, target: float, layer: int, vector: torch.Tensor,
                   iterations: int = 8) -> tuple[float, float]:
    """The coefficient c >= 0 for which adding c x ``vector`` after block ``layer`` changes the final
    hidden states (``states``, :class:`FinalStates`) by ``target`` on average, by bisection on a log scale
    (the change grows with c) after doubling steps by 4 from c = 1. Returns (c, the change it gives)."""
    def change(c):
        return states.change(lambda: added_vector(lm.model, layer, vector, c))

    if target <= 0:
        return 0.0, 0.0
    lo, hi = 0.0, 1.0
    got_hi = change(hi)
    for _ in range(20):
        if got_hi >= target:
            break
        lo, hi = hi, hi * 4
        got_hi = change(hi)
    best = (hi, got_hi)
    for _ in range(iterations):
        mid = math.sqrt(lo * hi) if lo > 0 else hi / 4
        got = change(mid)
        if abs(got - target) < abs(best[1] - target):
            best = (mid, got)
        if got < target:
            lo = mid
        else:
            hi = mid
    return best


def steering_results(lm: LoadedModel, partition: Partition, sets: SpecificSets, prompts: pd.DataFrame,
                     lid: LanguageID, calibration: dict[str, list[str]], layer: int | None = None,
                     scale: float = 4.0, source: str = "eng", max_new_tokens: int = 24, batch_size: int = 8,
                     max_length: int = 128, n_resamples: int = 1000, seed: int = 0,
                     permutations: int = stats.HEADLINE_PERMUTATIONS, store: Store | None = None) -> dict:
    """Prompt in ``source`` (its prompts of ``prompts``); for every other language M with a reference
    for the same prompts (the Bible languages): M's experts scaled by ``scale``, and DiffMean (mean
    residual state of M minus that of ``source`` on ``calibration`` text, after block ``layer``,
    default the middle block) at the matched strength (:func:`match_strength`). Measures: the share of
    outputs identified as M, chrF (sacrebleu's chrF2) against M's reference continuation and against
    the source's. Returns {'outputs', 'summary', 'tests', 'facts'}."""
    from babel_lib.interventions.answers import chrf

    L = partition.n_layers
    layer = L // 2 if layer is None else int(layer)
    src = prompts[prompts.language == source].sort_values("prompt_id")
    if src.empty:
        raise ValueError(f"steering needs prompts in {source!r}")
    targets = [l for l in sets.languages if l != source and
               set(prompts[prompts.language == l]["prompt_id"]) >= set(src["prompt_id"])]
    texts = src["prompt"].tolist()
    means = mean_residuals(lm, {k: calibration[k] for k in [source] + targets}, layer, max_length, batch_size)
    plain = cached_generate(lm, texts, {"kind": "dense"}, None, max_new_tokens, batch_size, store)
    rows = []
    for i, r in enumerate(src.itertuples()):
        rows.append({"target": "", "method": "none", "prompt_id": r.prompt_id, "output": plain[i]})
    strengths = []
    states = FinalStates(lm, texts, batch_size)
    for m in targets:
        cells = sets.cells[m]
        ctx = lambda c=cells: scaled_experts(lm.model, partition, c, scale)
        size = states.change(ctx)
        direction = means[m] - means[source]
        coef, got = match_strength(lm, states, size, layer, direction)
        strengths.append({"target": m, "expert_change": size, "diffmean_coefficient": coef, "diffmean_change": got,
                          "direction_norm": float(direction.norm())})
        outs_e = cached_generate(lm, texts, {"kind": "scale", "partition": partition.key, "cells": cells.tolist(),
                                             "scale": float(scale)}, ctx, max_new_tokens, batch_size, store)
        outs_d = cached_generate(lm, texts, {"kind": "diffmean", "layer": layer, "coefficient": round(coef, 10),
                                             "vector": cache_key({"vector": direction.tolist()})},
                                 lambda d=direction, c=coef: added_vector(lm.model, layer, d, c),
                                 max_new_tokens, batch_size, store)
        for method, outs in (("experts", outs_e), ("diffmean", outs_d)):
            for i, r in enumerate(src.itertuples()):
                rows.append({"target": m, "method": method, "prompt_id": r.prompt_id, "output": outs[i]})
    out = pd.DataFrame(rows)
    ref = prompts.set_index(["language", "prompt_id"])["reference"]
    out["identified"] = [lid.identify(t) for t in out["output"]]
    summary = []
    per_lang = {}
    for m in targets:
        for method in ("none", "experts", "diffmean"):
            g = out[(out.method == method) & ((out.target == m) if method != "none" else True)]
            hit = (g["identified"] == m).to_numpy(dtype=float)
            chrf_m = np.array([chrf(t, ref[(m, p)]) for t, p in zip(g["output"], g["prompt_id"])])
            chrf_s = np.array([chrf(t, ref[(source, p)]) for t, p in zip(g["output"], g["prompt_id"])])
            est, lo, hi = _share_interval(hit, n_resamples, seed)
            per_lang[(m, method)] = (hit, chrf_m, chrf_s)
            summary.append({"target": m, "method": method, "prompts": len(hit), "in_target": est, "low": lo, "high": hi,
                            "chrf_target": float(chrf_m.mean()), "chrf_source": float(chrf_s.mean())})
    summary = pd.DataFrame(summary).merge(pd.DataFrame(strengths, columns=["target", "expert_change",
                                                                           "diffmean_coefficient", "diffmean_change",
                                                                           "direction_norm"]),
                                          on="target", how="left")
    d = np.array([per_lang[(m, "experts")][0].mean() - per_lang[(m, "diffmean")][0].mean() for m in targets])
    e = np.array([per_lang[(m, "experts")][0].mean() - per_lang[(m, "none")][0].mean() for m in targets])
    tests = []
    for key, arr, what in (("experts_vs_diffmean", d, "share in the target language, experts scaled minus DiffMean "
                                                        "at matched strength (exact sign-flip over target languages)"),
                           ("experts_vs_none", e, "share in the target language, experts scaled minus no steering "
                                                  "(exact sign-flip over target languages)")):
        p = (stats.sign_flip_test(arr, permutations, seed).p_value if np.any(arr != 0) else 1.0) if len(arr) >= 2 \
            else float("nan")
        mean, lo, hi = _lang_bootstrap(arr, n_resamples, seed)
        tests.append({"part": "steering", "key": key, "test": what, "observed": mean, "low": lo, "high": hi,
                      "languages": len(arr), "p_value": p})
    sm = summary.set_index(["target", "method"])

    def avg(method, col):
        return float(np.mean([sm.loc[(m, method), col] for m in targets])) if targets else float("nan")

    facts = {"steer_layer": layer, "steer_scale": float(scale), "steer_targets": len(targets),
             "steer_experts": avg("experts", "in_target"), "steer_diffmean": avg("diffmean", "in_target"),
             "steer_none": avg("none", "in_target"),
             "steer_chrf_experts": avg("experts", "chrf_target"), "steer_chrf_diffmean": avg("diffmean", "chrf_target"),
             "steer_chrf_none": avg("none", "chrf_target"),
             "steer_chrf_source_experts": avg("experts", "chrf_source"),
             "steer_chrf_source_diffmean": avg("diffmean", "chrf_source"),
             "steer_chrf_source_none": avg("none", "chrf_source"),
             "steer_match": float(np.median([s["diffmean_change"] / s["expert_change"] for s in strengths
                                             if s["expert_change"] > 0])) if strengths else float("nan")}
    for t in tests:
        facts[f"{t['key']}_diff"], facts[f"{t['key']}_low"], facts[f"{t['key']}_high"] = t["observed"], t["low"], t["high"]
        facts[f"p_{t['key']}"] = t["p_value"]
    return {"outputs": out, "summary": summary, "tests": pd.DataFrame(tests), "facts": facts}


# ------------------------------------------------------------------------------ routing and competence
def script_dummies(scripts, min_languages: int = 3) -> np.ndarray:
    """float [n, k]: one indicator per script written by at least ``min_languages`` languages (the rarer
    scripts pooled as the reference level with the largest script left out)."""
    s = pd.Series(list(scripts))
    counts = s.value_counts()
    keep = [c for c in counts.index if counts[c] >= min_languages]
    keep = keep[1:]  # the most common script is the reference level
    if not keep:
        return np.zeros((len(s), 0))
    return np.column_stack([(s == c).to_numpy(dtype=float) for c in keep])


def _hellinger_to(freq: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Hellinger distance of each profile freq [..., n, L, E] to ref [..., L, E] (each normalised to sum 1)."""
    f = freq.reshape(freq.shape[:-2] + (-1,))
    r = ref.reshape(ref.shape[:-2] + (-1,))[..., None, :]
    p = f / f.sum(-1, keepdims=True)
    q = r / r.sum(-1, keepdims=True)
    bc = np.sqrt(p * q).sum(-1)
    return np.sqrt(np.clip(1 - bc, 0, 1))


def _partial_spearman(x, y, Z) -> float:
    from scipy.stats import rankdata

    n = len(x)
    A = np.column_stack([np.ones(n)] + [rankdata(c) for c in np.asarray(Z).T]) if Z.shape[1] else np.ones((n, 1))
    Q = stats.orthonormal_basis(A)
    rx, ry = rankdata(x), rankdata(y)
    ex, ey = rx - Q @ (Q.T @ rx), ry - Q @ (Q.T @ ry)
    den = np.sqrt((ex ** 2).sum() * (ey ** 2).sum())
    return float((ex * ey).sum() / den) if den > 0 else float("nan")


def routing_competence(profile, exp_results: dict[str, dict], evalset, reference: str = "eng",
                       n_resamples: int = 1000, seed: int = 0, permutations: int = stats.HEADLINE_PERMUTATIONS,
                       min_script_languages: int = 3, level: float = 0.95) -> dict:
    """Does a language's routing predict the model's competence in it?

    profile: the wide study's profile (calibration split); exp_results: {lang: dense window result}
    on ``evalset`` (held-out text: the same passages in every language, or nested prefixes of them
    under a per-language token cap, :func:`babel_lib.interventions.evaluate.evaluation_set`'s ``max_tokens``). Per language (``reference``
    left out of the correlations, its distance being 0 by construction): the Hellinger distance of its
    expert profile from ``reference``'s and from the mean profile, bits per character, tokens per
    character of the evaluation text, script. Spearman and partial Spearman (beyond tokens per
    character and script indicators) of each distance with bits per character: permutation p (Freedman
    and Lane for the partial) and a crossed bootstrap interval (languages, calibration passages and
    evaluation passages resampled together). Returns {'table', 'tests', 'facts'}."""
    from babel_lib.data.corpus import language_metadata

    langs = [l for l in profile.languages if l in exp_results]
    if reference not in langs:
        raise ValueError(f"the reference language {reference!r} must be profiled and evaluated")
    prof = profile.select(langs)
    freq = prof.frequencies()
    n = len(langs)
    ridx = langs.index(reference)
    nll, chars, toks = [], [], []
    for l in langs:
        a, t = evaluate.passage_losses(exp_results[l])
        _, c = _passage_arrays(exp_results[l], evalset.texts[l])
        nll.append(a)
        chars.append(c)
        toks.append(t.astype(float))
    shared = len({len(a) for a in nll}) == 1  # the same evaluation passages in every language (no cap)
    nll_sum = np.array([a.sum() for a in nll])
    bpc = nll_sum / math.log(2) / np.array([c.sum() for c in chars])
    tpc = np.array([t.sum() for t in toks]) / np.array([c.sum() for c in chars])
    mean_profile = freq.mean(axis=0)
    d_ref = _hellinger_to(freq, freq[ridx])
    d_mean = _hellinger_to(freq, mean_profile)
    meta = language_metadata(langs)
    scripts = meta["script"].tolist()
    labels = language_labels(langs)
    table = pd.DataFrame({"language": langs, "name": [labels[l] for l in langs], "script": scripts,
                          "family": meta["family"].tolist(), "distance_reference": d_ref, "distance_mean": d_mean,
                          "bits_per_char": bpc, "tokens_per_char": tpc,
                          "bits_vs_reference": nll_sum / nll_sum[ridx]})
    keep = np.array([l != reference for l in langs])
    Z = np.column_stack([tpc[keep, None], script_dummies(np.array(scripts)[keep], min_script_languages)])
    # crossed bootstrap: languages, calibration passages and evaluation passages
    rng = np.random.default_rng(seed)
    Pc = prof.n_passages
    Wc = stats.multiplicities(stats.passage_resamples(Pc, n_resamples, seed), Pc)
    # evaluation passages: one resample shared by every language when they read the same passages,
    # else (a per-language token cap) one resample per language
    We = [stats.multiplicities(stats.passage_resamples(len(a), n_resamples, seed + 1 + (0 if shared else 7919 * i)),
                               len(a)) for i, a in enumerate(nll)]
    others = np.flatnonzero(keep)
    counts = prof.passage_counts.astype(np.float64)
    tokens = prof.passage_tokens.astype(np.float64)
    tests, facts = [], {"wide_languages": n, "wide_correlated": int(keep.sum()), "wide_passages": Pc,
                        "wide_eval_passages": max(len(a) for a in nll),
                        "wide_eval_passages_min": min(len(a) for a in nll),
                        "wide_eval_tokens_min": int(min(t.sum() for t in toks)),
                        "wide_eval_tokens_max": int(max(t.sum() for t in toks)),
                        "script_covariates": int(Z.shape[1] - 1), "reference": reference,
                        "reference_name": labels[reference]}
    boot = {k: [] for k in ("rho_reference", "partial_reference", "rho_mean", "partial_mean")}
    for b in range(n_resamples):
        c = np.einsum("p,npxe->nxe", Wc[b], counts)
        f = c / (Wc[b] @ tokens.T)[:, None, None]
        dr = _hellinger_to(f, f[ridx])
        dm = _hellinger_to(f, f.mean(axis=0))
        y = np.array([(a @ w[b]) / (c @ w[b]) for a, c, w in zip(nll, chars, We)]) / math.log(2)
        pick = others[rng.integers(0, len(others), len(others))]
        zb = Z[np.searchsorted(others, pick)]
        for name, x in (("reference", dr), ("mean", dm)):
            xs, ys = x[pick], y[pick]
            boot[f"rho_{name}"].append(stats.spearman(xs, ys))
            boot[f"partial_{name}"].append(_partial_spearman(xs, ys, zb) if len(pick) >= Z.shape[1] + 4 else np.nan)
    for name, x in (("reference", d_ref), ("mean", d_mean)):
        xk, yk = x[keep], bpc[keep]
        rho = stats.spearman(xk, yk)
        if len(xk) >= 4:
            p = stats.permutation_test_over_languages(xk, yk, "spearman", permutations, seed).p_value
        else:
            p = float("nan")
        lo, hi = _interval(np.array(boot[f"rho_{name}"]), level)
        what = (f"distance from {labels[reference]}" if name == "reference" else "distance from the mean profile")
        tests.append({"part": "routing", "key": f"rho_{name}", "test": f"Spearman: {what} vs bits per character "
                      "(permutations over languages)", "observed": rho, "low": lo, "high": hi,
                      "languages": len(xk), "p_value": p})
        if len(xk) >= Z.shape[1] + 4:
            pr = stats.partial_correlation(xk, yk, Z, method="spearman", permutations=permutations, seed=seed)
            obs, pp = pr.statistic, pr.p_value
        else:
            obs, pp = float("nan"), float("nan")
        lo, hi = _interval(np.array(boot[f"partial_{name}"]), level)
        tests.append({"part": "routing", "key": f"partial_{name}",
                      "test": f"partial Spearman: {what} vs bits per character beyond tokens per character and "
                              "script (Freedman-Lane permutations)", "observed": obs, "low": lo, "high": hi,
                      "languages": len(xk), "p_value": pp})
    for t in tests:
        facts[t["key"]], facts[f"{t['key']}_low"], facts[f"{t['key']}_high"] = t["observed"], t["low"], t["high"]
        facts[f"p_{t['key']}"] = t["p_value"]
    facts["rho_tpc"] = stats.spearman(tpc[keep], bpc[keep])
    ranked = table[keep].sort_values("distance_reference")
    facts["closest"] = ranked["name"].head(3).tolist()
    facts["farthest"] = ranked["name"].tail(3).tolist()
    facts["worst_bpc"] = table.sort_values("bits_per_char", ascending=False)["name"].head(3).tolist()
    return {"table": table, "tests": pd.DataFrame(tests), "facts": facts}


# ------------------------------------------------------------------------------ the chapter's tests, findings, verdicts
def chapter_tests(*parts: pd.DataFrame) -> pd.DataFrame:
    """Every test of the chapter in one table, Holm-corrected together (NaN p-values left out)."""
    tests = pd.concat([p for p in parts if len(p)], ignore_index=True)
    ok = tests["p_value"].notna()
    tests["p_holm"] = np.nan
    if ok.any():
        tests.loc[ok, "p_holm"] = stats.holm(tests.loc[ok, "p_value"].to_numpy())
    return tests


def findings(ablation: dict, generation: dict, steering: dict, competence: dict, tests: pd.DataFrame) -> dict:
    """The scalars the chapter's prose and verdicts quote (facts of every part, with Holm-adjusted p)."""
    f = {**ablation["facts"], **generation["facts"], **steering["facts"], **competence["facts"]}
    for r in tests.itertuples():
        f[f"p_{r.key}_holm"] = r.p_holm
    f["p_gen_holm"] = f.get("p_language_change_holm", float("nan"))
    f["n_tests"] = int(tests["p_value"].notna().sum())
    return f


def _holds(p_holm, low) -> bool:
    return bool(stats.finite(p_holm) and p_holm < 0.05 and stats.finite(low) and low > 0)


def verdict_rows(f: dict) -> list[dict]:
    """The chapter's verdict rows from :func:`findings`."""
    from babel_lib.core.claims import decide, row

    it = stats.interval_text
    sel = _holds(f["p_selectivity_holm"], f["selectivity_low"])
    exc = _holds(f["p_excess_holm"], f["excess_low"])
    # the same experts under other partition seeds are not checked here: never more than "partly"
    word = decide([sel, exc], robust=False)
    rows = [row("specific_causal",
                f"switching off each language's {f['m']} most specific experts harms it more than the other languages "
                f"by {it(100 * f['selectivity_mean'], 100 * f['selectivity_low'], 100 * f['selectivity_high'], 2)} "
                f"percentage points of bits per character ({stats.p_text(f['p_selectivity'], f['p_selectivity_holm'])}) "
                f"and more than matched random experts by "
                f"{it(100 * f['excess_mean'], 100 * f['excess_low'], 100 * f['excess_high'], 2)} points "
                f"({stats.p_text(f['p_excess'], f['p_excess_holm'])}); its own bits per character rise by "
                f"{it(100 * f['mean_target'], 100 * f['mean_target_low'], 100 * f['mean_target_high'], 2)}% on average",
                f"{f['languages']} languages, {f['n_controls']} matched control sets each; each interval holds both "
                f"a bootstrap over passages ({f['resamples']:,} resamples) crossed with languages and the shifts the "
                f"sign-flip test over languages does not reject; {f['robust_total']} of the "
                f"{f['languages'] * f['m']} experts switched off pass chapter 04's robust definition"
                + "; not checked under other partition seeds" + ("" if sel and exc else "; weak evidence"), word)]
    gen = _holds(f["p_gen_holm"], f["gen_difference_low"])
    rows.append(row("output_language",
                    f"continuations change language in {100 * f['gen_own']:.0f}% of prompts with the language's experts "
                    f"off, {100 * f['gen_control']:.0f}% with matched controls off, {100 * f['gen_dense']:.0f}% dense "
                    f"(difference {it(100 * f['gen_difference'], 100 * f['gen_difference_low'], 100 * f['gen_difference_high'], 1)} "
                    f"points, {stats.p_text(f['p_gen'], f['p_gen_holm'])}); steering in English: "
                    f"{100 * f['steer_experts']:.0f}% of outputs in the target language with its experts scaled, "
                    f"{100 * f['steer_diffmean']:.0f}% with DiffMean at matched strength",
                    f"{f['gen_prompts']} prompts a language, {f['gen_tokens']} new tokens, language identified by "
                    f"py3langid; small generation budget" + ("" if gen else ": weak evidence"),
                    decide([gen], robust=False)))
    part = _holds(f["p_partial_reference_holm"], f["partial_reference_low"])
    raw = _holds(f["p_rho_reference_holm"], f["rho_reference_low"])
    rows.append(row("routing_competence",
                    f"over {f['wide_correlated']} languages, Spearman of the distance from {f['reference_name']}'s "
                    f"profile with bits per character {it(f['rho_reference'], f['rho_reference_low'], f['rho_reference_high'], 2)} "
                    f"({stats.p_text(f['p_rho_reference'], f['p_rho_reference_holm'])}); beyond tokens per character "
                    f"and script {it(f['partial_reference'], f['partial_reference_low'], f['partial_reference_high'], 2)} "
                    f"({stats.p_text(f['p_partial_reference'], f['p_partial_reference_holm'])})",
                    f"crossed bootstrap over languages and passages; {f['wide_passages']} calibration passages, "
                    f"held-out UDHR text of {f['wide_eval_tokens_min']:,}-{f['wide_eval_tokens_max']:,} tokens a language"
                    + ("" if part else "; weak evidence beyond the covariates"),
                    decide([raw, part])))
    return rows


# ------------------------------------------------------------------------------ the chapter's tables, charts and prose
def named(table: pd.DataFrame, labels: dict[str, str], key: str = "language") -> pd.DataFrame:
    """``table`` with ``name``: the readable name of its ``key`` column (``labels``: {key: name})."""
    return table.assign(name=table[key].map(labels))


def first_passages(passages, languages, n: int) -> dict[str, list[str]]:
    """{language: its first ``n`` calibration passages' texts} (DiffMean's mean states)."""
    return {l: passages.text[l][:n] for l in languages}


def first_continuations(continuations: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """The first continuation of each language and kind, dense and with its experts off (no control rows), with
    ``name``. continuations: :func:`generation_results`'s ``continuations`` (language, kind, ...)."""
    examples = named(continuations, labels)
    return examples[examples.kind != "control off"].groupby(["language", "kind"]).head(1)


def ablation_chart(matrix: pd.DataFrame, labels: dict[str, str]) -> alt.LayerChart:
    """The relative change of each language's bits per character with each language's experts off (faint where
    the interval includes 0). matrix: :func:`ablation_results`'s ``matrix`` (switched_off, evaluated_on,
    damage, low, high, bits_per_char_dense, bits_per_char_off); labels: {key: name} in the chart's order."""
    matrix = matrix.assign(off_name=matrix.switched_off.map(labels), on_name=matrix.evaluated_on.map(labels),
                           beyond=(matrix.low > 0) | (matrix.high < 0))
    limit = float(matrix["damage"].abs().max()) or 1.0
    return app.annotated_matrix(
        matrix, x="on_name", y="off_name", value="damage", names=list(labels.values()), x_title="Evaluated on",
        y_title="Experts switched off", scale=alt.Scale(scheme="redblue", reverse=True, domain=[-limit, limit]),
        color_title="Relative change of bits per character (red: worse)", legend_format="%", text_format=".1%",
        faint="!datum.beyond", faint_opacity=0.4, font_size=10, cell_width=56,
        title="Language experts off: change of each language's bits per character",
        tooltip=["off_name:N", "on_name:N", alt.Tooltip("damage:Q", format=".2%"),
                 alt.Tooltip("low:Q", format=".2%"), alt.Tooltip("high:Q", format=".2%"),
                 alt.Tooltip("bits_per_char_dense:Q", format=".3f"),
                 alt.Tooltip("bits_per_char_off:Q", format=".3f")])


def _dashed_zero() -> alt.Chart:
    return alt.Chart().mark_rule(color="black", strokeDash=[3, 3]).encode(x=alt.datum(0))


def selectivity_chart(selectivity: pd.DataFrame, labels: dict[str, str]) -> alt.HConcatChart:
    """Left: each language's selectivity (target damage minus the others') with its interval; right: its damage
    with its own experts off and with matched controls off. selectivity: :func:`ablation_results`'s
    ``selectivity`` (language, selectivity / _low / _high, others, target / _low / _high, control / _low /
    _high); labels: {key: name} in the chart's order."""
    names = list(labels.values())
    sel = named(selectivity, labels)
    long = pd.concat([
        sel.assign(what="own experts off", value=sel.target, lo=sel.target_low, hi=sel.target_high),
        sel.assign(what="matched controls off", value=sel.control, lo=sel.control_low, hi=sel.control_high)])
    left = alt.layer(
        alt.Chart(sel).mark_rule().encode(
            y=alt.Y("name:N", sort=names, title=None), x2="selectivity_high:Q",
            x=alt.X("selectivity_low:Q", title="Selectivity (target minus others)", axis=alt.Axis(format="%"))),
        alt.Chart(sel).mark_point(filled=True, size=50).encode(
            y=alt.Y("name:N", sort=names), x="selectivity:Q",
            tooltip=["name", alt.Tooltip("selectivity:Q", format=".2%"), alt.Tooltip("others:Q", format=".2%")]),
        _dashed_zero()).properties(width=190, height=alt.Step(22))
    right = alt.layer(
        alt.Chart(long).mark_rule().encode(
            y=alt.Y("name:N", sort=names, title=None), yOffset="what:N", x2="hi:Q",
            x=alt.X("lo:Q", title="Damage to the target language", axis=alt.Axis(format="%")),
            color=alt.Color("what:N", title=None, legend=alt.Legend(orient="bottom"))),
        alt.Chart(long).mark_point(filled=True, size=50).encode(
            y=alt.Y("name:N", sort=names), yOffset="what:N", x="value:Q", color="what:N",
            tooltip=["name", "what", alt.Tooltip("value:Q", format=".2%")]),
        _dashed_zero()).properties(width=190, height=alt.Step(22))
    return alt.hconcat(left, right).properties(title="Is the damage selective?")


def _share_chart(df: pd.DataFrame, *, value: str, group: str, order: list[str], y_title, x_title: str, title: str,
                 tooltip: list) -> alt.LayerChart:
    """Shares of outputs (0 to 1) per language with their intervals, a point and a rule from low to high per
    ``group`` side by side. df: name, low, high, ``value`` and ``group``."""
    base = alt.Chart(df).encode(y=alt.Y("name:N", sort=order, title=y_title), yOffset=alt.YOffset(f"{group}:N"),
                                color=alt.Color(f"{group}:N", title=None, legend=alt.Legend(orient="bottom")))
    return alt.layer(
        base.mark_rule().encode(x=alt.X("low:Q", title=x_title, axis=alt.Axis(format="%"),
                                        scale=alt.Scale(domain=[0, 1])), x2="high:Q"),
        base.mark_point(filled=True, size=50).encode(x=f"{value}:Q", tooltip=tooltip)
    ).properties(width=520, height=alt.Step(9), title=title)


def language_change_chart(summary: pd.DataFrame, labels: dict[str, str]) -> alt.LayerChart:
    """The share of continuations not in the prompt's language, per language and condition, with its interval.
    summary: :func:`generation_results`'s ``summary`` (language, condition, prompts, changed, low, high);
    labels: {key: name} in the chart's order."""
    return _share_chart(
        named(summary, labels), value="changed", group="condition", order=list(labels.values()), y_title=None,
        x_title="Continuations not in the prompt's language", title="Does the output leave the language?",
        tooltip=["name", "condition", "prompts", alt.Tooltip("changed:Q", format=".0%")])


def steering_chart(summary: pd.DataFrame, labels: dict[str, str]) -> alt.LayerChart:
    """The share of outputs in the target language from English prompts, per target and steering method, with
    its interval. summary: :func:`steering_results`'s ``summary`` (target, method, in_target, low, high,
    chrf_target, chrf_source); labels: {key: name}."""
    rows = named(summary, labels, key="target").assign(method_name=summary.method.map(STEERING_NAMES))
    return _share_chart(
        rows, value="in_target", group="method_name", order=[labels[t] for t in rows.target.unique()],
        y_title="Target language", x_title="Outputs in the target language",
        title="Forcing the output language from an English prompt",
        tooltip=["name", "method_name", alt.Tooltip("in_target:Q", format=".0%"),
                 alt.Tooltip("chrf_target:Q", format=".1f"), alt.Tooltip("chrf_source:Q", format=".1f")])


def routing_competence_chart(table: pd.DataFrame) -> alt.LayerChart:
    """Each language's distance of its expert profile from English's against its bits per character (English
    left out), coloured by script, the three best and three worst named. table: :func:`routing_competence`'s
    ``table`` (language, name, script, family, distance_reference, distance_mean, bits_per_char,
    tokens_per_char)."""
    shown = table[table.language != "eng"]
    points = alt.Chart(shown).mark_circle(size=40, opacity=0.7).encode(
        x=alt.X("distance_reference:Q", title="Distance of the expert profile from English's (Hellinger)",
                scale=alt.Scale(zero=False)),
        y=alt.Y("bits_per_char:Q", title="Bits per character (held-out UDHR)", scale=alt.Scale(zero=False)),
        color=alt.Color("script:N", title="Script", legend=alt.Legend(orient="bottom", columns=6)),
        tooltip=["name", "script", "family", alt.Tooltip("distance_reference:Q", format=".3f"),
                 alt.Tooltip("distance_mean:Q", format=".3f"), alt.Tooltip("bits_per_char:Q", format=".3f"),
                 alt.Tooltip("tokens_per_char:Q", format=".2f")])
    ends = shown.sort_values("bits_per_char").iloc[list(range(3)) + list(range(-3, 0))] if len(shown) > 6 else shown
    names = alt.Chart(ends).mark_text(align="left", dx=5, fontSize=10).encode(
        x="distance_reference:Q", y="bits_per_char:Q", text="name:N")
    return (points + names).properties(width=560, height=320,
                                       title="Routing far from English against the model's competence")


def _percent(x, lo=None, hi=None, digits: int = 2) -> str:
    """A share as percent (``digits`` decimals), with its interval when ``lo`` is given."""
    return f"{100 * x:.{digits}f}" if lo is None else stats.interval_text(100 * x, 100 * lo, 100 * hi, digits)


def _fact_interval(f: dict, key: str, stem: str | None = None, digits: int = 2, percent: bool = True) -> str:
    """``f[key]`` with its interval ``f[<stem>_low]`` to ``f[<stem>_high]`` (``stem``: default ``key``), in percent
    (:func:`_percent`) or as it is."""
    stem = stem or key
    parts = (f[key], f[f"{stem}_low"], f[f"{stem}_high"])
    return _percent(*parts, digits=digits) if percent else stats.interval_text(*parts, digits)


def _p(f: dict, name: str) -> str:
    return stats.p_text(f[f"p_{name}"], f[f"p_{name}_holm"])


def findings_text(f: dict, labels: dict[str, str], eval_tokens: int) -> str:
    """The chapter's findings in Markdown, from :func:`findings`'s facts, the languages' names (``labels``) and
    the held-out budget ``eval_tokens``."""
    causal = ("The experts chosen by frequency are necessary for their language, and more than random experts of "
              "the same busyness: a causal sense of language-specific."
              if _holds(f["p_selectivity_holm"], f["selectivity_low"]) and _holds(f["p_excess_holm"], f["excess_low"])
              else "The causal evidence is weak: not every comparison is beyond noise after correction.")
    writes = ("Switching a language off changes what the model writes."
              if _holds(f["p_gen_holm"], f["gen_difference_low"])
              else "With so few prompts this is weak evidence either way.")
    routing = ("Divergence from English routing predicts where the model is weak, beyond tokenisation and script."
               if _holds(f["p_partial_reference_holm"], f["partial_reference_low"]) else
               "Beyond tokenisation and script the relation is weak: routing distance mostly restates how a language "
               "is tokenised and written.")
    target, selectivity = _fact_interval(f, "mean_target"), _fact_interval(f, "selectivity_mean", "selectivity")
    control, excess = _fact_interval(f, "mean_control"), _fact_interval(f, "excess_mean", "excess")
    other_sets = _fact_interval(f, "own_vs_other_sets_mean", "own_vs_other_sets")
    gen_difference = _fact_interval(f, "gen_difference", digits=1)
    experts_vs_diffmean = _fact_interval(f, "experts_vs_diffmean_diff", "experts_vs_diffmean", digits=1)
    cells, switched = f["layers"] * f["experts"], f["languages"] * f["m"]
    shares = {k: f"{100 * f[k]:.0f}%" for k in ("gen_control", "gen_dense", "steer_experts", "steer_none")}
    chrf = {k: f"{f[f'steer_chrf_{k}']:.1f}" for k in ("none", "source_experts", "source_diffmean", "source_none")}
    n_wide, prompts, tokens, scale = f["wide_correlated"], f["gen_prompts"], f["gen_tokens"], f["steer_scale"]
    return f"""
- **Switching a language's experts off.** Each of the {f['languages']} languages loses its {f['m']} most specific
  experts ({f['m']} of {cells:,}); {f['robust_total']} of these {switched} experts pass
  chapter 04's robust definition, in {f['languages_with_robust']} languages: the rest are the nearest misses (our
  budget). The target language's bits per character rise by {target}% on average (largest:
  {labels[f['max_target_language']]}, {_percent(f['max_target'])}%); the increase is beyond passage noise in
  {f['harmful_languages']} of {f['languages']} languages.
- **Selectivity.** Own damage minus the other languages' damage: {selectivity}
  percentage points over languages, {_p(f, 'selectivity')}; selective beyond noise in
  {f['selective_languages']} of {f['languages']} languages. Against matched random experts (same layers, same decile of
  busyness, {f['n_controls']} sets a language; their mean damage {control}%): own minus control
  {excess} points, {_p(f, 'excess')}, beyond noise
  in {f['beyond_control_languages']} of {f['languages']} languages. A language's own set against the other languages'
  sets on its text: {other_sets} points,
  {_p(f, 'own_vs_other_sets')}.
  {causal}
- **The language of the output.** With a language's experts off, {100 * f['gen_own']:.0f}% of the greedy continuations
  ({f['gen_prompts']} prompts a language, {f['gen_tokens']} new tokens) are identified as another language, against
  {shares['gen_control']} with matched controls off and {shares['gen_dense']} for the dense model: difference
  {gen_difference} points, {_p(f, 'gen')};
  beyond noise over prompts in {f['gen_languages_beyond']} languages. {writes}
- **Steering.** From English prompts, scaling language M's experts by {scale:g} puts {shares['steer_experts']}
  of the outputs in M ({f['steer_targets']} target languages; without steering {shares['steer_none']}); DiffMean at
  block {f['steer_layer']} at matched strength (its change of the final states {f['steer_match']:.2f} times the
  experts', median) {100 * f['steer_diffmean']:.0f}%: experts minus DiffMean
  {experts_vs_diffmean} points,
  {_p(f, 'experts_vs_diffmean')}. Does the output still continue the prompt? chrF
  against the reference continuation in M: {f['steer_chrf_experts']:.1f} (experts), {f['steer_chrf_diffmean']:.1f}
  (DiffMean), {chrf['none']} (no steering); against the English reference {chrf['source_experts']},
  {chrf['source_diffmean']} and {chrf['source_none']}.
- **Routing and competence.** Over {n_wide} languages ({f['wide_passages']} calibration passages), the distance
  of a language's expert profile from English's and its bits per character: Spearman
  {_fact_interval(f, 'rho_reference', percent=False)}
  ({_p(f, 'rho_reference')}); beyond tokens per character and script
  {_fact_interval(f, 'partial_reference', percent=False)}
  ({_p(f, 'partial_reference')}). From the mean profile:
  {_fact_interval(f, 'rho_mean', percent=False)}, partial
  {_fact_interval(f, 'partial_mean', percent=False)}
  ({_p(f, 'partial_mean')}). Tokens per character alone: Spearman {f['rho_tpc']:+.2f}.
  Closest to English: {', '.join(f['closest'])}; farthest: {', '.join(f['farthest'])}; the highest bits per character:
  {', '.join(f['worst_bpc'])}. {routing}
- **Strength of evidence.** {f['n_tests']} tests, Holm-corrected together; small budgets on the default run (held-out
  text of at least {eval_tokens:,} tokens a language, {prompts} prompts, {tokens} new tokens), one small
  model, one partition seed (whether the same experts matter under other seeds is not tested here).
"""
