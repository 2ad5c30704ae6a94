"""Martens' Hessian-free optimizer (ICML 2010), with the line search of Martens & Sutskever (2012)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._arrays import as_int, as_real
from ..linalg import check_curvature, check_net, product

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..curvature import Curvature
    from ..mlp import MLP


#: The model reduction −q(p) counts as negligible, and λ is left as it is, when at most this many machine
#: epsilons of the objective: the measured change of E is then mostly rounding.
_NEGLIGIBLE = 100.0


@dataclass
class CGRun:
    """What ``martens_cg`` returns.

    Attributes:
        x: the final iterate (the warm start of the next outer step).
        stored: (iteration i, x_i, φ(x_i)) at the backtracking indices ⌈γ^j⌉, ending with the final iterate.
        iterations: CG iterations run.
        reason: why it stopped: "progress", "residual", "max_iter" or "curvature".
    """

    x: np.ndarray
    stored: list[tuple[int, np.ndarray, float]]
    iterations: int
    reason: str


def martens_cg(mul: Callable[[np.ndarray], np.ndarray], b: np.ndarray, x0: np.ndarray | None = None,
               Minv: Callable[[np.ndarray], np.ndarray] | None = None, max_iter: int = 250, eps: float = 5e-4,
               tol: float = 1e-10, gamma: float = 1.3) -> CGRun:
    r"""Preconditioned CG on φ(x) = ½ xᵀAx − bᵀx with Martens' relative-progress stop.

    It stops at iteration i when i > k, φ(x_i) < 0 and (φ(x_i) − φ(x_{i−k}))/φ(x_i) < k·ε with
    k = max(10, 0.1·i); also when ‖b − Ax‖ ≤ tol·‖b‖, after ``max_iter`` iterations, or on a direction of
    non-positive curvature. φ is tracked without extra products as φ(x) = −½ xᵀ(r + b), r = b − Ax. The
    iterates at i = ⌈γ^j⌉ are kept for backtracking. A warm start x0 with φ(x0) ≥ 0 is dropped for 0;
    b = 0 returns x = 0 at once, without a product.
    """
    bnorm = float(np.linalg.norm(b))
    if bnorm == 0:  # x = 0 solves it exactly; a warm start could only raise φ
        x = np.zeros_like(b)
        return CGRun(x, [(0, x.copy(), 0.0)], 0, "residual")
    x = np.zeros_like(b) if x0 is None else np.array(x0, dtype=np.float64)
    r = b - mul(x) if np.any(x) else b.copy()
    if np.any(x) and -0.5 * float(x @ (r + b)) >= 0:
        x, r = np.zeros_like(b), b.copy()
    phis = [-0.5 * float(x @ (r + b))]
    # the powers γ^j ≤ max_iter, without forming those past it (a large γ overflows a float)
    last = 199 if gamma <= 1 else min(199, int(math.log(max(max_iter, 1)) / math.log(gamma)) + 1)
    save = {math.ceil(gamma**j) for j in range(1, last + 1) if gamma**j <= max_iter}
    stored: list[tuple[int, np.ndarray, float]] = []
    z = Minv(r) if Minv is not None else r
    p = z.copy()
    rz = float(r @ z)
    its, reason = 0, "max_iter"
    if np.linalg.norm(r) <= tol * bnorm:
        reason = "residual"
    while reason == "max_iter" and its < max_iter:
        Ap = mul(p)
        pAp = float(p @ Ap)
        if pAp <= 0:
            reason = "curvature"
            break
        a = rz / pAp
        x += a * p
        r -= a * Ap
        its += 1
        phi = -0.5 * float(x @ (r + b))
        phis.append(phi)
        if its in save:
            stored.append((its, x.copy(), phi))
        k = max(10, int(0.1 * its))
        if np.linalg.norm(r) <= tol * bnorm:
            reason = "residual"
        elif its > k and phi < 0 and (phi - phis[its - k]) / phi < k * eps:
            reason = "progress"
        else:
            z = Minv(r) if Minv is not None else r
            rz_new = float(r @ z)
            p = z + (rz_new / rz) * p
            rz = rz_new
    if not stored or stored[-1][0] != its:
        stored.append((its, x.copy(), phis[-1]))
    return CGRun(x, stored, its, reason)


def minibatch_product(c: Curvature, n: int, damping: float = 0.0) -> Callable[[np.ndarray], np.ndarray]:
    r"""V ↦ (Ĝ + damping·I) V, Ĝ the Gauss–Newton matrix of an n-sample batch estimated from the m samples of ``c``.

    The data part of G is s(n)·Σ over the batch (s the reduction's 1/n or 1) and λP_W does not depend on
    the samples, so Ĝ = r·(G_m − λP_W) + λP_W with r = n·s(n) / (m·s(m)): r = 1 for ``reduction="mean"``
    (both are averages), r = n/m for ``"sum"`` (a sum over m samples stands for one over n). Vectors of
    shape (N,), float64 in and out.
    """
    c = check_curvature(c)
    m = c.num_samples
    n = as_int(n, "n", low=m)
    damping = as_real(damping, "damping", low=0.0)
    spec = c.net.spec
    ratio = n / m if spec.reduction == "sum" else 1.0  # n·s(n) / (m·s(m)), without rounding
    if ratio == 1.0:
        return product(c, "gnh", damping)
    base = product(c, "gnh")
    shift = (1.0 - ratio) * spec.l2 * spec.weight_mask() + damping  # r·G_m V + shift·V = (Ĝ + δI) V

    def mul(V: np.ndarray) -> np.ndarray:
        return ratio * base(V) + shift * np.asarray(V, dtype=np.float64)

    return mul


class HessianFree:
    r"""Martens' Hessian-free optimizer (2010), in full (ALGORITHMS §7.1).

    Each ``step`` minimizes the damped Gauss–Newton model
    :math:`q(p) = gᵀp + \frac12 pᵀ(G + λI)p` by CG on Gauss–Newton products:

    - **curvature mini-batch**: G comes from ``curvature_batch`` samples drawn afresh each step (all of the
      batch by default); the gradient and the objective use the whole batch. With ``reduction="sum"`` the
      mini-batch's data part is scaled by n/m (``minibatch_product``), so that G, the gradient, the objective
      and the preconditioner (from the whole batch) all stand for the same n-sample sum;
    - **Tikhonov damping with the Levenberg–Marquardt rule**: with ρ = (E(θ+p) − E(θ))/(q(p) − q(0)),
      λ ← 3/2·λ if ρ < 1/4 and λ ← 2/3·λ if ρ > 3/4. Where the predicted reduction is at rounding level,
      −q(p) ≤ 100·ε·|E(θ)| with ε the working dtype's machine epsilon (near a stationary point), the
      measured E(θ+p) − E(θ) is rounding noise: ρ is NaN and λ stays. A zero gradient gives a zero step
      at once, without CG;
    - **CG** with the relative-progress stop (``martens_cg``), preconditioned by
      M = [diag(s Σ_i ∇ℓ_i ⊙ ∇ℓ_i) + λI]^α, α = 0.75 (the empirical Fisher diagonal, from the step's own
      linearization on its engine: ``Curvature.empirical_fisher_diagonal``, one layer-GEMM per layer);
    - **warm start** of CG at ζ·p_prev, p_prev the previous step's final CG iterate, ζ = 0.95;
    - **CG backtracking**: of the iterates kept at i = ⌈γ^j⌉ (γ = 1.3), walk back from the last while the
      objective keeps decreasing;
    - **line search** (Martens & Sutskever 2012): accept α if E(θ+αp) ≤ E(θ) + 10⁻²·α·gᵀp, else α ← 0.8α,
      up to 60 tries; no step if none passes.

    Args:
        net: the network.
        damping: the initial λ ≥ 0.
        adapt_damping: apply the λ rule (off: λ stays fixed).
        cg_max_iter: CG iterations at most per step.
        cg_eps: ε of the relative-progress stop.
        cg_tol: CG also stops when ‖r‖ ≤ cg_tol·‖g‖.
        warm_start: ζ (0 starts every CG at zero).
        backtrack: γ > 1 (the spacing of the kept iterates).
        preconditioner: use M above.
        precond_exponent: α.
        curvature_batch: samples in the curvature mini-batch (None: the whole batch).
        line_search: run the Armijo line search.
        seed: seed of the mini-batch draws.

    Attributes:
        damping: the current λ.
        history: one dict per step: loss, new_loss, rho (NaN where the model reduction is negligible),
            damping (the λ used), cg_iterations, cg_stop, backtracked_to (the CG iteration taken), alpha
            (0: no step).

    Example (one step reaches the least-squares solution of a linear model):
        >>> import numpy as np, pyhessk as hk
        >>> rng = np.random.default_rng(0)
        >>> X, Y = rng.standard_normal((30, 3)), rng.standard_normal((30, 1))
        >>> net = hk.MLP([3, 1], loss="mse", backend="numpy")
        >>> theta = hk.optim.HessianFree(net, damping=0.0).step(net.init(seed=0), X, Y)
        >>> bool(np.linalg.norm(net.grad(theta, X, Y)) < 1e-10)
        True
    """

    def __init__(self, net: MLP, damping: float = 1.0, adapt_damping: bool = True, cg_max_iter: int = 250,
                 cg_eps: float = 5e-4, cg_tol: float = 1e-10, warm_start: float = 0.95, backtrack: float = 1.3,
                 preconditioner: bool = True, precond_exponent: float = 0.75, curvature_batch: int | None = None,
                 line_search: bool = True, seed: int | None = 0) -> None:
        self.net = check_net(net)
        self.damping = as_real(damping, "damping", low=0.0)
        self.adapt_damping = bool(adapt_damping)
        self.cg_max_iter = as_int(cg_max_iter, "cg_max_iter", low=1)
        self.cg_eps = as_real(cg_eps, "cg_eps", low=0.0)
        self.cg_tol = as_real(cg_tol, "cg_tol", low=0.0)
        self.warm_start = as_real(warm_start, "warm_start", low=0.0)
        self.backtrack = as_real(backtrack, "backtrack", low=1.0, open_low=True)
        self.preconditioner = bool(preconditioner)
        self.precond_exponent = as_real(precond_exponent, "precond_exponent", low=0.0)
        self.curvature_batch = None if curvature_batch is None else as_int(curvature_batch, "curvature_batch", low=1)
        self.line_search = bool(line_search)
        self._rng = np.random.default_rng(None if seed is None else as_int(seed, "seed", low=0))
        self._p_prev: np.ndarray | None = None
        self.history: list[dict[str, Any]] = []

    def step(self, theta: Any, X: Any, Y: Any) -> np.ndarray:
        """One outer iteration on the batch (X, Y); returns the new θ (θ itself is not modified)."""
        net = self.net
        c = net.linearize(theta, X, Y)
        dt = c.dtype  # the working dtype: integer or list θ computes (and steps) in float64
        theta = np.asarray(theta, dtype=dt)
        E0 = c.loss
        g = np.asarray(c.grad, dtype=np.float64)
        lam = self.damping
        if not np.any(g):  # a stationary point: the model's minimizer is p = 0, no CG needed
            self._p_prev = np.zeros_like(g)
            self.history.append({"loss": E0, "new_loss": E0, "rho": math.nan, "damping": lam, "cg_iterations": 0,
                                 "cg_stop": "residual", "backtracked_to": 0, "alpha": 0.0})
            return theta.copy()
        n = c.num_samples
        if self.curvature_batch is not None and self.curvature_batch < n:
            idx = np.sort(self._rng.choice(n, self.curvature_batch, replace=False))
            mul = minibatch_product(net.linearize(theta, np.asarray(X)[idx], np.asarray(Y)[idx]), n, lam)
        else:
            mul = product(c, "gnh", lam)
        Minv = None
        if self.preconditioner:
            fisher = np.asarray(c.empirical_fisher_diagonal(), dtype=np.float64)
            m = (fisher + lam) ** self.precond_exponent
            m = np.maximum(m, 1e-12 * max(float(m.max()), 1e-300))
            Minv = lambda r: r / m  # noqa: E731
        x0 = None if self._p_prev is None or self.warm_start == 0 else self.warm_start * self._p_prev
        run = martens_cg(mul, -g, x0, Minv, self.cg_max_iter, self.cg_eps, self.cg_tol, self.backtrack)
        self._p_prev = run.x

        def objective(p: np.ndarray) -> float:
            try:
                return net.loss((theta + p).astype(dt), X, Y)
            except FloatingPointError:  # the trial point overflowed the network: treat it as no decrease
                return math.inf

        best = len(run.stored) - 1
        E_best = objective(run.stored[best][1])
        for j in range(best - 1, -1, -1):
            E_j = objective(run.stored[j][1])
            if E_j >= E_best:
                break
            best, E_best = j, E_j
        it, p, phi = run.stored[best]
        # a negligible model reduction (p = 0 included): E(θ+p) − E(θ) would measure rounding, λ stays
        negligible = -phi <= _NEGLIGIBLE * np.finfo(dt).eps * abs(E0)
        rho = math.nan if negligible else (E_best - E0) / phi
        if self.adapt_damping and not math.isnan(rho):
            if rho < 0.25:
                self.damping = lam * 1.5
            elif rho > 0.75:
                self.damping = lam * (2.0 / 3.0)
        alpha, E_new = 1.0, E_best
        slope = float(g @ p)
        if self.line_search:
            if slope >= 0:
                alpha, E_new = 0.0, E0
            else:
                for _ in range(60):
                    if E_new <= E0 + 1e-2 * alpha * slope:
                        break
                    alpha *= 0.8
                    E_new = objective(alpha * p)
                else:
                    alpha, E_new = 0.0, E0
        self.history.append({"loss": E0, "new_loss": E_new, "rho": rho, "damping": lam,
                             "cg_iterations": run.iterations, "cg_stop": run.reason, "backtracked_to": it,
                             "alpha": alpha})
        return (theta + alpha * p).astype(dt)
