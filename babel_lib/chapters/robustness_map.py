"""Chapter 13's robustness map as library steps: the book's main verdicts about languages (chapter 4's
shared and specific experts, chapter 5's families and dendrogram) decided again under other definitions,
one definition changed at a time from the book's default (a specification curve): the top-k fraction, the
expert size, the high-frequency ratio, the partition seed and the neuron view.

Every cell is counted in the same forward passes (:func:`babel_lib.experts.profile.profile_passages` with one set of
definitions per view), and cells that differ only in the high-frequency ratio share one count. Each cell is
decided alone, by the chapters' own verdict functions on that one view: the chapters' verdicts add a
robustness clause over their partition seeds and the neuron view, which is what this map spreads out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import altair as alt
import pandas as pd

from babel_lib.core.definitions import Definitions
from babel_lib.data import corpus
from babel_lib.experts import pipeline
from babel_lib.experts.moefy import Partition
from babel_lib.stats import inference as stats

#: The book's default definitions (chapters 3-5): k-means experts of 32 neurons (seed 0), the top 20% of a
#: layer's experts per token, high-frequency at twice the base rate k/E.
DEFAULT = {"top_k_fraction": 0.2, "expert_size": 32, "seed": 0, "hf_ratio": 2.0}

#: The changes the map makes to the default, one at a time (our grid; the issue's values).
GRID = {"top_k_fraction": (0.1, 0.3), "expert_size": (16, 64), "hf_ratio": (1.5, 3.0), "seed": (1, 2)}

#: What each changed setting is called in the tables.
SETTING_NAMES = {"default": "the book's default", "top_k_fraction": "top-k fraction", "expert_size": "expert size",
                 "hf_ratio": "high-frequency ratio", "seed": "partition seed", "neurons": "neuron view"}

#: The verdict rows the map repeats (claim ids of :data:`babel_lib.report.verdicts.CLAIMS`) and their chapters.
MAPPED_CLAIMS = {"shared": "04", "specific_neurons": "04", "families": "05", "families_v1": "05"}

#: The mapped claims in a few words (the tables' and the chart's rows).
CLAIM_NAMES = {"shared": "shared experts (ch. 4)", "specific_neurons": "specific experts (ch. 4)",
               "families": "families (ch. 5)", "families_v1": "dendrogram (ch. 5)"}


@dataclass(frozen=True)
class Cell:
    """One set of definitions: ``changed`` names the setting that differs from :data:`DEFAULT` ('default'
    for none; 'neurons' for the neuron view, where every neuron is its own expert: expert_size 1)."""

    changed: str
    top_k_fraction: float
    expert_size: int
    seed: int
    hf_ratio: float

    @property
    def name(self) -> str:
        if self.changed in ("default", "neurons"):
            return self.changed
        return f"{SETTING_NAMES[self.changed]} {self.value}"

    @property
    def value(self) -> str:
        """The changed setting's value as text ('' for the default cell)."""
        if self.changed in ("default", "neurons"):
            return {"default": "", "neurons": "every neuron"}[self.changed]
        return f"{getattr(self, self.changed):g}"

    @property
    def count_key(self) -> tuple:
        """Cells with the same key share their counts (they differ only in the high-frequency ratio)."""
        return (self.expert_size, self.seed if self.expert_size > 1 else None, self.top_k_fraction)


def grid(grid: dict | None = None, neurons: bool = True, default: dict | None = None) -> list[Cell]:
    """The default cell, then one cell for each value of each setting of ``grid`` ({setting: values};
    :data:`GRID`), then the neuron view when ``neurons``."""
    base = {**DEFAULT, **(default or {})}
    out = [Cell("default", **base)]
    for setting, values in (GRID if grid is None else grid).items():
        if setting not in DEFAULT:
            raise ValueError(f"unknown setting {setting!r}; settings: {', '.join(DEFAULT)}")
        for v in values:
            if v != base[setting]:
                out.append(Cell(setting, **{**base, setting: type(base[setting])(v)}))
    if neurons:
        out.append(Cell("neurons", **{**base, "expert_size": 1, "seed": 0}))
    return out


def cell_table(cells: list[Cell]) -> pd.DataFrame:
    """The cells as a table: name, the setting changed and its value, and the four definitions."""
    return pd.DataFrame([{"cell": c.name, "setting": SETTING_NAMES[c.changed], "value": c.value,
                          "top_k_fraction": c.top_k_fraction, "expert_size": c.expert_size,
                          "partition_seed": c.seed if c.expert_size > 1 else None, "hf_ratio": c.hf_ratio,
                          "shares_counts_with": next((o.name for o in cells[:i] if o.count_key == c.count_key), "")}
                         for i, c in enumerate(cells)])


@dataclass
class MapStudy:
    """A model, the passages, and each cell's partition (None for the neuron view) and profile."""

    lm: object
    passages: corpus.Passages
    cells: list[Cell]
    partitions: dict = field(default_factory=dict)
    profiles: dict = field(default_factory=dict)
    max_length: int = 128

    def describe(self) -> str:
        p = self.profiles[self.cells[0].name]
        forwards = len({c.count_key for c in self.cells})
        return (f"**Model** {self.lm.description} (`{self.lm.name}`). **Cells** {len(self.cells)} sets of definitions "
                f"({forwards} distinct counts, all in the same forward passes). **Profile** {p.describe()}.")

    def controls(self, batch_size: int = 8, seed: int = 0, kinds=None) -> dict:
        """Control inputs (shuffled and random tokens) on the profiled passages, counted under every
        cell's view and definitions: {kind: {cell name: Profile}} (cached like a language)."""
        keys = _distinct(self.cells)
        text = pipeline.profiled_passages(self.passages, self.profiles[self.cells[0].name])
        got = pipeline.control_profiles(self.lm, [self._view(c) for c in keys],
                                        [Definitions(top_k_fraction=c.top_k_fraction) for c in keys], text,
                                        self.max_length, kinds=kinds, seed=seed, batch_size=batch_size)
        out = {}
        for kind, profiles in got.items():
            by_key = dict(zip([c.count_key for c in keys], profiles))
            out[kind] = {c.name: by_key[c.count_key] for c in self.cells}
        return out

    def _view(self, cell: Cell) -> Partition:
        return self.partitions[cell.name] if cell.expert_size > 1 else Partition.neurons(self.lm)


def _distinct(cells: list[Cell]) -> list[Cell]:
    seen, out = set(), []
    for c in cells:
        if c.count_key not in seen:
            seen.add(c.count_key)
            out.append(c)
    return out


def map_study(model: str = "gemma-3-270m", languages="families:120", corpus_name: str = "udhr",
              max_passages: int | None = 10, cells: list[Cell] | None = None, max_length: int = 128,
              batch_size: int = 8, dtype: str = "float32", device: str = "cpu", progress: bool = True) -> MapStudy:
    """Profile ``languages`` under every cell of ``cells`` (:func:`grid`) in the same forward passes: one
    k-means partition per expert size and seed, one count per partition and top-k fraction (the neuron
    view for expert size 1). Languages are resolved before the model loads."""
    from babel_lib.experts.moefy import build_partition
    from babel_lib.experts.profile import profile_passages

    progress = progress and not os.environ.get("TQDM_DISABLE")  # the book runner sets it
    cells = grid() if cells is None else list(cells)
    if not cells:
        raise ValueError("no cell to profile")
    text = corpus.passages(languages, corpus=corpus_name, split="calibration", max_passages=max_passages)
    lm = pipeline.get_model(model, dtype, device)
    study = MapStudy(lm, text, cells, max_length=max_length)
    built = {}
    for c in cells:
        if c.expert_size > 1:
            key = (c.expert_size, c.seed)
            if key not in built:
                built[key] = build_partition(lm, expert_size=c.expert_size, seed=c.seed, progress=progress)
            study.partitions[c.name] = built[key]
    keys = _distinct(cells)
    profiles = profile_passages(lm, [study._view(c) for c in keys], text,
                                definitions=[Definitions(top_k_fraction=c.top_k_fraction) for c in keys],
                                max_length=max_length, batch_size=batch_size, progress=progress)
    by_key = dict(zip([c.count_key for c in keys], profiles))
    study.profiles = {c.name: by_key[c.count_key] for c in cells}
    return study


def cell_verdicts(study: MapStudy, controls: dict | None = None, n_resamples: int = 1000,
                  permutations: int = stats.HEADLINE_PERMUTATIONS, null_draws: int = 200, seed: int = 0,
                  **family_options) -> pd.DataFrame:
    """Chapter 4's and chapter 5's verdicts in every cell, each decided on that cell's view alone:
    one row per cell and claim with the setting changed, its value, the chapter, the verdict word and the
    tested number (:func:`babel_lib.report.verdicts.key_number`). Chapter 5's tests do not use the high-frequency
    ratio, so cells that differ only in it share one family analysis."""
    from babel_lib.chapters import families, shared_specific as sharing
    from babel_lib.report.verdicts import key_number

    rows, family_rows = [], {}
    for c in study.cells:
        prof = study.profiles[c.name]
        view = {c.name: prof}
        ctrl = {kind: {c.name: by_cell[c.name]} for kind, by_cell in controls.items()} if controls else None
        res = sharing.shared_specific_results(view, [study.partitions[c.name]] if c.expert_size > 1 else [],
                                              n_resamples=n_resamples, permutations=permutations, seed=seed,
                                              hf_ratio=c.hf_ratio, controls=ctrl, null_draws=null_draws)
        verdict_rows = sharing.shared_specific_verdicts(res["facts"])
        if c.count_key not in family_rows:
            fam = families.family_results(view, n_resamples=n_resamples, permutations=permutations, seed=seed,
                                          layer_tests=False, **family_options)
            family_rows[c.count_key] = families.family_verdicts(fam["facts"])
        verdict_rows = verdict_rows + family_rows[c.count_key]
        assert len(verdict_rows) == len(MAPPED_CLAIMS)
        value = c.value
        for r, claim in zip(verdict_rows, MAPPED_CLAIMS):
            rows.append({"cell": c.name, "setting": SETTING_NAMES[c.changed], "value": value,
                         "chapter": MAPPED_CLAIMS[claim], "claim": claim, "name": CLAIM_NAMES[claim],
                         "verdict": r["verdict"],
                         "number": key_number(r["result"]), "result": r["result"]})
    return pd.DataFrame(rows)


def verdict_grid(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`cell_verdicts` as one row per claim (its name) and one column per cell (the verdict words), and
    a last column: in how many cells the claim keeps the default cell's word."""
    wide = table.pivot(index="name", columns="cell", values="verdict")
    order = list(dict.fromkeys(table["cell"]))
    wide = wide[order].reindex(list(dict.fromkeys(table["name"])))
    wide["same_as_default"] = [int((wide.loc[c, order] == wide.loc[c, "default"]).sum()) for c in wide.index]
    return wide.reset_index()


def map_facts(table: pd.DataFrame) -> dict:
    """Scalars the chapter's prose quotes: cells, and per claim the default word, the cells that keep it, and
    the cells (by name) where it changes with their word."""
    cells = list(dict.fromkeys(table["cell"]))
    out = {"cells": len(cells), "claims": {}}
    for claim, g in table.groupby("claim", sort=False):
        g = g.set_index("cell")
        default = g.loc["default", "verdict"]
        changes = {c: g.loc[c, "verdict"] for c in cells if g.loc[c, "verdict"] != default}
        out["claims"][claim] = {"default": default, "same": len(cells) - len(changes), "changes": changes}
    return out


def map_verdict(table: pd.DataFrame) -> dict:
    """The verdict row of the book's claim 'definitions_robust' from :func:`cell_verdicts`: one test per
    mapped claim, passing when its word is the same in every cell (a claim the default cell finds not
    testable tests nothing); the word by :func:`babel_lib.report.verdicts.decide` (reproduced when every testable
    claim keeps its word everywhere)."""
    from babel_lib.core.claims import decide, row

    f = map_facts(table)
    claims = f["claims"]
    passed = [not c["changes"] for c in claims.values()]
    # a claim the default cell cannot test keeps "not testable here" everywhere: that is no test of robustness
    testable = [c["default"] != "not testable here" for c in claims.values()]
    kept = "; ".join(f"{CLAIM_NAMES.get(k, k)}: {c['default']} in {c['same']} of {f['cells']} cells"
                     + (f" (otherwise {', '.join(f'{w} with {cell}' for cell, w in c['changes'].items())})"
                        if c["changes"] else "") for k, c in claims.items())
    result = (f"{sum(p and t for p, t in zip(passed, testable))} of {sum(testable)} testable verdicts keep their word "
              f"in all {f['cells']} cells; {kept}")
    evidence = (f"{f['cells']} cells, one definition changed at a time from the book's default; each cell decided "
                "alone by the chapters' own rules, on the same languages and passages, counted in the same forward "
                "passes; the chapters' own verdicts add a clause over partition seeds and the neuron view, so the "
                "default cell can read stronger than its chapter")
    return row("definitions_robust", result, evidence, decide([p for p, t in zip(passed, testable) if t]))



# ---------------------------------------------------------------------------- the notebook's tables, chart and prose
#: The chapter's tables: plots.table's options by table name (the grid's columns depend on the cells:
#: :func:`grid_columns`).
TABLES: dict[str, dict] = {
    "cells": {
        "columns": {"cell": "Cell", "setting": "Setting changed", "value": "Value", "top_k_fraction": "Top-k fraction",
                    "expert_size": "Expert size", "partition_seed": "Partition seed",
                    "hf_ratio": "High-frequency ratio", "shares_counts_with": "Counts shared with"},
        "formats": {"top_k_fraction": "{:.2f}", "hf_ratio": "{:.1f}", "partition_seed": "{:.0f}"},
        "transpose": False,
        "caption": "The cells of the map",
    },
    "robustness_grid": {"transpose": True, "caption": "The verdict words, one row per cell"},
    "robustness_map": {
        "columns": {"cell": "Cell", "name": "Claim", "verdict": "Verdict", "number": "Tested number"},
        "transpose": False,
        "max_rows": 12,
        "caption": "The tested number behind each verdict in each cell",
    },
}


def grid_columns(grid: pd.DataFrame) -> dict:
    """The headers of :func:`verdict_grid`'s table: the claim, one column per cell (its name), the cells that
    keep the default's word."""
    cells = [c for c in grid.columns if c not in ("name", "same_as_default")]
    return {"name": "Claim", **{c: c for c in cells}, "same_as_default": "Cells as default"}


def verdict_chart(table: pd.DataFrame) -> alt.Chart:
    """Each claim's verdict word (colour) in each cell (x, in the table's order).

    table: :func:`cell_verdicts`' rows (cell, name, verdict, number)."""
    from babel_lib.core.claims import VERDICTS

    words = [w for w in VERDICTS if w in set(table["verdict"])]
    order = list(dict.fromkeys(table["cell"]))
    base = alt.Chart(table).encode(x=alt.X("cell:N", sort=order, title=None, axis=alt.Axis(labelAngle=-35)),
                                   y=alt.Y("name:N", sort=list(CLAIM_NAMES.values()), title=None))
    heat = base.mark_rect(stroke="white").encode(
        color=alt.Color("verdict:N", sort=words, title="Verdict", legend=alt.Legend(orient="bottom"),
                        scale=alt.Scale(domain=words, scheme="tableau10")),
        tooltip=["cell", "name", "verdict", "number"])
    return heat.properties(width=560, height=alt.Step(34), title="Each verdict in each cell")


def findings_text(f: dict, table: pd.DataFrame) -> str:
    """The chapter's findings (Markdown): per mapped claim its default word, the cells that keep it and those
    where it changes (with their tested numbers). f: :func:`map_facts`; table: :func:`cell_verdicts`."""
    lines = []
    for claim, c in f["claims"].items():
        number = table[table["claim"] == claim].set_index("cell")["number"]
        changed = "; ".join(f"{w} with {cell} ({number[cell]})" for cell, w in c["changes"].items())
        ending = f"; it changes to {changed}." if changed else ": no definition the map changes moves it."
        lines.append(f"- **{CLAIM_NAMES[claim].capitalize()}**: {c['default']} in the default cell "
                     f"({number['default']}); the same word in {c['same']} of {f['cells']} cells" + ending)
    return ("\n".join(lines) + "\n- **Strength of evidence.** One model, one corpus and its passages; each cell "
            "changes one definition at a time, so interactions between definitions are not mapped, and a cell "
            "alone lacks the chapters' clause over views.")
