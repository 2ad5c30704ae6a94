"""Levenberg–Marquardt for MLPs (Hagan & Menhaj, IEEE TNN 1994), on the Gauss–Newton matrix of any loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.linalg

from .._arrays import as_int, as_real
from ..linalg import cg, check_net, product

if TYPE_CHECKING:
    from ..mlp import MLP

SOLVERS = ("auto", "dense", "cg")
#: μ never falls below the smallest normal float64: μ = 0 would stay 0 under μ·mu_inc, and a rejected step
#: would then never end.
_MU_MIN = float(np.finfo(np.float64).tiny)


class LevenbergMarquardt:
    r"""Levenberg–Marquardt steps :math:`(G + μI)\,Δθ = -g` with Marquardt's μ rule (ALGORITHMS §7.2).

    Hagan & Menhaj solve (JᵀJ + μI)Δθ = −Jᵀe for a sum of squares; with the mse loss and
    ``reduction="sum"`` that is this step exactly (G = JᵀJ, g = Jᵀe). With ``"mean"`` the same step has
    μ scaled by 1/n, and for the cross-entropy losses G is their Gauss–Newton (Fisher) matrix.

    Each ``step`` tries μ: if the objective decreases it accepts the step and sets μ ← μ·``mu_dec`` (never
    below the smallest normal float64); otherwise μ ← μ·``mu_inc`` and it solves again, giving up (θ
    unchanged) once μ exceeds ``mu_max``. After a step that gave up, μ is ``mu_max``: the next step (on
    the same batch or a new one) starts from the most damped step and tries again, and its history entry
    says ``exhausted`` (a μ above ``mu_max`` set by hand is taken as ``mu_max``). Defaults are MATLAB ``trainlm``'s. The linear systems are solved

    - ``"dense"``: with the explicit G from ``c.gnh()`` (N Gauss–Newton product columns, once per step)
      and a Cholesky factorisation per μ (N³/3 flops);
    - ``"cg"``: by CG on the damped Gauss–Newton operator (one product per iteration), to ``cg_rtol``;
    - ``"auto"``: dense when N ≤ ``max_dense_params``, CG otherwise.

    Args:
        net: the network.
        mu: the initial μ, 0 < μ ≤ ``mu_max``.
        mu_dec: factor applied to μ after an accepted step (< 1).
        mu_inc: factor applied to μ after a rejected trial (> 1).
        mu_max: the largest μ tried.
        min_grad: no step when ‖g‖ is below this.
        solver: "auto", "dense" or "cg".
        max_dense_params: the size up to which "auto" picks "dense".
        cg_rtol: CG's relative residual tolerance.
        cg_max_iter: CG iterations at most (default 10·N).

    Attributes:
        mu: the current μ.
        history: one dict per step: loss, new_loss, mu (the μ of the accepted step, or the last tried),
            trials, solver, accepted, exhausted (every μ up to ``mu_max`` was rejected, and μ was set to
            ``mu_max``).

    Example (with μ → 0 a linear model reaches its least-squares solution in one step):
        >>> import numpy as np, pyhessk as hk
        >>> rng = np.random.default_rng(0)
        >>> X, Y = rng.standard_normal((30, 3)), rng.standard_normal((30, 1))
        >>> net = hk.MLP([3, 1], loss="mse", backend="numpy")
        >>> theta = hk.optim.LevenbergMarquardt(net, mu=1e-14).step(net.init(seed=0), X, Y)
        >>> bool(np.linalg.norm(net.grad(theta, X, Y)) < 1e-10)
        True
    """

    def __init__(self, net: MLP, mu: float = 1e-3, mu_dec: float = 0.1, mu_inc: float = 10.0, mu_max: float = 1e10,
                 min_grad: float = 1e-7, solver: str = "auto", max_dense_params: int = 1024, cg_rtol: float = 1e-8,
                 cg_max_iter: int | None = None) -> None:
        self.net = check_net(net)
        self.mu = as_real(mu, "mu", low=0.0, open_low=True)
        self.mu_dec = as_real(mu_dec, "mu_dec", low=0.0, high=1.0, open_low=True, open_high=True)
        self.mu_inc = as_real(mu_inc, "mu_inc", low=1.0, open_low=True)
        self.mu_max = as_real(mu_max, "mu_max", low=0.0, open_low=True)
        if self.mu > self.mu_max:
            raise ValueError(f"mu must be <= mu_max ({self.mu_max}), got {self.mu}")
        self.min_grad = as_real(min_grad, "min_grad", low=0.0)
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")
        self.solver = solver
        self.max_dense_params = as_int(max_dense_params, "max_dense_params", low=0)
        self.cg_rtol = as_real(cg_rtol, "cg_rtol", low=0.0)
        self.cg_max_iter = None if cg_max_iter is None else as_int(cg_max_iter, "cg_max_iter", low=1)
        self.history: list[dict[str, Any]] = []

    def step(self, theta: Any, X: Any, Y: Any) -> np.ndarray:
        """One Levenberg–Marquardt step on the batch (X, Y); returns the new θ (θ itself is not modified)."""
        net = self.net
        c = net.linearize(theta, X, Y)
        dt = c.dtype  # the working dtype: integer or list θ computes (and steps) in float64
        theta = np.asarray(theta, dtype=dt)
        E0 = c.loss
        g = np.asarray(c.grad, dtype=np.float64)
        N = c.num_params
        solver = self.solver
        if solver == "auto":
            solver = "dense" if N <= self.max_dense_params else "cg"
        mu = min(self.mu, self.mu_max)
        record = {"loss": E0, "new_loss": E0, "mu": mu, "trials": 0, "solver": solver, "accepted": False,
                  "exhausted": False}
        self.history.append(record)
        if np.linalg.norm(g) < self.min_grad:
            return theta.copy()
        if solver == "dense":
            G = np.asarray(c.gnh(max_params=max(N, 1)), dtype=np.float64)
            G = 0.5 * (G + G.T)

            def solve(mu: float) -> np.ndarray:
                try:
                    return scipy.linalg.cho_solve(scipy.linalg.cho_factor(G + mu * np.eye(N)), -g)
                except np.linalg.LinAlgError:  # G + μI not numerically positive definite: reject this μ
                    return np.full(N, np.nan)
        else:
            mul = product(c, "gnh")

            def solve(mu: float) -> np.ndarray:
                try:
                    with np.errstate(over="ignore", invalid="ignore"):  # cg raises on a product that overflowed
                        return cg(lambda V: mul(V) + mu * V, -g, rtol=self.cg_rtol, maxiter=self.cg_max_iter).x
                except FloatingPointError:  # the damped products overflowed: reject this μ
                    return np.full(N, np.nan)

        while mu <= self.mu_max:
            record["trials"] += 1
            record["mu"] = mu
            delta = solve(mu)
            if np.all(np.isfinite(delta)):
                try:
                    E1 = net.loss((theta + delta).astype(dt), X, Y)
                except FloatingPointError:  # the trial step overflowed the network: reject it
                    E1 = np.inf
                if E1 < E0:
                    record.update(new_loss=E1, accepted=True)
                    self.mu = max(mu * self.mu_dec, _MU_MIN)
                    return (theta + delta).astype(dt)
            mu *= self.mu_inc
        record["exhausted"] = True
        self.mu = self.mu_max
        return theta.copy()
