"""Bishop's approximations of the Hessian (PRML §5.4; ALGORITHMS §5.3–5.6) and a finite-difference checker.

- ``becker_lecun_diagonal``: the diagonal approximation of Becker & LeCun (§5.4.1).
- ``outer_product`` / ``outer_product_vectors``: the outer-product (Levenberg–Marquardt) approximation
  Σ b bᵀ (§5.4.2), which for these losses is the Gauss–Newton matrix G.
- ``sherman_morrison``: the sequential inverse (αI + Σ b bᵀ)⁻¹ (§5.4.3, Hassibi & Stork).
- ``check_hessian``: central differences of the gradient against ``hvp`` (§5.4.4).
- ``empirical_fisher_diagonal``: Σ_i ∇ℓ_i ⊙ ∇ℓ_i, the preconditioner of Martens' Hessian-free.

The Becker–LeCun recursion and the empirical Fisher need per-layer activations that the ``Curvature``
API does not expose, so this module runs its own forward and backward pass in NumPy (float64), built
from the public pieces: ``MLP.unflatten`` for the weights, ``MLP.spec`` for the architecture, and the
reference engine's tables ``pyhessk.backends.numpy.activations.ACTIVATIONS`` (φ, φ′, φ″) and
``pyhessk.backends.numpy.losses.LOSSES`` (∂ℓ/∂f and H_out). It is independent of the engine the net runs
on; everything else here uses the public products.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._arrays import as_float, as_int, as_real
from .backends.numpy.activations import ACTIVATIONS
from .backends.numpy.losses import LOSSES
from .linalg import check_kind, check_net

if TYPE_CHECKING:
    from .mlp import MLP


# ---- a float64 NumPy layer pass --------------------------------------------------------------------
@dataclass
class _Layers:
    A: list[np.ndarray]     # A[l] = a_l (n, n_l) for l = 0 .. L−1 (inputs of the layers)
    d1: list[np.ndarray]    # φ′_l at Z_l (n, n_l) for hidden l = 1 .. L−1 (index l − 1)
    d2: list[np.ndarray]    # φ″_l at Z_l
    F: np.ndarray           # outputs (n, d)
    T: np.ndarray           # canonical targets (n, d)
    Ws: list[np.ndarray]    # W_l (n_l, n_{l−1}), float64
    scale: float            # 1/n ("mean") or 1 ("sum")


def _targets(net: MLP, Y: Any, n: int) -> np.ndarray:
    d = net.sizes[-1]
    y = np.asarray(Y)
    if net.loss_name == "softmax_cross_entropy" and y.dtype.kind in "iu" and y.ndim == 1:
        T = np.zeros((n, d))
        T[np.arange(n), y] = 1.0
        return T
    return np.asarray(y, dtype=np.float64).reshape(n, d)


def _float64(x: Any) -> Any:
    a = np.asarray(x)
    return a.astype(np.float64) if a.dtype.kind == "f" else x


def _layer_pass(net: MLP, theta: Any, X: Any, Y: Any) -> _Layers:
    check_net(net)
    net.loss(theta, X, Y)  # validates θ, X and Y with the library's messages
    spec = net.spec
    Ws, bs = net.unflatten(np.asarray(theta, dtype=np.float64).copy())
    A = np.asarray(X, dtype=np.float64)
    As, d1, d2 = [A], [], []
    L = spec.num_layers
    for l in range(L):
        Z = A @ Ws[l].T
        if spec.bias:
            Z = Z + bs[l]
        if l == L - 1:
            A = Z
            break
        act = ACTIVATIONS[spec.activations[l]]
        A = act.f(Z)
        p1, p2 = act.derivs(Z, A)
        As.append(A)
        d1.append(p1)
        d2.append(p2)
    T = _targets(net, Y, A.shape[0])
    return _Layers(As, d1, d2, A, T, Ws, spec.scale(A.shape[0]))


def _loss_terms(net: MLP, lay: _Layers) -> tuple[np.ndarray, Any]:
    """∂ℓ/∂f (n, d) and the loss head's aux (what H_out needs)."""
    _, E, aux = LOSSES[net.loss_name].head(lay.F, lay.T)
    return E, aux


# ---- Becker–LeCun -----------------------------------------------------------------------------------
def becker_lecun_diagonal(net: MLP, theta: Any, X: Any, Y: Any, kind: str = "hessian") -> np.ndarray:
    r"""Becker & LeCun's diagonal approximation of H (or of G), PRML eqs 5.79–5.81 in batch form.

    Backpropagates only the diagonal of ∂²E/∂z_l² (per sample), dropping its off-diagonal terms:

    .. math::
        Q_L = s\,\mathrm{diag}(H_ℓ), \quad
        Q_l = φ'^2_l ⊙ \big(Q_{l+1} (W_{l+1} ⊙ W_{l+1})\big) + φ''_l ⊙ g_l, \quad
        \mathrm{diag}(H)_{W_l} ≈ Q_lᵀ (A_{l-1} ⊙ A_{l-1}),\ \mathrm{diag}(H)_{b_l} ≈ Q_lᵀ 1,

    with g_l = ∂E/∂a_l the backpropagated gradient, s = 1/n ("mean") or 1 ("sum"), plus λ on the weights.
    ``kind="gnh"`` drops the φ″ term, which approximates diag(G) the same way. Cost: two layer-GEMMs per
    layer, as a backward pass. It is exact for a one-layer net (any loss); for deeper nets it is biased,
    by design. Runs in float64 through this module's own NumPy layer pass (see the module docstring).

    Returns:
        The approximate diagonal (N,), float64.
    """
    kind = check_kind(kind)
    lay = _layer_pass(net, theta, X, Y)
    spec = net.spec
    L = spec.num_layers
    E, aux = _loss_terms(net, lay)
    n, d = lay.F.shape
    unit = np.broadcast_to(np.eye(d), (n, d, d))
    Q = lay.scale * np.einsum("njj->nj", LOSSES[net.loss_name].hout_apply(aux, unit))
    delta = lay.scale * E  # ∂E/∂z_L
    out = np.zeros(spec.num_params)
    for l in range(L, 0, -1):
        W, b = spec.layer_views(out, l)
        A_prev = lay.A[l - 1]
        W[...] = Q.T @ (A_prev * A_prev) + spec.l2
        if b is not None:
            b[...] = Q.sum(axis=0)
        if l == 1:
            break
        g = delta @ lay.Ws[l - 1]  # ∂E/∂a_{l−1}
        Q = lay.d1[l - 2] ** 2 * (Q @ (lay.Ws[l - 1] ** 2))
        if kind == "hessian":
            Q = Q + lay.d2[l - 2] * g
        delta = g * lay.d1[l - 2]
    return out


def empirical_fisher_diagonal(net: MLP, theta: Any, X: Any, Y: Any) -> np.ndarray:
    r"""s·Σ_i ∇ℓ_i ⊙ ∇ℓ_i (+ λ on the weights): the empirical Fisher diagonal at the objective's scale.

    Per-sample gradients are never formed: per layer,
    :math:`\sum_i (∇_{W_l}ℓ_i)^{⊙2} = (Δ_l ⊙ Δ_l)ᵀ (A_{l-1} ⊙ A_{l-1})` with Δ_l the per-sample
    ∂ℓ_i/∂z_l, one extra layer-GEMM per layer (ALGORITHMS §7.1). Martens' Hessian-free uses it as a
    preconditioner. Runs in float64 through this module's NumPy layer pass, a reference:
    ``net.linearize(theta, X, Y).empirical_fisher_diagonal()`` gives the same numbers on the net's engine, in
    the working dtype, from the snapshot's own backward pass.

    Returns:
        The diagonal (N,), float64.
    """
    lay = _layer_pass(net, theta, X, Y)
    spec = net.spec
    delta, _ = _loss_terms(net, lay)
    out = np.zeros(spec.num_params)
    for l in range(spec.num_layers, 0, -1):
        W, b = spec.layer_views(out, l)
        A_prev = lay.A[l - 1]
        W[...] = lay.scale * ((delta * delta).T @ (A_prev * A_prev)) + spec.l2
        if b is not None:
            b[...] = lay.scale * (delta * delta).sum(axis=0)
        if l > 1:
            delta = (delta @ lay.Ws[l - 1]) * lay.d1[l - 2]
    return out


# ---- the outer-product approximation and its sequential inverse ----------------------------------------
def outer_product_vectors(net: MLP, theta: Any, X: Any, Y: Any, chunk_size: int = 256) -> np.ndarray:
    r"""The vectors b of Bishop's outer-product approximation, one row each: (n·d, N), float64.

    Row (k, c) is :math:`\sqrt{s}\, J_kᵀ C_k[:, c]` with H_out,k = C_k C_kᵀ the loss Hessian's factor
    (SPEC §3), so :math:`\sum b bᵀ = s \sum_k J_kᵀ H_{out,k} J_k` = G − λP_W. For mse this is PRML 5.84
    (b = ∇_θ f per output); for sigmoid cross-entropy 5.85 (the factor √(σ(1−σ)) folded into b). J comes
    from ``Curvature.jvp`` in blocks of ``chunk_size`` unit vectors: O(n·d·N) memory, for small nets.
    """
    check_net(net)
    chunk_size = as_int(chunk_size, "chunk_size", low=1)
    c = net.linearize(theta, X, Y)
    N = net.num_params
    lay = _layer_pass(net, theta, X, Y)
    _, aux = _loss_terms(net, lay)
    Ct = LOSSES[net.loss_name].hout_factor(aux, lay.F)  # (n, d, d): H_out = C Cᵀ, Ct = Cᵀ
    n, d = lay.F.shape
    B = np.empty((n, d, N))
    for s in range(0, N, chunk_size):
        e = min(N, s + chunk_size)
        E = np.zeros((N, e - s), dtype=c.dtype)
        E[np.arange(s, e), np.arange(e - s)] = 1
        J = np.asarray(c.jvp(E), dtype=np.float64)  # (n, d, e − s)
        B[:, :, s:e] = np.einsum("kcd,kdj->kcj", Ct, J)
    return np.sqrt(lay.scale) * B.reshape(n * d, N)


def outer_product(net: MLP, theta: Any, X: Any, Y: Any) -> np.ndarray:
    """Bishop's outer-product (Levenberg–Marquardt) approximation of H: Σ b bᵀ + λP_W, dense (N, N) float64.

    For mse, softmax and sigmoid cross-entropy this is exactly the Gauss–Newton matrix G (``c.gnh()``),
    assembled here from the explicit vectors of ``outer_product_vectors`` (cost 2·n·d·N² flops).
    """
    B = outer_product_vectors(net, theta, X, Y)
    return B.T @ B + np.diag(net.spec.l2 * net.spec.weight_mask())


def sherman_morrison(B: Any, alpha: float) -> np.ndarray:
    r"""(αI + Σ_m b_m b_mᵀ)⁻¹ by sequential rank-one Sherman–Morrison updates (PRML §5.4.3).

    Starting from H_0⁻¹ = I/α, each row b of B gives
    :math:`H_{m+1}^{-1} = H_m^{-1} - \frac{(H_m^{-1} b)(H_m^{-1} b)ᵀ}{1 + bᵀ H_m^{-1} b}`; O(N²) per update,
    in float64 and re-symmetrised after every update so rounding errors do not pile up.

    Args:
        B: the vectors b as rows, (m, N) (for instance ``outer_product_vectors``), or one vector (N,).
        alpha: the starting multiple of the identity, > 0.

    Returns:
        The inverse (N, N), float64.

    Raises:
        ValueError: B not of shape (m, N) or (N,), or holding NaN or Inf.
        FloatingPointError: the updates overflow float64 (alpha tiny against the scale of B).
    """
    alpha = as_real(alpha, "alpha", low=0.0, open_low=True)
    B = np.atleast_2d(np.asarray(as_float(B, "B", None, ndim=(1, 2)), dtype=np.float64))
    Hinv = np.eye(B.shape[1]) / alpha
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # reported below
        for b in B:
            u = Hinv @ b
            Hinv -= np.outer(u, u) / (1.0 + b @ u)
            Hinv = 0.5 * (Hinv + Hinv.T)
    if not np.isfinite(Hinv).all():
        raise FloatingPointError(f"the updates overflowed float64 (alpha={alpha:g}, largest |b| entry "
                                 f"{np.abs(B).max():.3g}): raise alpha or scale B down")
    return Hinv


# ---- finite differences -----------------------------------------------------------------------------
def check_hessian(net: MLP, theta: Any, X: Any, Y: Any, directions: int = 4, h: float | None = None,
                  seed: int | None = 0) -> float:
    r"""The largest relative difference between ``hvp`` and central differences of the gradient.

    For random unit directions v, compares H v with
    :math:`[∇E(θ + h v) - ∇E(θ - h v)] / (2h)` (PRML 5.91, O(h²) accurate) and returns
    max_v ‖Hv − fd‖ / max(‖Hv‖, ‖fd‖). Everything runs in float64 (float32 inputs are cast), with the
    step h = ε^{1/3}·max(1, ‖θ‖) ≈ 6e−6·max(1, ‖θ‖) by default (ALGORITHMS §8.4), so a correct Hessian
    gives about 1e−8 on smooth nets (exactly rounding level on a quadratic). Near ReLU kinks finite
    differences are meaningless; use smooth activations to check.

    Args:
        net: the network.
        theta: parameters (N,).
        X: inputs (n, n0).
        Y: targets.
        directions: number of random directions.
        h: the finite-difference step (default as above).
        seed: seed of the directions.

    Returns:
        The maximum relative error, a Python float.
    """
    check_net(net)
    directions = as_int(directions, "directions", low=1)
    theta, X, Y = (_float64(a) for a in (theta, X, Y))
    theta = np.asarray(theta)
    c = net.linearize(theta, X, Y)
    if h is None:
        h = np.finfo(np.float64).eps ** (1 / 3) * max(1.0, float(np.linalg.norm(theta)))
    h = as_real(h, "h", low=0.0, open_low=True)
    rng = np.random.default_rng(None if seed is None else as_int(seed, "seed", low=0))
    V = rng.standard_normal((net.num_params, directions))
    V /= np.linalg.norm(V, axis=0)
    HV = c.hvp(V)
    worst = 0.0
    for j in range(directions):
        fd = (net.grad(theta + h * V[:, j], X, Y) - net.grad(theta - h * V[:, j], X, Y)) / (2 * h)
        denom = max(float(np.linalg.norm(HV[:, j])), float(np.linalg.norm(fd)))
        if denom > 0:
            worst = max(worst, float(np.linalg.norm(HV[:, j] - fd)) / denom)
    return worst
