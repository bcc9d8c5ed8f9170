"""Analytic flows: closed-form bijections with exact inverses (arguments in
:mod:`mmmi_dsl.builtins.flows`)."""

from __future__ import annotations

import math

import numpy as np
import torch

from mmmi_dsl.flows.base import Flow


class Identity(Flow):
    builtin = "identity"

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

    builtin = "affine"

    def __init__(self, size: int, **kwargs):
        super().__init__(size, **kwargs)
        seed, scale = self.args["seed"], self.args["scale"]
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
    builtin = "asinh"

    def forward(self, z):
        return torch.asinh(z)

    def inverse(self, x):
        return torch.sinh(x)


class Sinh(Flow):
    builtin = "sinh"

    def forward(self, z):
        return torch.sinh(z)

    def inverse(self, x):
        return torch.asinh(x)


class HalfCube(Flow):
    """``x = z^3 / 2``: a homeomorphism of R (its derivative vanishes only at 0)."""

    builtin = "half_cube"

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

    builtin = "normal_cdf"

    def forward(self, z):
        return 0.5 * torch.erfc(-z / math.sqrt(2.0))

    def inverse(self, x):
        return math.sqrt(2.0) * torch.erfinv(2.0 * x - 1.0)


class Spiral(Flow):
    """A norm-preserving spiral: ``x = exp(s ||z||^2 A) z`` with A skew-symmetric.

    Note:
        ``A = Q blockdiag(w_k J) Q^T`` (J the 2x2 rotation generator, Q Haar-orthogonal,
        w_k ~ U(0.5, 1.5), drawn from ``seed``): each plane of Q turns by the angle
        ``s w_k ||z||^2``. A rotation keeps the norm, so ``||x|| = ||z||`` and the
        inverse turns back by the same angles: an exact bijection of R^d.
    """

    builtin = "spiral"

    def __init__(self, size: int, **kwargs):
        super().__init__(size, **kwargs)
        speed, seed = self.args["speed"], self.args["seed"]
        rng = np.random.default_rng(int(seed))
        q, r = np.linalg.qr(rng.standard_normal((size, size)))
        q = q * np.sign(np.diag(r))[None, :]
        self.speed = float(speed)
        self.register_buffer("q", torch.from_numpy(q))
        self.register_buffer("omega", torch.from_numpy(rng.uniform(0.5, 1.5, size // 2)))

    def _turn(self, v: torch.Tensor, sign: float) -> torch.Tensor:
        q = self.q.to(v.dtype)
        y = v @ q  # coordinates in the planes of A
        k = self.omega.numel()
        angle = sign * self.speed * (v * v).sum(dim=1, keepdim=True) * self.omega.to(v.dtype)[None, :]
        a, b = y[:, 0:2 * k:2], y[:, 1:2 * k:2]
        c, s = torch.cos(angle), torch.sin(angle)
        turned = torch.stack([a * c - b * s, a * s + b * c], dim=2).reshape(len(v), 2 * k)
        y = torch.cat([turned, y[:, 2 * k:]], dim=1)
        return y @ q.T

    def forward(self, z):
        return self._turn(z, 1.0)

    def inverse(self, x):
        return self._turn(x, -1.0)


class Coupling(Flow):
    """A fixed random RealNVP: ``layers`` affine couplings with seeded weights.

    Note:
        Layer l splits the (seeded) permuted coordinates into halves a, b and maps
        ``b -> b * exp(tanh(s(a))) + t(a)`` with s, t one hidden-layer tanh MLPs; the
        inverse is ``b = (b' - t(a)) * exp(-tanh(s(a)))``: exact. Weights come from
        numpy's PCG64 with ``seed`` (untrained: a fixed nonlinear bijection).
    """

    builtin = "coupling"

    def __init__(self, size: int, **kwargs):
        super().__init__(size, **kwargs)
        layers, seed, hidden = self.args["layers"], self.args["seed"], self.args["hidden"]
        rng = np.random.default_rng(int(seed))
        self.n_layers = int(layers)
        self.half = size // 2
        for i in range(self.n_layers):
            perm = rng.permutation(size)
            na, nb = self.half, size - self.half
            self.register_buffer(f"perm{i}", torch.from_numpy(perm))
            self.register_buffer(f"w1_{i}", torch.from_numpy(rng.standard_normal((na, hidden)) / math.sqrt(na)))
            self.register_buffer(f"b1_{i}", torch.from_numpy(0.1 * rng.standard_normal(hidden)))
            self.register_buffer(f"w2_{i}", torch.from_numpy(0.5 * rng.standard_normal((hidden, 2 * nb))
                                                             / math.sqrt(hidden)))

    def _st(self, i: int, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dt = a.dtype
        h = torch.tanh(a @ getattr(self, f"w1_{i}").to(dt) + getattr(self, f"b1_{i}").to(dt))
        out = h @ getattr(self, f"w2_{i}").to(dt)
        nb = out.shape[1] // 2
        return torch.tanh(out[:, :nb]), out[:, nb:]

    def forward(self, z):
        x = z
        for i in range(self.n_layers):
            perm = getattr(self, f"perm{i}")
            y = x[:, perm]
            a, b = y[:, :self.half], y[:, self.half:]
            s, t = self._st(i, a)
            y = torch.cat([a, b * torch.exp(s) + t], dim=1)
            x = torch.empty_like(y)
            x[:, perm] = y
        return x

    def inverse(self, x):
        z = x
        for i in reversed(range(self.n_layers)):
            perm = getattr(self, f"perm{i}")
            y = z[:, perm]
            a, b = y[:, :self.half], y[:, self.half:]
            s, t = self._st(i, a)
            y = torch.cat([a, (b - t) * torch.exp(-s)], dim=1)
            z = torch.empty_like(y)
            z[:, perm] = y
        return z
