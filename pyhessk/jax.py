r"""JAX adapter: an MLP given as a list of ``(W, b)`` pairs, JAX arrays in and out.

Import it as a submodule (``import pyhessk.jax as hkj``); it needs JAX, pyhessk itself does not.

Weight layout. JAX code usually computes a layer as ``x @ W + b`` with ``W`` of shape ``(n_in, n_out)``; that is
``layout="jax"`` (the default). ``layout="torch"`` takes ``W`` of shape ``(n_out, n_in)`` with ``W @ x + b``, the
layout of SPEC §1 and of ``torch.nn.Linear``. The flat parameter vector θ is always in the SPEC layout (``W_1`` as
``(n_1, n_0)`` row-major, ``b_1``, ``W_2``, …), so with ``layout="jax"`` the weights are transposed into θ; vectors
given as pytrees are taken and returned in the chosen layout, and flat vectors in the SPEC layout.

- ``from_params(params, activation, loss)`` returns ``(net, theta)``: a :class:`JaxMLP` and θ as a JAX array.
  ``to_params(net, theta)`` goes back; ``net.flatten`` / ``net.unflatten`` convert any parameter-shaped pytree.
- :class:`JaxMLP` and :class:`JaxCurvature` take JAX (or NumPy) arrays and return JAX arrays. CPU arrays cross
  as NumPy views (``np.asarray``) and come back through DLPack; GPU arrays cross by DLPack to pyhessk's ``cuda``
  engine when it can run here, and otherwise raise a ``RuntimeError`` saying why.
- float64 needs JAX's x64 mode (``jax.config.update("jax_enable_x64", True)``); without it, float64 arrays
  (results, pytrees, θ given to ``to_params`` or ``unflatten``) raise a ``TypeError`` instead of being silently
  rounded to float32. The arrays of one pytree share one dtype.
- pyhessk computes on concrete arrays: traced values (inside ``jax.jit``, ``jax.grad``, ``jax.vmap``) raise a
  ``TypeError``; jitted code can call pyhessk through ``jax.pure_callback``.

Losses are the SPEC ones (``pyhessk._spec``): ``"mse"`` is the mean over samples of ½‖f − y‖², that is
``jnp.mean(jnp.sum(optax.l2_loss(f, y), -1))``. A JAX objective that differs by a constant factor c maps with
``loss_scale=c``: ``jnp.mean((f - y) ** 2)`` (the mean over n·d entries) is ``loss_scale=2/d`` times ``"mse"``, and
``jnp.mean(optax.sigmoid_binary_cross_entropy(f, y))`` is ``loss_scale=1/d`` times ``"sigmoid_cross_entropy"``.
``optax.softmax_cross_entropy_with_integer_labels(f, y).mean()`` is ``"cross_entropy"`` as it is.

Example:
    >>> import jax, jax.numpy as jnp, pyhessk.jax as hkj
    >>> k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    >>> params = [(jax.random.normal(k1, (3, 8)), jnp.zeros(8)), (jax.random.normal(k2, (8, 2)), jnp.zeros(2))]
    >>> net, theta = hkj.from_params(params, activation="tanh", loss="mse")      # W is (n_in, n_out)
    >>> X, Y = jnp.ones((16, 3)), jnp.zeros((16, 2))
    >>> c = net.linearize(theta, X, Y)
    >>> c.hvp(jnp.ones(net.num_params)).shape
    (50,)
    >>> [(w.shape, b.shape) for w, b in c.gnvp(params)]      # a pytree in, the same pytree out
    [((3, 8), (8,)), ((8, 2), (2,))]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _dispatch, _spec
from .functional import _AdaptedCurvature, _AdaptedMLP

__all__ = ["JaxCurvature", "JaxMLP", "from_params", "to_params"]

LAYOUTS = ("jax", "torch")


# ---- arrays across the boundary ----------------------------------------------------------------------
def _on_gpu(x: Any) -> bool:
    if isinstance(x, jax.core.Tracer):  # no devices while traced; _to_engine refuses it by name
        return False
    devices = getattr(x, "devices", None)
    return callable(devices) and any(d.platform == "gpu" for d in devices())


def _to_engine(x: Any, name: str) -> Any:
    """A CPU JAX array as a NumPy view, a GPU one as a CuPy array (DLPack); anything else unchanged."""
    if isinstance(x, jax.core.Tracer):
        raise TypeError(f"{name} is a traced JAX value (inside jax.jit, jax.grad, jax.vmap or another transformation), "
                        "but pyhessk's functions compute on concrete arrays and cannot be traced; call them outside "
                        "the transformation, or from inside it through jax.pure_callback")
    if not isinstance(x, jax.Array):
        return x
    if x.dtype in (jnp.float16, jnp.bfloat16):
        raise TypeError(f"{name} has dtype {x.dtype}; pyhessk computes in float32 or float64")
    if _on_gpu(x):
        engine, reason = _dispatch.probe("cuda")
        if engine is None:
            raise RuntimeError(f"{name} is a GPU array, but pyhessk's 'cuda' engine cannot run here ({reason}); move "
                               "it to the CPU with jax.device_get, or install the GPU engine (pip install 'pyhessk[cuda]')")
        import cupy

        return cupy.from_dlpack(x)
    return np.asarray(x)


def _x64_off(what: str, it: str = "it") -> TypeError:
    """The error for float64 arrays while JAX's x64 mode is off (``what``: "the result is", "V are", ...)."""
    return TypeError(f"{what} float64, but JAX's x64 mode is off, so JAX would round {it} to float32; enable it "
                     "with jax.config.update('jax_enable_x64', True), or pass float32 arrays")


def _from_engine(a: Any) -> jax.Array:
    if a.dtype == np.float64 and not jax.config.jax_enable_x64:
        raise _x64_off("the result is")
    if isinstance(a, np.ndarray):
        a = np.ascontiguousarray(a)
        try:
            return jnp.from_dlpack(a)
        except (TypeError, ValueError, RuntimeError):  # e.g. a buffer JAX cannot alias: copy it
            return jnp.asarray(a)
    return jnp.from_dlpack(a)


def _device_of(*xs: Any) -> str:
    on = {"cuda" if _on_gpu(x) else "cpu" for x in xs if isinstance(x, jax.Array)}
    if len(on) > 1:
        raise ValueError("the arrays of one call must be on one device, got CPU and GPU arrays")
    return on.pop() if on else "cpu"


def _check_dtypes(leaves: list[tuple[str, Any]], name: str) -> None:
    """float32 or float64 arrays of one dtype, float64 only in x64 mode: ``jnp.asarray`` would round it to float32."""
    first: dict[np.dtype, str] = {}
    for where, a in leaves:
        dt = getattr(a, "dtype", None)
        dt = np.asarray(a).dtype if dt is None else np.dtype(dt)
        if dt not in (np.float32, np.float64):
            raise TypeError(f"{where} has dtype {dt}; pyhessk computes in float32 or float64")
        first.setdefault(dt, where)
    if len(first) > 1:
        raise TypeError(f"{name}: all arrays must share one dtype, got mixed float32/float64 ("
                        + ", ".join(f"{where} is {dt}" for dt, where in first.items()) + ")")
    if np.dtype(np.float64) in first and not jax.config.jax_enable_x64:
        raise _x64_off(f"{name} is") if len(leaves) == 1 else _x64_off(f"{name} are", "them")


# ---- the pytree of (W, b) pairs ---------------------------------------------------------------------
def _check_layout(layout: Any) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {list(LAYOUTS)} ('jax': W of shape (n_in, n_out), x @ W + b; "
                         f"'torch': W of shape (n_out, n_in), W @ x + b), got {layout!r}")
    return layout


def _pairs(params: Any, name: str) -> list[tuple[Any, Any]]:
    if not isinstance(params, (list, tuple)) or len(params) == 0:
        raise TypeError(f"{name} must be a non-empty list of (W, b) pairs, one per layer, got {type(params).__name__}")
    out = []
    for l, p in enumerate(params):
        if isinstance(p, (list, tuple)) and len(p) == 2:
            out.append((p[0], p[1]))
        elif isinstance(p, (list, tuple)) and len(p) == 1:
            out.append((p[0], None))
        else:
            raise TypeError(f"{name}[{l}] must be a (W, b) pair (or (W,) / (W, None) without a bias)")
    return out


def _read_params(params: Any, layout: str) -> tuple[list[int], bool]:
    pairs = _pairs(params, "params")
    sizes: list[int] = []
    for l, (W, _) in enumerate(pairs):
        s = np.shape(W)
        if len(s) != 2:
            raise ValueError(f"params[{l}]: W must be 2-D, got shape {s}")
        n_in, n_out = (s[0], s[1]) if layout == "jax" else (s[1], s[0])
        if sizes and n_in != sizes[-1]:
            want = f"({sizes[-1]}, n_out)" if layout == "jax" else f"(n_out, {sizes[-1]})"
            raise ValueError(f"params[{l}]: W must have shape {want} to follow the previous layer (layout={layout!r}), "
                             f"got {s}")
        sizes += [n_in, n_out] if not sizes else [n_out]
    has_b = [b is not None for _, b in pairs]
    if any(has_b) and not all(has_b):
        raise ValueError("params: either every layer has a bias b or none has (pyhessk's bias= applies to all layers)")
    return sizes, all(has_b)


class JaxMLP(_AdaptedMLP):
    """A pyhessk MLP that takes and returns JAX arrays; made by :func:`from_params`.

    The objective is ``loss_scale · (SPEC data term) + (λ/2) Σ ‖W_l‖²`` (``l2=λ`` on the weights, after the factor).
    Flat vectors (gradients, products) are in the SPEC layout; ``unflatten`` gives the pytree.

    Attributes:
        mlp: the underlying ``pyhessk.MLP`` (SPEC objective, with l2 = λ / loss_scale).
        layout: "jax" or "torch", the weight layout of parameter pytrees.
        loss_scale: the constant factor on the SPEC data term (1 by default).
    """

    _to_engine = staticmethod(_to_engine)
    _from_engine = staticmethod(_from_engine)
    _device_of = staticmethod(_device_of)

    def __init__(self, sizes: Sequence[int], activation: Any, loss: str, l2: float, reduction: str, bias: bool,
                 layout: str, loss_scale: float, backend: str) -> None:
        self.layout = _check_layout(layout)
        super().__init__(sizes, activation, loss, l2, reduction, bias, loss_scale, backend)

    def __repr__(self) -> str:
        return f"JaxMLP({self.mlp!r}, layout={self.layout!r}, loss_scale={self.loss_scale}, l2={self.l2})"

    # ---- pytrees <-> flat θ layout -------------------------------------------------------------------
    def flatten(self, params: Any) -> jax.Array:
        """A parameter-shaped pytree (list of (W, b), each with an optional trailing axis k) as a flat (N,) / (N, k).

        The arrays must share one dtype, float32 or float64 (float64 needs JAX's x64 mode).
        """
        return self._flatten(params, "params")

    def _flatten(self, params: Any, name: str) -> jax.Array:
        pairs = _pairs(params, name)
        L = len(self.sizes) - 1
        if len(pairs) != L:
            raise ValueError(f"{name} must hold {L} (W, b) pairs, one per layer, got {len(pairs)}")
        block = jnp.ndim(pairs[0][0]) == 3
        for l, ((W, b), n_in, n_out) in enumerate(zip(pairs, self.sizes[:-1], self.sizes[1:])):
            shape_w = (n_in, n_out) if self.layout == "jax" else (n_out, n_in)
            k = (jnp.shape(pairs[0][0])[-1],) if block else ()
            if jnp.shape(W) != (*shape_w, *k):
                raise ValueError(f"{name}[{l}]: W must have shape {(*shape_w, *k)} (layout={self.layout!r}), got "
                                 f"{jnp.shape(W)}")
            if self.mlp.bias:
                if b is None or jnp.shape(b) != (n_out, *k):
                    raise ValueError(f"{name}[{l}]: b must have shape {(n_out, *k)}, got "
                                     f"{None if b is None else jnp.shape(b)}")
            elif b is not None:
                raise ValueError(f"{name}[{l}]: this network has no biases, got a b of shape {jnp.shape(b)}")
        _check_dtypes([(f"{name}[{l}]: {nm}", a) for l, (W, b) in enumerate(pairs) for nm, a in (("W", W), ("b", b))
                       if a is not None], name)
        parts = []
        for (W, b), n_in, n_out in zip(pairs, self.sizes[:-1], self.sizes[1:]):
            W = jnp.asarray(W)
            if self.layout == "jax":
                W = jnp.swapaxes(W, 0, 1)
            parts.append(W.reshape(n_out * n_in, *W.shape[2:]))
            if b is not None:
                parts.append(jnp.asarray(b))
        return jnp.concatenate(parts, axis=0)

    def unflatten(self, v: Any) -> list[tuple[jax.Array, jax.Array | None]]:
        """A flat (N,) / (N, k) vector as a list of (W, b) pairs in this net's layout (b is None without biases).

        ``v`` is float32 or float64 (float64 needs JAX's x64 mode).
        """
        return self._unflatten(v, "v")

    def _unflatten(self, v: Any, name: str) -> list[tuple[jax.Array, jax.Array | None]]:
        _check_dtypes([(name, v)], name)
        v = jnp.asarray(v)
        if v.ndim not in (1, 2) or v.shape[0] != self.num_params:
            raise ValueError(f"{name} must have shape ({self.num_params},) or ({self.num_params}, k), got {v.shape}")
        k, pos, out = v.shape[1:], 0, []
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            W = v[pos:pos + n_out * n_in].reshape(n_out, n_in, *k)
            pos += n_out * n_in
            if self.layout == "jax":
                W = jnp.swapaxes(W, 0, 1)
            b = None
            if self.mlp.bias:
                b = v[pos:pos + n_out]
                pos += n_out
            out.append((W, b))
        return out


class JaxCurvature(_AdaptedCurvature):
    """A ``pyhessk.Curvature`` snapshot that takes and returns JAX arrays.

    Vectors are flat (N,) / (N, k) arrays in the SPEC layout, or pytrees shaped like the parameters (a list of
    (W, b) pairs in the net's layout, each array with a trailing axis k for a block); answers come back in the
    form given.
    """

    def _vec(self, V: Any) -> tuple[Any, bool]:
        if isinstance(V, (list, tuple)):
            return _to_engine(self.net._flatten(V, "V"), "V"), True
        return _to_engine(V, "V"), False

    def _answer(self, out: Any, tree: bool) -> Any:
        a = _from_engine(out)
        return self.net.unflatten(a) if tree else a


JaxMLP._curvature = JaxCurvature


def from_params(params: Any, activation: Any = "tanh", loss: str = "mse", *, layout: str = "jax", l2: float = 0.0,
                reduction: str = "mean", loss_scale: float = 1.0, backend: str = "auto") -> tuple[JaxMLP, jax.Array]:
    """``(net, theta)`` for an MLP given as a list of ``(W, b)`` pairs.

    Args:
        params: one ``(W, b)`` pair per layer (``(W,)`` or ``(W, None)`` for a network without biases); W is
            ``(n_in, n_out)`` for ``layout="jax"``, ``(n_out, n_in)`` for ``layout="torch"``.
        activation: a hidden activation name of ``pyhessk._spec`` (all hidden layers) or a list of L − 1 names;
            ``jax.nn`` equivalents: tanh, sigmoid, relu, leaky_relu (slope 0.01), softplus,
            gelu (``approximate=False``), silu, and ``jnp.sin``.
        loss: a SPEC loss name ("mse", "cross_entropy", "binary_cross_entropy", …).
        layout: "jax" or "torch" (module docstring).
        l2: weight decay λ: adds (λ/2) Σ ‖W_l‖² on the weights.
        reduction: "mean" or "sum" over samples.
        loss_scale: a constant c > 0 multiplying the data term, to match a JAX objective's convention.
        backend: the pyhessk engine for CPU arrays.

    Returns:
        The :class:`JaxMLP` and θ, a new flat JAX array in the SPEC layout.
    """
    layout = _check_layout(layout)
    sizes, bias = _read_params(params, layout)
    _spec.loss(loss)  # the name error before anything else
    net = JaxMLP(sizes, activation, loss, l2, reduction, bias, layout, loss_scale, backend)
    return net, net.flatten(params)


def to_params(net: JaxMLP, theta: Any) -> list[tuple[jax.Array, jax.Array | None]]:
    """θ (flat, SPEC layout) as the list of ``(W, b)`` pairs in ``net.layout``; the inverse of ``from_params``."""
    if not isinstance(net, JaxMLP):
        raise TypeError(f"net must be a pyhessk.jax.JaxMLP, got {type(net).__name__}")
    if np.ndim(theta) != 1:
        raise ValueError(f"theta must be 1-D of length {net.num_params}, got shape {np.shape(theta)}")
    return net._unflatten(theta, "theta")
