"""Continuous normalising flows (CNF): a learned ODE ``dx/dt = v(x, t, class)`` as a flow.

``forward(z)`` integrates the velocity field from ``t = 0`` (the standard-normal latent
``z``) to ``t = 1`` (data); ``inverse(x)`` integrates the same field back from ``t = 1`` to
``t = 0``. The flow map of a smooth (Lipschitz) ODE is a bijection of R^d, so the data
keep the latents' mutual information exactly; numerically the bijection holds only as
far as the solver is accurate (docs/science.md §3): measure ``f^-1(f(z)) - z`` with
``mmmic`` 's flow round-trip report, and raise ``steps`` (rk4) or tighten ``rtol``/``atol``
(dopri5) when it matters.

The velocity field is class-conditional and trained with conditional flow matching
(:mod:`mmmi_dsl.train`). Classifier-free guidance ``v = v_c + w (v_c - v_null)`` is still a
smooth vector field, so a guided flow is a bijection too.

Weights are read with :mod:`safetensors` only: a pickled checkpoint (``.pt``, ``.pkl``)
is refused without being unpickled, since unpickling runs arbitrary code. The
architecture comes from the config stored in the safetensors metadata (key
``mmmi_config``) or, failing that, from the ``.json`` file next to the weights.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from mmmi_dsl.builtins import weights
from mmmi_dsl.builtins.flows import FIXED_STEP, METHODS, SOLVER_KEYS, time_grid
from mmmi_dsl.builtins.weights import FORMAT, WEIGHTS_DIR
from mmmi_dsl.flows.base import Flow

DIGITS_WEIGHTS = weights.SHIPPED["digits"]
__all__ = ["CNF", "Digits", "Fashion", "VelocityNet", "FORMAT", "METHODS", "FIXED_STEP", "WEIGHTS_DIR",
           "DIGITS_WEIGHTS",
           "load_weights", "read_weights", "net_from_config"]


class VelocityNet(nn.Module):
    """``v(x, t, c)``: an MLP on ``[x, time features, class embedding]``.

    Time features are ``t`` and ``sin/cos(pi k t)`` for ``k = 1..t_freqs`` (smooth in t, so
    fixed-step solvers resolve them); class ``n_classes`` is the null class used for
    classifier-free guidance.
    """

    def __init__(self, dim: int = 64, hidden: int = 256, depth: int = 3, n_classes: int = 10,
                 t_freqs: int = 8, c_dim: int = 32):
        super().__init__()
        self.dim, self.n_classes = dim, n_classes
        self.register_buffer("freqs", math.pi * torch.arange(1, t_freqs + 1, dtype=torch.float32),
                             persistent=False)
        self.class_emb = nn.Embedding(n_classes + 1, c_dim)
        layers: list[nn.Module] = [nn.Linear(dim + 1 + 2 * t_freqs + c_dim, hidden), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU()]
        layers.append(nn.Linear(hidden, dim))
        self.mlp = nn.Sequential(*layers)
        #: floats per sample a pass holds at once: its input row and two hidden layers
        self.working_floats = dim + 1 + 2 * t_freqs + c_dim + 2 * hidden

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        t = t.reshape(-1, 1).expand(x.shape[0], 1) if t.numel() == 1 else t.reshape(-1, 1)
        ang = t * self.freqs.to(x.dtype)
        h = torch.cat([x, t, torch.sin(ang), torch.cos(ang), self.class_emb(c).to(x.dtype)], dim=1)
        return self.mlp(h)


def net_from_config(config: dict) -> nn.Module:
    """The velocity network of a checked config: the MLP, or the UNet when ``arch`` is ``"unet"``."""
    if weights.arch(config) == "custom":
        raise ValueError("these weights have a custom architecture: the flow plugin that registered it builds "
                         "its network (a subclass of mmmi_dsl.flows.cnf.CNF overriding build_net; docs/flows.md)")
    if weights.arch(config) == "unet":
        from mmmi_dsl.flows.unet import unet_from_config

        return unet_from_config(config)
    return VelocityNet(dim=int(config["dim"]), hidden=int(config["hidden"]), depth=int(config["depth"]),
                       n_classes=int(config["n_classes"]), t_freqs=int(config["t_freqs"]),
                       c_dim=int(config["c_dim"]))


def load_weights(path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read ``(state_dict, config)`` from a safetensors file; never unpickles anything.

    The config and the tensors' shapes are checked (:func:`mmmi_dsl.builtins.weights.inspect`)
    before any tensor is read or any network is built.
    """
    state, config, _ = read_weights(path)
    return state, config


def read_weights(path) -> tuple[dict[str, torch.Tensor], dict, str]:
    """:func:`load_weights` and the SHA-256 of the bytes the tensors were read from (one read)."""
    import hashlib

    from safetensors.torch import load

    info = weights.inspect(path)
    try:
        data = info.path.read_bytes()
        state = load(data)
    except OSError as exc:
        raise weights.WeightsError(f"cannot read `{info.path}`: {exc}") from None
    except Exception as exc:  # safetensors raises its own error type on malformed files
        raise weights.WeightsError(f"`{info.path}` is not a valid safetensors file: {exc}") from None
    return state, info.config, hashlib.sha256(data).hexdigest()


#: latents in the round trip ``generate`` checks before sampling a convolutional CNF (256 for the others)
UNET_ROUNDTRIP_ROWS = 32


class CNF(Flow):
    """A class-conditional CNF flow: ``cnf(z, weights = "...", class = k, guidance = 0, method = "rk4", steps = 32)``.

    Args:
        size: latent size; must equal the weights' ``dim``.
        weights: path of a ``.safetensors`` file (resolved as given).
        class: the class label (keyword ``class``), ``0 <= class < n_classes``.
        guidance: classifier-free guidance weight ``w >= 0`` (0: plain conditional field).
        method: a torchdiffeq method; fixed-step ``rk4`` (default), ``euler``, ``midpoint``
            use ``steps`` steps; adaptive ones (``dopri5`` ...) use ``rtol``/``atol``.
        steps: number of fixed steps over ``[0, 1]``.
        grid_power: the fixed steps' times ``t_k = 1 - (1 - k / steps) ** grid_power`` (1: uniform;
            above 1 the last step is ``(1 / steps) ** grid_power`` long, resolving the stiff field near
            the data).
        rtol, atol: tolerances of adaptive methods.
    """

    builtin = "cnf"

    def __init__(self, size: int, **kwargs):
        super().__init__(size, **kwargs)
        a = self.args
        state, config, self.weights_sha256 = read_weights(a["weights"] if self.builtin == "cnf"
                                                          else weights.shipped(self.builtin))
        dim = int(config["dim"])
        if size != dim:
            raise ValueError(f"{self.builtin}: these weights act on vectors of size {dim} (e.g. image[1x8x8] = 64), "
                             f"but the latent has size {size}")
        n_classes = int(config["n_classes"])
        label, guidance, method, steps = a["class"], a["guidance"], a["method"], a["steps"]
        self.grid_power = float(a["grid_power"])
        if not 0 <= int(label) < n_classes:
            raise ValueError(f"{self.builtin}: class must be an integer in 0..{n_classes - 1}, got {label}")
        rtol, atol = a["rtol"], a["atol"]
        self.config = config
        self.label, self.guidance = int(label), float(guidance)
        self.method, self.steps, self.rtol, self.atol = method, int(steps), float(rtol), float(atol)
        self.net = self.build_net(config)
        try:
            self.net.load_state_dict(state)
        except RuntimeError as err:  # missing, unexpected or mis-shaped tensors
            raise ValueError(f"{self.builtin}: the tensors in its weights do not fit the architecture of their "
                             f"config: {str(err).splitlines()[0]}") from None
        if not isinstance(getattr(self.net, "n_classes", None), int):
            raise ValueError(f"{type(self).__name__}.build_net: the network must have an int `n_classes` (its "
                             "null class for guidance is n_classes)")
        self.net.eval()
        self.net.requires_grad_(False)
        if weights.arch(config) == "unet":  # a latent: 2 x 4 x steps UNet passes (~10 ms each, one CPU thread)
            self.roundtrip_rows = UNET_ROUNDTRIP_ROWS
            self.standardize = "radius"  # one scale per modality: keeps where a template puts a cause
        # a pass with guidance runs the network on 2n rows; an rk4 step keeps ~5 states of (n, dim)
        rows = 2 if self.guidance else 1
        self.working_floats = rows * int(getattr(self.net, "working_floats", 0) or 0) + (rows + 5) * dim
        self._copies: dict = {}  # (dtype, device) -> a copy of net in that dtype (not a submodule)

    def build_net(self, config: dict) -> nn.Module:
        """The velocity network ``v(x, t, c)`` of ``config``: (n, dim), (n,) or scalar t, (n,) classes ->
        (n, dim), with an int attribute ``n_classes`` (class ``n_classes`` is the null class). A plugin
        with its own architecture (``"arch": "custom"``) overrides this."""
        return net_from_config(config)

    def _net(self, x: torch.Tensor) -> nn.Module:
        p = next(self.net.parameters())
        if p.dtype == x.dtype and p.device == x.device:
            return self.net
        key = (x.dtype, x.device)
        if key not in self._copies:
            self._copies[key] = copy.deepcopy(self.net).to(dtype=x.dtype, device=x.device)
        return self._copies[key]

    def velocity(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        net = self._net(x)
        n = x.shape[0]
        c = torch.full((n,), self.label, dtype=torch.long, device=x.device)
        if self.guidance == 0.0:
            return net(x, t, c)
        null = torch.full((n,), net.n_classes, dtype=torch.long, device=x.device)
        v = net(torch.cat([x, x]), t, torch.cat([c, null]))
        vc, vu = v[:n], v[n:]
        return vc + self.guidance * (vc - vu)

    def time_grid(self, dtype=torch.float32, device=None) -> torch.Tensor:
        """The fixed-step solver's times from 0 to 1, (steps + 1,): :func:`mmmi_dsl.builtins.flows.time_grid`
        (float64) in ``dtype`` (a uniform grid is ``torch.linspace`` itself)."""
        if self.grid_power == 1.0:
            return torch.linspace(0.0, 1.0, self.steps + 1, dtype=dtype, device=device)
        return torch.from_numpy(time_grid(self.steps, self.grid_power)).to(dtype=dtype, device=device)

    def _integrate(self, x: torch.Tensor, t0: float, t1: float) -> torch.Tensor:
        from torchdiffeq import odeint

        if x.shape[0] == 0:
            return x
        if self.method in FIXED_STEP:
            if self.grid_power == 1.0:  # the uniform grid as it always was (same bits both ways)
                t = torch.linspace(t0, t1, self.steps + 1, dtype=x.dtype, device=x.device)
            else:  # the inverse walks the forward's grid backwards, step for step
                t = self.time_grid(x.dtype, x.device)
                t = t if t0 < t1 else t.flip(0)
            # one step a call: the same arithmetic as one call on the whole grid (a fixed-step solver
            # computes each step from its ends alone), without its (steps + 1, n, dim) trajectory
            for k in range(len(t) - 1):
                x = odeint(self.velocity, x, t[k:k + 2], method=self.method)[-1]
            return x
        t = torch.tensor([t0, t1], dtype=x.dtype, device=x.device)
        return odeint(self.velocity, x, t, method=self.method, rtol=self.rtol, atol=self.atol)[-1]

    SOLVER_KEYS = SOLVER_KEYS  # the keys of learned_identity() that say how the ODE is solved

    def learned_identity(self) -> dict:
        """What decides this flow's images besides the spec: its weights' SHA-256 and its solver, as a
        dataset's manifest records them (a resume with other weights or another solver is refused)."""
        return {"flow": self.builtin or type(self).__name__, "weights_sha256": self.weights_sha256,
                "class": self.label, "guidance": self.guidance, "method": self.method,
                **({"steps": self.steps, "grid_power": self.grid_power} if self.method in FIXED_STEP
                   else {"rtol": self.rtol, "atol": self.atol})}

    def use_solver(self, record: dict) -> None:
        """Solve as ``record`` (a :meth:`learned_identity`) says: how a dataset written under another
        default solver is mapped back exactly as it was drawn."""
        self.method = str(record.get("method", self.method))
        self.steps = int(record.get("steps", self.steps))
        self.grid_power = float(record.get("grid_power", 1.0 if "steps" in record else self.grid_power))
        self.rtol, self.atol = float(record.get("rtol", self.rtol)), float(record.get("atol", self.atol))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self._integrate(z, 0.0, 1.0)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return self._integrate(x, 1.0, 0.0)


class Digits(CNF):
    """``digits(z, class = k)``: the CNF with the shipped weights, trained on scikit-learn's 8x8
    handwritten digits (pixel / 16 * 2 - 1, so values lie near [-1, 1]); size must be 64."""

    builtin = "digits"


class Fashion(CNF):
    """``fashion(z, class = k)``: the CNF with the shipped Fashion-MNIST weights (a UNet on 1x28x28,
    pixel / 255 * 2 - 1, ten classes); size must be 784. Until the weights are installed building
    it raises a :class:`~mmmi_dsl.builtins.weights.WeightsError` saying how to train them."""

    builtin = "fashion"
