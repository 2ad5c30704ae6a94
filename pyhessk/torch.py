r"""PyTorch adapter: ``nn.Sequential`` MLPs in, torch tensors in and out, curvlinops-style linear operators.

Import it as a submodule (``import pyhessk.torch as hkt``); it needs PyTorch, pyhessk itself does not.

- ``from_sequential(model, loss)`` reads an ``nn.Sequential`` of ``nn.Linear`` layers and supported activation
  modules and returns ``(net, theta)``: a :class:`TorchMLP` and the flat parameter tensor θ. θ has the SPEC
  layout, which *is* the order of ``model.parameters()`` (``weight`` of shape (n_out, n_in), then ``bias``,
  layer by layer), so no transposes are involved. ``to_sequential(net, theta)`` goes back.
- :class:`TorchMLP` and :class:`TorchCurvature` take and return torch tensors. CPU tensors cross as NumPy views
  (``Tensor.numpy()`` and ``torch.from_numpy``: no copies, except where pyhessk needs a C-contiguous array);
  CUDA tensors cross by DLPack to pyhessk's ``cuda`` engine when it can run here, and otherwise raise a
  ``RuntimeError`` saying why.
- :class:`HessianLinearOperator` and :class:`GGNLinearOperator` follow curvlinops' constructor
  ``(model_func, loss_func, params, data)`` and its ``@`` on tensors of shape (N,) or (N, k) (or lists of
  per-parameter tensors), in the order of ``model.parameters()``.

Supported activation modules (exact types, default arguments): ``Identity``, ``Tanh``, ``Sigmoid``, ``ReLU``,
``LeakyReLU`` (slope 0.01 only: the registry's slope), ``Softplus`` (``beta=1``; torch switches to the identity
above ``threshold=20``, where the exact softplus pyhessk computes differs by less than 3e-9), ``GELU``
(``approximate="none"``), ``SiLU``, and :class:`Sin` from this module. Two ``Linear`` layers with nothing in
between use the identity, and nested ``Sequential`` containers are flattened. One activation instance may sit at
several positions; one ``Linear`` at two positions (tied weights) is refused, as pyhessk's layers own their
parameters.

Losses. A registry name (``"mse"``, ``"cross_entropy"``, ``"binary_cross_entropy"``, …) means the SPEC
objective. A torch loss module means torch's objective, mapped onto pyhessk's by a constant factor c on the
data term (``net.loss_scale``; ``l2`` keeps its SPEC meaning, (λ/2)Σ‖W_l‖², added after the factor):

=====================================  ======================  =====================================
torch loss module                      pyhessk loss            c (n samples, d outputs)
=====================================  ======================  =====================================
``MSELoss(reduction="mean")``          ``mse``, mean           2/d  (torch averages over n·d entries of
                                                               (f−y)², SPEC takes ½‖f−y‖² per sample)
``MSELoss(reduction="sum")``           ``mse``, sum            2
``CrossEntropyLoss()``                 ``cross_entropy``       1
``BCEWithLogitsLoss(reduction="mean")``  ``binary_cross_entropy``, mean   1/d
``BCEWithLogitsLoss(reduction="sum")``   ``binary_cross_entropy``, sum    1
=====================================  ======================  =====================================

Example:
    >>> import torch, pyhessk.torch as hkt
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    >>> X, Y = torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    >>> net, theta = hkt.from_sequential(model, torch.nn.MSELoss())
    >>> net.loss_scale                   # torch's mean over n·d entries of (f − y)²: 2/d times SPEC's mse
    1.0
    >>> HV = net.linearize(theta, X, Y).hvp(torch.ones(net.num_params, 4, dtype=torch.float64))
    >>> HV.shape, HV.dtype
    (torch.Size([50, 4]), torch.float64)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize, prune
from torch.nn.utils.weight_norm import WeightNorm

from . import _dispatch, _spec
from .functional import _AdaptedCurvature, _AdaptedMLP
from .mlp import MLP

__all__ = [
    "GGNLinearOperator",
    "HessianLinearOperator",
    "Sin",
    "TorchCurvature",
    "TorchMLP",
    "from_sequential",
    "to_sequential",
]

_FLOAT_DTYPES = (torch.float32, torch.float64)


class Sin(nn.Module):
    """``torch.sin`` as a module, so that a network with pyhessk's ``sin`` activation has a torch form."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)


def _act_factories() -> dict[str, Any]:
    return {
        "identity": nn.Identity,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(_spec.LEAKY_RELU_SLOPE),
        "softplus": nn.Softplus,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "sin": Sin,
    }


_MODULE_NAMES = {nn.Identity: "identity", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.ReLU: "relu",
                 nn.LeakyReLU: "leaky_relu", nn.Softplus: "softplus", nn.GELU: "gelu", nn.SiLU: "silu", Sin: "sin"}


def _activation_name(module: nn.Module, where: str) -> str:
    name = _MODULE_NAMES.get(type(module))
    if name is None:
        supported = ", ".join(sorted(cls.__name__ for cls in _MODULE_NAMES))
        raise TypeError(f"model{where}: unsupported module {type(module).__name__}; pyhessk reads nn.Linear layers "
                        f"and the activations {supported} (pyhessk.torch.Sin for sin)")
    if name == "leaky_relu" and module.negative_slope != _spec.LEAKY_RELU_SLOPE:
        raise ValueError(f"model{where}: LeakyReLU(negative_slope={module.negative_slope}) is not supported; "
                         f"pyhessk's leaky_relu has slope {_spec.LEAKY_RELU_SLOPE}")
    if name == "softplus" and (module.beta != 1 or module.threshold < 20):
        raise ValueError(f"model{where}: Softplus(beta={module.beta}, threshold={module.threshold}) is not supported; "
                         "pyhessk's softplus is log(1 + exp(z)) (beta=1, threshold >= 20)")
    if name == "gelu" and module.approximate != "none":
        raise ValueError(f"model{where}: GELU(approximate={module.approximate!r}) is not supported; pyhessk's gelu "
                         "is the exact erf form (approximate='none')")
    return name


def _flat_modules(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """(position, module) in the order the model calls them, nested Sequentials flattened.

    A module placed at several positions is listed at each of them (``named_children()`` would list it once),
    as ``Sequential.forward`` calls it once per position.
    """
    out = []
    for key, m in model._modules.items():
        if m is None:
            continue
        if type(m) is nn.Sequential:
            out += _flat_modules(m, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", m))
    return out


def _check_plain_linear(key: str, m: nn.Linear) -> list[nn.Parameter]:
    """[weight, bias] (or [weight]) of a Linear whose forward uses exactly these two registered parameters."""
    for hook in m._forward_pre_hooks.values():
        if isinstance(hook, prune.BasePruningMethod):
            name = getattr(hook, "_tensor_name", "weight")
            raise ValueError(f"model[{key}]: the Linear is pruned (torch.nn.utils.prune: its {name} is {name}_orig "
                             "times a mask, applied in a forward pre-hook); pyhessk reads plain parameters, so make "
                             f"the pruning permanent first with torch.nn.utils.prune.remove(module, {name!r})")
        if isinstance(hook, WeightNorm):
            raise ValueError(f"model[{key}]: the Linear has torch.nn.utils.weight_norm (its weight is g·v/‖v‖, "
                             "computed in a forward pre-hook); pyhessk reads plain parameters, so remove it first "
                             "with torch.nn.utils.remove_weight_norm(module)")
    own = dict(m.named_parameters(recurse=False))
    names = ["weight", "bias"] if m.bias is not None else ["weight"]
    for name in names:
        if own.get(name) is not getattr(m, name):
            raise ValueError(f"model[{key}]: the Linear's {name} is not one of its parameters (it is computed, e.g. "
                             f"in a forward pre-hook); pyhessk reads weight and bias as nn.Parameters")
    extra = [k for k in own if k not in names]
    if extra:
        raise ValueError(f"model[{key}]: the Linear has the parameters {extra} besides {names}; pyhessk's layers "
                         "have a weight and a bias only")
    if list(own) != names:
        raise ValueError(f"model[{key}]: the Linear's parameters are registered as {list(own)}, so "
                         "model.parameters() lists the bias before the weight (as prune.remove, remove_weight_norm "
                         "and remove_parametrizations leave them), but pyhessk's θ, in the order of "
                         "model.parameters(), has the weight first; register the bias again after the weight: "
                         "b = module.bias; del module.bias; module.bias = b")
    return [own[k] for k in names]


def _read_sequential(model: Any) -> tuple[list[int], list[str], bool, list[nn.Parameter]]:
    """(sizes, hidden activation names, bias, the Linear parameters in θ order) of an nn.Sequential MLP."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be a torch.nn.Sequential of nn.Linear and activation modules, got "
                        f"{type(model).__name__}")
    mods = _flat_modules(model)
    for key, m in mods:
        if parametrize.is_parametrized(m):
            raise ValueError(f"model[{key}]: {type(m).__name__} has parametrizations of {list(m.parametrizations)} "
                             "(torch.nn.utils.parametrize, e.g. parametrizations.weight_norm), so its weight is "
                             "computed from other parameters; pyhessk reads plain nn.Linear parameters "
                             "(torch.nn.utils.parametrize.remove_parametrizations(module, name) makes them plain)")
    linears = [(k, m) for k, m in mods if type(m) is nn.Linear]
    if not linears:
        raise ValueError("model must contain at least one nn.Linear layer")
    if type(mods[0][1]) is not nn.Linear:
        raise ValueError(f"model[{mods[0][0]}]: the first module must be nn.Linear, got {type(mods[0][1]).__name__}")
    first_at: dict[int, str] = {}
    for key, m in linears:
        if id(m) in first_at:
            raise ValueError(f"model[{key}]: the nn.Linear of model[{first_at[id(m)]}] is used again here (tied "
                             "weights); pyhessk gives every layer its own parameters, so each position needs its own "
                             "nn.Linear")
        first_at[id(m)] = key
    if type(mods[-1][1]) is not nn.Linear:
        raise ValueError(f"model[{mods[-1][0]}]: the last module must be nn.Linear, got {type(mods[-1][1]).__name__} "
                         "(pyhessk's output layer is linear; an output nonlinearity belongs in the loss, e.g. "
                         "Sigmoid + BCELoss → BCEWithLogitsLoss)")
    acts: list[str] = []
    pending: list[tuple[str, nn.Module]] = []
    sizes = [linears[0][1].in_features]
    for key, m in mods:
        if type(m) is nn.Linear:
            if m.in_features != sizes[-1]:
                raise ValueError(f"model[{key}]: Linear({m.in_features}, {m.out_features}) does not follow a layer "
                                 f"of width {sizes[-1]}")
            if len(sizes) > 1:
                if len(pending) > 1:
                    raise ValueError(f"model[{pending[1][0]}]: one activation module between two Linear layers, "
                                     f"got {[type(p).__name__ for _, p in pending]}")
                acts.append(_activation_name(pending[0][1], f"[{pending[0][0]}]") if pending else "identity")
            pending = []
            sizes.append(m.out_features)
        else:
            pending.append((key, m))
    biases = [m.bias is not None for _, m in linears]
    if any(biases) and not all(biases):
        without = [k for (k, _), b in zip(linears, biases) if not b]
        raise ValueError(f"model: either every Linear layer has a bias or none has; the layers {without} have none "
                         "(pyhessk's bias= applies to all layers)")
    params, owner = [], {}
    for key, m in linears:
        for name, p in zip(("weight", "bias"), _check_plain_linear(key, m)):
            if id(p) in owner:
                raise ValueError(f"model[{key}]: its {name} is the same Parameter as the {owner[id(p)]} (tied "
                                 "weights); pyhessk gives every layer its own parameters")
            owner[id(p)] = f"{name} of model[{key}]"
            params.append(p)
    extra = [k for k, p in model.named_parameters() if id(p) not in owner]
    if extra:
        raise ValueError(f"model: the parameters {extra} belong to no Linear layer; pyhessk's θ holds the weights "
                         "and biases of the Linear layers only")
    if [id(p) for p in model.parameters()] != [id(p) for p in params]:
        raise ValueError("model: model.parameters() must list the weight and bias of each Linear layer, layer by "
                         "layer, in the order the model calls them")
    dtypes = {p.dtype for p in params}
    if len(dtypes) > 1:
        raise TypeError(f"model: all parameters must share one dtype, got {sorted(map(str, dtypes))}")
    dtype = params[0].dtype
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(f"model: parameters have dtype {dtype}; pyhessk computes in torch.float32 or torch.float64 "
                        "(use model.float() or model.double())")
    devices = {p.device for p in params}
    if len(devices) > 1:
        raise ValueError(f"model: all parameters must be on one device, got {sorted(map(str, devices))}")
    return sizes, acts, all(biases), params


def _loss_mapping(loss: Any, reduction: str | None) -> tuple[str, str, Any]:
    """(pyhessk loss name, reduction, data-term factor as a function of d) for a name or a torch loss module."""
    if isinstance(loss, str):
        name = _spec.loss(loss).name
        return name, "mean" if reduction is None else reduction, lambda d: 1.0
    if not isinstance(loss, nn.Module):
        raise TypeError(f"loss must be a pyhessk loss name or a torch loss module (MSELoss, CrossEntropyLoss, "
                        f"BCEWithLogitsLoss), got {type(loss).__name__}")
    red = loss.reduction
    if red not in ("mean", "sum"):
        raise ValueError(f"loss: {type(loss).__name__}(reduction={red!r}) is not supported; use 'mean' or 'sum'")
    if reduction is not None and reduction != red:
        raise ValueError(f"reduction={reduction!r} disagrees with the loss module's reduction={red!r}")
    if type(loss) is nn.MSELoss:
        return "mse", red, (lambda d: 2.0 / d) if red == "mean" else (lambda d: 2.0)
    if type(loss) is nn.CrossEntropyLoss:
        if loss.weight is not None or loss.label_smoothing != 0.0:
            raise ValueError("loss: CrossEntropyLoss with class weights or label smoothing is not supported")
        return "softmax_cross_entropy", red, lambda d: 1.0
    if type(loss) is nn.BCEWithLogitsLoss:
        if loss.weight is not None or loss.pos_weight is not None:
            raise ValueError("loss: BCEWithLogitsLoss with weight or pos_weight is not supported")
        return "sigmoid_cross_entropy", red, (lambda d: 1.0 / d) if red == "mean" else (lambda d: 1.0)
    raise TypeError(f"loss: unsupported loss module {type(loss).__name__}; use MSELoss, CrossEntropyLoss or "
                    "BCEWithLogitsLoss (or a pyhessk loss name)")


# ---- arrays across the boundary ----------------------------------------------------------------------
def _cuda_engine_reason() -> str | None:
    engine, reason = _dispatch.probe("cuda")
    return None if engine is not None else reason


def _to_engine(x: Any, name: str) -> Any:
    """A CPU tensor as a NumPy view, a CUDA tensor as a CuPy array (DLPack); anything else unchanged."""
    if not isinstance(x, torch.Tensor):
        return x
    if x.dtype in (torch.float16, torch.bfloat16) or x.is_complex():
        raise TypeError(f"{name} has dtype {x.dtype}; pyhessk computes in torch.float32 or torch.float64")
    x = x.detach()
    if x.device.type == "cpu":
        return x.resolve_conj().resolve_neg().numpy()
    if x.device.type == "cuda":
        reason = _cuda_engine_reason()
        if reason is not None:
            raise RuntimeError(f"{name} is a CUDA tensor, but pyhessk's 'cuda' engine cannot run here ({reason}); "
                               "move the tensors to the CPU with .cpu(), or install the GPU engine "
                               "(pip install 'pyhessk[cuda]')")
        import cupy

        return cupy.from_dlpack(x.contiguous())
    raise TypeError(f"{name} is on device {x.device}; pyhessk takes CPU or CUDA tensors")


def _from_engine(a: Any) -> torch.Tensor:
    if isinstance(a, np.ndarray):
        return torch.from_numpy(a)
    return torch.from_dlpack(a)


def _device_of(*xs: Any) -> str:
    devices = {x.device.type for x in xs if isinstance(x, torch.Tensor)}
    if len(devices) > 1:
        raise ValueError(f"the tensors of one call must be on one device, got {sorted(devices)}")
    return "cuda" if "cuda" in devices else "cpu"


class TorchMLP(_AdaptedMLP):
    """A pyhessk MLP that takes and returns torch tensors, with torch's loss convention when built from one.

    Made by :func:`from_sequential`. The objective is ``loss_scale · (SPEC data term) + (λ/2) Σ ‖W_l‖²``; the
    gradient and every H and G product include the factor; the Jacobian products do not involve the loss.
    Flat vectors are in the order of ``model.parameters()``.

    Attributes:
        mlp: the underlying ``pyhessk.MLP`` (SPEC objective, with l2 = λ / loss_scale).
        loss_scale: the factor c between torch's loss module and SPEC's loss (1 for a pyhessk loss name).
    """

    _to_engine = staticmethod(_to_engine)
    _from_engine = staticmethod(_from_engine)
    _device_of = staticmethod(_device_of)

    def __init__(self, sizes: Sequence[int], activations: Sequence[str], loss: str, reduction: str, bias: bool,
                 l2: float, loss_scale: float, backend: str = "auto") -> None:
        super().__init__(sizes, list(activations), loss, l2, reduction, bias, loss_scale, backend)


class TorchCurvature(_AdaptedCurvature):
    """A ``pyhessk.Curvature`` snapshot that takes and returns torch tensors (see ``pyhessk.Curvature``).

    Vectors are a tensor of shape (N,) or (N, k) in the order of ``model.parameters()``, or a list of tensors
    shaped like the parameters (each with a trailing axis of length k for a block); answers come back in the
    form given.
    """

    def _vec(self, V: Any) -> tuple[Any, bool]:
        if isinstance(V, (list, tuple)):
            return _to_engine(_list_to_flat(V, _param_shapes(self.net), "V"), "V"), True
        return _to_engine(V, "V"), False

    def _answer(self, out: Any, per_param: bool) -> Any:
        t = _from_engine(out)
        return _flat_to_list(t, _param_shapes(self.net)) if per_param else t


TorchMLP._curvature = TorchCurvature


def _param_shapes(net: TorchMLP) -> list[tuple[int, ...]]:
    shapes = []
    for n_in, n_out in zip(net.sizes[:-1], net.sizes[1:]):
        shapes.append((n_out, n_in))
        if net.mlp.bias:
            shapes.append((n_out,))
    return shapes


def _list_to_flat(V: Sequence[Any], shapes: list[tuple[int, ...]], name: str) -> torch.Tensor:
    if len(V) != len(shapes):
        raise ValueError(f"{name}: a list of per-parameter tensors needs {len(shapes)} entries, got {len(V)}")
    if not all(isinstance(v, torch.Tensor) for v in V):
        raise TypeError(f"{name}: a list vector must hold torch tensors")
    block = V[0].dim() == len(shapes[0]) + 1
    parts = []
    for i, (v, s) in enumerate(zip(V, shapes)):
        want = (*s, V[0].shape[-1]) if block else s
        if tuple(v.shape) != want:
            raise ValueError(f"{name}[{i}] must have shape {want} like the parameter it multiplies, got "
                             f"{tuple(v.shape)}")
        parts.append(v.reshape(-1, v.shape[-1]) if block else v.reshape(-1))
    return torch.cat(parts, dim=0)


def _flat_to_list(t: torch.Tensor, shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
    out, pos = [], 0
    rest = tuple(t.shape[1:])
    for s in shapes:
        size = int(np.prod(s))
        out.append(t[pos:pos + size].reshape(*s, *rest))
        pos += size
    return out


# ---- conversions ------------------------------------------------------------------------------------
def from_sequential(model: Any, loss: Any = "mse", *, l2: float = 0.0, reduction: str | None = None,
                    backend: str = "auto") -> tuple[TorchMLP, torch.Tensor]:
    """``(net, theta)`` for an ``nn.Sequential`` MLP.

    Args:
        model: ``nn.Sequential`` of ``nn.Linear`` layers (all with or all without bias) and supported activation
            modules (module docstring); float32 or float64 parameters on one device.
        loss: a pyhessk loss name (SPEC objective) or a torch loss module (``MSELoss``, ``CrossEntropyLoss``,
            ``BCEWithLogitsLoss``: torch's objective, through ``net.loss_scale``).
        l2: weight decay λ: adds (λ/2) Σ ‖W_l‖² on the weights (not the biases).
        reduction: "mean" or "sum"; for a loss module, its own reduction (an explicit value must agree).
        backend: the pyhessk engine for CPU tensors ("auto" picks the fastest).

    Returns:
        The :class:`TorchMLP` and θ, a new flat tensor (the parameters copied in ``model.parameters()`` order)
        with the dtype and device of the model.

    Raises:
        TypeError: a model that is not an nn.Sequential, an unsupported module or loss module, a non-float dtype.
        ValueError: mixed biases, unsupported activation arguments, unknown loss names, inconsistent widths;
            a Linear that is pruned, weight-normed or parametrized, or placed twice; parameters outside the
            Linear layers or shared between them; ``model.parameters()`` in another order than θ's.
    """
    sizes, acts, bias, params = _read_sequential(model)
    name, red, factor = _loss_mapping(loss, reduction)
    net = TorchMLP(sizes, acts, name, red, bias, l2, factor(sizes[-1]), backend)
    theta = torch.cat([p.detach().reshape(-1) for p in params])
    return net, theta


def to_sequential(net: Any, theta: Any) -> nn.Sequential:
    """The ``nn.Sequential`` with parameters θ (copied) for a :class:`TorchMLP` or a ``pyhessk.MLP``.

    The modules have θ's dtype and device; ``from_sequential(to_sequential(net, θ), …)`` gives θ back.
    """
    mlp = net.mlp if isinstance(net, TorchMLP) else net
    if not isinstance(mlp, MLP):
        raise TypeError(f"net must be a pyhessk.torch.TorchMLP or a pyhessk.MLP, got {type(net).__name__}")
    t = theta if isinstance(theta, torch.Tensor) else torch.from_numpy(np.asarray(theta))
    if t.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"theta has dtype {t.dtype}; expected torch.float32 or torch.float64")
    if t.dim() != 1 or t.shape[0] != mlp.num_params:
        raise ValueError(f"theta must have shape ({mlp.num_params},) (num_params of {mlp.sizes}), got {tuple(t.shape)}")
    factories = _act_factories()
    mods: list[nn.Module] = []
    pos = 0
    acts = mlp.activations
    for l, (n_in, n_out) in enumerate(zip(mlp.sizes[:-1], mlp.sizes[1:])):
        lin = nn.Linear(n_in, n_out, bias=mlp.bias, dtype=t.dtype, device=t.device)
        with torch.no_grad():
            lin.weight.copy_(t[pos:pos + n_in * n_out].reshape(n_out, n_in))
            pos += n_in * n_out
            if mlp.bias:
                lin.bias.copy_(t[pos:pos + n_out])
                pos += n_out
        mods.append(lin)
        if l < len(acts):
            mods.append(factories[acts[l]]())
    return nn.Sequential(*mods)


# ---- curvlinops-style linear operators ----------------------------------------------------------------
def _concat_data(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(d, torch.Tensor) for d in data):
        return data
    if not isinstance(data, Iterable):
        raise TypeError(f"data must be a tuple (X, y) of tensors or an iterable of such batches, got "
                        f"{type(data).__name__}")
    batches = list(data)
    if not batches or not all(isinstance(b, (tuple, list)) and len(b) == 2 for b in batches):
        raise ValueError("data must hold at least one (X, y) batch")
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


class _CurvatureOperator:
    """The shared body of the Hessian and GGN operators: a snapshot at the current parameters."""

    SELF_ADJOINT = True
    _product = ""

    def __init__(self, model_func: nn.Module, loss_func: Any, params: Sequence[torch.Tensor] | None, data: Any, *,
                 l2: float = 0.0, backend: str = "auto") -> None:
        net, theta = from_sequential(model_func, loss_func, l2=l2, backend=backend)
        model_params = list(model_func.parameters())
        if params is not None and (len(params) != len(model_params)
                                   or any(p is not q for p, q in zip(params, model_params))):
            raise ValueError("params must be list(model_func.parameters()) in order: pyhessk's curvature covers "
                             "every parameter of the MLP")
        X, y = _concat_data(data)
        self._net = net
        self._curvature = net.linearize(theta, X, y)
        self._shapes = [tuple(p.shape) for p in model_params]
        self.dtype = theta.dtype
        self.device = theta.device
        self.shape = (net.num_params, net.num_params)

    def __matmul__(self, X: Any) -> Any:
        """The product with a tensor (N,) or (N, k), or a list of per-parameter tensors; same form out."""
        if isinstance(X, (list, tuple)):
            return getattr(self._curvature, self._product)(list(X))
        if not isinstance(X, torch.Tensor):
            raise TypeError(f"X must be a torch tensor of shape ({self.shape[1]},) or ({self.shape[1]}, k), or a list "
                            f"of per-parameter tensors, got {type(X).__name__}")
        return getattr(self._curvature, self._product)(X)

    def adjoint(self) -> _CurvatureOperator:
        return self

    def transpose(self) -> _CurvatureOperator:
        return self

    def gradient_and_loss(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The gradient as per-parameter tensors and the loss as a 0-d tensor, at the snapshot's parameters."""
        g = self._curvature.grad
        return _flat_to_list(g, self._shapes), torch.tensor(self._curvature.loss, dtype=self.dtype)

    def to_scipy(self) -> Any:
        """A ``scipy.sparse.linalg.LinearOperator`` on NumPy arrays (CPU operators only)."""
        from scipy.sparse.linalg import LinearOperator

        if self.device.type != "cpu":
            raise RuntimeError("to_scipy() needs a CPU operator; this one is on " + str(self.device))
        np_dtype = np.float64 if self.dtype == torch.float64 else np.float32

        def mv(v: np.ndarray) -> np.ndarray:
            return (self @ torch.from_numpy(np.ascontiguousarray(v, dtype=np_dtype))).numpy()

        return LinearOperator(self.shape, matvec=mv, rmatvec=mv, matmat=mv, rmatmat=mv, dtype=np_dtype)


class HessianLinearOperator(_CurvatureOperator):
    """The Hessian of ``loss_func(model_func(X), y)`` (plus (λ/2)Σ‖W‖² with ``l2=λ``) over all of ``data``.

    Made once at the current parameters (a snapshot: build a new operator after a parameter update).
    ``data`` is one ``(X, y)`` pair or an iterable of batches, which are concatenated, so a "mean" loss
    averages over all samples (as curvlinops weighs its batches).
    """

    _product = "hvp"


class GGNLinearOperator(_CurvatureOperator):
    """The generalized Gauss–Newton matrix of ``loss_func(model_func(X), y)`` over all of ``data``; see
    :class:`HessianLinearOperator`."""

    _product = "gnvp"
