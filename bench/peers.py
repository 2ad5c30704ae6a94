"""The peers of BENCH.md: what a user would run instead of pyhessk, built on the same θ, X, Y and v.

Every builder takes a built config (``configs.Problem``: the pyhessk network, θ, X, Y, v in the config's
dtype) and returns a ``Built``: ``call()`` runs one product in the peer's own arrays and returns when the
result exists (JAX: ``block_until_ready``), ``to_numpy(out)`` turns its result into the flat θ layout of
SPEC §1 for the numerical check, and ``cold_start_s`` is the wall time of the setup and the first call (the
JIT / ``torch.compile`` compile lands there, never in a timed loop).

The peers (ids as in the benchmark names; ``product`` is the pyhessk product each one is compared with):

- ``hvp_fresh`` (forward and gradient recomputed every call, like ``hk.hvp``):
  torch.func ``jvp(grad)``; ``torch.compile`` of that same function; JAX ``jit(jvp(grad))``;
  curvlinops ``HessianLinearOperator @ v``.
- ``hvp_cached`` (something made once outside the timed call, like ``net.linearize`` then ``c.hvp``):
  torch double-backward (``autograd.grad(create_graph=True)`` once, then ``autograd.grad(g, θ, v)``, the
  gradient of g·v, per call); JAX ``linearize(grad)`` once, then its linear function applied under ``jit``;
  BackPACK ``hessian_vector_product`` on a kept forward graph (it recomputes the gradient graph per call).
- ``ggn_fresh``: JAX ``jit`` of jvp → loss Hessian → vjp; the same with torch.func; curvlinops
  ``GGNLinearOperator @ v``.
- ``ggn_cached``: BackPACK ``ggn_vector_product_from_plist`` on a kept forward graph.
- ``hessian_dense`` (S only): ``jax.jit(jax.hessian(loss))`` and ``torch.func.hessian(loss)`` of flat θ.

Losses exactly as SPEC §1: mse is ½‖f − y‖² per sample averaged over samples (not torch's ``MSELoss`` mean,
which also divides by d and drops the ½), softmax cross-entropy with integer labels averaged over samples.
The one place where a peer only takes torch's own loss modules (curvlinops) gets ``MSELoss(reduction="mean")``
and the direction scaled by d/2 outside the timed call: its operator is then exactly pyhessk's.

Threads (BENCH.md: 2): torch via ``torch.set_num_threads`` / ``set_num_interop_threads``; XLA has no
thread-count flag, its CPU intra-op pool is sized by the ``NPROC`` environment variable (read by PJRT's
CPU client) or else by the process's CPU affinity, so ``NPROC`` is set and ``XLA_FLAGS`` gets
``--xla_cpu_multi_thread_eigen=true``, all before JAX is imported (on a machine with more cores, run under
``taskset -c 0,1`` as well). ``torch.compile`` runs with Inductor's caches off, so its cold start is a real
compile. All of this is recorded in every result (``peer_threads``).

Imports are lazy and optional: a peer whose library is missing raises ``PeerUnavailable`` (a skipped cell).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .configs import Problem

THREADS = int(os.environ.get("PYHESSK_BENCH_THREADS", "2"))


def _configure_env(threads: int) -> None:
    """Thread and cache settings that the peer libraries read when they load (only what is not set already)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=true").strip()
    os.environ.setdefault("NPROC", str(threads))  # PJRT's CPU client sizes its intra-op pool from it
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("TORCHINDUCTOR_FORCE_DISABLE_CACHES", "1")  # a cold start is a real compile


_configure_env(THREADS)


class PeerUnavailable(RuntimeError):
    """The peer's library is not installed (or does not import): its cells are skipped."""


@dataclass(frozen=True)
class PeerSpec:
    id: str
    library: str  # the distribution that must be importable: torch, jax, backpack, curvlinops
    product: str  # the pyhessk product it is compared with
    label: str  # for the table
    short: str  # for the summary cells
    only: tuple[str, ...] = ()  # config names it runs on (empty: all)


PEERS: tuple[PeerSpec, ...] = (
    PeerSpec("jax_jit_hvp", "jax", "hvp_fresh", "JAX `jit(jvp(grad))`", "JAX jit"),
    PeerSpec("torch_func_hvp", "torch", "hvp_fresh", "torch.func `jvp(grad)`", "torch.func"),
    PeerSpec("torch_compile_hvp", "torch", "hvp_fresh", "`torch.compile` of the torch.func HVP", "torch.compile"),
    PeerSpec("curvlinops_hvp", "curvlinops", "hvp_fresh", "curvlinops `HessianLinearOperator @ v`", "curvlinops"),
    PeerSpec("jax_linearize_hvp", "jax", "hvp_cached", "JAX `linearize(grad)` once, then `jit` apply",
             "JAX linearize"),
    PeerSpec("torch_dblbwd_hvp", "torch", "hvp_cached", "torch double-backward, graph cached", "torch double-bwd"),
    PeerSpec("backpack_hvp", "backpack", "hvp_cached", "BackPACK `hessian_vector_product` (forward graph kept)",
             "BackPACK"),
    PeerSpec("jax_jit_ggn", "jax", "ggn_fresh", "JAX `jit` GGN product (jvp, H_out, vjp)", "JAX jit"),
    PeerSpec("torch_func_ggn", "torch", "ggn_fresh", "torch.func GGN product (jvp, H_out, vjp)", "torch.func"),
    PeerSpec("curvlinops_ggn", "curvlinops", "ggn_fresh", "curvlinops `GGNLinearOperator @ v`", "curvlinops"),
    PeerSpec("backpack_ggn", "backpack", "ggn_cached",
             "BackPACK `ggn_vector_product_from_plist` (forward graph kept)", "BackPACK"),
    PeerSpec("jax_linearize_ggn", "jax", "ggn_factored",
             "JAX GGN product with the network linearized once (`linearize` + `linear_transpose`), then `jit` apply",
             "JAX linearize GGN"),
    PeerSpec("jax_linearize_hvp_block", "jax", "hvp_block",
             "JAX `linearize(grad)` once, then `jit(vmap)` of the linear map over the k columns", "JAX linearize vmap"),
    PeerSpec("jax_linearize_ggn_block", "jax", "ggn_block",
             "JAX GGN with the network linearized once, then `jit(vmap)` over the k columns", "JAX linearize vmap"),
    PeerSpec("jax_hessian", "jax", "hessian_dense", "`jax.jit(jax.hessian)`", "jax.hessian", only=("S",)),
    PeerSpec("torch_func_hessian", "torch", "hessian_dense", "`torch.func.hessian`", "torch.func.hessian",
             only=("S",)),
)
BY_ID = {s.id: s for s in PEERS}
#: the pip distribution behind each library, for the recorded versions
DISTRIBUTIONS = {"torch": ("torch",), "jax": ("jax", "jaxlib"), "backpack": ("backpack-for-pytorch", "torch"),
                 "curvlinops": ("curvlinops-for-pytorch", "torch")}


@dataclass
class Built:
    """One peer, ready to time."""

    call: Callable[[], Any]
    to_numpy: Callable[[Any], np.ndarray]
    cold_start_s: float
    versions: dict[str, str]
    threads: dict[str, Any]
    note: str = ""
    keep: list = field(default_factory=list)  # objects that must outlive the calls


def versions(library: str) -> dict[str, str]:
    out = {}
    for dist in DISTRIBUTIONS.get(library, (library,)):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


def _import(name: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation chatter of the peers' own dependencies
            return importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - any import failure makes the peer a skipped column
        raise PeerUnavailable(f"{name} does not import: {type(exc).__name__}: {exc}") from exc


# ---- torch ----------------------------------------------------------------------------------------------
_TORCH_THREADS: dict[str, Any] = {}


def _torch() -> Any:
    torch = _import("torch")
    if not _TORCH_THREADS:
        torch.set_num_threads(THREADS)
        try:
            torch.set_num_interop_threads(THREADS)
            interop = "set"
        except RuntimeError as exc:  # only allowed before the first parallel work
            interop = f"not set ({exc})"
        _TORCH_THREADS.update(num_threads=torch.get_num_threads(), num_interop_threads=torch.get_num_interop_threads(),
                              interop=interop)
    return torch


def torch_threads() -> dict[str, Any]:
    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")}
    return {**_TORCH_THREADS, **env}


def xla_threads() -> dict[str, Any]:
    return {"XLA_FLAGS": os.environ.get("XLA_FLAGS"), "NPROC": os.environ.get("NPROC"),
            "cpus_allowed": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}


def _torch_dtype(torch: Any, dtype: str) -> Any:
    return {"float32": torch.float32, "float64": torch.float64}[dtype]


def _torch_activation(torch: Any, name: str) -> Any:
    return {
        "identity": torch.nn.Identity, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU,
        "leaky_relu": lambda: torch.nn.LeakyReLU(0.01), "softplus": torch.nn.Softplus, "gelu": torch.nn.GELU,
        "silu": torch.nn.SiLU,
    }[name]()


def torch_sequential(p: Problem) -> Any:
    """``nn.Sequential(Linear, act, …, Linear)`` holding θ (SPEC §1: its ``parameters()`` flattened are θ)."""
    torch = _torch()
    cfg = p.cfg
    dt = _torch_dtype(torch, cfg.dtype)
    Ws, bs = p.net.unflatten(p.theta)
    mods = []
    for l, (W, b) in enumerate(zip(Ws, bs)):
        lin = torch.nn.Linear(W.shape[1], W.shape[0], dtype=dt)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W)))
            lin.bias.copy_(torch.from_numpy(np.ascontiguousarray(b)))
        mods.append(lin)
        if l < len(Ws) - 1:
            mods.append(_torch_activation(torch, cfg.activation))
    return torch.nn.Sequential(*mods)


def torch_data(p: Problem) -> tuple[Any, Any]:
    torch = _torch()
    x = torch.from_numpy(np.ascontiguousarray(p.X))
    y = torch.from_numpy(np.ascontiguousarray(p.Y))
    if p.cfg.loss != "mse":
        y = y.long()
    return x, y


def torch_loss(p: Problem) -> Callable[[Any, Any], Any]:
    """The per-sample loss of SPEC §1, averaged over samples (l2 = 0 in every config)."""
    torch = _torch()
    n = p.cfg.n
    if p.cfg.loss == "mse":
        return lambda f, y: 0.5 * ((f - y) ** 2).sum() / n
    if p.cfg.loss == "softmax_cross_entropy":
        return lambda f, y: torch.nn.functional.cross_entropy(f, y)
    raise NotImplementedError(p.cfg.loss)


def _split_like(flat: Any, tensors: list) -> list:
    out, o = [], 0
    for t in tensors:
        out.append(flat[o:o + t.numel()].view(t.shape))
        o += t.numel()
    return out


def _torch_flat(out: Any) -> np.ndarray:
    torch = _torch()
    parts = list(out.values()) if isinstance(out, dict) else list(out) if isinstance(out, tuple | list) else [out]
    return torch.cat([t.detach().reshape(-1) for t in parts]).numpy()


def _timed_first(call: Callable[[], Any], t0: float, warm: int = 1) -> float:
    for _ in range(warm):
        call()
    return time.perf_counter() - t0


def _torch_built(call: Callable[[], Any], t0: float, keep: list, note: str = "", warm: int = 1,
                 library: str = "torch") -> Built:
    cold = _timed_first(call, t0, warm)
    return Built(call, _torch_flat, cold, versions(library), {"torch": torch_threads()}, note, keep)


def _torch_problem(p: Problem) -> tuple[Any, dict, dict, Callable, Callable, Any]:
    """(torch, θ and v as dicts of tensors, network output of a θ dict, loss of an output, targets)."""
    torch = _torch()
    model = torch_sequential(p)
    x, y = torch_data(p)
    params = {k: t.detach() for k, t in model.named_parameters()}
    v = dict(zip(params, _split_like(torch.from_numpy(p.v), list(params.values()))))

    def output(q: dict) -> Any:
        return torch.func.functional_call(model, q, (x,))

    return torch, params, v, output, torch_loss(p), y


def _torch_functional(p: Problem) -> tuple[Any, dict, dict, Callable]:
    """(torch, θ as a dict of tensors, v as the same dict, loss of the dict) for the torch.func peers."""
    torch, params, v, output, loss, y = _torch_problem(p)

    def objective(q: dict) -> Any:
        return loss(output(q), y)

    return torch, params, v, objective


def build_torch_func_hvp(p: Problem, compiled: bool = False) -> Built:
    t0 = time.perf_counter()
    torch, params, v, objective = _torch_functional(p)

    def hvp(q: dict, u: dict) -> dict:
        return torch.func.jvp(torch.func.grad(objective), (q,), (u,))[1]

    fn = hvp
    note = ""
    if compiled:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # a clean Dynamo: every build compiles from scratch (honest cold start), and the compiles of
            # earlier configs, all of this same function's code, do not pile up to the recompile limit
            torch._dynamo.reset()
            fn = torch.compile(hvp)
            out = fn(params, v)  # the compile, inside the cold start
            del out
        note = "Inductor caches off (TORCHINDUCTOR_FORCE_DISABLE_CACHES=1): cold start = full compile"
    return _torch_built(lambda: fn(params, v), t0, [params, v], note, warm=2 if compiled else 1)


def build_torch_dblbwd_hvp(p: Problem) -> Built:
    t0 = time.perf_counter()
    torch = _torch()
    model = torch_sequential(p)
    x, y = torch_data(p)
    plist = list(model.parameters())
    g = torch.autograd.grad(torch_loss(p)(model(x), y), plist, create_graph=True)
    vlist = _split_like(torch.from_numpy(p.v), plist)

    def call() -> tuple:
        # ∇(g·v) with the dot product folded into the seed of the second backward (grad_outputs = v)
        return torch.autograd.grad(g, plist, grad_outputs=vlist, retain_graph=True)

    return _torch_built(call, t0, [model, g, vlist], "gradient graph made once (create_graph=True)")


def build_torch_func_ggn(p: Problem) -> Built:
    t0 = time.perf_counter()
    torch, params, v, output, loss, y = _torch_problem(p)

    def head_grad(f: Any) -> Any:
        return torch.func.grad(lambda g: loss(g, y))(f)

    def ggn(q: dict, u: dict) -> dict:
        f, vjp_fn = torch.func.vjp(output, q)
        Ju = torch.func.jvp(output, (q,), (u,))[1]
        HJu = torch.func.jvp(head_grad, (f,), (Ju,))[1]
        return vjp_fn(HJu)[0]

    return _torch_built(lambda: ggn(params, v), t0, [params, v])


def build_torch_func_hessian(p: Problem) -> Built:
    t0 = time.perf_counter()
    torch = _torch()
    model = torch_sequential(p)
    x, y = torch_data(p)
    loss = torch_loss(p)
    names = [k for k, _ in model.named_parameters()]
    shapes = [t.shape for _, t in model.named_parameters()]
    theta = torch.from_numpy(p.theta)

    def objective(t: Any) -> Any:
        q, o = {}, 0
        for k, s in zip(names, shapes):
            size = int(np.prod(s))
            q[k] = t[o:o + size].view(s)
            o += size
        return loss(torch.func.functional_call(model, q, (x,)), y)

    hess = torch.func.hessian(objective)
    return _torch_built(lambda: hess(theta), t0, [theta])


# ---- BackPACK / curvlinops (torch) ----------------------------------------------------------------------
def build_backpack(p: Problem, kind: str) -> Built:
    t0 = time.perf_counter()
    _import("backpack")
    hvp_mod = _import("backpack.hessianfree.hvp")
    ggn_mod = _import("backpack.hessianfree.ggnvp")
    torch = _torch()
    model = torch_sequential(p)
    x, y = torch_data(p)
    plist = list(model.parameters())
    out = model(x)
    loss = torch_loss(p)(out, y)
    vlist = _split_like(torch.from_numpy(p.v), plist)
    if kind == "hvp":
        def call() -> tuple:
            return hvp_mod.hessian_vector_product(loss, plist, vlist)
    else:
        def call() -> tuple:
            return ggn_mod.ggn_vector_product_from_plist(loss, out, plist, vlist)
    return _torch_built(call, t0, [model, out, loss, vlist], "forward graph made once", library="backpack")


def build_curvlinops(p: Problem, kind: str) -> Built:
    t0 = time.perf_counter()
    cl = _import("curvlinops")
    torch = _torch()
    model = torch_sequential(p)
    x, y = torch_data(p)
    if p.cfg.loss == "mse":
        lossfunc = torch.nn.MSELoss(reduction="mean")  # (1/(n d)) Σ ‖f − y‖² = (2/d) × SPEC's mse
        scale = p.cfg.d / 2.0
    else:
        lossfunc = torch.nn.CrossEntropyLoss(reduction="mean")
        scale = 1.0
    cls = cl.HessianLinearOperator if kind == "hvp" else cl.GGNLinearOperator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        op = cls(model, lossfunc, list(model.parameters()), [(x, y)], check_deterministic=False)
    v = torch.from_numpy((p.v * scale).astype(p.v.dtype))  # the operator is linear: scaling v outside is exact
    note = "MSELoss(mean) with v scaled by d/2 outside the call" if p.cfg.loss == "mse" else ""
    return _torch_built(lambda: op @ v, t0, [op, v], note, library="curvlinops")


# ---- JAX ------------------------------------------------------------------------------------------------
_JAX: dict[str, Any] = {}


def _jax() -> tuple[Any, Any]:
    jax = _import("jax")
    if not _JAX:
        jax.config.update("jax_enable_x64", True)  # float64 configs; float32 inputs stay float32 (checked)
        _JAX["jnp"] = _import("jax.numpy")
    return jax, _JAX["jnp"]


def _jax_activation(name: str) -> Callable:
    jax, jnp = _jax()
    return {"identity": lambda z: z, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu,
            "leaky_relu": lambda z: jax.nn.leaky_relu(z, 0.01), "softplus": jax.nn.softplus,
            "gelu": lambda z: jax.nn.gelu(z, approximate=False), "silu": jax.nn.silu, "sin": jnp.sin}[name]


def jax_problem(p: Problem) -> dict[str, Any]:
    """θ as a list of (W, b), X, Y, v likewise, the network output and the loss, all in JAX."""
    jax, jnp = _jax()
    cfg = p.cfg
    act = _jax_activation(cfg.activation)
    Ws, bs = p.net.unflatten(p.theta)
    params = [(jnp.asarray(np.ascontiguousarray(W)), jnp.asarray(np.ascontiguousarray(b))) for W, b in zip(Ws, bs)]
    vW, vb = p.net.unflatten(p.v)
    v = [(jnp.asarray(np.ascontiguousarray(W)), jnp.asarray(np.ascontiguousarray(b))) for W, b in zip(vW, vb)]
    X = jnp.asarray(p.X)
    Y = jnp.asarray(p.Y)
    L = len(params)

    def output(q: list, X: Any) -> Any:
        a = X
        for l, (W, b) in enumerate(q):
            z = a @ W.T + b
            a = act(z) if l < L - 1 else z
        return a

    if cfg.loss == "mse":
        def head(f: Any, Y: Any) -> Any:
            return 0.5 * jnp.sum((f - Y) ** 2) / f.shape[0]
    elif cfg.loss == "softmax_cross_entropy":
        def head(f: Any, Y: Any) -> Any:
            logp = jax.nn.log_softmax(f, axis=-1)
            return -jnp.mean(jnp.take_along_axis(logp, Y[:, None], axis=1))
    else:
        raise NotImplementedError(cfg.loss)

    def loss(q: list, X: Any, Y: Any) -> Any:
        return head(output(q, X), Y)

    shapes = [(W.shape, b.shape) for W, b in params]

    def unflatten(t: Any) -> list:
        q, o = [], 0
        for sw, sb in shapes:
            nw, nb = sw[0] * sw[1], sb[0]
            q.append((t[o:o + nw].reshape(sw), t[o + nw:o + nw + nb]))
            o += nw + nb
        return q

    return {"jax": jax, "jnp": jnp, "params": params, "v": v, "X": X, "Y": Y, "output": output, "head": head,
            "loss": loss, "unflatten": unflatten}


def _jax_flat(out: Any) -> np.ndarray:
    jax, _ = _jax()
    leaves = jax.tree_util.tree_leaves(out)
    return np.concatenate([np.asarray(x).reshape(-1) for x in leaves])


def _jax_built(call: Callable[[], Any], t0: float, keep: list, note: str = "") -> Built:
    cold = _timed_first(call, t0)
    return Built(call, _jax_flat, cold, versions("jax"), {"xla": xla_threads()}, note, keep)


def build_jax_jit_hvp(p: Problem) -> Built:
    t0 = time.perf_counter()
    j = jax_problem(p)
    jax = j["jax"]
    grad = jax.grad(j["loss"])
    hvp = jax.jit(lambda q, u, X, Y: jax.jvp(lambda r: grad(r, X, Y), (q,), (u,))[1])
    params, v, X, Y = j["params"], j["v"], j["X"], j["Y"]
    return _jax_built(lambda: jax.block_until_ready(hvp(params, v, X, Y)), t0, [j])


def build_jax_linearize_hvp(p: Problem, block: bool = False) -> Built:
    """JAX's cached HVP: ``linearize(grad)`` once (outside the timed call), then the jitted linear map, on v
    or (``block``) under ``vmap`` over the k columns of V."""
    t0 = time.perf_counter()
    j = jax_problem(p)
    jax = j["jax"]
    grad = jax.grad(j["loss"])
    X, Y = j["X"], j["Y"]
    _, lin = jax.linearize(lambda q: grad(q, X, Y), j["params"])  # a Partial pytree: its residuals are arguments
    apply = jax.jit((lambda f, U: jax.vmap(f)(U)) if block else (lambda f, u: f(u)))
    v = _jax_block(j, p) if block else j["v"]
    return _jax_result(lambda: jax.block_until_ready(apply(lin, v)), t0, [j, lin, v], block,
                       "linearize once (outside the timed call), then the jitted linear map")


def build_jax_jit_ggn(p: Problem) -> Built:
    t0 = time.perf_counter()
    j = jax_problem(p)
    jax, output, head = j["jax"], j["output"], j["head"]

    def ggn(q: list, u: list, X: Any, Y: Any) -> list:
        f, Ju = jax.jvp(lambda r: output(r, X), (q,), (u,))
        HJu = jax.jvp(jax.grad(lambda g: head(g, Y)), (f,), (Ju,))[1]
        _, vjp = jax.vjp(lambda r: output(r, X), q)
        return vjp(HJu)[0]

    fn = jax.jit(ggn)
    params, v, X, Y = j["params"], j["v"], j["X"], j["Y"]
    return _jax_built(lambda: jax.block_until_ready(fn(params, v, X, Y)), t0, [j])


def build_jax_linearize_ggn(p: Problem, block: bool = False) -> Built:
    """JAX's cached GGN: f linearized at θ once (outside the timed call); per call J u, H_out, Jᵀ, on v or
    (``block``) under ``vmap`` over the k columns of V."""
    t0 = time.perf_counter()
    j = jax_problem(p)
    jax, output, head = j["jax"], j["output"], j["head"]
    X, Y, params = j["X"], j["Y"], j["params"]
    f, lin = jax.linearize(lambda r: output(r, X), params)
    lin_t = jax.linear_transpose(lin, params)

    def one(lin: Any, lin_t: Any, f: Any, u: Any) -> Any:
        return lin_t(jax.jvp(jax.grad(lambda g: head(g, Y)), (f,), (lin(u),))[1])[0]

    ggn = jax.jit((lambda lin, lin_t, f, U: jax.vmap(lambda u: one(lin, lin_t, f, u))(U)) if block else one)
    v = _jax_block(j, p) if block else j["v"]
    return _jax_result(lambda: jax.block_until_ready(ggn(lin, lin_t, f, v)), t0, [j, lin, lin_t, f, v], block,
                       "linearize once (outside the timed call), then the jitted J, H_out, Jᵀ")


def _jax_block(j: dict[str, Any], p: Problem) -> list:
    """The block V (N, k) as a list of (W, b) whose leaves carry the k columns on a leading axis."""
    Vt = j["jnp"].asarray(np.ascontiguousarray(p.V.T))  # (k, N)
    k, q, o = Vt.shape[0], [], 0
    for W, b in j["params"]:
        nw, nb = W.size, b.size
        q.append((Vt[:, o:o + nw].reshape((k,) + W.shape), Vt[:, o + nw:o + nw + nb]))
        o += nw + nb
    return q


def _jax_flat_block(out: Any) -> np.ndarray:
    """A vmapped result (leaves (k, ...)) as pyhessk's (N, k) block."""
    jax, _ = _jax()
    leaves = jax.tree_util.tree_leaves(out)
    k = leaves[0].shape[0]
    return np.ascontiguousarray(np.concatenate([np.asarray(x).reshape(k, -1) for x in leaves], axis=1).T)


def _jax_result(call: Callable[[], Any], t0: float, keep: list, block: bool, note: str) -> Built:
    if not block:
        return _jax_built(call, t0, keep, note)
    return Built(call, _jax_flat_block, _timed_first(call, t0), versions("jax"), {"xla": xla_threads()},
                 note + " under vmap over the k columns", keep)


def build_jax_hessian(p: Problem) -> Built:
    t0 = time.perf_counter()
    j = jax_problem(p)
    jax, jnp = j["jax"], j["jnp"]
    loss, unflatten = j["loss"], j["unflatten"]
    hess = jax.jit(jax.hessian(lambda t, X, Y: loss(unflatten(t), X, Y)))
    theta, X, Y = jnp.asarray(p.theta), j["X"], j["Y"]
    return Built(lambda: jax.block_until_ready(hess(theta, X, Y)), lambda H: np.asarray(H),
                 _timed_first(lambda: jax.block_until_ready(hess(theta, X, Y)), t0), versions("jax"),
                 {"xla": xla_threads()}, "", [j, theta])


BUILDERS: dict[str, Callable[[Problem], Built]] = {
    "jax_jit_hvp": build_jax_jit_hvp,
    "torch_func_hvp": build_torch_func_hvp,
    "torch_compile_hvp": lambda p: build_torch_func_hvp(p, compiled=True),
    "curvlinops_hvp": lambda p: build_curvlinops(p, "hvp"),
    "jax_linearize_hvp": build_jax_linearize_hvp,
    "torch_dblbwd_hvp": build_torch_dblbwd_hvp,
    "backpack_hvp": lambda p: build_backpack(p, "hvp"),
    "jax_jit_ggn": build_jax_jit_ggn,
    "torch_func_ggn": build_torch_func_ggn,
    "curvlinops_ggn": lambda p: build_curvlinops(p, "ggn"),
    "backpack_ggn": lambda p: build_backpack(p, "ggn"),
    "jax_linearize_ggn": build_jax_linearize_ggn,
    "jax_linearize_hvp_block": lambda p: build_jax_linearize_hvp(p, block=True),
    "jax_linearize_ggn_block": lambda p: build_jax_linearize_ggn(p, block=True),
    "jax_hessian": build_jax_hessian,
    "torch_func_hessian": build_torch_func_hessian,
}
assert set(BUILDERS) == set(BY_ID)


def library_available(library: str) -> str | None:
    """None when the peer's library can be found, else the reason (checked without importing it)."""
    import importlib.util

    if importlib.util.find_spec(library) is None:
        return f"{library} is not installed (pip install 'pyhessk[peers]'; see bench/README.md)"
    return None


def build(peer_id: str, p: Problem) -> Built:
    """The peer ``peer_id`` on the config ``p`` (``PeerUnavailable`` when its library is missing)."""
    spec = BY_ID[peer_id]
    reason = library_available(spec.library)
    if reason is not None:
        raise PeerUnavailable(reason)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the peers' own deprecation chatter during setup and compile
        return BUILDERS[peer_id](p)


# ---- the numerical check that precedes every timing ---------------------------------------------------
#: float32: summation order alone moves a product by ~1e-6 relative; a peer computing another quantity
#: (a factor 2, a mean over d, a missing term) is off by O(1). float64: ~1e-14 vs the same bound's 1e-9.
RTOL = {"float32": 1e-4, "float64": 1e-9}


def agreement(peer: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Relative errors of a peer's result against pyhessk's: in the 2-norm, and the largest entry."""
    peer = np.asarray(peer, dtype=np.float64).reshape(ref.shape)
    ref = np.asarray(ref, dtype=np.float64)
    scale = float(np.linalg.norm(ref)) or 1.0
    return {"rel_err": float(np.linalg.norm(peer - ref)) / scale,
            "max_err": float(np.max(np.abs(peer - ref))) / (float(np.max(np.abs(ref))) or 1.0)}
