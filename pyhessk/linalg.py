"""Curvature matrices as SciPy linear operators, and conjugate gradients that run on block products.

Everything here uses only the public ``Curvature`` products (``hvp``, ``gnvp``), so it works on every
engine. Krylov work (CG, and the Lanczos methods of ``pyhessk.spectral``) is carried in float64, as
ALGORITHMS §8.3 asks; the vectors are cast to the snapshot's dtype only for the products themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.sparse.linalg import LinearOperator

from ._arrays import as_float, as_int, as_real

if TYPE_CHECKING:
    from .curvature import Curvature
    from .mlp import MLP

KINDS = ("hessian", "gnh")


def check_kind(kind: Any) -> str:
    """The canonical curvature name, "hessian" or "gnh" (``ValueError`` naming the choices otherwise)."""
    if not isinstance(kind, str):
        raise TypeError(f"kind must be 'hessian' or 'gnh', got {type(kind).__name__}")
    key = kind.strip().lower()
    if key not in KINDS:
        raise ValueError(f"kind must be 'hessian' or 'gnh', got {kind!r}")
    return key


def check_curvature(c: Any) -> Curvature:
    """``c`` itself if it is a ``Curvature`` snapshot (``TypeError`` naming the argument otherwise)."""
    from .curvature import Curvature

    if not isinstance(c, Curvature):
        raise TypeError(f"c must be a pyhessk.Curvature (from net.linearize), got {type(c).__name__}")
    return c


def check_net(net: Any) -> MLP:
    """``net`` itself if it is a ``pyhessk.MLP`` (``TypeError`` naming the argument otherwise)."""
    from .mlp import MLP

    if not isinstance(net, MLP):
        raise TypeError(f"net must be a pyhessk.MLP, got {type(net).__name__}")
    return net


def product(c: Curvature, kind: str, damping: float = 0.0) -> Callable[[np.ndarray], np.ndarray]:
    """A float64 block product V ↦ (A + damping·I) V with A = H or G; V of shape (N,) or (N, k).

    The vectors are cast to the snapshot's dtype for the product and the result comes back in float64.
    """
    c = check_curvature(c)
    damping = as_real(damping, "damping", low=0.0)
    apply = c.hvp if check_kind(kind) == "hessian" else c.gnvp
    dt = c.dtype

    def mul(V: np.ndarray) -> np.ndarray:
        V = np.asarray(V, dtype=np.float64)
        out = np.asarray(apply(V.astype(dt, copy=False)), dtype=np.float64)
        return out + damping * V if damping else out

    return mul


class CurvatureOperator(LinearOperator):
    r"""H + damping·I or G + damping·I at one snapshot, as a symmetric ``scipy.sparse.linalg.LinearOperator``.

    ``matmat`` sends the whole block through one ``hvp``/``gnvp`` call, so ``op @ V`` with V of shape
    (N, k) shares every layer GEMM among the k columns. The operator is self-adjoint (``op.H is op``).
    Inputs are cast to the snapshot's dtype (float32 or float64), which is also ``op.dtype``; this lets
    ``scipy.sparse.linalg.eigsh``, ``cg`` and ``minres`` drive it directly.

    Attributes:
        curvature: the ``Curvature`` snapshot it multiplies with.
        kind: "hessian" or "gnh".
        damping: the multiple of the identity added, ≥ 0.

    Example (a linear model with mse: H = (1/n) Σ_k [x_k; 1][x_k; 1]ᵀ):
        >>> import numpy as np, pyhessk as hk
        >>> X = np.arange(6.0).reshape(3, 2); Y = np.zeros((3, 1))
        >>> net = hk.MLP([2, 1], loss="mse", backend="numpy")
        >>> op = net.linearize(net.init(seed=0), X, Y).linear_operator("hessian", damping=0.5)
        >>> Xb = np.hstack([X, np.ones((3, 1))])
        >>> bool(np.allclose(op @ np.eye(3), Xb.T @ Xb / 3 + 0.5 * np.eye(3)))
        True
    """

    def __init__(self, c: Curvature, kind: str = "hessian", damping: float = 0.0) -> None:
        self.curvature = check_curvature(c)
        self.kind = check_kind(kind)
        self.damping = as_real(damping, "damping", low=0.0)
        with np.errstate(over="ignore"):
            fits = bool(np.isfinite(c.dtype.type(self.damping)))
        if not fits:
            raise ValueError(f"damping must fit the snapshot's dtype {c.dtype.name}, got {self.damping}")
        self._apply = c.hvp if self.kind == "hessian" else c.gnvp
        N = c.num_params
        super().__init__(dtype=c.dtype, shape=(N, N))

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        if np.iscomplexobj(X):  # (a cast would drop the imaginary part without a word)
            raise TypeError(f"the operator takes real vectors, got dtype {np.asarray(X).dtype}; apply it to the real "
                            "and imaginary parts separately")
        V = np.ascontiguousarray(X, dtype=self.dtype)
        out = self._apply(V)
        if self.damping:
            out += self.dtype.type(self.damping) * V
        return out

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._matmat(np.reshape(x, (-1, 1)))[:, 0]

    _rmatvec = _matvec
    _rmatmat = _matmat

    def _adjoint(self) -> CurvatureOperator:
        return self

    def __repr__(self) -> str:
        N = self.shape[0]
        return f"<{N}x{N} CurvatureOperator(kind={self.kind!r}, damping={self.damping}) with dtype={self.dtype}>"


def as_linear_operator(c: Curvature, kind: str = "hessian", damping: float = 0.0) -> CurvatureOperator:
    """``CurvatureOperator(c, kind, damping)``: the snapshot's H or G (+ damping·I) as a LinearOperator."""
    return CurvatureOperator(c, kind, damping)


@dataclass
class CGResult:
    """What ``cg`` returns.

    Attributes:
        x: the solutions, float64, the shape of B.
        iterations: CG iterations run for each column (k,).
        converged: whether each column met ‖b − A x‖ ≤ max(rtol·‖b‖, atol) (k,).
        residual_norms: the final ‖b − A x‖ of each column (k,), from the CG recurrence.
    """

    x: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    residual_norms: np.ndarray


def cg(A: Any, B: Any, x0: Any = None, rtol: float = 1e-5, atol: float = 0.0, maxiter: int | None = None,
       M: Any = None) -> CGResult:
    r"""Preconditioned conjugate gradients for A X = B, the k right-hand sides run in lockstep.

    Every iteration sends the columns that have not converged through one block product, so k systems
    cost about as many block products as the slowest one needs iterations. Each column follows exactly
    the recurrence of ``scipy.sparse.linalg.cg`` (same iterates, same stopping rule
    ‖b − A x‖ ≤ max(rtol·‖b‖, atol)). A column stops without converging when it meets a direction of
    non-positive curvature (pᵀ A p ≤ 0: A is not positive definite there).

    Args:
        A: a ``LinearOperator`` (for instance ``c.linear_operator("gnh", damping)``) or a callable taking an
            (N, k) block; symmetric positive definite.
        B: right-hand sides (N,) or (N, k).
        x0: starting guesses, the shape of B (default zero).
        rtol: relative tolerance on the residual norm.
        atol: absolute tolerance on the residual norm.
        maxiter: iterations at most (default 10·N).
        M: a preconditioner applying an approximation of A⁻¹ (a LinearOperator or a callable on (N, k)
            blocks), as in SciPy.

    Returns:
        A ``CGResult``; ``x`` is float64 and has the shape of B.

    Raises:
        ValueError: B or x0 of the wrong shape, or holding NaN or Inf.
        FloatingPointError: A or M returned NaN or Inf.
    """
    rtol = as_real(rtol, "rtol", low=0.0)
    atol = as_real(atol, "atol", low=0.0)
    b = np.asarray(as_float(B, "B", None, ndim=(1, 2)), dtype=np.float64)
    if isinstance(A, LinearOperator) and A.shape != (b.shape[0], b.shape[0]):
        raise ValueError(f"B must have shape ({A.shape[1]},) or ({A.shape[1]}, k) to match A {A.shape}, got {b.shape}")
    single = b.ndim == 1
    b = b[:, None] if single else b
    N, k = b.shape
    maxiter = 10 * N if maxiter is None else as_int(maxiter, "maxiter", low=0)
    matmat = _as_block_map(A, "A")
    precond = _as_block_map(M, "M") if M is not None else None
    if x0 is None:
        x = np.zeros_like(b)
    else:
        x = np.array(as_float(x0, "x0", None, ndim=(1, 2)), dtype=np.float64)
        if x.shape != ((N,) if single else (N, k)):
            raise ValueError(f"x0 must have the shape of B, {(N,) if single else (N, k)}, got {x.shape}")
        x = x.reshape(N, k)
    r = b - matmat(x) if x0 is not None and np.any(x) else b.copy()
    stop = np.maximum(rtol * np.linalg.norm(b, axis=0), atol)
    its = np.zeros(k, dtype=np.int64)
    res = np.linalg.norm(r, axis=0)
    active = res > stop
    broken = np.zeros(k, dtype=bool)
    p = np.zeros_like(b)
    rho_prev = np.ones(k)
    for _ in range(maxiter):
        cols = np.flatnonzero(active)
        if cols.size == 0:
            break
        z = precond(r[:, cols]) if precond is not None else r[:, cols]
        rho = np.einsum("ij,ij->j", r[:, cols], z)
        fresh = its[cols] == 0
        beta = np.where(fresh, 0.0, rho / np.where(fresh, 1.0, rho_prev[cols]))
        p[:, cols] = z + beta * p[:, cols]
        q = matmat(p[:, cols])
        curv = np.einsum("ij,ij->j", p[:, cols], q)
        bad = curv <= 0
        alpha = np.where(bad, 0.0, rho / np.where(bad, 1.0, curv))
        x[:, cols] += alpha * p[:, cols]
        r[:, cols] -= alpha * q
        rho_prev[cols] = rho
        its[cols] += 1
        res[cols] = np.linalg.norm(r[:, cols], axis=0)
        broken[cols[bad]] = True
        active[cols] = (res[cols] > stop[cols]) & ~bad
    converged = (res <= stop) & ~broken
    out = x[:, 0] if single else x
    return CGResult(out, its, converged, res)


def _as_block_map(A: Any, name: str) -> Callable[[np.ndarray], np.ndarray]:
    """A's block product in float64; ValueError for an answer of the wrong size, FloatingPointError for NaN/Inf."""
    if isinstance(A, LinearOperator):
        def raw(V: np.ndarray) -> np.ndarray:
            return np.asarray(A.matmat(V), dtype=np.float64)
    elif callable(A):
        def raw(V: np.ndarray) -> np.ndarray:
            out = np.asarray(A(V), dtype=np.float64)
            if out.size != V.size:
                raise ValueError(f"{name} must map an (N, k) block to an (N, k) block; for a block of shape {V.shape} "
                                 f"it returned shape {out.shape}")
            return out.reshape(V.shape)
    else:
        raise TypeError(f"{name} must be a LinearOperator or a callable on (N, k) blocks, got {type(A).__name__}")

    def apply(V: np.ndarray) -> np.ndarray:
        out = raw(V)
        if not np.isfinite(out).all():
            raise FloatingPointError(f"{name} returned NaN or Inf for a finite block of shape {V.shape}")
        return out

    return apply


class InverseOperator(LinearOperator):
    """(A + damping·I)⁻¹ applied by CG on the snapshot's block products (A = H or G); float64.

    Each ``matmat`` solves all its columns together (``cg``). With ``kind="gnh"`` and damping > 0 the
    system is positive definite; with ``kind="hessian"`` it is only where H + damping·I is, and a column
    that meets negative curvature raises ``np.linalg.LinAlgError``. A column that does not reach ``rtol``
    within ``maxiter`` iterations also raises it.
    """

    def __init__(self, c: Curvature, kind: str = "gnh", damping: float = 1e-3, rtol: float = 1e-8,
                 maxiter: int | None = None, M: Any = None) -> None:
        self.kind = check_kind(kind)
        self.damping = as_real(damping, "damping", low=0.0)
        self.rtol = as_real(rtol, "rtol", low=0.0)
        self.maxiter = None if maxiter is None else as_int(maxiter, "maxiter", low=0)
        if M is not None:
            _as_block_map(M, "M")  # TypeError now rather than at the first product
        self.M = M
        self._mul = product(c, self.kind, self.damping)
        N = c.num_params
        super().__init__(dtype=np.dtype(np.float64), shape=(N, N))

    def _matmat(self, B: np.ndarray) -> np.ndarray:
        result = cg(self._mul, B, rtol=self.rtol, maxiter=self.maxiter, M=self.M)
        if not result.converged.all():
            worst = int(np.argmax(result.residual_norms))
            raise np.linalg.LinAlgError(
                f"CG did not converge for {int((~result.converged).sum())} of {B.shape[1]} right-hand sides "
                f"(residual {result.residual_norms[worst]:.2e} after {result.iterations[worst]} iterations); "
                + ("raise damping or maxiter, or use kind='gnh' (positive semi-definite)" if self.kind == "hessian"
                   else "raise damping (G is only positive semi-definite) or maxiter"))
        return result.x

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._matmat(np.reshape(x, (-1, 1)))[:, 0]

    _rmatvec = _matvec
    _rmatmat = _matmat

    def _adjoint(self) -> InverseOperator:
        return self


def inverse_operator(c: Curvature, kind: str = "gnh", damping: float = 1e-3, rtol: float = 1e-8,
                     maxiter: int | None = None, M: Any = None) -> InverseOperator:
    r"""The damped inverse :math:`(A + λI)^{-1}` (A = G or H) as a LinearOperator applied by CG.

    Args:
        c: the snapshot.
        kind: "gnh" (default; positive definite for damping > 0) or "hessian".
        damping: λ ≥ 0.
        rtol: CG's relative residual tolerance.
        maxiter: CG iterations at most per application (default 10·N).
        M: an optional preconditioner approximating (A + λI)⁻¹.

    Returns:
        An ``InverseOperator``; ``op @ B`` solves (A + λI) X = B for a vector or a block.
    """
    return InverseOperator(c, kind, damping, rtol, maxiter, M)
