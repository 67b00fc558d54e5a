"""Genealogy of the corpus languages: the Glottolog classification (via URIEL, ``lang2vec``) kept in
``data/languages.csv`` as each language's clade path, as a tree and as distances between languages."""

from __future__ import annotations

import networkx as nx
import numpy as np

from babel_lib.data.corpus import clade_path, language_table, resolve_languages

ROOT = "Glottolog"


def _languages():
    return language_table()


def family_graph(languages) -> nx.DiGraph:
    """Glottolog tree restricted to the languages: 'Glottolog' -> family -> ... -> language.
    Node attribute 'kind' is 'clade' or 'language'; unclassified languages hang off the root."""
    keys = resolve_languages(languages)
    graph = nx.DiGraph()
    graph.add_node(ROOT, kind="clade")
    for key in keys:
        chain = [ROOT] + clade_path(key)
        for clade in chain[1:]:
            graph.add_node(clade, kind="clade")
        if graph.nodes.get(key, {}).get("kind") == "clade":
            raise ValueError(f"language key {key!r} collides with a clade name")
        graph.add_node(key, kind="language", name=_languages().loc[key, "name"])
        nx.add_path(graph, chain + [key])
    return graph


def max_clade_depth() -> int:
    """D_max: the longest Glottolog clade path of the whole language table (a constant of the
    data, the same for every selection)."""
    return max(len(p.split("|")) for p in _languages()["glottolog_path"] if p)


def shared_clades(languages) -> np.ndarray:
    """int [n, n]: the number of Glottolog clades two languages share (the common prefix of their
    clade paths; 0 = different families or unclassified); the diagonal is the language's own path
    length. Order = resolve_languages(languages)."""
    keys = resolve_languages(languages)
    paths = [clade_path(k) for k in keys]
    n = len(keys)
    shared = np.zeros((n, n), dtype=np.int64)
    for i in range(n):
        shared[i, i] = len(paths[i])
        for j in range(i + 1, n):
            s = 0
            for a, b in zip(paths[i], paths[j]):
                if a != b:
                    break
                s += 1
            shared[i, j] = shared[j, i] = s
    return shared


def tree_distance(languages, measure: str = "edges") -> np.ndarray:
    """[n, n] genealogical distances, order = resolve_languages(languages).

    measure="edges" (default): same family: the path length between the two leaves in
    family_graph (Hindi-Urdu 2, Spanish-Portuguese 3); it grows with how finely each branch is
    classified (English-French 21, Belarusian-Armenian 7). Different families (or unclassified):
    Glottolog does not relate them, so the distance is the constant 2 * (D_max + 1): the path
    through a root placed above the deepest family, longer than any within-family distance.

    measure="depth": D_max - shared clades (``shared_clades``), D_max = ``max_clade_depth()``
    of the whole table, so the distance depends only on how deep the last common clade is, not on
    how deep the rest of each branch goes; D_max for different families; 0 on the diagonal."""
    if measure not in ("edges", "depth"):
        raise ValueError(f"measure must be 'edges' or 'depth', got {measure!r}")
    shared = shared_clades(languages)
    n = len(shared)
    depth = max_clade_depth()
    if measure == "depth":
        dist = depth - shared
        np.fill_diagonal(dist, 0)
        return dist
    across = 2 * (1 + depth)
    own = np.diag(shared)
    dist = (own[:, None] - shared + 1) + (own[None, :] - shared + 1)
    dist = np.where(shared == 0, across, dist)
    dist[np.arange(n), np.arange(n)] = 0
    return dist.astype(np.int64)


