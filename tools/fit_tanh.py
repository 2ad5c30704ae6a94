"""The coefficients of the C++ engine's float32 tanh (csrc/common/math.h): a rational fit

    tanh(x) ≈ x · P(x²) / Q(x²),  P of degree 4, Q of degree 4 with Q(0) = 1,

on [0, 9] for relative error, by Loeb's linearized least squares with Lawson's reweighting (each round
solves for P and Q with the previous Q in the weights, and raises the weight where the error is largest),
in float64. The fit is done in u = (x/9)² for conditioning and converted back to powers of x². Prints the
coefficients and the fit's maximum relative error (about 2e-8; float32 arithmetic adds ~2.5 eps, which
csrc/tests/tanh_driver.cpp measures over every float).

    python tools/fit_tanh.py
"""

import numpy as np

X = 9.0  # beyond it, tanh in float32 is within an ulp of 1 and the engine returns ±1
DEG_P, DEG_Q = 4, 4


def fit(dp: int = DEG_P, dq: int = DEG_Q, rounds: int = 80) -> tuple[float, np.ndarray, np.ndarray]:
    x = np.concatenate([np.linspace(1e-4, X, 60000), np.geomspace(1e-7, 1e-4, 300)])
    u, t = (x / X) ** 2, np.tanh(x)
    w, q_prev, best = np.ones_like(x), np.ones_like(x), None
    for _ in range(rounds):
        A = np.concatenate([x[:, None] * u[:, None] ** np.arange(dp + 1),
                            -t[:, None] * u[:, None] ** np.arange(1, dq + 1)], axis=1)
        s = np.sqrt(w) / (t * q_prev)
        c, *_ = np.linalg.lstsq(A * s[:, None], t * s, rcond=None)
        p, q = c[:dp + 1], np.concatenate([[1.0], c[dp + 1:]])
        P, Q = np.polyval(p[::-1], u), np.polyval(q[::-1], u)
        err = np.abs((x * P / Q - t) / t)
        if best is None or err.max() < best[0]:
            best = (float(err.max()), p, q)
        q_prev = Q
        w = np.maximum(w * err / (w * err).sum(), 1e-15)
    m, p, q = best
    scale = X ** (-2.0 * np.arange(max(dp, dq) + 1))
    return m, p * scale[:dp + 1], q * scale[:dq + 1]


if __name__ == "__main__":
    m, p, q = fit()
    print(f"max relative error of the fit: {m:.3g}")
    print("P (x^0 .. x^8):", ", ".join(f"{v:.17g}" for v in p))
    print("Q (x^0 .. x^8):", ", ".join(f"{v:.17g}" for v in q))
