"""Spectra, traces and diagonals of H and G from block products (ALGORITHMS §6).

- ``eigsh``: extreme eigenpairs by block Lanczos with full reorthogonalisation (§6.5).
- ``trace``: Hutchinson and Hutch++ (§6.2–6.3), or exact.
- ``diagonal``: exact (G from the GNH precomputation), Hutchinson, or Becker–LeCun (§5.3, §6.1–6.2).
- ``slq`` and ``spectral_density``: stochastic Lanczos quadrature, PyHessian's density (§6.4).

Only the public ``Curvature`` products are used, so every engine serves. Random probes come from
``numpy.random.default_rng(seed)``: the same seed gives the same answer. Lanczos and the probe sums are
carried in float64 whatever the snapshot's dtype (ALGORITHMS §8.3).
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from ._arrays import as_float, as_int, as_real, to_host
from .linalg import check_curvature, check_kind, product

if TYPE_CHECKING:
    from .curvature import Curvature

_WHICH = ("LA", "SA", "LM")


def _seed(seed: Any) -> int | None:
    return None if seed is None else as_int(seed, "seed", low=0)


def _rademacher(rng: np.random.Generator, N: int, m: int) -> np.ndarray:
    """m Rademacher probes as the columns of an (N, m) array, drawn probe by probe.

    Drawn as rows and transposed, so that blocks drawn one after another equal one draw of all of them:
    how the probes are split into blocks does not change them.
    """
    return np.ascontiguousarray(rng.integers(0, 2, size=(m, N)).T, dtype=np.float64) * 2 - 1


def _orthonormal_complement(rng: np.random.Generator, basis: np.ndarray, count: int) -> np.ndarray:
    """``count`` random unit vectors orthogonal to the columns of ``basis`` and to each other."""
    V = rng.standard_normal((basis.shape[0], count))
    for _ in range(2):
        V -= basis @ (basis.T @ V)
    return np.linalg.qr(V)[0]


# ---- eigenpairs -------------------------------------------------------------------------------------
_BREAKDOWN = 1e-12  # a new Krylov direction shorter than this, relative to max|θ|, counts as none


def eigsh(c: Curvature, k: int = 5, kind: str = "hessian", which: str = "LA", tol: float = 1e-8,
          maxiter: int | None = None, block_size: int | None = None, seed: int | None = 0,
          ) -> tuple[np.ndarray, np.ndarray]:
    r"""The k extreme eigenpairs of H or G by block Lanczos on block products.

    Each step multiplies a block of b vectors at once (one ``hvp``/``gnvp`` call), reorthogonalises the
    new block twice against the whole basis, and checks the Ritz pairs: a pair (θ, x) has converged when
    its residual :math:`\lVert A x - θ x\rVert`, read off the next block coefficient, is at most
    ``tol``·max|θ|. The eigenvalue error is then below the residual and, for a simple eigenvalue, about
    residual²/gap. Once the basis spans all N dimensions the answer is exact. Cost: one block product and
    O(N·m·b) reorthogonalisation flops per step for a basis of m vectors; memory N·m.

    A Krylov space started from b vectors holds at most b copies of a repeated eigenvalue until it closes
    (spans an invariant subspace), so:

    - When it closes, the search goes on from fresh random directions orthogonal to the basis. If A acts
      on that complement as one multiple of the identity (checked on b random vectors there), every
      remaining eigenvalue is that number and the answer is complete: the null space of a GNH is found
      this way, however large.
    - When a wanted eigenvalue ahead of the last wanted one appears max(2, b) times, it may have more
      copies, and the search goes on until the Krylov space closes. With the default b = k this never
      happens.
    - With b = 1, one copy of a repeated eigenvalue looks like a simple eigenvalue, and the other copies
      are missed if the pairs converge before the space closes. Where the wanted eigenvalues may repeat
      (the zeros of a GNH for ``which="SA"``), take ``block_size`` ≥ 2, at best their multiplicity.

    Args:
        c: the snapshot.
        k: how many eigenpairs, 1 ≤ k ≤ N.
        kind: "hessian" or "gnh".
        which: "LA" (largest algebraic, the default), "SA" (smallest algebraic: the most negative
            curvature of an indefinite H) or "LM" (largest magnitude).
        tol: relative residual tolerance.
        maxiter: block steps at most, with maxiter·b ≥ k (default: a basis of min(N, max(200, 10·k))
            vectors).
        block_size: b, the width of each block (default k).
        seed: seed of the random starting block.

    Returns:
        ``(vals, vecs)``: vals (k,) float64, most extreme first (descending for "LA" and, by magnitude,
        "LM"; ascending for "SA"); vecs (N, k) orthonormal eigenvectors in the snapshot's dtype. A
        ``RuntimeWarning`` says so if ``maxiter`` ran out before every pair converged, or before the
        search for more copies of a repeated eigenvalue ended.

    Raises:
        ValueError: for k outside [1, N], an unknown ``which``, or maxiter·block_size < k.
        TypeError: for a ``which`` that is not a string.

    Example:
        >>> import numpy as np, pyhessk as hk
        >>> net = hk.MLP([3, 4, 2], loss="mse", backend="numpy")
        >>> rng = np.random.default_rng(0)
        >>> c = net.linearize(net.init(seed=0), rng.standard_normal((6, 3)), rng.standard_normal((6, 2)))
        >>> vals, vecs = hk.eigsh(c, k=3, kind="gnh")
        >>> bool(np.allclose(vals, np.linalg.eigvalsh(c.gnh())[::-1][:3]))
        True
    """
    mul = product(c, kind)
    N = c.num_params
    k = as_int(k, "k", low=1)
    if k > N:
        raise ValueError(f"k must be at most num_params = {N}, got {k}")
    if not isinstance(which, str):
        raise TypeError(f"which must be a string, one of {list(_WHICH)}, got {type(which).__name__}")
    if which not in _WHICH:
        raise ValueError(f"which must be one of {list(_WHICH)}, got {which!r}")
    tol = as_real(tol, "tol", low=0.0)
    b = min(N, k if block_size is None else as_int(block_size, "block_size", low=1))
    if maxiter is None:
        maxiter = max(1, -(-min(N, max(200, 10 * k)) // b))
    maxiter = as_int(maxiter, "maxiter", low=1)
    if maxiter * b < k:
        raise ValueError(f"maxiter·block_size must be at least k = {k} (the basis must hold k vectors), got "
                         f"maxiter={maxiter} and block_size={b}")
    rng = np.random.default_rng(_seed(seed))

    Qs = [np.linalg.qr(rng.standard_normal((N, b)))[0]]
    AQ: np.ndarray | None = None  # A·Qs[-1] when it is already known
    diag_blocks: list[np.ndarray] = []
    off_blocks: list[np.ndarray] = []  # off_blocks[j] couples block j+1 to block j: A Q_j ∋ Q_{j+1} B_j
    seg = 0  # the basis columns before seg span an invariant subspace; those from seg on are still growing
    unconverged = (f"{k} eigenpairs did not all reach tol={tol} within maxiter={maxiter} block steps "
                   "(raise maxiter or tol)")
    problem = ""  # why the pairs in hand are not yet the answer
    for step in range(maxiter):
        problem = unconverged
        Q = Qs[-1]
        W = mul(Q) if AQ is None else AQ
        AQ = None
        Aj = Q.T @ W
        Aj = 0.5 * (Aj + Aj.T)
        W -= Q @ Aj
        if off_blocks:
            W -= Qs[-2] @ off_blocks[-1].T
        basis = np.hstack(Qs)
        for _ in range(2):  # full reorthogonalisation, twice is enough
            W -= basis @ (basis.T @ W)
        diag_blocks.append(Aj)
        size = basis.shape[1]
        room = N - size
        T = _block_tridiagonal(diag_blocks, off_blocks)
        vals, Y = np.linalg.eigh(T)
        order = _select(vals, which)[:k]
        vals_k, Y_k = vals[order], Y[:, order]
        if room == 0:
            problem = ""
            break
        scale = max(float(np.abs(vals).max()), np.finfo(np.float64).tiny)
        U, S, Vt = np.linalg.svd(W, full_matrices=False)
        width = min(U.shape[1], room)
        U, S, Vt = U[:, :width], S[:width], Vt[:width]
        small = S <= _BREAKDOWN * scale
        if small.all():  # the Krylov space closed: go on in its complement, which A maps into itself
            F = _orthonormal_complement(rng, basis, min(b, room))
            AF = mul(F)
            theta = float(np.einsum("ij,ij->", F, AF)) / F.shape[1]
            if np.linalg.norm(AF - theta * F, axis=0).max() <= max(tol / math.sqrt(room), _BREAKDOWN) * scale:
                vals_k, vecs = _with_scalar_complement(vals, Y, basis, F, theta, k, which, rng)
                return vals_k.astype(np.float64), vecs.astype(c.dtype)
            if step == maxiter - 1:
                problem = (f"the Krylov space closed at {size} vectors in the last of maxiter={maxiter} block steps, "
                           "and its complement, where more of the wanted eigenvalues may lie, was not searched "
                           "(raise maxiter)")
                break
            off_blocks.append(np.zeros((F.shape[1], Q.shape[1])))
            Qs.append(F)
            AQ = AF
            seg = size
            continue
        if small.any():  # part of the block closed: fresh directions take its place
            S = np.where(small, 0.0, S)
            U[:, small] = _orthonormal_complement(rng, np.hstack([basis, U[:, ~small]]), int(small.sum()))
        Bj = S[:, None] * Vt
        if size >= k and not small.any():  # fresh directions get one step before anything counts as found
            resid = np.linalg.norm(Bj @ Y_k[-Q.shape[1]:], axis=0)
            if np.all(resid <= tol * scale) and (seg == 0 or _segment_converged(T[seg:, seg:], Bj, which,
                                                                                 tol * scale)):
                repeated = _repeated(vals, vals_k, which, b, max(2 * tol, _BREAKDOWN) * scale)
                if repeated is None:
                    problem = ""
                    break
                problem = (f"the eigenvalue {repeated:.6g} appeared {max(2, b)} times among the wanted ones and may "
                           f"have more copies, which the Krylov space did not reach within maxiter={maxiter} block "
                           "steps (raise block_size to its multiplicity, or maxiter)")
        if step == maxiter - 1:
            break
        off_blocks.append(Bj)
        Qs.append(U)
    if problem:
        warnings.warn(f"eigsh: {problem}", RuntimeWarning, stacklevel=2)
    vecs = basis @ Y_k
    return vals_k.astype(np.float64), vecs.astype(c.dtype)


def _select(vals: np.ndarray, which: str) -> np.ndarray:
    if which == "LA":
        return np.argsort(-vals, kind="stable")
    if which == "SA":
        return np.argsort(vals, kind="stable")
    return np.argsort(-np.abs(vals), kind="stable")


def _segment_converged(T: np.ndarray, Bj: np.ndarray, which: str, bound: float) -> bool:
    """Whether the growing part of the basis has found its own extreme eigenvalues (for "LM", both ends).

    Before its extremes converge, its Ritz values may still move out past the wanted ones.
    """
    theta, Y = np.linalg.eigh(T)
    ends = {"LA": [-1], "SA": [0], "LM": [0, -1]}[which]
    return bool(np.all(np.linalg.norm(Bj @ Y[-Bj.shape[1]:, ends], axis=0) <= bound))


def _repeated(vals: np.ndarray, wanted: np.ndarray, which: str, b: int, close: float) -> float | None:
    """A wanted eigenvalue, ahead of the last wanted one, that the Ritz values hold max(2, b) times, or None.

    A Krylov space from b start vectors holds at most b copies of an eigenvalue until it closes: such an
    eigenvalue may have more, which would push the last wanted ones out.
    """
    key = np.abs if which == "LM" else (lambda x: x)
    for theta in wanted:
        if abs(key(theta) - key(wanted[-1])) <= close:
            return None
        if np.count_nonzero(np.abs(vals - theta) <= close) >= max(2, b):
            return float(theta)
    return None


def _with_scalar_complement(vals: np.ndarray, Y: np.ndarray, basis: np.ndarray, F: np.ndarray, theta: float,
                            k: int, which: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The k wanted pairs when A = θ·I on the complement of the (invariant) basis, F orthonormal in it."""
    room = basis.shape[0] - basis.shape[1]
    allvals = np.concatenate([vals, np.full(room, theta)])
    order = _select(allvals, which)[:k]
    outside = order >= vals.size
    count = int(outside.sum())
    if count > F.shape[1]:
        F = np.hstack([F, _orthonormal_complement(rng, np.hstack([basis, F]), count - F.shape[1])])
    vecs = np.empty((basis.shape[0], k))
    vecs[:, ~outside] = basis @ Y[:, order[~outside]]
    vecs[:, outside] = F[:, :count]
    return allvals[order], vecs


def _block_tridiagonal(diag_blocks: list[np.ndarray], off_blocks: list[np.ndarray]) -> np.ndarray:
    sizes = [D.shape[0] for D in diag_blocks]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    T = np.zeros((starts[-1], starts[-1]))
    for j, D in enumerate(diag_blocks):
        T[starts[j]:starts[j + 1], starts[j]:starts[j + 1]] = D
    for j, B in enumerate(off_blocks):
        T[starts[j + 1]:starts[j + 2], starts[j]:starts[j + 1]] = B
        T[starts[j]:starts[j + 1], starts[j + 1]:starts[j + 2]] = B.T
    return T


# ---- stochastic Lanczos quadrature ------------------------------------------------------------------
def slq(c: Curvature, kind: str = "hessian", runs: int = 4, steps: int = 60, seed: int | None = 0,
        start: Any = None) -> tuple[np.ndarray, np.ndarray]:
    r"""Gauss quadrature nodes and weights of stochastic Lanczos quadrature (ALGORITHMS §6.4).

    Run r starts from a normalised Rademacher vector v_r (or the given ``start`` column), takes ``steps``
    Lanczos steps with full reorthogonalisation, and eigendecomposes the tridiagonal T = U Θ Uᵀ: the
    nodes are θ and the weights τ = U[0, :]². For every p ≤ 2·steps − 1,
    :math:`\sum_i τ_{r,i} θ_{r,i}^p = v_rᵀ A^p v_r` (Gauss quadrature is exact to that degree). All runs
    advance together: each Lanczos step is one block product over the runs. A run whose Krylov space
    closes early (β = 0) stops there; its remaining weights are 0 and the quadrature is then exact for
    every p.

    Args:
        c: the snapshot.
        kind: "hessian" or "gnh".
        runs: number of start vectors n_v.
        steps: Lanczos steps m per run (at most N are taken).
        seed: seed of the Rademacher start vectors.
        start: optional start vectors (N,) or (N, runs), nonzero and finite, normalised here (the array
            given is not modified); replaces ``runs`` and ``seed``.

    Returns:
        ``(nodes, weights)``, each (runs, m) float64; each row of weights sums to 1.
    """
    mul = product(c, kind)
    N = c.num_params
    if start is None:
        runs = as_int(runs, "runs", low=1)
        V = _rademacher(np.random.default_rng(_seed(seed)), N, runs)
    else:
        V = np.array(as_float(start, "start", None), dtype=np.float64)
        V = V[:, None] if V.ndim == 1 else V
        if V.ndim != 2 or V.shape[0] != N or V.shape[1] == 0 or not np.all(np.any(V, axis=0)):
            raise ValueError(f"start must be nonzero vectors of shape ({N},) or ({N}, runs), got {np.shape(start)}")
        runs = V.shape[1]
        V /= np.abs(V).max(axis=0)  # first to the largest entry 1: the norm below neither overflows nor underflows
    m = min(as_int(steps, "steps", low=1), N)
    V /= np.linalg.norm(V, axis=0)
    Q = np.zeros((m, N, runs))
    alpha = np.zeros((runs, m))
    beta = np.zeros((runs, m))
    length = np.full(runs, m)
    Q[0] = V
    active = np.ones(runs, dtype=bool)
    for j in range(m):
        cols = np.flatnonzero(active)
        if cols.size == 0:
            break
        W = mul(Q[j][:, cols])
        a = np.einsum("ij,ij->j", Q[j][:, cols], W)
        alpha[cols, j] = a
        W -= Q[j][:, cols] * a
        if j > 0:
            W -= Q[j - 1][:, cols] * beta[cols, j - 1]
        for _ in range(2):
            W -= np.einsum("jnr,jr->nr", Q[:j + 1, :, cols], np.einsum("jnr,nr->jr", Q[:j + 1, :, cols], W))
        bn = np.linalg.norm(W, axis=0)
        if j == m - 1:
            break
        scale = np.abs(alpha[cols, : j + 1]).max(axis=1) + np.abs(beta[cols, :j]).max(axis=1, initial=0.0)
        done = bn <= 1e-12 * np.maximum(scale, np.finfo(np.float64).tiny)
        length[cols[done]] = j + 1
        active[cols[done]] = False
        keep = ~done
        beta[cols[keep], j] = bn[keep]
        Q[j + 1][:, cols[keep]] = W[:, keep] / bn[keep]
    nodes = np.zeros((runs, m))
    weights = np.zeros((runs, m))
    for r in range(runs):
        L = length[r]
        T = np.diag(alpha[r, :L]) + np.diag(beta[r, : L - 1], 1) + np.diag(beta[r, : L - 1], -1)
        theta, U = np.linalg.eigh(T)
        nodes[r, :L] = theta
        nodes[r, L:] = theta[-1]
        weights[r, :L] = U[0] ** 2
    return nodes, weights


_MIN_BINS = 38  # 36 spacings of σ/3 for the ±6σ margins, and at least one for the spectrum between them


def spectral_density(c: Curvature, kind: str = "hessian", runs: int = 4, steps: int = 60, seed: int | None = 0,
                     num_bins: int = 10000, sigma_squared: float = 1e-5, overhead: float = 0.01,
                     start: Any = None) -> tuple[np.ndarray, np.ndarray]:
    r"""The eigenvalue density of H or G by stochastic Lanczos quadrature, Gaussian-broadened on a grid.

    With the nodes θ and weights τ of ``slq``,
    :math:`φ(t) = \frac{1}{n_v}\sum_r \sum_i τ_{r,i}\, g_σ(t - θ_{r,i})`, g_σ the normal density with
    variance σ² = ``sigma_squared``·max(1, w), w = λ_max − λ_min the range of the nodes, as PyHessian
    reports it (Ghorbani et al. 2019). The grid runs from λ_min to λ_max widened by ``overhead`` and by
    6σ, so φ integrates to 1 (to about 1e-8). σ is also kept at least 3 grid spacings, so that a sum over
    the grid resolves each Gaussian: with h = (w + 2·overhead + 12σ)/(num_bins − 1) that is
    σ ≥ 3(w + 2·overhead)/(num_bins − 37), and σ is the larger of the two bounds.

    Args:
        c: the snapshot.
        kind: "hessian" or "gnh".
        runs: start vectors n_v (PyHessian's n_v).
        steps: Lanczos steps per run (PyHessian's iter).
        seed: seed of the start vectors.
        num_bins: grid points, at least 38 (the ±6σ margins alone take 36 spacings of σ/3).
        sigma_squared: the kernel variance before scaling by the spectral range, > 0.
        overhead: margin added to both ends of the grid, ≥ 0.
        start: optional explicit start vectors, as in ``slq``.

    Returns:
        ``(grid, density)``, each (num_bins,) float64.

    Raises:
        ValueError: for num_bins < 38, sigma_squared ≤ 0 or overhead < 0 (checked before any product).
    """
    num_bins = as_int(num_bins, "num_bins")
    if num_bins < _MIN_BINS:
        raise ValueError(f"num_bins must be at least {_MIN_BINS} (the grid spans ±6σ around the spectrum with σ at "
                         f"least 3 grid spacings), got {num_bins}")
    sigma_squared = as_real(sigma_squared, "sigma_squared", low=0.0, open_low=True)
    overhead = as_real(overhead, "overhead", low=0.0)
    nodes, weights = slq(c, kind, runs, steps, seed, start)
    lo, hi = float(nodes.min()), float(nodes.max())
    width = hi - lo
    sigma = max(math.sqrt(sigma_squared * max(1.0, width)), 3 * (width + 2 * overhead) / (num_bins - 37))
    grid = np.linspace(lo - overhead - 6 * sigma, hi + overhead + 6 * sigma, num_bins)
    density = np.zeros(num_bins)
    norm = 1.0 / (sigma * math.sqrt(2 * math.pi) * nodes.shape[0])
    for theta, tau in zip(nodes.ravel(), weights.ravel()):
        if tau > 0:
            density += tau * np.exp(-0.5 * ((grid - theta) / sigma) ** 2)
    return grid, density * norm


# ---- traces -----------------------------------------------------------------------------------------
def trace(c: Curvature, kind: str = "hessian", method: str = "hutch++", probes: int = 30, seed: int | None = 0,
          block_size: int = 64) -> float:
    r"""tr(H) or tr(G), exact or estimated from ``probes`` block-product columns.

    - ``"hutchinson"``: :math:`\frac1m\sum_j v_jᵀ A v_j` with Rademacher v_j; unbiased, variance
      :math:`\frac2m(\lVert A\rVert_F^2 - \sum_i A_{ii}^2)`.
    - ``"hutch++"`` (Meyer, Musco, Musco, Woodruff 2021): m/3 products sketch the range, Q = orth(A S);
      then :math:`\mathrm{tr}(QᵀAQ) + \frac{1}{m_3}\mathrm{tr}(G_pᵀ(I-QQᵀ)A(I-QQᵀ)G_p)` with the remaining
      probes. Unbiased; exact when rank A ≤ m/3; for PSD A (G) the relative error falls as 1/m rather
      than 1/√m.
    - ``"exact"``: the sum of ``diagonal(c, kind, "exact")`` (cheap for G; N products for H).

    Args:
        c: the snapshot.
        kind: "hessian" or "gnh".
        method: "hutch++" (default), "hutchinson" or "exact".
        probes: m, the number of matrix-vector products (at least 3 for Hutch++).
        seed: seed of the probes.
        block_size: columns per block product (bounds the memory; the probes, and so the estimate, do
            not depend on it).

    Returns:
        The trace as a Python float.
    """
    c = check_curvature(c)
    kind = check_kind(kind)
    block_size = as_int(block_size, "block_size", low=1)
    if method == "exact":
        return float(np.sum(diagonal(c, kind, "exact", block_size=block_size), dtype=np.float64))
    if method not in ("hutchinson", "hutch++"):
        raise ValueError(f"method must be 'hutch++', 'hutchinson' or 'exact', got {method!r}")
    mul = _chunked(product(c, kind), block_size)
    N = c.num_params
    probes = as_int(probes, "probes", low=3 if method == "hutch++" else 1)
    rng = np.random.default_rng(_seed(seed))
    if method == "hutchinson":  # block by block: N·block_size numbers held, whatever the number of probes
        total = 0.0
        for s in range(0, probes, block_size):
            V = _rademacher(rng, N, min(block_size, probes - s))
            total += float(np.einsum("ij,ij->", V, mul(V)))
        return total / probes
    m3 = probes // 3
    S = _rademacher(rng, N, m3)
    G = _rademacher(rng, N, probes - 2 * m3)
    Q = np.linalg.qr(mul(S))[0]
    AQ = mul(Q)
    G -= Q @ (Q.T @ G)
    return float(np.einsum("ij,ij->", Q, AQ) + np.einsum("ij,ij->", G, mul(G)) / G.shape[1])


def _chunked(mul: Any, block_size: int) -> Any:
    def apply(V: np.ndarray) -> np.ndarray:
        if V.shape[1] <= block_size:
            return mul(V)
        return np.hstack([mul(V[:, s:s + block_size]) for s in range(0, V.shape[1], block_size)])

    return apply


# ---- diagonals --------------------------------------------------------------------------------------
def diagonal(c: Curvature, kind: str = "gnh", method: str = "exact", probes: int = 30, seed: int | None = 0,
             block_size: int = 64, data: tuple[Any, Any, Any] | None = None) -> np.ndarray:
    r"""diag(G) or diag(H): exact, Hutchinson, or Becker–LeCun.

    - ``"exact"``: for G, ``c.gnh_entries().diagonal()`` (the column norms of the GNH precomputation,
      O(n) per entry, BackPACK's DiagGGNExact); for H, the diagonals of N/``block_size`` block products
      H·[e_i …] (N products: affordable only for small N).
    - ``"hutchinson"``: :math:`\frac1m\sum_j v_j ⊙ A v_j` with Rademacher v_j; unbiased, entry i has
      variance :math:`\frac1m\sum_{k≠i} A_{ik}^2`.
    - ``"becker_lecun"``: the diagonal approximation of Becker & LeCun (Bishop §5.4.1), which drops the
      off-diagonal terms of ∂²E/∂z∂zᵀ while backpropagating; exact when the net has one layer, biased
      otherwise. It needs the layer activations, so pass ``data=(theta, X, Y)``, the arrays ``c`` was
      made from (see ``pyhessk.bishop.becker_lecun_diagonal``).

    Args:
        c: the snapshot.
        kind: "gnh" (default) or "hessian".
        method: "exact", "hutchinson" or "becker_lecun".
        probes: m, for "hutchinson".
        seed: seed of the probes.
        block_size: columns per block product (bounds the memory; the probes, and so the estimate, do
            not depend on it).
        data: (theta, X, Y) for "becker_lecun".

    Returns:
        The diagonal, (N,) in the snapshot's dtype.

    Raises:
        ValueError: for "becker_lecun" without ``data``, or with data whose loss differs from ``c.loss``.
    """
    c = check_curvature(c)
    kind = check_kind(kind)
    block_size = as_int(block_size, "block_size", low=1)
    N = c.num_params
    if method == "exact":
        if kind == "gnh":
            return to_host(c.gnh_entries().diagonal())  # the host, like every other result here
        out = np.empty(N, dtype=c.dtype)
        for s in range(0, N, block_size):
            e = min(N, s + block_size)
            E = np.zeros((N, e - s), dtype=c.dtype)
            E[np.arange(s, e), np.arange(e - s)] = 1
            out[s:e] = c.hvp(E)[np.arange(s, e), np.arange(e - s)]
        return out
    if method == "hutchinson":
        mul = product(c, kind)
        rng = np.random.default_rng(_seed(seed))
        probes = as_int(probes, "probes", low=1)
        acc = np.zeros(N)
        for s in range(0, probes, block_size):
            V = _rademacher(rng, N, min(block_size, probes - s))
            acc += np.einsum("ij,ij->i", V, mul(V))
        return (acc / probes).astype(c.dtype)
    if method == "becker_lecun":
        from .bishop import becker_lecun_diagonal

        if data is None:
            raise ValueError("method='becker_lecun' needs the layer activations: pass data=(theta, X, Y), the "
                             "arrays the snapshot was made from")
        if not isinstance(data, (tuple, list)):
            raise TypeError(f"data must be the tuple (theta, X, Y) the snapshot was made from, got {type(data).__name__}")
        if len(data) != 3:
            raise ValueError(f"data must be the tuple (theta, X, Y) the snapshot was made from, got {len(data)} items")
        theta, X, Y = data
        net = c.net
        loss = net.loss(theta, X, Y)
        if not math.isclose(loss, c.loss, rel_tol=1e-5, abs_tol=1e-12):
            raise ValueError(f"data=(theta, X, Y) gives loss {loss:.6g} but the snapshot's loss is {c.loss:.6g}: "
                             "pass the arrays the snapshot was made from")
        return becker_lecun_diagonal(net, theta, X, Y, kind=kind).astype(c.dtype)
    raise ValueError(f"method must be 'exact', 'hutchinson' or 'becker_lecun', got {method!r}")
