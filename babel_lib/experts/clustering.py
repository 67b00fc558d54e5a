"""Equal-size clustering of FFN neurons into experts: pure functions on arrays.

Every partition returned here is an int64 label array ``[N]`` in which each of the
``n_clusters`` clusters holds exactly ``N // n_clusters`` members.

``balanced_kmeans`` (MoEfication's parameter clustering, our implementation)
    Minimises the inertia (sum of squared Euclidean distances of the rows to their
    cluster mean) under the equal-size constraint, in three stages:

    1. Greedy k-means++ seeding (as scikit-learn: ``2 + ln K`` candidates per step).
       Distances come from the pair table of stage 3 when there is one, else from
       matmuls, in a 256-d random projection when N x D is large.
    2. Lloyd iterations whose assignment step is the *exact* min-cost balanced
       assignment for the current centroids (a transportation problem). It is solved by
       negative-cycle cancelling on the K-node "cluster graph": the weight of edge a->b is
       the cheapest change of cost for moving one member of a to b; an equal-size
       assignment is optimal iff that graph has no negative cycle (Bellman-Ford finds
       them; each cancelled cycle moves one point per edge and keeps all sizes). Warm
       started from the previous labels, so each iteration needs few cancellations.
       (k_means_constrained solves the same step with a min-cost-flow solver, but on
       unsquared distances rounded to 1/1000.)
    3. Swap refinement (Hartigan-style, exact): exchanging i (in a) with j (in b)
       changes the inertia by ``d(j,a) - d(i,a) + d(i,b) - d(j,b) - 2 |x_i - x_j|^2 / s``
       (``d`` = squared distance to the current means, ``s`` = cluster size): unlike
       Lloyd it accounts for the centroids moving, which matters at s = 32. The best swap
       of every cluster pair is kept in a K x K table, disjoint improving swaps are
       applied in rounds and only pairs that involve a touched cluster are recomputed;
       it stops when no swap improves. Needs the N x N pairwise distances (4 N^2 bytes
       twice), so by default it runs for N <= 4096 on CPU and N <= 32768 on a GPU.
       Stages 2 and 3 alternate until neither moves anything.

    The best of ``n_init`` such runs (by inertia) is returned; the default is one run.
    Measured here (benchmarks/bench_kmeans.py, busy 2-core CPU) against
    ``k_means_constrained.KMeansConstrained`` (MoEfication's tool, n_init=10): on a real
    Gemma 3 270M gate layer (2048 x 640, 64 x 32) 1.6% lower inertia in 1/31 of its
    time; on random unit rows of that shape 1.5% lower in 1/15 to 1/25 of its time. On a
    LLaMA-2-7B-sized random layer (11008 x 4096, 344 x 32; no swap stage on CPU) the
    reference did not finish within 600 s; with n_init=1 it took 26-30x our time (about
    250 s vs 8-10 s) and reached 0.02% lower inertia than ours.

    Dense work (matmuls, the swap table) runs in torch on ``device`` (the features'
    device by default; CUDA works); the K x K cluster graph runs in numpy. On CPU the
    call runs torch on one thread (restored afterwards) and hands only large matmuls to
    the caller's thread count: the many small tensor operations are several times slower
    on a busy thread pool.

``random_partition``: a uniformly random equal-size split (the baseline).

``coactivation_partition``: neurons that fire on the same tokens grouped together
    (normalised spectral embedding of the co-activation graph, then ``balanced_kmeans``
    on the embedding rows); MoEfication used METIS on this graph, we use no external
    binary.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from babel_lib.core.hooks import torch_threads

__all__ = ["balanced_kmeans", "random_partition", "coactivation_partition", "inertia"]

# Above this many rows (on CPU) the swap refinement, which needs N x N pairwise
# distances, is skipped by default (refine="auto").
_REFINE_MAX_N_CPU = 4096
_REFINE_MAX_N_GPU = 32768
# k-means++ candidates are scored in a random projection when N * D exceeds this.
_PROJECT_ABOVE = 8_000_000
_PROJECT_DIM = 256


#: Bump when a change here changes the labels a call returns (it enters partition cache keys).
VERSION = "2"  # 2: float64 distances and assignments

#: Working precision of every distance and assignment (see _as_features).
DTYPE = torch.float64

# Matmuls bigger than this many multiply-adds run with torch's default thread count.
_BIG_MATMUL = 200_000_000


# --------------------------------------------------------------------------- checks
def _check_sizes(n: int, n_clusters) -> int:
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)):
        raise ValueError(f"n_clusters must be an integer, got {n_clusters!r}")
    n_clusters = int(n_clusters)
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be at least 1, got {n_clusters}")
    if n < 1:
        raise ValueError("cannot cluster an empty set: got 0 rows")
    if n % n_clusters:
        raise ValueError(
            f"{n} rows cannot be split into {n_clusters} equal-size clusters "
            f"({n} is not divisible by {n_clusters}); choose a cluster count that divides {n}"
        )
    return n // n_clusters


def _as_features(features, device=None) -> torch.Tensor:
    """Features as a float64 torch tensor [N, D] on ``device`` (default: where they are).

    Float64 (:data:`DTYPE`) so that the assignment decisions do not depend on the rounding of
    one machine's matrix kernels: in float32, two machines of the same kind reached different
    local optima for one Gemma layer in eighteen."""
    if isinstance(features, torch.Tensor):
        x = features.detach()
    else:
        x = torch.as_tensor(np.asarray(features))
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D array [N, D], got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"features are empty: shape {tuple(x.shape)}")
    if not (x.is_floating_point() or x.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise ValueError(f"features must be real numbers, got dtype {x.dtype}")
    if device is not None:
        x = x.to(device)
    x = x.to(DTYPE)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("features contain NaN or infinite values")
    return x.contiguous()


# --------------------------------------------------------------------------- public API
def random_partition(n_neurons: int, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Uniformly random equal-size split: int64 labels [n_neurons], values in [0, n_clusters)."""
    if isinstance(n_neurons, bool) or not isinstance(n_neurons, (int, np.integer)):
        raise ValueError(f"n_neurons must be an integer, got {n_neurons!r}")
    s = _check_sizes(int(n_neurons), n_clusters)
    labels = np.repeat(np.arange(int(n_clusters), dtype=np.int64), s)
    return np.random.default_rng(seed).permutation(labels)


def inertia(features, labels) -> float:
    """Sum over rows of the squared Euclidean distance to the mean of its cluster.

    features: [N, D] (numpy or torch); labels: int [N]. Units: squared feature units.
    Accumulated in float64, identically for any partition of the same features.
    """
    x = features.detach().cpu() if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features))
    lab = labels.detach().cpu() if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels))
    lab = lab.reshape(-1).to(torch.int64)
    if x.ndim != 2 or lab.shape[0] != x.shape[0]:
        raise ValueError(f"features {tuple(x.shape)} and labels {tuple(lab.shape)} do not match")
    if lab.numel() == 0:
        return 0.0
    if int(lab.min()) < 0:
        raise ValueError("labels must be non-negative")
    k = int(lab.max()) + 1
    step = 2048
    with torch_threads(1):
        sums = torch.zeros(k, x.shape[1], dtype=torch.float64)
        for i in range(0, x.shape[0], step):
            sums.index_add_(0, lab[i:i + step], x[i:i + step].to(torch.float64))
        counts = torch.bincount(lab, minlength=k).clamp_min(1).to(torch.float64)
        means = sums / counts[:, None]
        total = 0.0
        for i in range(0, x.shape[0], step):
            diff = x[i:i + step].to(torch.float64) - means[lab[i:i + step]]
            total += float((diff * diff).sum())
    return total


def balanced_kmeans(
    features,
    n_clusters: int,
    seed: int = 0,
    n_iter: int = 100,
    device=None,
    *,
    n_init: int = 1,
    refine="auto",
) -> np.ndarray:
    """Equal-size k-means: int64 labels [N], every cluster exactly N / n_clusters rows.

    features: [N, D] float (numpy or torch; a torch tensor's device is used unless
    ``device`` is given). n_iter: maximum Lloyd iterations per run. n_init: independent
    runs (different k-means++ seeds), the lowest inertia wins. refine: the swap
    refinement, True / False / "auto" (on when N <= 4096 on CPU, N <= 32768 on GPU).
    Deterministic for a seed on a given machine. See the module docstring for the method.
    """
    where = torch.device(device) if device is not None else (
        features.device if isinstance(features, torch.Tensor) else torch.device("cpu"))
    on_cpu = where.type == "cpu"
    big = torch.get_num_threads() if on_cpu else None
    with torch_threads(1 if on_cpu else None):
        x = _as_features(features, device)
        n, dim = x.shape
        s = _check_sizes(n, n_clusters)
        k = int(n_clusters)
        if n_iter < 1 or n_init < 1:
            raise ValueError(f"n_iter and n_init must be at least 1, got n_iter={n_iter}, n_init={n_init}")
        if k == 1:
            return np.zeros(n, dtype=np.int64)
        if s == 1:
            return np.arange(n, dtype=np.int64)
        if refine == "auto":
            refine = n <= (_REFINE_MAX_N_CPU if on_cpu else _REFINE_MAX_N_GPU)
        x = x - x.mean(0, keepdim=True)  # inertia is translation invariant; centring helps precision
        sqx = (x * x).sum(1)
        prob = _Problem(x, sqx, k, s, mm_threads=big if n * k * dim > _BIG_MATMUL else None)
        if refine:
            with torch_threads(big if n * n * dim > _BIG_MATMUL else None):
                prob.pair = _PairTable(x, sqx, k, s)
        best, best_in = None, math.inf
        for run in range(n_init):
            labels = _single_run(prob, np.random.default_rng([int(seed), run]), n_iter)
            if n_init == 1:
                return labels
            val = inertia(x, labels)
            if val < best_in:
                best, best_in = labels, val
    return best


class _Problem:
    """The (centred) rows and sizes shared by the stages of one balanced_kmeans call."""

    def __init__(self, x, sqx, k, s, mm_threads):
        self.x, self.sqx, self.k, self.s, self.mm_threads = x, sqx, k, s, mm_threads
        self.pair = None
        self.tol = 1e-9 * float(sqx.mean()) + 1e-30  # cost improvements below this are ignored

    def sqdist(self, c: torch.Tensor) -> np.ndarray:
        """Squared distances [N, K] (float64 numpy) of the rows to centroids c [K, D]."""
        with torch_threads(self.mm_threads):
            d = torch.addmm(self.sqx[:, None] + (c * c).sum(1)[None, :], self.x, c.T, alpha=-2.0)
        return d.clamp_min_(0).double().cpu().numpy()

    def means(self, labels: np.ndarray) -> torch.Tensor:
        """Cluster means [K, D] (a fixed-order sum: deterministic on GPUs too)."""
        order = torch.from_numpy(np.argsort(labels, kind="stable")).to(self.x.device)
        return self.x.index_select(0, order).view(self.k, self.s, -1).mean(1)


# --------------------------------------------------------------------------- k-means++
def _kmeanspp(x: torch.Tensor, sqx: torch.Tensor, k: int, rng: np.random.Generator, mm_threads=None,
              pair: "_PairTable | None" = None) -> list[int]:
    """Greedy k-means++ (Arthur & Vassilvitskii; scikit-learn's 2 + ln k trials): row indices.

    Squared distances come from the pair table when there is one, else from matmuls
    (in a 256-d random projection when N x D is large)."""
    n, d = x.shape
    trials = 2 + int(math.log(k))
    if pair is not None:
        scale = -pair.s / 2.0  # neg_p = -2/s |x_i - x_j|^2

        def dists(rows: np.ndarray) -> np.ndarray:
            got = pair.neg_p.index_select(0, torch.from_numpy(rows).to(x.device))
            return (got.double() * scale).cpu().numpy()

        first = int(rng.integers(n))
        idx = [first]
        closest = dists(np.array([first]))[0]
        for _ in range(1, k):
            cum = np.cumsum(closest)
            if cum[-1] <= 0:
                unused = np.setdiff1d(np.arange(n), idx)
                idx.append(int(unused[rng.integers(unused.size)]))
                continue
            cand = np.minimum(np.searchsorted(cum, rng.random(trials) * cum[-1]), n - 1)
            dc = np.minimum(dists(cand), closest[None, :])
            b = int(np.argmin(dc.sum(1)))
            closest = dc[b]
            idx.append(int(cand[b]))
        return idx
    y, sqy = x, sqx
    if n * d > _PROJECT_ABOVE and d > _PROJECT_DIM:
        # Johnson-Lindenstrauss: squared distances kept to a few percent, 1/(d/256) the work.
        g = torch.Generator(device="cpu").manual_seed(int(rng.integers(2**62)))
        r = torch.randn(d, _PROJECT_DIM, generator=g, dtype=x.dtype).to(x.device) / math.sqrt(_PROJECT_DIM)
        with torch_threads(mm_threads):
            y = x @ r
        sqy = (y * y).sum(1)
    sq = sqy.double().cpu().numpy()
    first = int(rng.integers(n))
    idx = [first]
    closest = np.maximum(sq + sq[first] - 2.0 * (y @ y[first]).double().cpu().numpy(), 0.0)
    for _ in range(1, k):
        cum = np.cumsum(closest)
        if cum[-1] <= 0:  # fewer distinct rows than clusters: any unused row will do
            unused = np.setdiff1d(np.arange(n), idx)
            idx.append(int(unused[rng.integers(unused.size)]))
            continue
        cand = np.minimum(np.searchsorted(cum, rng.random(trials) * cum[-1]), n - 1)
        dots = (y[torch.from_numpy(cand).to(x.device)] @ y.T).double().cpu().numpy()
        dc = sq[None, :] + sq[cand][:, None] - 2.0 * dots
        np.maximum(dc, 0.0, out=dc)
        np.minimum(dc, closest[None, :], out=dc)
        b = int(np.argmin(dc.sum(1)))
        closest = dc[b]
        idx.append(int(cand[b]))
    return idx


# --------------------------------------------------------------------------- Lloyd
def _greedy_balanced(d: np.ndarray, s: int) -> np.ndarray:
    """A balanced start: rows take their nearest non-full cluster, closest first."""
    n, k = d.shape
    labels = np.full(n, -1, dtype=np.int64)
    cap = np.full(k, s, dtype=np.int64)
    todo = np.arange(n)
    while todo.size:
        du = d[todo]
        du[:, cap == 0] = np.inf
        best = du.argmin(1)
        val = du[np.arange(todo.size), best]
        order = np.lexsort((val, best))
        b = best[order]
        counts = np.bincount(b, minlength=k)
        rank = np.arange(order.size) - (np.cumsum(counts) - counts)[b]
        ok = rank < cap[b]
        labels[todo[order[ok]]] = b[ok]
        cap -= np.bincount(b[ok], minlength=k)
        todo = todo[order[~ok]]
    return labels


def _pred_cycles(pred: np.ndarray) -> list[np.ndarray]:
    """Cycles of the functional graph v -> pred[v] (pred -1 = none), as node arrays with
    cyc[j + 1] = pred[cyc[j]]."""
    k = len(pred)
    p = np.append(np.where(pred < 0, k, pred), k)
    z = p
    for _ in range(max(1, int(k).bit_length())):  # z = p^(2^m), 2^m > k: every node lands on a cycle or k
        z = z[z]
    cycles, seen = [], np.zeros(k + 1, dtype=bool)
    for r in np.unique(z[:k]):
        if r == k or seen[r]:
            continue
        cyc = [r]
        v = p[r]
        while v != r:
            cyc.append(v)
            v = p[v]
        seen[cyc] = True
        cycles.append(np.array(cyc))
    return cycles


def _optimal_assignment(d: np.ndarray, labels: np.ndarray, k: int, s: int, tol: float) -> np.ndarray:
    """Min-cost equal-size assignment for costs d [N, K], warm-started from ``labels``.

    Negative-cycle cancelling on the cluster graph (see module docstring). Each cancelled
    cycle lowers sum_i d[i, labels[i]] by more than ``tol``, so the loop terminates.
    """
    labels = labels.copy()
    members = np.argsort(labels, kind="stable").reshape(k, s)
    wt = np.empty((k, k))                 # wt[b, a]: cheapest cost change moving a member of a to b
    arg = np.empty((k, k), dtype=np.int64)  # arg[a, b]: that member's position in members[a]
    slots = np.arange(s)

    def update_rows(rows: np.ndarray) -> None:
        dm = d[members[rows]]                                    # [r, s, K]
        own = dm[np.arange(len(rows))[:, None], slots[None, :], rows[:, None]]
        delta = dm - own[..., None]
        am = delta.argmin(1)                                     # [r, K]
        ww = np.take_along_axis(delta, am[:, None, :], 1)[:, 0, :]
        ww[np.arange(len(rows)), rows] = np.inf
        wt[:, rows] = ww.T
        arg[rows] = am

    update_rows(np.arange(k))
    while True:
        dist = np.zeros(k)
        pred = np.full(k, -1, dtype=np.int64)
        negative = []
        for _ in range(2 * k + 2):                               # Bellman-Ford from a virtual source
            cand = wt + dist[None, :]
            am = cand.argmin(1)
            m = np.take_along_axis(cand, am[:, None], 1)[:, 0]
            upd = m < dist - tol
            if not upd.any():
                break
            dist[upd] = m[upd]
            pred[upd] = am[upd]
            negative = [c for c in _pred_cycles(pred) if wt[c, pred[c]].sum() < -tol]
            if negative:
                break
        if not negative:
            return labels
        for cyc in negative:
            # edge pred[v] -> v moves members[pred[v], arg[pred[v], v]] to v; it takes the slot of
            # v's own leaving member (edge v -> cyc[j - 1]).
            src = pred[cyc]
            free = arg[src, cyc]
            pts = members[src, free]
            labels[pts] = cyc
            members[cyc, np.roll(free, 1)] = pts
        update_rows(np.unique(np.concatenate(negative)))


class _PairTable:
    """Fixed pairwise data for the swap refinement: -2/s * |x_i - x_j|^2, [N, N] in the features' dtype."""

    def __init__(self, x: torch.Tensor, sqx: torch.Tensor, k: int, s: int):
        p = torch.addmm(sqx[:, None] + sqx[None, :], x, x.T, alpha=-2.0)
        self.neg_p = p.clamp_min_(0).mul_(-2.0 / s)
        self.x, self.sqx, self.k, self.s = x, sqx, k, s


def _swap_refine(pair: _PairTable, labels: np.ndarray, tol: float, max_rounds: int | None = None) -> tuple[np.ndarray, int]:
    """Exact best-improvement pair swaps (Hartigan-style, sizes kept). Returns (labels, swaps).

    Rows live in "slots" (slot = cluster * s + position). ``nb[a, c, i, j]`` holds
    -2/s |x_(a,i) - x_(c,j)|^2 blocked by cluster pair, so the best swap of a pair a < c
    is a contiguous min over s * s values. ``best[a * K + c]`` caches it; after a round of
    disjoint swaps only the pairs that involve a touched cluster are recomputed. A swap
    exchanges two slots: their rows and columns of ``nb``, their rows of the data.
    """
    x, k, s = pair.x, pair.k, pair.s
    n = x.shape[0]
    dev = x.device
    ss = s * s
    perm = torch.from_numpy(np.argsort(labels, kind="stable")).to(dev)   # slot -> row
    xs = x.index_select(0, perm)
    sq = pair.sqx.index_select(0, perm)
    nb = (pair.neg_p.index_select(0, perm).index_select(1, perm)
          .view(k, s, k, s).permute(0, 2, 1, 3).contiguous())
    nb_pairs = nb.view(k * k, s, s)
    ar_k = torch.arange(k, device=dev)
    sums = xs.view(k, s, -1).sum(1)                                       # cluster sums [K, D]
    xmt = (sums / s) @ xs.T                                               # mu_c . x_slot  [K, N]
    own_idx = ar_k.repeat_interleave(s)
    best = torch.full((k * k,), math.inf, dtype=x.dtype, device=dev)                     # best[a * K + c], a < c
    upper = torch.triu(torch.ones(k, k, dtype=torch.bool, device=dev), 1)
    touched = ar_k
    n_swaps = 0
    for rnd in range(max_rounds or 50 * k + 1000):
        if rnd % 32 == 31:  # refresh the incrementally updated sums and dot products
            sums = xs.view(k, s, -1).sum(1)
            xmt = (sums / s) @ xs.T
        mu2 = (sums * sums).sum(1) / (s * s)
        dist_t = mu2[:, None] + sq[None, :] - 2.0 * xmt                   # [K, N] squared distances
        u_t = dist_t - dist_t.gather(0, own_idx[None, :])                 # u_t[c, i]: cost of i joining c
        v = u_t.view(k * k, s)                                            # v[a*K + c, j] = u_t[a, (c, j)]
        w = u_t.view(k, k, s).transpose(0, 1).contiguous().view(k * k, s)  # w[a*K + c, i] = u_t[c, (a, i)]
        # pairs a < c that involve a touched cluster: their best swap may have changed
        hit = torch.zeros(k, dtype=torch.bool, device=dev)
        hit[touched] = True
        pairs = torch.nonzero(((hit[:, None] | hit[None, :]) & upper).view(-1)).squeeze(1)
        r = nb_pairs.index_select(0, pairs)                               # [P, i in a, j in c]
        r += v.index_select(0, pairs).unsqueeze(1)
        r += w.index_select(0, pairs).unsqueeze(2)                        # inertia change of each swap
        best.index_copy_(0, pairs, r.view(len(pairs), ss).amin(1))
        neg = torch.nonzero(best < -tol).squeeze(1)
        if neg.numel() == 0:
            break
        used = [False] * k
        pa, pc = [], []
        neg = neg[torch.argsort(best[neg], stable=True)]                  # most improving first
        for a, c in zip((neg // k).tolist(), (neg % k).tolist()):
            if not (used[a] or used[c]):
                used[a] = used[c] = True
                pa.append(a)
                pc.append(c)
                if 2 * len(pa) + 1 >= k:
                    break
        m = len(pa)
        ta = torch.tensor(pa, device=dev)
        tc = torch.tensor(pc, device=dev)
        sel = ta * k + tc
        blk = (nb_pairs.index_select(0, sel) + v.index_select(0, sel).unsqueeze(1)
               + w.index_select(0, sel).unsqueeze(2))                     # [m, i in a, j in c]
        arg = blk.view(m, ss).argmin(1)
        p = ta * s + arg // s
        q = tc * s + arg % s
        pq = torch.cat([p, q])
        qp = torch.cat([q, p])
        ca, ia = qp // s, qp % s
        rows = nb[ca, :, ia, :].view(2 * m, n)                            # old rows of q..., p...
        # mu_a moves by (x_q - x_p) / s, so x . mu_a by (x . x_q - x . x_p) / s, where
        # x_slot . x_j = (sq_slot + sq_j + s/2 * nb[slot, j]) / 2
        step = (rows[:m] - rows[m:]) * (s / 2.0)
        step += (sq.index_select(0, q) - sq.index_select(0, p))[:, None]
        step /= 2.0 * s                                                   # [m, N]: x . (x_q - x_p) / s
        xmt.index_add_(0, ta, step)
        xmt.index_add_(0, tc, step, alpha=-1.0)
        dx = xs.index_select(0, q) - xs.index_select(0, p)
        sums.index_add_(0, ta, dx)
        sums.index_add_(0, tc, dx, alpha=-1.0)
        # exchange the slots: data rows, centroid dots, and the (symmetric) pair table
        perm.index_copy_(0, pq, perm.index_select(0, qp))
        xs.index_copy_(0, pq, xs.index_select(0, qp))
        sq.index_copy_(0, pq, sq.index_select(0, qp))
        xmt.index_copy_(1, pq, xmt.index_select(1, qp))
        rows.index_copy_(1, pq, rows.index_select(1, qp))                 # new rows of p..., q...
        new_rows = rows.view(2 * m, k, s)
        ca, ia = pq // s, pq % s
        nb[ca, :, ia, :] = new_rows
        nb[:, ca, :, ia] = new_rows                                       # symmetric: columns = rows
        n_swaps += m
        touched = torch.cat([ta, tc])
    out = np.empty(n, dtype=np.int64)
    out[perm.cpu().numpy()] = np.repeat(np.arange(k), s)
    return out, n_swaps


def _single_run(prob: _Problem, rng: np.random.Generator, n_iter: int) -> np.ndarray:
    """k-means++ seeding, exact balanced Lloyd, then (if prob.pair) swaps, alternating."""
    x, k, s, tol = prob.x, prob.k, prob.s, prob.tol
    idx = _kmeanspp(x, prob.sqx, k, rng, prob.mm_threads, prob.pair)
    d = prob.sqdist(x[torch.as_tensor(idx, device=x.device)])
    labels = _greedy_balanced(d, s)
    for _ in range(8):  # alternate Lloyd and swaps until neither moves anything
        for it in range(n_iter):
            new = _optimal_assignment(d, labels, k, s, tol)
            if it > 0 and np.array_equal(new, labels):
                break
            labels = new
            d = prob.sqdist(prob.means(labels))
        if prob.pair is None:
            break
        labels, n_swaps = _swap_refine(prob.pair, labels, tol=1e3 * tol)
        if n_swaps == 0:
            break
        d = prob.sqdist(prob.means(labels))
        new = _optimal_assignment(d, labels, k, s, tol)
        if np.array_equal(new, labels):
            break
        labels = new
        d = prob.sqdist(prob.means(labels))
    return labels


# --------------------------------------------------------------------------- co-activation
def coactivation_partition(coactivation, n_clusters: int, seed: int = 0, n_components: int | None = None) -> np.ndarray:
    """Equal-size groups of neurons that fire together: int64 labels [N].

    coactivation: symmetric non-negative [N, N] counts (tokens on which neurons i and j
    were both active; numpy or torch). Method (normalised spectral clustering, Ng,
    Jordan & Weiss 2002, with the k-means step made equal-size): the affinity
    ``A = (C + C^T) / 2`` with a zero diagonal is normalised to ``D^-1/2 A D^-1/2``
    (``D`` = row sums); its ``n_components`` leading eigenvectors (default
    ``min(n_clusters, 64)``; dense ``eigh`` for N <= 512, else ARPACK Lanczos from a
    seeded start vector: about 1-2 s for N = 2048) give each neuron a coordinate row,
    rows are scaled to unit length and grouped by ``balanced_kmeans``. The normalisation
    keeps neurons that fire on many tokens from attracting everything. Neurons that never
    co-fire (zero rows) end up wherever the balance puts them.
    """
    c = coactivation.detach().cpu().numpy() if isinstance(coactivation, torch.Tensor) else np.asarray(coactivation)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"coactivation must be a square [N, N] matrix, got shape {c.shape}")
    n = c.shape[0]
    _check_sizes(n, n_clusters)
    k = int(n_clusters)
    a = np.array(c, dtype=np.float64)  # a copy, normalised in place below
    if not np.isfinite(a).all():
        raise ValueError("coactivation contains NaN or infinite values")
    if (a < 0).any():
        raise ValueError("coactivation counts must be non-negative")
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    a += a.T
    a *= 0.5
    np.fill_diagonal(a, 0.0)
    deg = a.sum(1)
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0)), 0.0)
    a *= inv[:, None]
    a *= inv[None, :]
    lap = a
    m = int(n_components) if n_components is not None else min(k, 64)
    m = max(1, min(m, n - 2))
    if n <= 512:
        import scipy.linalg

        _, vec = scipy.linalg.eigh(lap, subset_by_index=[n - m, n - 1])
    else:  # Lanczos (ARPACK) for the m largest eigenpairs, from a seeded start vector
        import scipy.sparse.linalg

        v0 = np.random.default_rng(seed).standard_normal(n)
        _, vec = scipy.sparse.linalg.eigsh(lap, k=m, which="LA", v0=v0, tol=1e-8)
    emb = vec[:, ::-1]
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = np.where(norms > 0, emb / np.where(norms > 0, norms, 1.0), 0.0)
    return balanced_kmeans(emb, k, seed=seed)
