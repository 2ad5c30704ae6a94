"""The user-facing model: ``MLP`` holds the architecture, validates every input and calls one engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _dispatch, _spec
from ._arrays import _check_host, as_float, as_int, as_real, is_gpu_array, to_cupy, to_host_copy, working_dtype
from .backends._base import ModelSpec

if TYPE_CHECKING:
    from .curvature import Curvature


class MLP:
    r"""A fully connected network with a loss, and the entry point to its curvature.

    The model is ``a_0 = x``, ``z_l = W_l a_{l-1} + b_l``, ``a_l = φ_l(z_l)`` for hidden layers and a
    linear output ``f = z_L``; the objective is
    :math:`L(θ) = \frac{1}{n}\sum_k ℓ(f(x_k; θ), y_k) + \frac{λ}{2}\sum_l \lVert W_l\rVert_F^2`
    (no 1/n with ``reduction="sum"``). θ is flat, layer by layer: W_1 row-major, b_1, W_2, b_2, … — the
    order of ``torch.nn.Sequential(Linear, act, …).parameters()``.

    Args:
        sizes: layer widths ``[n0, n1, ..., nL]``, at least two, all ≥ 1.
        activation: one hidden activation name for all hidden layers, or a list of L − 1 names; see
            ``pyhessk._spec.ACTIVATIONS`` (identity, tanh, sigmoid, relu, leaky_relu, softplus, gelu, silu, sin).
        loss: "mse" (½‖f − y‖²), "softmax_cross_entropy" (alias "cross_entropy") or
            "sigmoid_cross_entropy" (alias "binary_cross_entropy").
        l2: weight decay λ ≥ 0 on the weights (not the biases).
        reduction: "mean" (default) or "sum" over samples.
        bias: whether the layers have biases.
        backend: "auto" (the fastest engine available) or an engine name from
            ``pyhessk.available_backends()``.

    Raises:
        ValueError: on unknown names, empty or non-positive layer sizes, or a wrong activation list length.
        TypeError: on arguments of the wrong type.
        RuntimeError: if a named engine cannot run here (the message says why).

    Example:
        >>> import numpy as np, pyhessk as hk
        >>> net = hk.MLP([3, 5, 2], activation="tanh", loss="mse", backend="numpy")
        >>> theta = net.init(seed=0)
        >>> net.num_params
        32
    """

    def __init__(self, sizes: Sequence[int], activation: str | Sequence[str] = "tanh", loss: str = "mse",
                 l2: float = 0.0, reduction: str = "mean", bias: bool = True, backend: str = "auto") -> None:
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence | np.ndarray):
            raise TypeError(f"sizes must be a sequence of layer widths, got {type(sizes).__name__}")
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least an input and an output width, got {list(sizes)}")
        widths = tuple(as_int(s, f"sizes[{i}]") for i, s in enumerate(sizes))
        if min(widths) < 1:
            raise ValueError(f"sizes: every layer needs at least one unit, got {list(widths)}")
        n_hidden = len(widths) - 2
        if isinstance(activation, str):
            acts = (_spec.activation(activation).name,) * n_hidden
        elif isinstance(activation, Sequence) and not isinstance(activation, (bytes, bytearray)):
            if len(activation) != n_hidden:
                raise ValueError(
                    f"activation: a list needs one name per hidden layer ({n_hidden}), got {len(activation)}"
                )
            acts = tuple(_spec.activation(a, f"activation[{i}]").name for i, a in enumerate(activation))
        else:
            raise TypeError(f"activation must be a name or a list of names, got {type(activation).__name__}")
        loss_name = _spec.loss(loss).name
        if not isinstance(reduction, str):
            raise TypeError(
                f"reduction must be a string, one of {list(_spec.REDUCTIONS)}, got {type(reduction).__name__}"
            )
        if reduction.strip().lower() not in _spec.REDUCTIONS:
            raise ValueError(f"reduction must be one of {list(_spec.REDUCTIONS)}, got {reduction!r}")
        reduction = reduction.strip().lower()
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be True or False, got {type(bias).__name__}")
        self._model = ModelSpec(widths, acts, loss_name, as_real(l2, "l2", low=0.0), reduction, bool(bias))
        self._engine = _dispatch.get(backend)
        self._auto = isinstance(backend, str) and backend.strip().lower() == "auto"

    # ---- description -----------------------------------------------------------------------------------
    @property
    def sizes(self) -> list[int]:
        return list(self._model.sizes)

    @property
    def activations(self) -> list[str]:
        """Canonical activation name of each hidden layer."""
        return list(self._model.activations)

    @property
    def loss_name(self) -> str:
        return self._model.loss

    @property
    def l2(self) -> float:
        return self._model.l2

    @property
    def reduction(self) -> str:
        return self._model.reduction

    @property
    def bias(self) -> bool:
        return self._model.bias

    @property
    def num_params(self) -> int:
        return self._model.num_params

    @property
    def backend(self) -> str:
        """The name of the engine this network runs on (``"auto"`` resolved)."""
        return self._engine.name

    @property
    def spec(self) -> ModelSpec:
        """The engine-facing description of the architecture."""
        return self._model

    def __repr__(self) -> str:
        m = self._model
        acts = m.activations[0] if len(set(m.activations)) == 1 else list(m.activations)
        return (f"MLP(sizes={list(m.sizes)}, activation={acts!r}, loss={m.loss!r}, l2={m.l2}, "
                f"reduction={m.reduction!r}, bias={m.bias}, backend={self.backend!r})")

    # ---- parameters ------------------------------------------------------------------------------------
    def init(self, seed: int | None = 0, dtype: Any = "float64") -> np.ndarray:
        """Random parameters: W_l ~ N(0, 1)/√n_{l−1}, b_l ~ 0.1·N(0, 1); a fresh 1-D array of length N."""
        dt = working_dtype(dtype)
        rng = np.random.default_rng(None if seed is None else as_int(seed, "seed", low=0))
        theta = np.empty(self.num_params, dtype=np.float64)
        for l in range(1, self._model.num_layers + 1):
            W, b = self._model.layer_views(theta, l)
            W[...] = rng.standard_normal(W.shape) / np.sqrt(W.shape[1])
            if b is not None:
                b[...] = 0.1 * rng.standard_normal(b.shape)
        return theta.astype(dt)

    def unflatten(self, theta: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Views ``([W_1, …, W_L], [b_1, …, b_L])`` into θ (W_l of shape (n_l, n_{l−1})); no biases → [].

        On the ``cuda`` engine a GPU θ gives CuPy views (θ must then be a CuPy float32 or float64 array)."""
        on_gpu = self._on_device(theta=theta)
        theta = self._device_theta_views(theta) if on_gpu else self._theta(theta, copy_ok=False)
        pairs = [self._model.layer_views(theta, l) for l in range(1, self._model.num_layers + 1)]
        return [W for W, _ in pairs], [b for _, b in pairs if b is not None]

    def flatten(self, Ws: Sequence[Any], bs: Sequence[Any] | None = None) -> np.ndarray:
        """The flat θ from lists of weights (n_l, n_{l−1}) and biases (n_l,); the inverse of ``unflatten``.

        On the ``cuda`` engine (or ``backend="auto"`` with a GPU), GPU arrays give a CuPy θ on their device."""
        L = self._model.num_layers
        n_b = L if self.bias else 0
        if not isinstance(Ws, Sequence) or isinstance(Ws, (str, bytes)):
            raise TypeError(f"Ws must be a list of {L} weight matrices, got {type(Ws).__name__}")
        if len(Ws) != L:
            raise ValueError(f"Ws must be a list of {L} weight matrices (one per layer), got {len(Ws)}")
        bs = [] if bs is None else bs
        if not isinstance(bs, Sequence) or isinstance(bs, (str, bytes)):
            raise TypeError(f"bs must be a list of {n_b} bias vectors (bias={self.bias}), got {type(bs).__name__}")
        if len(bs) != n_b:
            raise ValueError(f"bs must be a list of {n_b} bias vectors (bias={self.bias}), got {len(bs)}")
        device = self._on_device(**{f"Ws[{l}]": w for l, w in enumerate(Ws)},
                                 **{f"bs[{l}]": b for l, b in enumerate(bs)})
        if device:
            import cupy as xp
        else:
            xp = np
        first = as_float(Ws[0], "Ws[0]", None, device=device)
        theta = xp.empty(self.num_params, dtype=first.dtype)
        for l in range(1, L + 1):
            W, b = self._model.layer_views(theta, l)
            w = as_float(Ws[l - 1], f"Ws[{l - 1}]", first.dtype, ndim=2, ref="Ws[0]", device=device)
            if w.shape != W.shape:
                raise ValueError(f"Ws[{l - 1}] must have shape {W.shape}, got {w.shape}")
            W[...] = xp.asarray(w)
            if b is not None:
                v = as_float(bs[l - 1], f"bs[{l - 1}]", first.dtype, ndim=1, ref="Ws[0]", device=device)
                if v.shape != b.shape:
                    raise ValueError(f"bs[{l - 1}] must have shape {b.shape}, got {v.shape}")
                b[...] = xp.asarray(v)
        return theta

    # ---- validation --------------------------------------------------------------------------------------
    def _engine_for(self, **arrays: Any) -> Any:
        """The engine for these inputs: this MLP's, except that ``backend="auto"`` sends GPU arrays to ``cuda``."""
        gpu = next((name for name, a in arrays.items() if is_gpu_array(a)), None)
        if gpu is None or self._engine.name == "cuda" or not self._auto:
            return self._engine  # a CPU engine given GPU arrays: as_float raises the TypeError
        engine, reason = _dispatch.probe("cuda")
        if engine is None:
            raise TypeError(f"{gpu} is a GPU array, but the 'cuda' engine cannot run here: {reason}")
        return engine

    def _on_device(self, **arrays: Any) -> bool:
        """Whether these arrays are handled on the GPU: one of them is a GPU array and their engine is ``cuda``
        (``backend="auto"`` with no usable GPU engine raises ``_engine_for``'s TypeError)."""
        if not any(is_gpu_array(a) for a in arrays.values()):
            return False
        return self._engine_for(**arrays).name == "cuda"

    def _device_theta_views(self, theta: Any) -> Any:
        """A GPU θ as the CuPy array to take views of (no copy; ``unflatten`` on the ``cuda`` engine)."""
        arr = to_cupy(theta, "theta")
        if arr.dtype not in (np.float32, np.float64):
            raise TypeError(f"theta must be a float32 or float64 array to take views of it, got {arr.dtype}")
        if arr.ndim != 1:
            raise ValueError(f"theta must be 1-D, got shape {arr.shape}")
        self._check_length(arr)
        return arr

    def _check_length(self, theta: Any) -> None:
        if theta.shape[0] != self.num_params:
            raise ValueError(
                f"theta must have length {self.num_params} (num_params of {self.sizes}), got {theta.shape[0]}"
            )

    def _theta(self, theta: Any, copy_ok: bool = True, device: bool = False) -> np.ndarray:
        if copy_ok:
            arr = as_float(theta, "theta", None, ndim=1, device=device)
        else:
            _check_host(theta, "theta")
            if not isinstance(theta, np.ndarray) or theta.dtype not in (np.float32, np.float64):
                got = theta.dtype if isinstance(theta, np.ndarray) else type(theta).__name__
                raise TypeError(f"theta must be a float32 or float64 NumPy array to take views of it, got {got}")
            arr = theta
            if arr.ndim != 1:
                raise ValueError(f"theta must be 1-D, got shape {arr.shape}")
        self._check_length(arr)
        return arr

    def _inputs(self, theta: Any, X: Any, engine: Any = None) -> tuple[np.ndarray, np.ndarray]:
        device = engine is not None and engine.name == "cuda"
        th = self._theta(theta, device=device)
        x = as_float(X, "X", th.dtype, ndim=2, device=device)
        n0 = self._model.sizes[0]
        if x.shape[1] != n0:
            raise ValueError(f"X must have shape (n, {n0}) (one sample per row), got {x.shape}")
        if x.shape[0] < 1:
            raise ValueError("X must hold at least one sample")
        return th, x

    def _targets(self, Y: Any, n: int, dtype: np.dtype, device: bool = False) -> np.ndarray:
        """Canonical targets T (n, d) of the working dtype; class labels become one-hot rows.

        On the ``cuda`` engine, GPU targets are checked on the host (n·d values) and uploaded by the engine.
        """
        d = self._model.sizes[-1]
        loss = self._model.loss
        if device and is_gpu_array(Y):
            Y = to_host_copy(Y, "Y")
        if is_gpu_array(Y):
            as_float(Y, "Y", dtype)  # raises the GPU-array error
        y = np.asarray(Y)
        if loss == "softmax_cross_entropy" and y.dtype.kind in "iu" and y.ndim == 1:
            if y.shape != (n,):
                raise ValueError(f"Y: integer class labels must have shape ({n},), got {y.shape}")
            if y.size and (y.min() < 0 or y.max() >= d):
                bad = y[(y < 0) | (y >= d)][0]
                raise ValueError(f"Y: label {bad} is out of range; labels must lie in [0, {d})")
            T = np.zeros((n, d), dtype=dtype)
            T[np.arange(n), y] = 1
            return T
        if loss == "softmax_cross_entropy" and y.dtype.kind == "b":
            raise TypeError("Y: softmax_cross_entropy takes integer labels or float probability rows, got bool")
        if loss == "softmax_cross_entropy" and y.ndim == 1:
            raise TypeError(f"Y: class labels must be integers, got dtype {y.dtype}")
        T = as_float(Y, "Y", dtype, ndim=(1, 2))
        if T.ndim == 1 and d == 1:
            T = T.reshape(-1, 1)
        if T.shape != (n, d):
            raise ValueError(f"Y must have shape ({n}, {d}) to match X and the output width, got {T.shape}")
        if loss == "softmax_cross_entropy":
            tol = max(100 * float(np.finfo(dtype).eps), 1e-6) * d  # float32 rows cast to float64 pass
            if (T < 0).any() or np.abs(T.sum(axis=1) - 1).max() > tol:
                raise ValueError("Y: probability targets must be non-negative rows that sum to 1")
        elif loss == "sigmoid_cross_entropy" and ((T < 0) | (T > 1)).any():
            raise ValueError("Y: sigmoid_cross_entropy targets must lie in [0, 1]")
        return T

    def _batch(self, theta: Any, X: Any, Y: Any, engine: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        th, x = self._inputs(theta, X, engine)
        device = engine is not None and engine.name == "cuda"
        return th, x, self._targets(Y, x.shape[0], th.dtype, device)

    # ---- evaluation ----------------------------------------------------------------------------------
    def forward(self, theta: Any, X: Any) -> np.ndarray:
        """Network outputs f(x_k; θ) for every row of X: shape (n, d).

        Raises:
            FloatingPointError: if the outputs overflow to Inf or NaN (finite but huge θ or X).
        """
        engine = self._engine_for(theta=theta, X=X)
        th, x = self._inputs(theta, X, engine)
        F = engine.forward(self._model, th, x)
        if not np.isfinite(F).all():
            raise FloatingPointError(_OVERFLOW.format(what="the network output"))
        return F

    def _linearization(self, theta: Any, X: Any, Y: Any, backward: bool) -> Any:
        engine = self._engine_for(theta=theta, X=X, Y=Y)
        lin = engine.linearize(self._model, *self._batch(theta, X, Y, engine), backward=backward)
        if not np.isfinite(lin.loss) or (lin.grad is not None and not np.isfinite(lin.grad).all()):
            raise FloatingPointError(_OVERFLOW.format(what="the objective or its gradient"))
        return lin

    def loss(self, theta: Any, X: Any, Y: Any) -> float:
        """The objective L(θ) on the batch (X, Y), as a Python float."""
        return float(self._linearization(theta, X, Y, backward=False).loss)

    def grad(self, theta: Any, X: Any, Y: Any) -> np.ndarray:
        """∇L(θ): shape (N,), the dtype of θ."""
        return self._linearization(theta, X, Y, backward=True).grad

    def linearize(self, theta: Any, X: Any, Y: Any) -> Curvature:
        """One fused forward + backward pass; the returned snapshot answers every curvature product."""
        from .curvature import Curvature

        return Curvature(self, self._linearization(theta, X, Y, backward=True))

    def _linearize_forward(self, theta: Any, X: Any, Y: Any) -> Curvature:
        """A snapshot with the forward pass only; the gradient pass runs when first needed."""
        from .curvature import Curvature

        return Curvature(self, self._linearization(theta, X, Y, backward=False))


_OVERFLOW = ("{what} overflowed to Inf/NaN at this theta and X (finite inputs, but too large for the "
             "working dtype); rescale the inputs or parameters, or use float64")
