r"""A stable functional API for library authors: products from ``(Ws, bs, X, Y)``, no objects to keep.

Every function takes the network as two lists, ``Ws = [W_1, …, W_L]`` with ``W_l`` of shape
``(n_l, n_{l−1})`` (SPEC §1: ``z_l = W_l a_{l−1} + b_l``, the layout of ``torch.nn.Linear.weight``) and
``bs = [b_1, …, b_L]`` with ``b_l`` of shape ``(n_l,)`` (``bs=None`` or ``[]`` for a network without
biases), plus the activation and loss names of ``pyhessk._spec`` and the objective's options (``l2``,
``reduction``) as keywords. The layer sizes are read off the weights.

Vectors come in one of two forms, and every answer comes back in the form it was given:

- flat: a 1-D array ``(N,)`` or a block ``(N, k)`` in the SPEC layout of θ (``W_1`` row-major, ``b_1``,
  ``W_2``, …);
- per layer: a pair ``(VWs, Vbs)`` of lists shaped like ``(Ws, bs)``; a block of k vectors adds a trailing
  axis of length k to every array (``(n_l, n_{l−1}, k)`` and ``(n_l, k)``).

Functions that return a parameter-shaped result without a vector argument (``loss_and_grad``,
``gnh_diagonal``) take ``layers=True`` to get the per-layer pair instead of the flat vector.

Each call validates its inputs and linearizes once; for several products at the same point, ``linearize``
returns the ``pyhessk.Curvature`` snapshot, whose products answer in the flat layout
(``to_layers``/``from_layers`` convert). The functions are thin: each builds a ``pyhessk.MLP`` and calls
the engine chosen by ``backend`` (default ``"auto"``), so they compute exactly what the object API does.

Example:
    >>> import numpy as np
    >>> from pyhessk import functional as F
    >>> rng = np.random.default_rng(0)
    >>> Ws = [rng.standard_normal((4, 3)), rng.standard_normal((2, 4))]
    >>> bs = [np.zeros(4), np.zeros(2)]
    >>> X, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    >>> loss, (gWs, gbs) = F.loss_and_grad(Ws, bs, X, Y, activation="tanh", loss="mse", layers=True)
    >>> [g.shape for g in gWs], [g.shape for g in gbs]
    ([(4, 3), (2, 4)], [(4,), (2,)])
    >>> HV_W, HV_b = F.hvp(Ws, bs, X, Y, (gWs, gbs), activation="tanh")   # per-layer in, per-layer out
    >>> F.hvp(Ws, bs, X, Y, F.from_layers(gWs, gbs), activation="tanh").shape   # flat in, flat out
    (26,)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._arrays import as_float, as_real, is_gpu_array, namespace_of
from .mlp import MLP

if TYPE_CHECKING:
    from .curvature import Curvature

__all__ = [
    "forward",
    "from_layers",
    "gnh",
    "gnh_diagonal",
    "gnvp",
    "hessian",
    "hvp",
    "jvp",
    "linearize",
    "loss_and_grad",
    "mlp",
    "to_layers",
    "vjp",
]

Layers = tuple[list[np.ndarray], list[np.ndarray]]


# ---- the network from (Ws, bs) ---------------------------------------------------------------------
def _is_list(x: Any) -> bool:
    return isinstance(x, Sequence) and not isinstance(x, (str, bytes))


def _sizes(Ws: Any, bs: Any) -> tuple[list[int], bool]:
    """Layer sizes read off the weights, and whether the network has biases."""
    if not _is_list(Ws) or len(Ws) == 0:
        raise TypeError(f"Ws must be a non-empty list of weight matrices W_l of shape (n_l, n_(l-1)), "
                        f"got {type(Ws).__name__ if not _is_list(Ws) else 'an empty list'}")
    shapes = [np.shape(W) for W in Ws]
    for l, s in enumerate(shapes):
        if len(s) != 2:
            raise ValueError(f"Ws[{l}] must be a 2-D weight matrix of shape (n_out, n_in), got shape {s}")
    for l in range(1, len(shapes)):
        if shapes[l][1] != shapes[l - 1][0]:
            raise ValueError(f"Ws[{l}] must have {shapes[l - 1][0]} columns to follow Ws[{l - 1}] of shape "
                             f"{shapes[l - 1]} (W_l is (n_l, n_(l-1))), got shape {shapes[l]}")
    if bs is None:
        bs = []
    if not _is_list(bs):
        raise TypeError(f"bs must be a list of bias vectors (or None for no biases), got {type(bs).__name__}")
    if len(bs) not in (0, len(Ws)):
        raise ValueError(f"bs must hold one bias vector per layer ({len(Ws)}) or none, got {len(bs)}")
    return [shapes[0][1]] + [s[0] for s in shapes], len(bs) > 0


def mlp(Ws: Any, bs: Any, activation: str | Sequence[str] = "tanh", loss: str = "mse", l2: float = 0.0,
        reduction: str = "mean", backend: str = "auto") -> MLP:
    """The ``pyhessk.MLP`` whose parameters ``(Ws, bs)`` are (architecture only; the weights are not kept)."""
    sizes, bias = _sizes(Ws, bs)
    return MLP(sizes, activation=activation, loss=loss, l2=l2, reduction=reduction, bias=bias, backend=backend)


def _theta(net: MLP, Ws: Any, bs: Any) -> np.ndarray:
    return net.flatten(list(Ws), None if bs is None else list(bs))


def from_layers(Ws: Sequence[Any], bs: Sequence[Any] | None = None) -> np.ndarray:
    """The flat θ (or a block of k flat vectors) from per-layer arrays.

    Args:
        Ws: weights ``(n_l, n_{l−1})``, or ``(n_l, n_{l−1}, k)`` for a block of k vectors.
        bs: biases ``(n_l,)`` (``(n_l, k)`` for a block), or None / [] for a network without biases.

    Returns:
        ``(N,)`` or ``(N, k)``, in the dtype of ``Ws[0]`` (float32 or float64); a CuPy array on the GPU if any
        of the arrays is a GPU array (host arrays among them are uploaded).
    """
    if not _is_list(Ws) or len(Ws) == 0:
        raise TypeError(f"Ws must be a non-empty list of arrays, got {type(Ws).__name__}")
    bs = [] if bs is None else bs
    if not _is_list(bs) or len(bs) not in (0, len(Ws)):
        raise ValueError(f"bs must be None or a list of {len(Ws)} arrays (one per layer)")
    gpu = any(is_gpu_array(a) for a in [*Ws, *bs])
    xp = namespace_of(next(a for a in [*Ws, *bs] if is_gpu_array(a))) if gpu else np
    first = as_float(Ws[0], "Ws[0]", None, ndim=(2, 3), device=gpu)
    rest = first.shape[2:]
    parts = []
    for l in range(len(Ws)):
        w = as_float(Ws[l], f"Ws[{l}]", first.dtype, ndim=2 + len(rest), ref="Ws[0]", device=gpu)
        if w.shape[2:] != rest:
            raise ValueError(f"Ws[{l}] must have a trailing block axis {rest} like Ws[0], got shape {w.shape}")
        parts.append(xp.asarray(w).reshape(-1, *rest))
        if bs:
            b = as_float(bs[l], f"bs[{l}]", first.dtype, ndim=1 + len(rest), ref="Ws[0]", device=gpu)
            if b.shape != (w.shape[0], *rest):
                raise ValueError(f"bs[{l}] must have shape {(w.shape[0], *rest)} to match Ws[{l}], got {b.shape}")
            parts.append(xp.asarray(b))
    return xp.concatenate(parts, axis=0)


def to_layers(v: Any, like_Ws: Sequence[Any], like_bs: Sequence[Any] | None = None) -> Layers:
    """Split a flat vector ``(N,)`` or block ``(N, k)`` into per-layer arrays shaped like ``(like_Ws, like_bs)``.

    Returns views into ``v`` where it is already a C-contiguous float array (no copy); a GPU ``v`` gives
    CuPy views.
    """
    sizes, bias = _sizes(like_Ws, like_bs)
    arr = as_float(v, "v", None, ndim=(1, 2), device=is_gpu_array(v))
    N = sum(o * (i + bias) for i, o in zip(sizes[:-1], sizes[1:]))
    if arr.shape[0] != N:
        raise ValueError(f"v must have shape ({N},) or ({N}, k) to match the layers, got {arr.shape}")
    rest, pos, VWs, Vbs = arr.shape[1:], 0, [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        VWs.append(arr[pos:pos + n_out * n_in].reshape(n_out, n_in, *rest))
        pos += n_out * n_in
        if bias:
            Vbs.append(arr[pos:pos + n_out])
            pos += n_out
    return VWs, Vbs


def _vector(V: Any, Ws: Any, bs: Any, name: str = "V") -> tuple[Any, bool]:
    """(flat V, whether V came per layer); a per-layer V is a pair (VWs, Vbs) of lists."""
    if isinstance(V, tuple) and len(V) == 2 and all(x is None or _is_list(x) for x in V):
        VWs, Vbs = V
        if not _is_list(VWs) or len(VWs) != len(Ws):
            raise ValueError(f"{name}: a per-layer vector must be (VWs, Vbs) with {len(Ws)} weight arrays")
        n_b = len(bs or [])
        if len(Vbs or []) != n_b:
            raise ValueError(f"{name}: a per-layer vector must hold {n_b} bias arrays like bs, got {len(Vbs or [])}")
        for l, (vw, W) in enumerate(zip(VWs, Ws)):
            if np.shape(vw)[:2] != np.shape(W):
                raise ValueError(f"{name}: VWs[{l}] must have shape {np.shape(W)} (or with a trailing k), "
                                 f"got {np.shape(vw)}")
        return from_layers(VWs, Vbs), True
    return V, False


# ---- products ---------------------------------------------------------------------------------------
def linearize(Ws: Any, bs: Any, X: Any, Y: Any, *, activation: str | Sequence[str] = "tanh", loss: str = "mse",
              l2: float = 0.0, reduction: str = "mean", backend: str = "auto") -> Curvature:
    """One fused forward and backward pass at ``(Ws, bs)``: the ``pyhessk.Curvature`` snapshot (flat layout)."""
    net = mlp(Ws, bs, activation, loss, l2, reduction, backend)
    return net.linearize(_theta(net, Ws, bs), X, Y)


def forward(Ws: Any, bs: Any, X: Any, *, activation: str | Sequence[str] = "tanh", backend: str = "auto") -> np.ndarray:
    """Network outputs ``f(x_k)`` for every row of ``X`` ``(n, n_0)``: shape ``(n, d)``."""
    net = mlp(Ws, bs, activation, backend=backend)
    return net.forward(_theta(net, Ws, bs), X)


def loss_and_grad(Ws: Any, bs: Any, X: Any, Y: Any, *, activation: str | Sequence[str] = "tanh", loss: str = "mse",
                  l2: float = 0.0, reduction: str = "mean", backend: str = "auto",
                  layers: bool = False) -> tuple[float, Any]:
    r"""The objective :math:`L(θ)` (SPEC §1) and its gradient: flat ``(N,)``, or ``(gWs, gbs)`` with ``layers=True``."""
    c = linearize(Ws, bs, X, Y, activation=activation, loss=loss, l2=l2, reduction=reduction, backend=backend)
    g = c.grad
    return c.loss, (to_layers(g, Ws, bs) if layers else g)


def _product(kind: str, Ws: Any, bs: Any, X: Any, Y: Any, V: Any, opts: dict) -> Any:
    v, per_layer = _vector(V, Ws, bs)
    net = mlp(Ws, bs, **opts)
    theta = _theta(net, Ws, bs)
    # G needs no gradient pass: its snapshot runs the forward pass only
    out = net.linearize(theta, X, Y).hvp(v) if kind == "hvp" else net._linearize_forward(theta, X, Y).gnvp(v)
    return to_layers(out, Ws, bs) if per_layer else out


def hvp(Ws: Any, bs: Any, X: Any, Y: Any, V: Any, *, activation: str | Sequence[str] = "tanh", loss: str = "mse",
        l2: float = 0.0, reduction: str = "mean", backend: str = "auto") -> Any:
    """Exact Hessian products ``H V``; V flat ``(N,)``/``(N, k)`` or per layer ``(VWs, Vbs)``; same form out."""
    return _product("hvp", Ws, bs, X, Y, V,
                    dict(activation=activation, loss=loss, l2=l2, reduction=reduction, backend=backend))


def gnvp(Ws: Any, bs: Any, X: Any, Y: Any, V: Any, *, activation: str | Sequence[str] = "tanh", loss: str = "mse",
         l2: float = 0.0, reduction: str = "mean", backend: str = "auto") -> Any:
    """Gauss–Newton products ``G V`` (+ λ P_W V); V flat or per layer; same form out."""
    return _product("gnvp", Ws, bs, X, Y, V,
                    dict(activation=activation, loss=loss, l2=l2, reduction=reduction, backend=backend))


def _output_only(Ws: Any, bs: Any, X: Any, activation: Any, backend: str) -> Curvature:
    """A forward-only snapshot for J products: the loss does not enter J, so mse with zero targets serves."""
    net = mlp(Ws, bs, activation, backend=backend)
    theta = _theta(net, Ws, bs)
    n = np.shape(X)[0] if np.ndim(X) == 2 else 0
    return net._linearize_forward(theta, X, np.zeros((n, net.sizes[-1]), dtype=theta.dtype))


def jvp(Ws: Any, bs: Any, X: Any, V: Any, *, activation: str | Sequence[str] = "tanh", backend: str = "auto") -> np.ndarray:
    """Jacobian products of the network output ``J V``: ``(n, d)`` for one vector, ``(n, d, k)`` for a block."""
    v, _ = _vector(V, Ws, bs)
    return _output_only(Ws, bs, X, activation, backend).jvp(v)


def vjp(Ws: Any, bs: Any, X: Any, U: Any, *, activation: str | Sequence[str] = "tanh", backend: str = "auto",
        layers: bool = False) -> Any:
    """``Jᵀ U`` summed over samples (no 1/n): U ``(n, d)`` → ``(N,)``, U ``(n, d, k)`` → ``(N, k)``;
    per layer with ``layers=True``."""
    out = _output_only(Ws, bs, X, activation, backend).vjp(U)
    return to_layers(out, Ws, bs) if layers else out


def gnh_diagonal(Ws: Any, bs: Any, X: Any, Y: Any, *, activation: str | Sequence[str] = "tanh", loss: str = "mse",
                 l2: float = 0.0, reduction: str = "mean", backend: str = "auto", layers: bool = False) -> Any:
    """The exact diagonal of the Gauss–Newton Hessian (SPEC §3, O(n) per entry): flat or per layer."""
    net = mlp(Ws, bs, activation, loss, l2, reduction, backend)
    d = net._linearize_forward(_theta(net, Ws, bs), X, Y).gnh_entries().diagonal()
    return to_layers(d, Ws, bs) if layers else d


def hessian(Ws: Any, bs: Any, X: Any, Y: Any, *, activation: str | Sequence[str] = "tanh", loss: str = "mse",
            l2: float = 0.0, reduction: str = "mean", backend: str = "auto", max_params: int = 8192) -> np.ndarray:
    """The dense Hessian ``(N, N)`` in the flat layout; refuses N > ``max_params``."""
    c = linearize(Ws, bs, X, Y, activation=activation, loss=loss, l2=l2, reduction=reduction, backend=backend)
    return c.hessian(max_params=max_params)


def gnh(Ws: Any, bs: Any, X: Any, Y: Any, *, activation: str | Sequence[str] = "tanh", loss: str = "mse",
        l2: float = 0.0, reduction: str = "mean", backend: str = "auto", max_params: int = 8192) -> np.ndarray:
    """The dense Gauss–Newton Hessian ``(N, N)`` in the flat layout; refuses N > ``max_params``."""
    net = mlp(Ws, bs, activation, loss, l2, reduction, backend)
    return net._linearize_forward(_theta(net, Ws, bs), X, Y).gnh(max_params=max_params)


# ---- the shared body of the array-library adapters (pyhessk.torch, pyhessk.jax) ----------------------
class _AdaptedMLP(ABC):
    """An MLP whose objective is ``loss_scale · (SPEC data term) + (λ/2) Σ ‖W_l‖²``, reached through another
    array library's arrays.

    Subclasses give the conversion hooks: ``_to_engine(x, name)`` (a NumPy or CuPy array, or ``x`` unchanged),
    ``_from_engine(a)`` (the library's array) and ``_device_of(*xs)`` ("cpu" or "cuda"), and the snapshot
    class ``_curvature``. The underlying ``pyhessk.MLP`` carries l2 = λ / loss_scale, so that every answer
    multiplied by the factor has exactly λ on the weights.

    Attributes:
        mlp: the underlying ``pyhessk.MLP`` (for CPU arrays; GPU arrays use a twin on the ``cuda`` engine).
        loss_scale: the constant factor c > 0 on the SPEC data term.
        l2: λ.
    """

    _curvature: type = type(None)

    def __init__(self, sizes: Sequence[int], activation: Any, loss: str, l2: float, reduction: str, bias: bool,
                 loss_scale: float, backend: str) -> None:
        self.l2 = as_real(l2, "l2", low=0.0)
        self.loss_scale = as_real(loss_scale, "loss_scale", low=0.0, open_low=True)
        self._args = dict(activation=activation, loss=loss, l2=self.l2 / self.loss_scale, reduction=reduction,
                          bias=bias)
        self.mlp = MLP(list(sizes), backend=backend, **self._args)
        self._gpu: MLP | None = None

    @staticmethod
    @abstractmethod
    def _to_engine(x: Any, name: str) -> Any:
        """The library's array as the engine takes it (a NumPy or CuPy array), or ``x`` unchanged."""

    @staticmethod
    @abstractmethod
    def _from_engine(a: Any) -> Any:
        """An engine result as the library's array."""

    @staticmethod
    @abstractmethod
    def _device_of(*xs: Any) -> str:
        """"cpu" or "cuda": where the given arrays live."""

    @property
    def sizes(self) -> list[int]:
        return self.mlp.sizes

    @property
    def num_params(self) -> int:
        return self.mlp.num_params

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.mlp!r}, loss_scale={self.loss_scale}, l2={self.l2})"

    def _net(self, device: str) -> MLP:
        if device == "cpu":
            return self.mlp
        if self._gpu is None:
            self._gpu = MLP(self.sizes, backend="cuda", **self._args)
        return self._gpu

    def _batch(self, theta: Any, X: Any, Y: Any = None) -> tuple[MLP, Any, Any, Any]:
        device = self._device_of(theta, X, Y)
        # the arrays first: the adapter's error for a GPU array the engine cannot take names the array and the way out
        t, x, y = self._to_engine(theta, "theta"), self._to_engine(X, "X"), self._to_engine(Y, "Y")
        return self._net(device), t, x, y

    def forward(self, theta: Any, X: Any) -> Any:
        """Network outputs (n, d)."""
        net, t, x, _ = self._batch(theta, X)
        return self._from_engine(net.forward(t, x))

    def loss(self, theta: Any, X: Any, Y: Any) -> float:
        """The objective, as a Python float."""
        return self.linearize(theta, X, Y).loss

    def grad(self, theta: Any, X: Any, Y: Any) -> Any:
        """The gradient, flat (N,) in the SPEC layout."""
        return self.linearize(theta, X, Y).grad

    def linearize(self, theta: Any, X: Any, Y: Any) -> Any:
        """One fused forward and backward pass; the snapshot answers every product in this library's arrays."""
        net, t, x, y = self._batch(theta, X, Y)
        return self._curvature(self, net.linearize(t, x, y))

    def hvp(self, theta: Any, X: Any, Y: Any, V: Any) -> Any:
        """One-shot exact Hessian products."""
        return self.linearize(theta, X, Y).hvp(V)

    def gnvp(self, theta: Any, X: Any, Y: Any, V: Any) -> Any:
        """One-shot Gauss–Newton products (forward pass only)."""
        net, t, x, y = self._batch(theta, X, Y)
        return self._curvature(self, net._linearize_forward(t, x, y)).gnvp(V)


class _AdaptedCurvature:
    """A ``pyhessk.Curvature`` snapshot answering in another array library's arrays, times the net's loss_scale.

    Subclasses convert vectors given in the parameters' own shape: ``_vec(V)`` returns (the flat engine array,
    a form tag) and ``_answer(out, form)`` gives an engine answer back in that form (the default handles flat
    arrays only).
    """

    def __init__(self, net: _AdaptedMLP, curvature: Curvature) -> None:
        self.net = net
        self.curvature = curvature

    def _vec(self, V: Any) -> tuple[Any, Any]:
        return self.net._to_engine(V, "V"), None

    def _answer(self, out: Any, form: Any) -> Any:
        return self.net._from_engine(out)

    @property
    def loss(self) -> float:
        return self.net.loss_scale * self.curvature.loss

    @property
    def grad(self) -> Any:
        """The gradient, flat (N,)."""
        return self.net._from_engine(self.net.loss_scale * self.curvature.grad)

    def hvp(self, V: Any) -> Any:
        """H V, in the form V was given."""
        v, form = self._vec(V)
        return self._answer(self.net.loss_scale * self.curvature.hvp(v), form)

    def gnvp(self, V: Any) -> Any:
        """G V (plus λ on the weights), in the form V was given."""
        v, form = self._vec(V)
        return self._answer(self.net.loss_scale * self.curvature.gnvp(v), form)

    def jvp(self, V: Any) -> Any:
        """J V of the network output: (n, d) or (n, d, k)."""
        v, _ = self._vec(V)
        return self.net._from_engine(self.curvature.jvp(v))

    def vjp(self, U: Any) -> Any:
        """Jᵀ U summed over samples, flat: (n, d) → (N,), (n, d, k) → (N, k)."""
        return self.net._from_engine(self.curvature.vjp(self.net._to_engine(U, "U")))

    def hessian(self, **kw: Any) -> Any:
        """The dense Hessian (N, N); the size guard of ``Curvature.hessian``."""
        return self.net._from_engine(self.net.loss_scale * self.curvature.hessian(**kw))

    def gnh(self, **kw: Any) -> Any:
        """The dense Gauss–Newton Hessian (N, N)."""
        return self.net._from_engine(self.net.loss_scale * self.curvature.gnh(**kw))

    def gnh_diagonal(self) -> Any:
        """The exact diagonal of G (SPEC §3), flat."""
        return self.net._from_engine(self.net.loss_scale * self.curvature.gnh_entries().diagonal())
