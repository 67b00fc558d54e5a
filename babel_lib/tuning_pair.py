"""Chapter 07's pair of models and what the tuning did to their behaviour: the base model and its instruction-tuned copy (made here or given), the held-out instruction examples, the held-out loss and the answer checks, each with paired intervals over paragraphs."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import answers, corpus, instructions, stats, tune
from .corpus import language_labels

#: Readable names of the instruction tasks.
TASK_NAMES = {"translate": "translate from English", "to_english": "translate into English",
              "continue": "continue a text", "repeat": "repeat a text"}
#: The answer checks of :func:`babel_lib.answers.score_answers` reported here, with readable names.
CHECKS = {"ok": "well-formed and in the right language", "well_formed": "well-formed",
          "right_language": "in the right language", "stopped": "ends its answer itself"}


# ============================================================================ the pair
@dataclass
class Pair:
    """A base model and its instruction-tuned version.

    base, tuned: the loaded models (the same dtype and device); base_spec: the base's model spec;
    run: the tuning run (:class:`babel_lib.tune.TunedModel`) when the pair was made here, None when
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
        from .cache import shown_path

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
                "`tuned_model`, or to `babel_lib.models.load_model`).")

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
    (:func:`babel_lib.instructions.instruction_set` on ``languages``' calibration split, ``tasks``)
    with :class:`babel_lib.tune.TuneConfig`'s recipe (``steps``, ``batch_size``, ``learning_rate``,
    ``train``, ``max_length``: None keeps the recipe's default), cached; or, with ``tuned_model``, load that
    release (same architecture and FFN shape). Both models in ``dtype`` on ``device``."""
    from .pipeline import get_model

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
    :func:`babel_lib.instructions.continuation_set` of the same languages (cached like any tuning);
    ``'noise'`` is :func:`babel_lib.tune.random_perturbation` (the tuning's norm, no direction). A
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
    """Held-out response loss of both models (:func:`babel_lib.answers.response_loss`, nats per
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
    language pair of ``dataset``), judged by :func:`babel_lib.answers.score_answers`.

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
