"""Chapter 4 as library steps: experts shared by every language and experts specific to one, each
beyond sampling noise and against chance overlap; LAPE compared honestly; which experts survive
other partition seeds and the neuron view."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from babel_lib.chapters.high_frequency import hf_threshold, high_frequency_reductions
from babel_lib.data.corpus import language_labels, language_metadata
from babel_lib.experts import pipeline
from babel_lib.stats import inference as stats
from babel_lib.stats.analysis import depth_third

# Our choices (the paper is silent): *shared* = high-frequency in every language; *specific* =
# high-frequency in exactly one language. Point estimates only ("naive") are not enough: a frequency
# near the bar crosses it by sampling noise. *Robustly shared*: the lower end of the 95% bootstrap
# interval of its frequency is above the bar in every language. *Robustly specific to language i*:
# naive-specific to i, the lower end of i's interval above the bar, and the upper end of every other
# language's interval below it. Chance model for overlaps: in each layer every language's
# high-frequency experts (its observed number in that layer) are placed at random among the layer's
# experts, independently of the other languages.

def frequency_bounds(counts: np.ndarray, tokens: np.ndarray, layers, experts, n_resamples: int = 1000,
                     seed: int = 0, level: float = 0.95, max_elements: int = 8_000_000):
    """Percentile bootstrap interval of the frequency of chosen experts in every language.

    counts int [n, P, L, E], tokens [n, P]; layers, experts int [c] (the cells). Returns low, high
    float [n, c] (the ``level`` interval; the same resamples for every cell and language, row b of
    ``stats.passage_resamples(P, n_resamples, seed)``). Works in chunks of cells."""
    counts = np.asarray(counts)
    layers = np.asarray(layers, dtype=np.int64)
    experts = np.asarray(experts, dtype=np.int64)
    n = counts.shape[0]
    low = np.full((n, len(layers)), np.nan)
    high = np.full((n, len(layers)), np.nan)
    step = max(1, max_elements // max(1, n_resamples * n))
    for s in range(0, len(layers), step):
        sub = counts[:, :, layers[s:s + step], experts[s:s + step]]  # [n, P, c]
        res = stats.bootstrap(lambda f: f, sub, tokens, n_resamples, seed, method="percentile", level=level,
                              batched=True)
        low[:, s:s + step] = np.asarray(res.low).reshape(n, -1)
        high[:, s:s + step] = np.asarray(res.high).reshape(n, -1)
    return low, high


def shared_and_specific(counts: np.ndarray, tokens: np.ndarray, threshold: float, n_resamples: int = 1000,
                        seed: int = 0, level: float = 0.95) -> dict:
    """Shared and specific experts of one view, naive and noise-robust (definitions above).

    counts int [n, P, L, E], tokens [n, P]; threshold: the high-frequency bar. Returns
    ``sharing`` int [L, E] (languages in which each expert is high-frequency), ``shared`` /
    ``robust_shared`` bool [L, E], ``owner`` / ``robust_owner`` int [L, E] (the language an expert
    is specific to, else -1). Robust sets are subsets of the naive ones by definition, so only naive
    candidates are bootstrapped."""
    counts = np.asarray(counts)
    n = counts.shape[0]
    freq = stats.weighted_frequencies(counts, tokens, np.ones((1, counts.shape[1])))[0]
    hf = freq >= threshold
    sharing = hf.sum(axis=0)
    shared = sharing == n
    owner = np.where(sharing == 1, hf.argmax(axis=0), -1)
    robust_shared = np.zeros_like(shared)
    robust_owner = np.full_like(owner, -1)
    for kind, mask in (("shared", shared), ("specific", owner >= 0)):
        ls, es = np.nonzero(mask)
        if not len(ls):
            continue
        low, high = frequency_bounds(counts, tokens, ls, es, n_resamples, seed, level)
        if kind == "shared":
            robust_shared[ls, es] = (low > threshold).all(axis=0)
        else:
            own = owner[ls, es]
            cols = np.arange(len(ls))
            others = np.ones_like(low, dtype=bool)
            others[own, cols] = False
            ok = (low[own, cols] > threshold) & np.where(others, high < threshold, True).all(axis=0)
            robust_owner[ls[ok], es[ok]] = own[ok]
    return {"sharing": sharing, "shared": shared, "robust_shared": robust_shared, "owner": owner,
            "robust_owner": robust_owner}


def poisson_binomial(p) -> np.ndarray:
    """Distribution of the number of successes of independent trials with probabilities p [n]: [n + 1]."""
    pmf = np.ones(1)
    for q in np.asarray(p, dtype=float):
        pmf = np.concatenate([pmf * (1 - q), [0.0]]) + np.concatenate([[0.0], pmf * q])
    return pmf


def chance_sharing_histogram(high_per_layer: np.ndarray, n_experts: int) -> np.ndarray:
    """Expected number of experts high-frequency in exactly j languages (j = 0..n) under the chance
    model (each language's high-frequency experts of a layer, ``high_per_layer`` int [n, L], placed
    at random among the layer's ``n_experts``, independently across languages): float [n + 1]."""
    h = np.asarray(high_per_layer, dtype=float)
    return sum(n_experts * poisson_binomial(h[:, l] / n_experts) for l in range(h.shape[1]))


def chance_shared_distribution(high_per_layer: np.ndarray, n_experts: int, tol: float = 1e-18) -> np.ndarray:
    """Exact distribution of the number of experts high-frequency in all languages (all layers) under
    the chance model of :func:`chance_sharing_histogram`: float [L * E + 1].

    Per layer, the intersection of the languages' random sets shrinks language by language with a
    hypergeometric step (of s experts still common, j are drawn among the h of the next language);
    layers are independent, so their distributions convolve. Probabilities below ``tol`` are dropped."""
    from scipy.stats import hypergeom

    h = np.asarray(high_per_layer, dtype=np.int64)
    E = int(n_experts)
    total = np.ones(1)
    for l in range(h.shape[1]):
        dist = np.zeros(E + 1)
        dist[E] = 1.0
        for hi in h[:, l]:
            support = np.flatnonzero(dist > tol)
            top = int(support.max())
            j = np.arange(top + 1)
            step = hypergeom.pmf(j[None, :], E, support[:, None], int(hi))
            new = np.zeros(E + 1)
            new[:top + 1] = dist[support] @ np.nan_to_num(step)
            dist = new
        total = np.convolve(total, dist[: int(np.flatnonzero(dist > tol).max()) + 1])
    out = np.zeros(h.shape[1] * E + 1)
    out[:len(total)] = total[: len(out)]
    return out


def match_experts(labels_a: np.ndarray, labels_b: np.ndarray):
    """Match each expert of partition a to the expert of partition b (same layer) sharing most of its
    neurons (ties: the lowest id). labels int [L, N] (expert of each neuron). Returns best int [L, E_a],
    overlap int [L, E_a] (neurons in common), jaccard float [L, E_a]."""
    a = np.asarray(labels_a, dtype=np.int64)
    b = np.asarray(labels_b, dtype=np.int64)
    if a.shape != b.shape:
        raise ValueError("both partitions must cover the same layers and neurons")
    L = a.shape[0]
    Ea, Eb = int(a.max()) + 1, int(b.max()) + 1
    best = np.zeros((L, Ea), dtype=np.int64)
    overlap = np.zeros((L, Ea), dtype=np.int64)
    jac = np.zeros((L, Ea))
    for l in range(L):
        M = np.bincount(a[l] * Eb + b[l], minlength=Ea * Eb).reshape(Ea, Eb)
        best[l] = M.argmax(axis=1)
        overlap[l] = M[np.arange(Ea), best[l]]
        size_a = np.bincount(a[l], minlength=Ea)
        size_b = np.bincount(b[l], minlength=Eb)
        jac[l] = overlap[l] / (size_a + size_b[best[l]] - overlap[l])
    return best, overlap, jac


def grouped_counts(neuron_counts: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Neuron-view counts [n, P, L, N] summed over each expert's neurons: [n, P, L, E]. Divided by
    (tokens x expert size) this is the mean neuron frequency of the expert's neurons."""
    labels = np.asarray(labels, dtype=np.int64)
    n, P, L, N = neuron_counts.shape
    E = int(labels.max()) + 1
    out = np.zeros((n, P, L, E), dtype=np.int64)
    for l in range(L):
        order = np.argsort(labels[l], kind="stable")
        size = np.bincount(labels[l], minlength=E)
        if (size != size[0]).any():
            raise ValueError("experts of unequal size")
        out[:, :, l] = neuron_counts[:, :, l][:, :, order].reshape(n, P, E, size[0]).sum(axis=-1)
    return out


def lape_comparison(lape_table: pd.DataFrame, sharing: np.ndarray, robust_owner: np.ndarray,
                    languages: list[str]) -> dict:
    """How LAPE's low-entropy experts relate to the high-frequency rule.

    Returns: selected (LAPE's experts), hf_languages (the number of languages in which each is
    high-frequency, [selected]), median / quartiles of it, specific (robustly specific experts),
    overlap (experts in both sets), expected (chance overlap |A| |B| / N, N = all experts), ratio,
    p (hypergeometric, one-sided: overlap at least this large by chance), same_language (of the
    overlap, experts whose LAPE top language is the robust owner)."""
    from scipy.stats import hypergeom

    L, E = sharing.shape
    N = L * E
    a = np.zeros((L, E), dtype=bool)
    if len(lape_table):
        a[lape_table["layer"].to_numpy(), lape_table["expert"].to_numpy()] = True
    b = robust_owner >= 0
    both = a & b
    A, B, X = int(a.sum()), int(b.sum()), int(both.sum())
    hf_langs = sharing[lape_table["layer"].to_numpy(), lape_table["expert"].to_numpy()] if len(lape_table) \
        else np.zeros(0, dtype=int)
    expected = A * B / N
    top = {(int(r.layer), int(r.expert)): r.top_language for r in lape_table.itertuples()}
    same = sum(languages[robust_owner[l, e]] == top[(l, e)] for l, e in zip(*np.nonzero(both)))
    q = np.percentile(hf_langs, [25, 50, 75]) if len(hf_langs) else [np.nan] * 3
    return {"selected": A, "hf_languages": hf_langs, "hf_languages_q1": float(q[0]),
            "hf_languages_median": float(q[1]), "hf_languages_q3": float(q[2]),
            "hf_in_one": int((hf_langs == 1).sum()), "hf_in_none": int((hf_langs == 0).sum()),
            "specific": B, "overlap": X, "expected": expected,
            "ratio": X / expected if expected > 0 else float("nan"),
            "p": float(hypergeom.sf(X - 1, N, A, B)) if A and B else float("nan"), "same_language": int(same)}


def _specific_by_language(owner: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(owner[owner >= 0], minlength=n)


def shared_specific_results(views: dict, partitions: list, n_resamples: int = 1000,
                            permutations: int = stats.HEADLINE_PERMUTATIONS, seed: int = 0, hf_ratio: float = 2.0,
                            lape_top_rate: float = 0.01, lape_quantile: float = 0.95, level: float = 0.95,
                            controls: dict | None = None, null_draws: int = 200) -> dict:
    """Everything chapter 4 reports, from the views of a study ({name: Profile}, main view first;
    k-means views in the order of ``partitions``, their :class:`babel_lib.experts.moefy.Partition` objects,
    and the neuron view, recognised by its expert size of 1).

    Returns a dict:

    - ``histogram``: languages (j), experts high-frequency in exactly j languages, observed and
      expected under the chance model;
    - ``by_layer``: per layer: shared (naive, robust) and specific (naive, robust) experts;
    - ``by_language``: per language: high-frequency experts, naive and robust specific experts,
      whether the language is alone with its script in the selection, robust specific experts in
      every other view;
    - ``lape``: LAPE's experts with the number of languages in which each is high-frequency;
    - ``survival``: per definition (shared / specific, naive / robust): experts in the main view,
      how many the other seeds' best-matching experts and the neuron view confirm, how many survive all;
    - ``survivors``: the robust shared and specific experts that survive every view (the only ones named);
    - ``tests``: shared vs chance (exact), LAPE overlap vs chance (hypergeometric), robust specific
      experts vs script uniqueness (Spearman, permutations over languages), raw and Holm-adjusted p;
    - ``robustness``: the counts and tests per view;
    - ``controls``: per view and control input, the shared experts that are high-frequency on it too;
    - ``facts``: the scalars the findings and the verdicts quote.

    ``controls`` ({kind: {view name: Profile}}, :meth:`babel_lib.experts.pipeline.Study.controls`): input that
    is no language, profiled like one. A shared expert that is high-frequency on random tokens (the
    same bar) is *always-on*, not multilingual (our rule); one high-frequency on shuffled tokens needs
    no word order (reported). The nulls that keep each expert's busyness
    (:func:`babel_lib.stats.pooled_null`, ``null_draws`` draws) say how many shared and specific
    experts there would be if the languages did not differ: the specific experts are tested against it.
    """
    from babel_lib.stats.analysis import lape as lape_rank

    names = list(views)
    main = views[names[0]]
    n, P, L, E = main.passage_counts.shape
    labels = language_labels(main.languages)
    meta = language_metadata(main.languages)
    script_n = meta["script"].map(meta["script"].value_counts())
    alone = (script_n == 1).to_numpy()
    kmeans = [v for v in names if views[v].expert_size > 1]
    neuron_names = [v for v in names if views[v].expert_size == 1]
    if len(partitions) != len(kmeans):
        raise ValueError(f"one partition per partitioned view is needed ({len(kmeans)} views, {len(partitions)} partitions)")
    part_of = dict(zip(kmeans, partitions))

    per_view, view_rows = {}, []
    for name, prof in views.items():
        thr = hf_threshold(prof, hf_ratio)
        res = shared_and_specific(prof.passage_counts, prof.passage_tokens, thr, n_resamples, seed, level)
        freq = prof.frequencies()
        hf_layer = (freq >= thr).sum(axis=2)  # [n, U... ] -> [n, L]
        res.update(threshold=thr, high_per_layer=hf_layer, freq=freq)
        per_view[name] = res
    m = per_view[names[0]]

    # control inputs: which experts are high-frequency on input that is no language (per view)
    control_kinds = list(controls) if controls else []
    for name, r in per_view.items():
        r["control_hf"] = {kind: controls[kind][name].frequencies()[0] >= r["threshold"] for kind in control_kinds}
        r["always_on"] = r["control_hf"].get("random", np.zeros_like(r["shared"]))
    always_on = m["always_on"]

    # counts with intervals (main view)
    def count_stats(W):
        _, sharing = high_frequency_reductions(main.passage_counts, main.passage_tokens, m["threshold"], W)
        return {"shared": (sharing == n).sum(axis=(1, 2)).astype(float),
                "specific": (sharing == 1).sum(axis=(1, 2)).astype(float),
                "multilingual": ((sharing == n) & ~always_on[None]).sum(axis=(1, 2)).astype(float)}

    counts_ci = stats.bootstrap_many(count_stats, P, n_resamples, seed, method="bca")
    for name, prof in views.items():  # how many shared and specific experts if languages did not differ
        r = per_view[name]
        null = stats.pooled_null(_sharing_counts(r["threshold"], n), prof.passage_counts, prof.passage_tokens,
                                 null_draws, seed)
        observed = np.array([r["shared"].sum(), (r["owner"] >= 0).sum()], dtype=float)
        r["null"] = stats.versus_null(observed, null, level)
    chance_hist = chance_sharing_histogram(m["high_per_layer"], E)
    observed_hist = np.bincount(m["sharing"].reshape(-1), minlength=n + 1)
    histogram = pd.DataFrame({"languages": np.arange(n + 1), "observed": observed_hist, "chance": chance_hist})
    pmf = chance_shared_distribution(m["high_per_layer"], E)
    n_shared = int(m["shared"].sum())
    p_shared = float(min(1.0, max(pmf[n_shared:].sum(), 1e-18)))  # the pmf drops probabilities below 1e-18
    expected_shared = float((np.arange(len(pmf)) * pmf).sum())

    # LAPE
    lape_table = lape_rank(m["freq"], main.languages, top_rate=lape_top_rate, filter_quantile=lape_quantile,
                           assign_quantile=lape_quantile)
    lape_cmp = lape_comparison(lape_table, m["sharing"], m["robust_owner"], main.languages)
    lape_table = lape_table.assign(hf_languages=lape_cmp["hf_languages"],
                                   top_name=lape_table["top_language"].map(labels),
                                   robust_specific=[bool(m["robust_owner"][r.layer, r.expert] >= 0)
                                                    for r in lape_table.itertuples()])

    # per language
    spec_naive = _specific_by_language(m["owner"], n)
    spec_robust = _specific_by_language(m["robust_owner"], n)
    by_language = pd.DataFrame({
        "language": main.languages, "name": [labels[x] for x in main.languages], "family": meta["family"],
        "script": meta["script"], "alone_with_script": alone,
        "high_frequency": m["high_per_layer"].sum(axis=1), "specific_naive": spec_naive,
        "specific_robust": spec_robust,
        **{f"robust_{v}": _specific_by_language(per_view[v]["robust_owner"], n) for v in names[1:]},
    })
    script_test = _script_test(alone, spec_robust, permutations, seed)

    null_m = m["null"]
    tests = pd.DataFrame([
        {"test": "experts high-frequency in exactly one language vs languages that do not differ (pooled null)",
         "observed": int((m["owner"] >= 0).sum()), "expected": float(null_m["null_mean"][1]),
         "p_value": float(null_m["p"][1])},
        {"test": "overlap of LAPE's experts with the robust specific experts vs chance (hypergeometric)",
         "observed": lape_cmp["overlap"], "expected": lape_cmp["expected"], "p_value": lape_cmp["p"]},
        {"test": "robust specific experts vs being alone with its script (Spearman, permutations over languages)",
         "observed": script_test["rho"], "expected": 0.0, "p_value": script_test["p"]},
    ])
    tests = stats.correct(tests, "p_value", "holm", "p_holm")

    by_layer = pd.DataFrame({
        "layer": np.arange(L), "third": depth_third(L),
        "shared": m["shared"].sum(axis=1), "robust_shared": m["robust_shared"].sum(axis=1),
        "specific": (m["owner"] >= 0).sum(axis=1), "robust_specific": (m["robust_owner"] >= 0).sum(axis=1),
        "lape": np.bincount(lape_table["layer"], minlength=L) if len(lape_table) else np.zeros(L, dtype=int),
    })

    # survival of individual experts
    survival, survivors, match_share, neuron_facts = _survival(views, names, kmeans, neuron_names, part_of, per_view,
                                                 hf_ratio, n_resamples, seed, level, labels, main.languages)

    # every view
    for name in names:
        r, prof = per_view[name], views[name]
        U = prof.n_experts
        lt = lape_rank(r["freq"], main.languages, top_rate=lape_top_rate, filter_quantile=lape_quantile,
                       assign_quantile=lape_quantile)
        lc = lape_comparison(lt, r["sharing"], r["robust_owner"], main.languages)
        sr = _specific_by_language(r["robust_owner"], n)
        st = _script_test(alone, sr, permutations, seed)
        exp_shared = float(sum(U * np.prod(r["high_per_layer"][:, l] / U) for l in range(L)))
        hist = chance_sharing_histogram(r["high_per_layer"], U)
        view_rows.append({
            "view": name, "units": L * U, "shared": int(r["shared"].sum()),
            "robust_shared": int(r["robust_shared"].sum()), "chance_shared": exp_shared,
            "shared_share": r["shared"].mean(), "specific": int((r["owner"] >= 0).sum()),
            "chance_specific": float(hist[1]), "robust_specific": int((r["robust_owner"] >= 0).sum()),
            "robust_specific_share": float((r["robust_owner"] >= 0).mean()),
            "languages_with_specific": int((sr > 0).sum()),
            "spearman_with_main": stats.spearman(sr, spec_robust) if name != names[0] else 1.0,
            "rho_script": st["rho"], "p_script": st["p"],
            "lape_hf_median": lc["hf_languages_median"], "lape_overlap_ratio": lc["ratio"], "p_lape": lc["p"],
            "null_shared": float(r["null"]["null_mean"][0]), "null_specific": float(r["null"]["null_mean"][1]),
            "null_specific_high": float(r["null"]["null_high"][1]), "p_specific_null": float(r["null"]["p"][1]),
            **{f"shared_hf_{kind}": int((r["shared"] & r["control_hf"][kind]).sum()) for kind in control_kinds},
            "multilingual_shared": int((r["shared"] & ~r["always_on"]).sum()),
        })
    robustness = pd.DataFrame(view_rows)
    control_table = pd.DataFrame([
        {"view": name, "control": kind, "shared": int(r["shared"].sum()),
         "high_frequency_on_control": int(r["control_hf"][kind].sum()),
         "shared_and_high_on_control": int((r["shared"] & r["control_hf"][kind]).sum())}
        for name, r in per_view.items() for kind in control_kinds])

    top = by_language.sort_values(["specific_robust", "specific_naive"], ascending=False).head(5)
    holm = tests.set_index(tests.index)["p_holm"].tolist()
    views_ok_specific = bool(((robustness["specific"] > robustness["null_specific_high"])
                              & (robustness["p_specific_null"] < 0.05)).all())
    shared_every_view = bool((robustness["shared"] > robustness["chance_shared"] + 1).all()
                             and (robustness["robust_shared"] > 0).all())
    facts = {
        "languages": n, "layers": L, "experts": E, "units": L * E, "threshold": m["threshold"],
        "hf_ratio": hf_ratio, "passages": P, "resamples": n_resamples, "permutations": permutations,
        "level": level, "views": len(views),
        "shared": n_shared, "shared_low": float(counts_ci["shared"].low), "shared_high": float(counts_ci["shared"].high),
        "robust_shared": int(m["robust_shared"].sum()), "chance_shared": expected_shared, "p_shared": p_shared,
        "controls": control_kinds,
        **{f"shared_hf_{kind}": int((m["shared"] & m["control_hf"][kind]).sum()) for kind in control_kinds},
        "multilingual": int((m["shared"] & ~always_on).sum()),
        "multilingual_low": float(counts_ci["multilingual"].low), "multilingual_high": float(counts_ci["multilingual"].high),
        "multilingual_every_view": bool(control_kinds and (robustness["multilingual_shared"] > 0).all()),
        "null_shared": float(null_m["null_mean"][0]), "null_specific": float(null_m["null_mean"][1]),
        "null_specific_low": float(null_m["null_low"][1]), "null_specific_high": float(null_m["null_high"][1]),
        "p_specific_null": float(null_m["p"][1]), "p_specific_null_holm": holm[0], "null_draws": null_draws,
        "specific_beyond_null_every_view": views_ok_specific,
        "specific": int((m["owner"] >= 0).sum()), "specific_low": float(counts_ci["specific"].low),
        "specific_high": float(counts_ci["specific"].high), "chance_specific": float(chance_hist[1]),
        "robust_specific": int((m["robust_owner"] >= 0).sum()),
        "languages_with_robust": int((spec_robust > 0).sum()), "languages_with_naive": int((spec_naive > 0).sum()),
        "top_specific": [(r.name, int(r.specific_robust), int(r.specific_naive), r.script) for r in top.itertuples()],
        "alone_languages": int(alone.sum()),
        "alone_mean": float(spec_robust[alone].mean()) if alone.any() else float("nan"),
        "others_mean": float(spec_robust[~alone].mean()) if (~alone).any() else float("nan"),
        "rho_script": script_test["rho"], "p_script": script_test["p"], "p_script_holm": holm[2],
        "lape_selected": lape_cmp["selected"], "lape_top_rate": lape_top_rate,
        "lape_hf_median": lape_cmp["hf_languages_median"], "lape_hf_q1": lape_cmp["hf_languages_q1"],
        "lape_hf_q3": lape_cmp["hf_languages_q3"], "lape_hf_in_one": lape_cmp["hf_in_one"],
        "lape_overlap": lape_cmp["overlap"], "lape_expected": lape_cmp["expected"], "lape_ratio": lape_cmp["ratio"],
        "p_lape": lape_cmp["p"], "p_lape_holm": holm[1], "lape_same_language": lape_cmp["same_language"],
        "lape_assigned_median": float(lape_table["n_languages"].median()) if len(lape_table) else float("nan"),
        "match_share": match_share,
        "survival": survival.set_index(["kind", "definition"])["survive_all"].to_dict(),
        "survival_seeds": survival.set_index(["kind", "definition"])["survive_seeds"].to_dict(),
        "neuron_bar": neuron_facts["bar"], "neuron_owner_median": neuron_facts["owner_median"],
        "neuron_owner_top": neuron_facts["owner_top"], "neuron_shared_min_median": neuron_facts["shared_min_median"],
        "survivors_shared": int((survivors["kind"] == "shared").sum()),
        "survivors_specific": int((survivors["kind"] == "specific").sum()),
        "robust_shared_every_view": shared_every_view,
        "robust_specific_every_view": bool((robustness["robust_specific"] > 0).all()),
        "specific_below_chance_every_view": bool((robustness["specific"] < robustness["chance_specific"]).all()),
        "script_every_view": bool(((robustness["p_script"] < 0.05)
                                   & (np.sign(robustness["rho_script"]) == np.sign(script_test["rho"]))).all()),
        "min_spearman": float(robustness["spearman_with_main"].min()),
        "lape_hf_median_range": [float(robustness["lape_hf_median"].min()), float(robustness["lape_hf_median"].max())],
        "kmeans_views": len(kmeans), "neuron_view": bool(neuron_names),
    }
    return {"histogram": histogram, "by_layer": by_layer, "by_language": by_language, "lape": lape_table,
            "survival": survival, "survivors": survivors, "tests": tests, "robustness": robustness,
            "controls": control_table, "facts": facts}


def _sharing_counts(threshold: float, n: int):
    """statistic(F [n, L, E]) -> [shared, specific]: experts high-frequency in all n languages, in exactly one."""
    def statistic(F):
        sharing = (F >= threshold).sum(axis=0)
        return np.array([(sharing == n).sum(), (sharing == 1).sum()], dtype=float)
    return statistic


def _script_test(alone: np.ndarray, counts: np.ndarray, permutations: int, seed: int) -> dict:
    if len(counts) < 3 or alone.all() or not alone.any() or np.all(counts == counts[0]):
        return {"rho": float("nan"), "p": float("nan")}
    res = stats.permutation_test_over_languages(alone.astype(float), counts.astype(float), "spearman",
                                                permutations, seed)
    return {"rho": res.statistic, "p": res.p_value}


def _survival(views, names, kmeans, neuron_names, part_of, per_view, hf_ratio, n_resamples, seed, level,
              labels, languages):
    """Which main-view shared / specific experts the other views confirm (see :func:`shared_specific_results`)."""
    main_name = names[0]
    m = per_view[main_name]
    checks = {}  # check name -> (shared_ok, owner_seen) for naive and robust, [L, E] in main-view experts
    shares = []
    if main_name not in part_of:  # the neuron view is the main view: no other view's experts match its neurons
        kmeans, neuron_names = [], []
    main_labels = part_of[main_name].labels if main_name in part_of else None
    for v in kmeans[1:]:
        best, overlap, _ = match_experts(main_labels, part_of[v].labels)
        shares.append(float((overlap / views[main_name].expert_size).mean()))
        r = per_view[v]
        rows = np.arange(best.shape[0])[:, None]
        checks[v] = {"shared": r["shared"][rows, best], "robust_shared": r["robust_shared"][rows, best],
                     "owner": r["owner"][rows, best], "robust_owner": r["robust_owner"][rows, best]}
    for v in neuron_names:
        prof = views[v]
        grouped = grouped_counts(prof.passage_counts, main_labels)
        size = views[main_name].expert_size
        thr = hf_threshold(prof, hf_ratio)
        g = shared_and_specific(grouped, prof.passage_tokens * size, thr, n_resamples, seed, level)
        checks[v] = {k: g[k] for k in ("shared", "robust_shared", "owner", "robust_owner")}
        gf = grouped.sum(axis=1) / (prof.tokens[:, None, None] * size)  # mean neuron frequency [n, L, E]
        ls, es = np.nonzero(m["robust_owner"] >= 0)
        own = m["robust_owner"][ls, es]
        neuron_facts = {"bar": thr, "owner_median": float(np.median(gf[own, ls, es])) if len(ls) else float("nan"),
                        "owner_top": int((gf[:, ls, es].argmax(axis=0) == own).sum()),
                        "shared_min_median": float(np.median(gf[:, m["robust_shared"]].min(axis=0)))
                        if m["robust_shared"].any() else float("nan")}
    rows, surv = [], []
    for kind in ("shared", "specific"):
        for definition in ("naive", "robust"):
            key = ("robust_" if definition == "robust" else "") + ("shared" if kind == "shared" else "owner")
            base = m[key] if kind == "shared" else m[key] >= 0
            row = {"kind": kind, "definition": definition, "main_view": int(base.sum())}
            ok_all = base.copy()
            ok_seeds = base.copy()
            for v, c in checks.items():
                ok = c[key] if kind == "shared" else (c[key] == m[key]) & base
                ok = ok & base
                row[v] = int(ok.sum())
                ok_all &= ok
                if v not in neuron_names:
                    ok_seeds &= ok
            row["survive_seeds"] = int(ok_seeds.sum())
            row["survive_all"] = int(ok_all.sum())
            rows.append(row)
            if definition == "robust":
                for l, e in zip(*np.nonzero(ok_all)):
                    surv.append({"kind": kind, "layer": int(l), "expert": int(e),
                                 "language": languages[m[key][l, e]] if kind == "specific" else "",
                                 "name": labels[languages[m[key][l, e]]] if kind == "specific" else "all languages"})
    survivors = pd.DataFrame(surv, columns=["kind", "layer", "expert", "language", "name"])
    if not neuron_names:
        neuron_facts = {"bar": float("nan"), "owner_median": float("nan"), "owner_top": 0,
                        "shared_min_median": float("nan")}
    return (pd.DataFrame(rows), survivors, (float(np.mean(shares)) if shares else float("nan")), neuron_facts)


def chance_text(x: float) -> str:
    """A chance expectation in words: 'less than 0.01' below 0.01, else two significant digits."""
    return "less than 0.01" if x < 0.01 else f"{x:.2g}"


def shared_specific_verdicts(facts: dict) -> list[dict]:
    """The chapter-4 verdict rows from :func:`shared_specific_results` facts, by
    :func:`babel_lib.report.verdicts.decide`.

    Shared experts: tested against the control inputs (an expert high-frequency in every language
    that is high-frequency on random tokens too is always-on, not multilingual); the test passes when
    the bootstrap interval of the multilingual count lies above 0, and it could fail (every shared
    expert could be always-on). Without control inputs only chance overlap is left, a null any model
    rejects: not testable here. Specific experts: more experts high-frequency in exactly one language
    than the pooled null gives (languages that do not differ), after Holm; robust when that holds in
    every view and some individual specific expert survives every view."""
    from babel_lib.core.claims import decide, row

    f = facts
    it = stats.interval_text
    controls = bool(f["controls"])
    shared_pass = controls and f["multilingual_low"] > 0
    shared = (f"{it(f['shared'], f['shared_low'], f['shared_high'], 0)} of {f['units']:,} experts are high-frequency "
              f"in all {f['languages']} languages ({f['robust_shared']} beyond noise; {f['null_shared']:.0f} if the "
              f"languages did not differ)")
    # the tested number leads (the Answer box quotes the first clause): the multilingual count when there are controls
    result = (f"{it(f['multilingual'], f['multilingual_low'], f['multilingual_high'], 0)} multilingual shared experts "
              f"(high-frequency in every language, not on random tokens); {shared}; {f.get('shared_hf_random', 0)} of "
              f"them are high-frequency on random tokens too (always-on) and {f.get('shared_hf_shuffled', 0)} on "
              f"shuffled tokens" if controls else shared)
    word = decide([shared_pass], robust=f["multilingual_every_view"], null_can_fail=controls)
    evidence = (f"bootstrap over {f['passages']} passages ({f['resamples']:,} resamples); control inputs profiled "
                f"like a language on the same passages (shuffled tokens, random tokens) under every view; "
                + (("every shared expert is busy on random tokens too (always-on)" if f["multilingual"] == 0 else
                    "multilingual shared experts remain in every partition seed and the neuron view"
                    if f["multilingual_every_view"] else "not every view keeps a multilingual shared expert")
                   if controls else "no control input was profiled, so the count is read only against chance "
                   "overlap, which any model exceeds")
                + f"; {f['survivors_shared']} shared experts keep their identity under every view")
    rows = [row("shared", result, evidence, word)]
    spec_pass = f["p_specific_null_holm"] < 0.05 and f["specific"] > f["null_specific_high"]
    result = (f"{it(f['specific'], f['specific_low'], f['specific_high'], 0)} experts are high-frequency in exactly "
              f"one language against {f['null_specific']:.1f} [{f['null_specific_low']:.0f}, {f['null_specific_high']:.0f}] "
              f"if the languages did not differ ({stats.p_text(f['p_specific_null'], f['p_specific_null_holm'])}); "
              f"{f['robust_specific']} of them beyond bootstrap noise, in {f['languages_with_robust']} languages; "
              f"{f['survivors_specific']} keep their identity and language under every view; LAPE's experts are "
              f"high-frequency in a median of {f['lape_hf_median']:.0f} languages")
    robust = f["specific_beyond_null_every_view"] and f["survivors_specific"] > 0
    word = decide([spec_pass], robust=robust, null_can_fail=True)
    evidence = (f"pooled null: each language's counts redrawn from the all-language frequency at its own token "
                f"count ({f['null_draws']} draws), so every expert keeps its busyness; "
                + ("beyond that null in every view" if f["specific_beyond_null_every_view"]
                   else "not beyond that null in every view")
                + ("; individual experts survive every view" if f["survivors_specific"] > 0
                   else "; no individual specific expert survives every view (weak evidence for any one expert)"))
    rows.append(row("specific_neurons", result, evidence, word))
    return rows


# ---------------------------------------------------------------------------- the chapter's charts, tables and prose
#: The chapter's tables: ``plots.table(df, name, **TABLES[name])``.
TABLES: dict[str, dict] = {
    "text": pipeline.TEXT_TABLE,
    "survivors": {"columns": {"kind": "Kind", "layer": "Layer", "expert": "Expert", "name": "Language"},
                  "caption": "The robust experts that survive every view (the only ones named as findings)"},
    "tests": {"columns": {"test": "Test", "observed": "Observed", "expected": "Under the null", "p_value": "p",
                          "p_holm": "Holm-adjusted p"},
              "formats": {"observed": "{:.3g}", "expected": "{:.3g}", "p_value": "{:.3g}", "p_holm": "{:.3g}"},
              "caption": "Headline tests (Holm correction over the chapter)"},
    "controls": {"columns": {"view": "View", "control": "Control input", "shared": "Shared experts",
                             "high_frequency_on_control": "High-frequency on the control",
                             "shared_and_high_on_control": "Shared and high-frequency on the control"},
                 "caption": "Shared experts that input of no language keeps busy (always-on: random tokens)"},
    "robustness": {
        "columns": {"view": "View", "units": "Units", "shared": "Shared", "robust_shared": "Shared (robust)",
                    "chance_shared": "Shared by chance", "specific": "Specific",
                    "chance_specific": "Specific by chance", "robust_specific": "Specific (robust)",
                    "robust_specific_share": "Specific (robust) share",
                    "languages_with_specific": "Languages with one", "spearman_with_main": "Spearman with main view",
                    "rho_script": "Spearman with script alone", "p_script": "p (script)",
                    "lape_hf_median": "LAPE: median languages", "lape_overlap_ratio": "LAPE overlap / chance",
                    "null_shared": "Shared if languages did not differ",
                    "null_specific": "Specific if languages did not differ",
                    "p_specific_null": "p (specific vs pooled null)",
                    "shared_hf_random": "Shared, busy on random tokens",
                    "shared_hf_shuffled": "Shared, busy on shuffled tokens",
                    "multilingual_shared": "Multilingual shared"},
        "formats": {"chance_shared": "{:.2g}", "chance_specific": "{:.1f}", "robust_specific_share": "{:.4f}",
                    "spearman_with_main": "{:+.2f}", "rho_script": "{:+.2f}", "p_script": "{:.4f}",
                    "lape_hf_median": "{:.0f}", "lape_overlap_ratio": "{:.2f}", "null_shared": "{:.1f}",
                    "null_specific": "{:.1f}", "null_specific_high": "{:.0f}", "p_specific_null": "{:.3g}"},
        "caption": "Shared and specific counts in every view"},
}

#: The series of the ``by_layer`` table, in words.
BY_LAYER_SERIES = {"shared": "shared (naive)", "robust_shared": "shared (robust)", "specific": "specific (naive)",
                   "robust_specific": "specific (robust)", "lape": "LAPE's experts"}


def specific_by_language_options(by_language: pd.DataFrame) -> dict:
    """``plots.table`` options of the ``specific_by_language`` table: one column of robust counts per other view
    (the ``robust_<view>`` columns of :func:`shared_specific_results`'s ``by_language``)."""
    views = {c: f"Beyond noise, {c[len('robust_'):]}" for c in by_language.columns if c.startswith("robust_")}
    return {"columns": {"name": "Language", "family": "Family", "script": "Script",
                        "alone_with_script": "Alone with its script", "high_frequency": "High-frequency experts",
                        "specific_naive": "Specific (naive)", "specific_robust": "Specific (beyond noise)", **views},
            "caption": "Language-specific experts per language"}


def survival_options(views) -> dict:
    """``plots.table`` options of the ``survival`` table: one column of confirmations per view after the first
    (``views``: the study's view names, main view first)."""
    return {"columns": {"kind": "Kind", "definition": "Definition", "main_view": "Main view",
                        **{c: f"Confirmed: {c}" for c in list(views)[1:]}, "survive_seeds": "Survive every seed",
                        "survive_all": "Survive every view"},
            "caption": "Shared and specific experts confirmed by the other views"}


def sharing_histogram_chart(histogram: pd.DataFrame) -> alt.LayerChart:
    """Bars of the experts high-frequency in j languages, with the independent-placement chance as a red line.
    ``histogram``: languages, observed, chance (:func:`shared_specific_results`)."""
    bars = alt.Chart(histogram).mark_bar(opacity=0.7).encode(
        x=alt.X("languages:Q", title="Languages in which the expert is high-frequency",
                scale=alt.Scale(domain=[0, int(histogram["languages"].max())], nice=False)),
        y=alt.Y("observed:Q", title="Experts"),
        tooltip=["languages", "observed", alt.Tooltip("chance:Q", format=".2f")])
    chance = alt.Chart(histogram).mark_line(color="#d62728").encode(x="languages:Q", y="chance:Q")
    return (bars + chance).properties(
        width=560, height=240,
        title="Observed experts (bars) and independent placement (red, a reference any model beats)")


def by_layer_chart(by_layer: pd.DataFrame, n_experts: int) -> alt.Chart:
    """One line per series (:data:`BY_LAYER_SERIES`) of experts per layer. ``by_layer``: layer, third, shared,
    robust_shared, specific, robust_specific, lape; ``n_experts``: experts a layer (the y axis title)."""
    long = by_layer.melt(id_vars=["layer", "third"], var_name="series", value_name="experts")
    long["series"] = long["series"].map(BY_LAYER_SERIES)
    lines = alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("layer:O", title="Layer"), y=alt.Y("experts:Q", title=f"Experts (of {n_experts} a layer)"),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom", columns=3)),
        tooltip=["layer", "series", "experts"])
    return lines.properties(width=560, height=240, title="Shared, specific and LAPE's experts per layer")


def specific_by_language_chart(by_language: pd.DataFrame, top: int = 30) -> alt.Chart:
    """Naive and beyond-noise specific experts of the ``top`` languages with the most beyond noise, side by side.
    ``by_language``: name, script, alone_with_script, specific_naive, specific_robust."""
    ranked = by_language.sort_values(["specific_robust", "specific_naive"], ascending=False).head(top)
    long = ranked.melt(id_vars=["name", "script", "alone_with_script"],
                       value_vars=["specific_naive", "specific_robust"], var_name="definition", value_name="experts")
    long["definition"] = long["definition"].map({"specific_naive": "naive", "specific_robust": "beyond noise"})
    chart = alt.Chart(long).mark_bar().encode(
        x=alt.X("experts:Q", title="Language-specific experts", axis=alt.Axis(tickMinStep=1, format="d")),
        y=alt.Y("name:N", sort=ranked["name"].tolist(), title=None),
        yOffset=alt.YOffset("definition:N", sort=["naive", "beyond noise"]),
        color=alt.Color("definition:N", title="Definition", sort=["naive", "beyond noise"],
                        legend=alt.Legend(orient="bottom")),
        tooltip=["name", "script", "alone_with_script", "definition", "experts"])
    return chart.properties(width=480, height=24 * len(ranked),
                            title="Language-specific experts, naive and beyond noise")


def lape_chart(lape: pd.DataFrame) -> alt.Chart:
    """A histogram of the number of languages in which each of LAPE's experts is high-frequency.
    ``lape``: hf_languages (one row per LAPE expert)."""
    hist = alt.Chart(lape).mark_bar().encode(
        x=alt.X("hf_languages:Q", bin=alt.Bin(maxbins=40), title="Languages in which a LAPE expert is high-frequency"),
        y=alt.Y("count():Q", title="LAPE's experts"))
    return hist.properties(width=520, height=200, title="How language-specific LAPE's lowest-entropy experts are")


def findings_text(f: dict) -> str:
    """The chapter's findings (Markdown) from :func:`shared_specific_results` facts."""
    it, pt = stats.interval_text, stats.p_text
    surv, seeds = f["survival"], f["survival_seeds"]
    top = "; ".join(f"{name}: {robust} of {naive} beyond noise" for name, robust, naive, _ in f["top_specific"])
    plural = f["alone_languages"] != 1
    if not f["controls"]:
        multilingual = "No control input was profiled."
    elif f["multilingual"] == 0:
        multilingual = ("Every shared expert is busy on random tokens too: the experts all languages share here are "
                        "always-on, not multilingual.")
    else:
        multilingual = ("Every partition seed and the neuron view keep some." if f["multilingual_every_view"]
                        else "Not every view keeps one: weak evidence.")
    lape_reading = ("Low entropy over many languages marks experts that a few languages use much more than the rest, "
                    "not experts only one language uses: LAPE's list is not a second list of language-specific experts "
                    "in the sense of the high-frequency rule." if f["lape_hf_median"] > 2 else
                    "Here the two rules largely agree: LAPE's experts are high-frequency in one or two languages.")
    neuron_reading = ("the language prefers these neurons, but they are not specific to it at the neuron bar; the "
                      "specificity appears in the grouped score more than in single neurons"
                      if f["neuron_owner_median"] < f["neuron_bar"] else "the neurons carry the specificity themselves")
    lines = [
        "",
        f"- **Shared experts.** {it(f['shared'], f['shared_low'], f['shared_high'], 0)} of {f['units']:,} experts",
        f"  are high-frequency in all {f['languages']} languages, {f['robust_shared']} of them beyond sampling noise; "
        "if the",
        f"  languages did not differ, {f['null_shared']:.0f} would be. Of the shared experts, "
        f"{f.get('shared_hf_random', 0)} are",
        f"  high-frequency on random tokens too (always-on) and {f.get('shared_hf_shuffled', 0)} on shuffled tokens; "
        "that leaves",
        f"  {it(f['multilingual'], f['multilingual_low'], f['multilingual_high'], 0)} multilingual shared experts",
        f"  (shared, not always-on). {multilingual}",
        f"- **Specific experts.** {it(f['specific'], f['specific_low'], f['specific_high'], 0)} experts are",
        f"  high-frequency in exactly one language; if the languages did not differ, {f['null_specific']:.1f}",
        f"  [{f['null_specific_low']:.0f}, {f['null_specific_high']:.0f}] would be "
        f"({pt(f['p_specific_null'], f['p_specific_null_holm'])}).",
        "  " + ("Beyond that null in every view." if f["specific_beyond_null_every_view"]
               else "Not beyond that null in every view: weak evidence."),
        f"  Only {f['robust_specific']} of them pass the noise test, in {f['languages_with_robust']} of "
        f"{f['languages']} languages",
        f"  (naive: {f['languages_with_naive']} languages). Most: {top}.",
        "  " + ("Specific experts beyond noise exist in every view." if f["robust_specific_every_view"]
               else "Not every view has a specific expert beyond noise: weak evidence."),
        f"  Across views the languages' counts keep their order with a lowest Spearman of {f['min_spearman']:+.2f}.",
        f"- **Script.** The {f['alone_languages']} language{'s' if plural else ''} alone with "
        f"{'their' if plural else 'its'} script in this",
        f"  selection {'have' if plural else 'has'} {f['alone_mean']:.2f} robust specific experts on average, "
        "the others",
        f"  {f['others_mean']:.2f}; Spearman {f['rho_script']:+.2f}, {pt(f['p_script'], f['p_script_holm'])} from",
        f"  {f['permutations']:,} permutations over languages.",
        "  " + ("The relation holds with the same sign in every view." if f["script_every_view"]
               else "It does not hold beyond chance in every view: weak evidence."),
        f"- **LAPE.** LAPE's {f['lape_selected']} lowest-entropy experts ({f['lape_top_rate']:.0%} of all) are "
        "high-frequency in a",
        f"  median of {f['lape_hf_median']:.0f} languages (quartiles {f['lape_hf_q1']:.0f}-{f['lape_hf_q3']:.0f}; "
        "medians in the other",
        f"  views {f['lape_hf_median_range'][0]:.0f}-{f['lape_hf_median_range'][1]:.0f}), though LAPE's own bar "
        "assigns each to a median of",
        f"  {f['lape_assigned_median']:.0f}; {f['lape_hf_in_one']} are high-frequency in exactly one language. "
        f"They overlap the robust specific experts in {f['lape_overlap']} experts against {f['lape_expected']:.2f}",
        f"  by chance, {pt(f['p_lape'], f['p_lape_holm'])}"
        + (f"; {f['lape_same_language']} of these for the same language" if f["lape_overlap"] else "") + ".",
        f"  {lape_reading}",
        f"- **Identity.** An expert of another seed shares {f['match_share']:.0%} of its neurons with its best match "
        "on average.",
        f"  Of the {f['robust_shared']} robust shared experts, {seeds[('shared', 'robust')]} are matched by shared "
        "experts in every",
        f"  other seed and {surv[('shared', 'robust')]} also in the neuron view; of the {f['robust_specific']} "
        "robust specific",
        f"  experts, {seeds[('specific', 'robust')]} and {surv[('specific', 'robust')]} (naive definitions: "
        f"{surv[('shared', 'naive')]}",
        f"  shared, {surv[('specific', 'naive')]} specific survive every view). In the neuron view the neurons of a "
        "robust specific",
        f"  expert are used in its language on a median {f['neuron_owner_median']:.2f} of the tokens, against the "
        "neuron bar of",
        f"  {f['neuron_bar']:.2f}, and that language uses them more than any other language in "
        f"{f['neuron_owner_top']} of",
        f"  {f['robust_specific']} cases: {neuron_reading}.",
        "  " + ("Only the survivors are named as findings, in the table above."
               if f["survivors_shared"] + f["survivors_specific"]
               else "No individual expert survives every view, so none is named as a finding."),
        f"- **Strength of evidence.** {f['passages']} passages of one formal text, {f['resamples']:,} bootstrap "
        "resamples, one small",
        "  model. The counts depend on the bar (`hf_ratio`) and, for \"shared by all\", on the number of languages; "
        "the noise-robust",
        "  counts and the comparison with chance are the part to rely on.",
        "",
    ]
    return "\n".join(lines)
