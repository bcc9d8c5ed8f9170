"""Per-modality flows: per-sample bijections with exact inverses (torch).

A flow maps a latent batch ``z`` of shape (n, d) to data ``x`` of shape (n, d);
``inverse`` undoes it. Every flow here is a bijection of R^d onto its image acting
on one sample at a time, so the data keep the latents' mutual information.

The registry maps the names of the language (``mmmi_dsl.builtins.FLOWS``) to
classes; a name listed in the language but not built here raises a clear error.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .errors import Diagnostic, SpecError


class Flow(torch.nn.Module):
    """Base class: ``forward(z) -> x`` and ``inverse(x) -> z``, both (n, d) -> (n, d)."""

    def __init__(self, size: int, **kwargs):
        super().__init__()
        self.size = size

    def inverse(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Identity(Flow):
    def forward(self, z):
        return z

    def inverse(self, x):
        return x


class Affine(Flow):
    """``x = W z + b`` with a seeded, well-conditioned invertible W.

    Note:
        ``W = scale * Q diag(exp(s))`` with Q Haar-orthogonal and s ~ U(-0.5, 0.5),
        so the condition number is at most e; b ~ N(0, I). All drawn from numpy's
        PCG64 with the given seed, the same on every machine.
    """

    def __init__(self, size: int, seed: int = 0, scale: float = 1.0):
        super().__init__(size)
        if scale == 0:
            raise ValueError("affine scale must be nonzero")
        rng = np.random.default_rng(int(seed))
        q, r = np.linalg.qr(rng.standard_normal((size, size)))
        q = q * np.sign(np.diag(r))[None, :]
        s = rng.uniform(-0.5, 0.5, size)
        w = scale * q * np.exp(s)[None, :]
        w_inv = (q.T / np.exp(s)[:, None]) / scale
        self.register_buffer("weight_t", torch.from_numpy(w.T.copy()))
        self.register_buffer("weight_inv_t", torch.from_numpy(w_inv.T.copy()))
        self.register_buffer("bias", torch.from_numpy(rng.standard_normal(size)))

    def forward(self, z):
        return z @ self.weight_t.to(z.dtype) + self.bias.to(z.dtype)

    def inverse(self, x):
        return (x - self.bias.to(x.dtype)) @ self.weight_inv_t.to(x.dtype)


class Asinh(Flow):
    def forward(self, z):
        return torch.asinh(z)

    def inverse(self, x):
        return torch.sinh(x)


class Sinh(Flow):
    def forward(self, z):
        return torch.sinh(z)

    def inverse(self, x):
        return torch.asinh(x)


class HalfCube(Flow):
    """``x = z^3 / 2``: a homeomorphism of R (its derivative vanishes only at 0)."""

    def forward(self, z):
        return 0.5 * z ** 3

    def inverse(self, x):
        y = 2.0 * x
        return torch.sign(y) * torch.abs(y) ** (1.0 / 3.0)


class NormalCdf(Flow):
    """``x = Φ(z)`` in (0, 1): a bijection of R onto (0, 1).

    Note:
        In float32, Φ(z) rounds to 1 for z > ~5.4, which breaks invertibility in the
        far tail; the round-trip report of ``mmmic check --flows`` shows it.
    """

    def forward(self, z):
        return 0.5 * torch.erfc(-z / math.sqrt(2.0))

    def inverse(self, x):
        return math.sqrt(2.0) * torch.erfinv(2.0 * x - 1.0)


REGISTRY: dict[str, type[Flow]] = {
    "identity": Identity,
    "affine": Affine,
    "asinh": Asinh,
    "sinh": Sinh,
    "half_cube": HalfCube,
    "normal_cdf": NormalCdf,
}


class Chain(Flow):
    """A composition of flows, applied in order (the IR lists them innermost first)."""

    def __init__(self, steps: list[Flow]):
        super().__init__(steps[0].size if steps else 0)
        self.steps = torch.nn.ModuleList(steps)

    def forward(self, z):
        for f in self.steps:
            z = f(z)
        return z

    def inverse(self, x):
        for f in reversed(self.steps):
            x = f.inverse(x)
        return x


def build_flow(flow, size: int) -> Chain:
    """Instantiate the IR flow ``flow`` (an :class:`mmmi_dsl.ir.Flow`) for latents of ``size``."""
    steps = []
    for step in flow.steps:
        cls = REGISTRY.get(step.name)
        if cls is None:
            raise SpecError([Diagnostic(
                "E0210", f"flow `{step.name}` is not available in this version of mmmic", step.span, "",
                "available now: " + ", ".join(REGISTRY))])
        steps.append(cls(size, **step.args))
    return Chain(steps)
