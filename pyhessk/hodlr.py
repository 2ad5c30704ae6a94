r"""Hierarchical (HODLR) compression of the damped Gauss–Newton matrix K = G + λI from its entries.

Chen, Reiz, Yu, Bungartz and Biros (SIMAX 2021) feed the entry oracle of SPEC §3 to a hierarchical-matrix
compressor (ALGORITHMS §4.5). This module is a small HODLR version of that idea:

- a binary tree over the parameter indices in their θ order, halved until a node has at most
  ``leaf_size`` indices (the layers are contiguous in θ, so each layer's weights and biases form natural
  clusters; no reordering is done);
- the diagonal blocks of the leaves are stored dense and exact (``e.block(I, I) + λI``);
- the off-diagonal block K[A, B] = G[A, B] of every internal node (children A and B) is compressed by
  adaptive cross approximation (ACA with partial pivoting, Bebendorf 2000), which reads batches of rows
  and columns through ``e.block`` and so never evaluates the whole block, let alone the N × N matrix,
  followed by a QR + SVD recompression that truncates to the tolerance and ``max_rank``. ACA stops when a
  sketch of its residual with a few Gaussian vectors (one block Gauss–Newton product ``c.gnvp`` with
  vectors that vanish outside B, per block) is below the tolerance; ACA's own norm estimate is not
  trusted, since it misses blocks with sparse structure (the output layer's weights under a diagonal
  output Hessian give such blocks). Blocks with a side of at most 32, and blocks whose rank would store
  as many numbers as the block itself, are read whole (and stored dense when they do not compress);
- a product K̃V costs O(N·r·log(N/m)) per column, and the solve K̃⁻¹B uses a recursive
  Sherman–Morrison–Woodbury factorization computed once (O(N·r²·log²(N/m))) and reused for every
  right-hand side.

The tolerance is relative per block: ‖G[A,B] − U Vᵀ‖_F ≤ tol·‖G[A,B]‖_F (both norms as the sketch estimates them),
so ‖K − K̃‖_F ≤ tol·‖K‖_F; the solve then satisfies K̃x = b exactly (a backward error of about tol) and its
forward error is at most about cond(K)·tol. All factors are held in host memory in float64, whatever the
snapshot's engine and dtype; products and solves take and return NumPy arrays in the snapshot's dtype.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.linalg as sla
from scipy.sparse.linalg import LinearOperator

from ._arrays import as_float, as_int, as_real, host_float64
from .linalg import check_curvature

if TYPE_CHECKING:
    from .curvature import Curvature

DEFAULT_LEAF_SIZE = 64
_PROBES = 8  # Gaussian vectors that sketch each block's residual (its norm to within about ±50%)
_READ_WHOLE = 32  # blocks with a side this short are read whole and truncated by SVD (cheaper, and exact)
_BATCH = 16  # most crosses per pair of oracle calls in ACA (rows, then columns, one GEMM each)
_SINGULAR = 1.0 / np.finfo(np.float64).eps  # cond(K) past which report() compares no solves against K


@dataclass
class _Node:
    """One tree node over the parameter indices [start, stop)."""

    start: int
    stop: int
    level: int
    children: tuple[_Node, _Node] | None = None
    # leaf: the dense diagonal block K[I, I]; internal: K[A, B] ≈ U Vᵀ, or the dense block when V is None
    D: np.ndarray | None = None
    U: np.ndarray | None = None
    V: np.ndarray | None = None
    converged: bool = True  # False when max_rank cut the block before tol was met
    # the factorization (filled by HodlrMatrix.factorize)
    chol: Any = None
    Y1: np.ndarray | None = None
    Y2: np.ndarray | None = None
    S_lu: Any = None

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def rank(self) -> int:
        if self.V is None:
            return min(self.U.shape) if self.U is not None else 0
        return self.U.shape[1]

    @property
    def stored(self) -> int:
        """Numbers stored by this node (the dense leaf block, or the off-diagonal factors)."""
        if self.children is None:
            return self.D.size
        return self.U.size + (0 if self.V is None else self.V.size)


@dataclass
class HodlrReport:
    """What ``HodlrMatrix.report`` measures. Errors are NaN unless the dense comparison was asked for."""

    num_params: int
    leaf_size: int
    tol: float
    max_rank: int | None
    damping: float
    levels: list[dict[str, Any]]
    stored: int
    entries_evaluated: int
    probe_products: int
    build_seconds: float
    rank_limited_blocks: int
    dense_blocks: int
    matvec_rel_fro: float = float("nan")
    matvec_rel_spectral: float = float("nan")
    matvec_rel_random: float = float("nan")
    solve_rel_error: float = float("nan")
    solve_rel_residual: float = float("nan")
    cond_estimate: float = float("nan")
    solve_failed: str = ""

    @property
    def memory_ratio(self) -> float:
        """Numbers stored divided by N²."""
        return self.stored / float(self.num_params) ** 2

    @property
    def max_rank_used(self) -> int:
        return max((lv["max_rank"] for lv in self.levels), default=0)

    def __str__(self) -> str:
        N = self.num_params
        lines = [
            f"HODLR of G + {self.damping:g}·I: N = {N}, leaf size {self.leaf_size}, tol {self.tol:g}, "
            f"max_rank {self.max_rank}",
            f"stored {self.stored:,} numbers = {self.memory_ratio:.3%} of N² = {N * N:,}; "
            f"entries evaluated while building {self.entries_evaluated:,} "
            f"({self.entries_evaluated / float(N * N):.3%} of N²) and {self.probe_products:,} product columns "
            f"for the residual sketches; built in {self.build_seconds:.3f} s",
            f"blocks cut by max_rank: {self.rank_limited_blocks}; stored dense: {self.dense_blocks}",
            "level  blocks  block size  ranks min/mean/max",
        ]
        for lv in self.levels:
            lines.append(f"{lv['level']:5d}  {lv['blocks']:6d}  {lv['block_size']:10d}  "
                         f"{lv['min_rank']}/{lv['mean_rank']:.1f}/{lv['max_rank']}")
        if not np.isnan(self.matvec_rel_fro):
            lines += [
                f"‖K̃ − K‖_F/‖K‖_F = {self.matvec_rel_fro:.3e}, ‖K̃ − K‖₂/‖K‖₂ = {self.matvec_rel_spectral:.3e}, "
                f"‖(K̃ − K)v‖/‖Kv‖ (random v) = {self.matvec_rel_random:.3e}",
            ]
            if self.solve_failed:
                lines.append(f"solve: not possible ({self.solve_failed}); cond(K) = {self.cond_estimate:.3e}")
            else:
                lines.append(f"solve: ‖K̃⁻¹b − K⁻¹b‖/‖K⁻¹b‖ = {self.solve_rel_error:.3e}, "
                             f"‖K K̃⁻¹b − b‖/‖b‖ = {self.solve_rel_residual:.3e}, cond(K) = {self.cond_estimate:.3e}")
        return "\n".join(lines)


class _Builder:
    """Adaptive cross approximation of the off-diagonal blocks through the entry oracle."""

    def __init__(self, c: Curvature, tol: float, max_rank: int | None, rng: np.random.Generator, eps: float):
        self.c = c
        self.e = c.gnh_entries()
        self.tol = tol
        self.max_rank = max_rank
        self.rng = rng
        self.eps = eps
        self.diag = host_float64(self.e.diagonal())
        self.evaluated = 0
        self.probe_products = 0

    def block(self, I: np.ndarray, J: np.ndarray) -> np.ndarray:
        self.evaluated += I.size * J.size
        return host_float64(self.e.block(I, J))

    def sketch(self, A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Ω, K[A, B] Ω) for ``_PROBES`` Gaussian vectors Ω on B: one block Gauss–Newton product with vectors
        that vanish outside B, read on the rows A (A and B are disjoint, so no damping enters)."""
        Omega = self.rng.standard_normal((B.size, _PROBES))
        W = np.zeros((self.c.num_params, _PROBES), dtype=self.c.dtype)
        W[B] = Omega
        self.probe_products += _PROBES
        return Omega.astype(self.c.dtype).astype(np.float64), host_float64(self.c.gnvp(W))[A]

    def compress(self, A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """K[A, B] ≈ U Vᵀ (V is None: U is the dense block); the flag says whether the tolerance was met."""
        m, k = A.size, B.size
        dense_rank = (m * k) // (m + k)  # at this rank the factors store as many numbers as the block
        limit = dense_rank if self.max_rank is None else min(dense_rank, self.max_rank + max(4, self.max_rank // 2))
        if min(m, k) <= _READ_WHOLE:
            U, V, ok = np.zeros((m, 0)), np.zeros((k, 0)), False
            limit = dense_rank
        else:
            U, V, ok = self._aca(A, B, max(limit, 1))
        if ok:
            return self._truncate(U, V)
        if limit == dense_rank:  # a small block, or ACA found no saving: read the whole block
            M = self.block(A, B)
            W, s, Zt = np.linalg.svd(M, full_matrices=False)
            r = self._rank(s)
            # past the break-even rank the dense block is smaller than the factors, and exact: also when
            # max_rank would allow factors of rank between the two
            if r > dense_rank and (self.max_rank is None or self.max_rank > dense_rank):
                return M, None, True
            kept = r if self.max_rank is None else min(r, self.max_rank)
            return W[:, :kept] * s[:kept], Zt[:kept].T, r <= kept
        U, V, _ = self._truncate(U, V)
        return U, V, False

    def _aca(self, A: np.ndarray, B: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """Adaptive cross approximation with partial pivoting, up to ``_BATCH`` crosses per pair of oracle calls.

        Each round reads the residual of a batch of rows (the unused rows where the residual sketch is
        largest), chooses pivots in it by complete pivoting, reads the pivot columns in one call, and
        appends the crosses in pivot order (the crosses sequential ACA would make with those pivots).
        The stopping test does not trust ACA's own estimate (which misses blocks with sparse structure,
        such as the output layer of a network with a diagonal output Hessian): it sketches the residual
        with ``_PROBES`` Gaussian vectors, E Ω = K[A, B] Ω − U (Vᵀ Ω), whose Frobenius norm estimates
        ‖E‖_F·√p, and stops when ‖E Ω‖_F ≤ tol/2·‖K[A, B] Ω‖_F, or at ``limit`` crosses (flag False).
        """
        m, k = A.size, B.size
        U = np.zeros((m, limit))
        V = np.zeros((k, limit))
        r = 0
        # |G_ij| ≤ √(G_ii G_jj) (G is PSD): rows with a zero diagonal are zero and never pivots
        if not (self.diag[B] > 0).any() or not (self.diag[A] > 0).any():
            return U[:, :0], V[:, :0], True
        Omega, MO = self.sketch(A, B)
        target = 0.5 * self.tol * np.linalg.norm(MO)
        E = MO.copy()  # the residual sketch, updated with every cross
        if np.linalg.norm(E) <= target:
            return U[:, :0], V[:, :0], True
        used = ~(self.diag[A] > 0)
        while r < limit:
            cand = np.flatnonzero(~used)
            if cand.size == 0:
                break
            score = np.linalg.norm(E, axis=1)
            q = min(_BATCH, max(4, r // 2), limit - r, cand.size)
            I = cand[np.argsort(-score[cand], kind="stable")[:q]]
            used[I] = True
            R = self.block(A[I], B) - U[I, :r] @ V[:, :r].T
            floor = self.eps * max(np.abs(R).max(), np.abs(MO).max() / np.sqrt(k))
            rows, cols, W = [], [], R.copy()
            for _ in range(q):
                a, j = np.unravel_index(int(np.argmax(np.abs(W))), W.shape)
                if abs(W[a, j]) <= floor or W[a, j] == 0.0:
                    break
                rows.append(int(a))
                cols.append(int(j))
                W -= np.outer(W[:, j] / W[a, j], W[a])
            if not rows:
                continue
            J = np.array(cols)
            Rs = R[rows]
            Cs = self.block(A, B[J]) - U[:, :r] @ V[J, :r].T
            for t in range(len(rows)):
                u = Cs[:, t].copy()
                v = Rs[t] / Rs[t, J[t]]
                Rs[t + 1 :] -= np.outer(u[I[rows[t + 1 :]]], v)
                Cs[:, t + 1 :] -= np.outer(u, v[J[t + 1 :]])
                U[:, r], V[:, r] = u, v
                E -= np.outer(u, v @ Omega)
                r += 1
            if np.linalg.norm(E) <= target:
                return U[:, :r], V[:, :r], True
        return U[:, :r], V[:, :r], np.linalg.norm(E) <= target

    def _rank(self, s: np.ndarray) -> int:
        """The smallest rank whose discarded singular values are within tol/2 of the Frobenius norm."""
        if s.size == 0 or s[0] == 0.0:
            return 0
        tail = np.sqrt(np.cumsum((s * s)[::-1])[::-1])  # tail[r] = ‖s[r:]‖
        return int(np.argmax(np.append(tail, 0.0) <= 0.5 * self.tol * tail[0]))

    def _truncate(self, U: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """Recompress U Vᵀ (QR of both factors, SVD of the small core) to the tolerance and max_rank."""
        if U.shape[1] == 0:
            return U, V, True
        Qu, Ru = np.linalg.qr(U)
        Qv, Rv = np.linalg.qr(V)
        W, s, Zt = np.linalg.svd(Ru @ Rv.T)
        r = self._rank(s)
        kept = r if self.max_rank is None else min(r, self.max_rank)
        return (Qu @ W[:, :kept]) * s[:kept], Qv @ Zt[:kept].T, r <= kept


def _relative(error: float, size: float) -> float:
    """error / size, with 0/0 = 0 (K̃ and K both zero) and x/0 = inf for x > 0, without NumPy's warnings."""
    if size > 0:
        return float(error / size)
    return 0.0 if error == 0 else float("inf")


def _lu(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LU factors of M; an exactly zero pivot is left to ``_check_pivots`` (SciPy's warning is dropped)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sla.LinAlgWarning)
        return sla.lu_factor(M, check_finite=False)


class HodlrMatrix:
    r"""A HODLR approximation K̃ of K = G + λI at one ``Curvature`` snapshot (made by ``pyhessk.gnh_hodlr``).

    ``K̃ @ V`` multiplies (V of shape (N,) or (N, k)), ``solve(B)`` applies K̃⁻¹ through a recursive
    Sherman–Morrison–Woodbury factorization computed at the first solve and reused, ``to_dense()``
    assembles K̃ (for small N), ``report(dense=True)`` measures ranks, memory and the errors against the
    dense matrix, and ``linear_operator(inverse=...)`` wraps K̃ or K̃⁻¹ for SciPy (K̃⁻¹ is a preconditioner
    for CG on the exact operator).

    Attributes:
        curvature: the snapshot it approximates.
        damping, tol, max_rank, leaf_size, seed: the construction arguments.
    """

    def __init__(self, c: Curvature, damping: float, tol: float, max_rank: int | None, leaf_size: int,
                 seed: int) -> None:
        self.curvature = c
        self.damping = damping
        self.tol = tol
        self.max_rank = max_rank
        self.leaf_size = leaf_size
        self.seed = seed
        self.dtype = c.dtype
        self.shape = (c.num_params, c.num_params)
        # ACA cannot resolve crosses below the rounding level of the entries
        eps = float(np.finfo(c.dtype).eps)
        self._builder = _Builder(c, max(tol, 64 * eps), max_rank, np.random.default_rng(seed), 64 * eps)
        t0 = time.perf_counter()
        self.root = self._build(0, c.num_params, 0)
        self.build_seconds = time.perf_counter() - t0
        self.entries_evaluated = self._builder.evaluated
        self.probe_products = self._builder.probe_products
        del self._builder
        self._factored = False

    # ---- construction --------------------------------------------------------------------------------
    def _build(self, start: int, stop: int, level: int) -> _Node:
        node = _Node(start, stop, level)
        if stop - start <= self.leaf_size:
            idx = np.arange(start, stop)
            node.D = self._builder.block(idx, idx)
            node.D[np.diag_indices_from(node.D)] += self.damping
            return node
        mid = (start + stop) // 2
        node.children = (self._build(start, mid, level + 1), self._build(mid, stop, level + 1))
        node.U, node.V, node.converged = self._builder.compress(np.arange(start, mid), np.arange(mid, stop))
        return node

    def _nodes(self) -> list[_Node]:
        out, stack = [], [self.root]
        while stack:
            node = stack.pop()
            out.append(node)
            if node.children is not None:
                stack.extend(node.children)
        return out

    # ---- products -------------------------------------------------------------------------------------
    def _vectors(self, V: Any, name: str) -> tuple[np.ndarray, bool]:
        v = as_float(V, name, self.dtype, ndim=(1, 2), ref="the curvature snapshot")
        N = self.shape[0]
        if v.shape[0] != N:
            raise ValueError(f"{name} must have shape ({N},) or ({N}, k) to match num_params, got {v.shape}")
        single = v.ndim == 1
        return (v[:, None] if single else v).astype(np.float64), single

    def matmat(self, V: Any) -> np.ndarray:
        """K̃ V for V of shape (N,) or (N, k), in the snapshot's dtype."""
        x, single = self._vectors(V, "V")
        y = np.zeros_like(x)
        for node in self._nodes():
            s, e = node.start, node.stop
            if node.children is None:
                y[s:e] += node.D @ x[s:e]
                continue
            mid = node.children[0].stop
            if node.V is None:
                y[s:mid] += node.U @ x[mid:e]
                y[mid:e] += node.U.T @ x[s:mid]
            else:
                y[s:mid] += node.U @ (node.V.T @ x[mid:e])
                y[mid:e] += node.V @ (node.U.T @ x[s:mid])
        y = y.astype(self.dtype)
        return y[:, 0] if single else y

    def __matmul__(self, V: Any) -> np.ndarray:
        return self.matmat(V)

    def to_dense(self) -> np.ndarray:
        """K̃ as a dense (N, N) array in float64 (for tests and reports on small N)."""
        return self._assemble(self.root)

    def _assemble(self, top: _Node) -> np.ndarray:
        """K̃ restricted to the indices of ``top``, dense."""
        out = np.zeros((top.size, top.size))
        stack = [top]
        while stack:
            node = stack.pop()
            s, e = node.start - top.start, node.stop - top.start
            if node.children is None:
                out[s:e, s:e] = node.D
                continue
            stack.extend(node.children)
            mid = node.children[0].stop - top.start
            M = node.U if node.V is None else node.U @ node.V.T
            out[s:mid, mid:e] = M
            out[mid:e, s:mid] = M.T
        return out

    # ---- the recursive Woodbury factorization -----------------------------------------------------------
    def factorize(self) -> HodlrMatrix:
        r"""Factor K̃ once, recursively: a leaf, or a node whose off-diagonal block is stored dense, by a dense
        Cholesky factorization (LU if K̃ is indefinite there); a node with children K₁, K₂ and
        K̃[A, B] = U Vᵀ by Woodbury: K̃ = diag(K₁, K₂) + P C Pᵀ with P = diag(U, V) and C = [[0, I], [I, 0]],
        so K̃⁻¹ = D⁻¹ − D⁻¹P (C + Pᵀ D⁻¹ P)⁻¹ Pᵀ D⁻¹; each such node keeps D⁻¹P and the LU factors of the
        small matrix C + Pᵀ D⁻¹ P.

        Raises:
            numpy.linalg.LinAlgError: if a block or a Woodbury core is singular (raise the damping, or lower
                tol so that K̃ stays close to the positive definite K).
        """
        if not self._factored:
            self._factor(self.root)
            self._factored = True
        return self

    def _factor(self, node: _Node) -> None:
        if node.children is None or node.V is None:
            M = node.D if node.children is None else self._assemble(node)
            try:
                cho = sla.cho_factor(M, lower=True, check_finite=False)
            except np.linalg.LinAlgError:
                pass
            else:  # the pivots of L Lᵀ are L_ii²
                self._check_pivots(np.diag(cho[0]) ** 2, node, "block")
                node.chol = ("cho", cho)
                return
            lu, piv = _lu(M)
            self._check_pivots(np.diag(lu), node, "block")
            node.chol = ("lu", (lu, piv))
            return
        first, second = node.children
        self._factor(first)
        self._factor(second)
        U, V = node.U, node.V
        r = U.shape[1]
        if r == 0:
            return
        node.Y1 = self._solve_node(first, U)
        node.Y2 = self._solve_node(second, V)
        S = np.block([[U.T @ node.Y1, np.eye(r)], [np.eye(r), V.T @ node.Y2]])
        lu, piv = _lu(S)
        self._check_pivots(np.diag(lu), node, "Woodbury core")
        node.S_lu = (lu, piv)

    def _check_pivots(self, pivots: np.ndarray, node: _Node, what: str) -> None:
        """LinAlgError where a factorization's pivots say the matrix is singular to the precision of its
        entries: the snapshot's dtype (a float32 snapshot's entries carry float32 rounding, so a singular
        block factors in float64 with pivots near ε₃₂, not near zero)."""
        d = np.abs(pivots)
        floor = max(1e3 * np.finfo(np.float64).eps, 10 * np.finfo(self.dtype).eps)
        if not np.isfinite(d).all() or d.min() <= floor * max(d.max(), 1e-300):
            raise np.linalg.LinAlgError(
                f"the {what} of parameters [{node.start}, {node.stop}) of the HODLR approximation of "
                f"G + {self.damping:g}·I is singular; use damping > 0, or raise it, or lower tol")

    def _solve_node(self, node: _Node, b: np.ndarray) -> np.ndarray:
        if node.chol is not None:
            kind, fac = node.chol
            return sla.cho_solve(fac, b, check_finite=False) if kind == "cho" else sla.lu_solve(fac, b, check_finite=False)
        first, second = node.children
        m = first.size
        x = np.vstack([self._solve_node(first, b[:m]), self._solve_node(second, b[m:])])
        r = node.U.shape[1]
        if r == 0:
            return x
        w = np.vstack([node.U.T @ x[:m], node.V.T @ x[m:]])
        z = sla.lu_solve(node.S_lu, w, check_finite=False)
        x[:m] -= node.Y1 @ z[:r]
        x[m:] -= node.Y2 @ z[r:]
        return x

    def solve(self, B: Any) -> np.ndarray:
        """K̃⁻¹ B for B of shape (N,) or (N, k), in the snapshot's dtype (factorizes on the first call)."""
        b, single = self._vectors(B, "B")
        self.factorize()
        x = self._solve_node(self.root, b).astype(self.dtype)
        return x[:, 0] if single else x

    def linear_operator(self, inverse: bool = False) -> LinearOperator:
        """K̃ (or K̃⁻¹ with ``inverse=True``) as a symmetric ``scipy.sparse.linalg.LinearOperator``.

        Unlike ``@`` and ``solve``, the operator casts a float input to the snapshot's dtype (as
        ``CurvatureOperator`` does): SciPy's solvers and ``pyhessk.linalg.cg`` hand it float64 iterates, also
        for a float32 snapshot. It returns the snapshot's dtype.
        """
        if not isinstance(inverse, (bool, np.bool_)):
            raise TypeError(f"inverse must be a bool, got {type(inverse).__name__}")
        public = self.solve if inverse else self.matmat

        def apply(x: Any) -> np.ndarray:
            if isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.dtype != self.dtype:
                x = x.astype(self.dtype)
            return public(x)

        return LinearOperator(self.shape, matvec=apply, rmatvec=apply, matmat=apply, dtype=self.dtype)

    # ---- diagnostics ------------------------------------------------------------------------------------
    @property
    def stored(self) -> int:
        """Numbers stored: the dense leaf blocks plus the off-diagonal factors (each symmetric pair once)."""
        return sum(node.stored for node in self._nodes())

    def ranks(self) -> dict[int, list[int]]:
        """Ranks of the off-diagonal blocks, per tree level (0 is the root)."""
        out: dict[int, list[int]] = {}
        for node in sorted(self._nodes(), key=lambda nd: (nd.level, nd.start)):
            if node.children is not None:
                out.setdefault(node.level, []).append(node.rank)
        return out

    def report(self, dense: bool | np.ndarray = False, seed: int = 0) -> HodlrReport:
        """Ranks per level, memory (numbers stored against N²) and, with ``dense=True`` (or a dense K given),
        the errors against the dense K = G + λI: relative Frobenius and spectral errors of K̃, the relative
        error of K̃v for a random v, and for a random right-hand side b the relative error of the solve
        against ``numpy.linalg.solve`` and its relative residual ‖K K̃⁻¹b − b‖/‖b‖. Where K̃ or K is singular
        (damping 0 on a rank-deficient G), also only to float64 precision (cond(K), computed first, past
        1/ε), the solve fields stay NaN and ``solve_failed`` says why. Against
        K = 0 (damping 0 on G = 0) a relative error is 0 where K̃ is 0 too, else inf.

        ``dense=True`` forms G with ``Curvature.gnh()`` (N² numbers; it refuses N > 8192).
        """
        seed = as_int(seed, "seed", low=0)
        nodes = self._nodes()
        levels = []
        for level, ranks in sorted(self.ranks().items()):
            sizes = [nd.size for nd in nodes if nd.level == level and nd.children is not None]
            levels.append({"level": level, "blocks": len(ranks), "block_size": max(sizes) // 2,
                           "min_rank": min(ranks), "mean_rank": float(np.mean(ranks)), "max_rank": max(ranks),
                           "ranks": ranks})
        internal = [nd for nd in nodes if nd.children is not None]
        rep = HodlrReport(
            num_params=self.shape[0], leaf_size=self.leaf_size, tol=self.tol, max_rank=self.max_rank,
            damping=self.damping, levels=levels, stored=self.stored, entries_evaluated=self.entries_evaluated,
            probe_products=self.probe_products,
            build_seconds=self.build_seconds, rank_limited_blocks=sum(not nd.converged for nd in internal),
            dense_blocks=sum(nd.V is None for nd in internal))
        if isinstance(dense, (bool, np.bool_)):
            if not dense:
                return rep
            K = host_float64(self.curvature.gnh()) + self.damping * np.eye(self.shape[0])
        else:
            K = np.asarray(as_float(dense, "dense", None, ndim=2), dtype=np.float64)
            if K.shape != self.shape:
                raise ValueError(f"dense must have shape {self.shape} (the matrix K = G + λI), got {K.shape}")
        Kt = self.to_dense()
        rng = np.random.default_rng(seed)
        v = rng.standard_normal(self.shape[0])
        rep.matvec_rel_fro = _relative(np.linalg.norm(Kt - K), np.linalg.norm(K))
        rep.matvec_rel_spectral = _relative(np.linalg.norm(Kt - K, 2), np.linalg.norm(K, 2))
        Kv = K @ v
        rep.matvec_rel_random = _relative(np.linalg.norm(self.matmat(v.astype(self.dtype)) - Kv), np.linalg.norm(Kv))
        b = rng.standard_normal(self.shape[0])
        rep.cond_estimate = float(np.linalg.cond(K))
        if not rep.cond_estimate <= _SINGULAR:  # K⁻¹b would be rounding noise: no reference to compare with
            rep.solve_failed = (f"K is singular to float64 precision: cond(K) = {rep.cond_estimate:.3e}, "
                                f"past 1/ε = {_SINGULAR:.3e}")
            return rep
        try:
            xt = self.solve(b.astype(self.dtype)).astype(np.float64)
            x = np.linalg.solve(K, b)
        except np.linalg.LinAlgError as err:  # a singular K (damping 0): the ranks and matvec errors still stand
            rep.solve_failed = str(err)
            return rep
        rep.solve_rel_error = float(np.linalg.norm(xt - x) / np.linalg.norm(x))
        rep.solve_rel_residual = float(np.linalg.norm(K @ xt - b) / np.linalg.norm(b))
        return rep

    def __repr__(self) -> str:
        ranks = [r for rs in self.ranks().values() for r in rs]
        return (f"HodlrMatrix(N={self.shape[0]}, leaf_size={self.leaf_size}, tol={self.tol:g}, "
                f"max_rank={self.max_rank}, damping={self.damping:g}, max block rank={max(ranks, default=0)}, "
                f"stored={self.stored / float(self.shape[0]) ** 2:.2%} of N²)")


def gnh_hodlr(c: Curvature, damping: float, tol: float = 1e-6, max_rank: int | None = None,
              leaf_size: int = DEFAULT_LEAF_SIZE, seed: int = 0) -> HodlrMatrix:
    r"""A HODLR approximation of K = G + damping·I built from G's entries and blocks (never the N × N matrix).

    Args:
        c: the ``Curvature`` snapshot (``net.linearize(theta, X, Y)``); its ``gnh_entries()`` precomputation
            is run if it has not been.
        damping: λ ≥ 0 added to the diagonal; the solve needs K̃ positive definite, so use λ > 0.
        tol: relative Frobenius tolerance of each off-diagonal block, in [0, 1), as the residual sketch
            estimates it (blocks read whole meet it exactly where max_rank does not cut them); 0 asks for
            exact blocks (down to the rounding level of the snapshot's dtype).
        max_rank: the largest rank of an off-diagonal block's factors (None: as the tolerance needs). A block
            is stored dense instead (exact) where the tolerance needs more than its break-even rank
            m·k/(m + k) and max_rank allows more than that rank: factors past it would store more numbers
            than the block. ``ranks()`` reports such a block at its full rank min(m, k), which can exceed
            max_rank.
        leaf_size: the largest diagonal block stored dense (≥ 1). The tree halves the parameter indices in
            θ's order (layers are contiguous, so they are natural clusters).
        seed: seeds the Gaussian vectors that sketch each block's residual.

    Returns:
        A ``HodlrMatrix`` with ``@``, ``solve``, ``to_dense``, ``ranks``, ``report`` and ``linear_operator``.

    Example:
        >>> import numpy as np, pyhessk as hk
        >>> rng = np.random.default_rng(0)
        >>> net = hk.MLP([4, 8, 3], loss="softmax_cross_entropy", backend="numpy")
        >>> c = net.linearize(net.init(seed=0), rng.standard_normal((20, 4)), rng.integers(0, 3, 20))
        >>> K = hk.gnh_hodlr(c, damping=0.1, tol=1e-8, leaf_size=8)
        >>> Kd = c.gnh() + 0.1 * np.eye(c.num_params)
        >>> b = rng.standard_normal(c.num_params)
        >>> bool(np.allclose(K @ b, Kd @ b) and np.allclose(K.solve(b), np.linalg.solve(Kd, b)))
        True
    """
    check_curvature(c)
    damping = as_real(damping, "damping", low=0.0)
    tol = as_real(tol, "tol", low=0.0, high=1.0, open_high=True)
    if max_rank is not None:
        max_rank = as_int(max_rank, "max_rank", low=1)
    leaf_size = as_int(leaf_size, "leaf_size", low=1)
    seed = as_int(seed, "seed", low=0)
    return HodlrMatrix(c, damping, tol, max_rank, leaf_size, seed)
