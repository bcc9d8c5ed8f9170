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
    """``x = z^3 / 2``, or BMI's half-cube ``x = z sqrt(|z|)`` with ``convention = "bmi"``.

    Note:
        Both are homeomorphisms of R (their derivatives vanish only at 0); the inverses are
        ``cbrt(2 x)`` and ``sign(x) |x|^(2/3)``.
    """

    builtin = "half_cube"

    def forward(self, z):
        if self.args["convention"] == "bmi":
            return z * torch.sqrt(torch.abs(z))
        return 0.5 * z ** 3

    def inverse(self, x):
        if self.args["convention"] == "bmi":
            return torch.sign(x) * torch.abs(x) ** (2.0 / 3.0)
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

        ``convention = "bmi"`` is BMI's spiral (``bmi.transforms.Spiral`` as its benchmark
        tasks build it): A is the generator of the one plane of coordinates i = plane,
        j = plane + 1 (A[i, j] = -1, A[j, i] = 1) and s = speed / d, so only x_i, x_j turn,
        by the angle ``speed ||z||^2 / d``.
    """

    builtin = "spiral"

    def __init__(self, size: int, **kwargs):
        super().__init__(size, **kwargs)
        speed, seed = self.args["speed"], self.args["seed"]
        self.bmi = self.args["convention"] == "bmi"
        if self.bmi:
            first = int(self.args["plane"]) - 1  # 0-based i; j = i + 1
            order = [first, first + 1] + [k for k in range(size) if k not in (first, first + 1)]
            q = np.eye(size)[:, order]  # (v @ q)[:, 0:2] = (v_i, v_j), turned by omega[0] = 1
            omega = np.zeros(size // 2)
            omega[0] = 1.0
            self.speed = float(speed) / size
        else:
            rng = np.random.default_rng(int(seed))
            q, r = np.linalg.qr(rng.standard_normal((size, size)))
            q = q * np.sign(np.diag(r))[None, :]
            omega = rng.uniform(0.5, 1.5, size // 2)
            self.speed = float(speed)
        self.register_buffer("q", torch.from_numpy(q))
        self.register_buffer("omega", torch.from_numpy(omega))

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


def _bisect(f, target: torch.Tensor, low: torch.Tensor, high: torch.Tensor, steps: int = 80) -> torch.Tensor:
    """The root of an increasing ``f(x) = target`` in ``[low, high]``, elementwise (float64 bisection:
    80 halvings of a bracket of width w leave w 2^-80, below the resolution of its values)."""
    for _ in range(steps):
        mid = 0.5 * (low + high)
        below = f(mid) < target
        low, high = torch.where(below, mid, low), torch.where(below, high, mid)
    return 0.5 * (low + high)


#: BMI's wiggly maps (bmi/benchmark/tasks/wiggly.py): x + sum a sin(b x + c), as (a, b, c) triples.
WIGGLES = {"x": ((0.4, 1.0, 0.0), (0.2, 1.7, 1.0), (0.03, 3.3, -2.5)),
           "y": ((-0.4, 0.4, 0.0), (0.17, 1.3, 3.5), (0.02, 4.3, -2.5))}


class Wiggly(Flow):
    """BMI's wiggly maps, elementwise: ``x = z + sum_k a_k sin(b_k z + c_k)`` (:data:`WIGGLES`).

    Note:
        ``dx/dz >= 1 - sum_k |a_k b_k|`` (0.161 for ``x``, 0.533 for ``y``) > 0: strictly increasing,
        a bijection of R. ``|x - z| <= sum_k |a_k|``, which brackets the inverse; it is found by
        bisection in float64 (exact to rounding).
    """

    builtin = "wiggly"

    def __init__(self, size: int, **kwargs):
        super().__init__(size, **kwargs)
        self.terms = WIGGLES[self.args["variant"]]
        self.reach = sum(abs(a) for a, _, _ in self.terms)

    def _map(self, z):
        return z + sum(a * torch.sin(b * z + c) for a, b, c in self.terms)

    def forward(self, z):
        return self._map(z)

    def inverse(self, x):
        x64 = x.double()
        return _bisect(self._map, x64, x64 - self.reach, x64 + self.reach).to(x.dtype)


class Bimodal(Flow):
    """BMI's bimodal map, elementwise: ``x = F^-1(Phi(z))`` with F the CDF of the mixture
    ``weight N(mean1, 1) + (1 - weight) N(mean2, 1)``: a standard normal z becomes bimodal.

    Note:
        BMI (``1v1-bimodal``) applies ``invert_cdf(F)`` to ``Phi(z)``; here the two are one
        step, solved in float64 on log-CDFs (below the median) or log-survival functions (above),
        so neither tail rounds to 0 or 1. Since ``Phi(x - max mean) <= F(x) <= Phi(x - min mean)``,
        the root lies in ``[z + min mean, z + max mean]`` (bisection). The inverse is the closed
        form ``Phi^-1(F(x))``.
    """

    builtin = "bimodal"

    def __init__(self, size: int, **kwargs):
        super().__init__(size, **kwargs)
        w = float(self.args["weight"])
        self.means = (float(self.args["mean1"]), float(self.args["mean2"]))
        self.log_w = (math.log(w) if w > 0 else -math.inf, math.log1p(-w) if w < 1 else -math.inf)

    def _log_cdf(self, x, upper: bool):
        """log F(x), or log(1 - F(x)) when ``upper``."""
        parts = [lw + torch.special.log_ndtr((m - x) if upper else (x - m)) for lw, m in zip(self.log_w, self.means)]
        return torch.logaddexp(parts[0], parts[1])

    def forward(self, z):
        z64 = z.double()
        upper = z64 > 0
        target = torch.special.log_ndtr(torch.where(upper, -z64, z64))

        def increasing(x):  # log F(x) below the median, -log(1 - F(x)) above: both increase with x
            return torch.where(upper, -self._log_cdf(x, True), self._log_cdf(x, False))

        x = _bisect(increasing, torch.where(upper, -target, target), z64 + min(self.means), z64 + max(self.means))
        return x.to(z.dtype)

    def inverse(self, x):
        x64 = x.double()
        low, high = self._log_cdf(x64, False), self._log_cdf(x64, True)
        z = torch.where(low < high, torch.special.ndtri(torch.exp(low)), -torch.special.ndtri(torch.exp(high)))
        return z.to(x.dtype)


class Swissroll(Flow):
    """BMI's swiss roll, per entry: ``u -> (t cos t, t sin t) / 21``, ``t = 1.5 pi (1 + 2 u)``.

    An injective map R^d -> R^2d (entry k gives outputs 2k, 2k + 1), one-to-one for u > -1/2 where
    t > 0 (BMI feeds it u in (0, 1): ``swissroll(normal_cdf(z))``). The point's radius is t / 21,
    so the inverse on the image is ``u = (21 r / (1.5 pi) - 1) / 2``: exact.
    """

    builtin = "swissroll"

    def forward(self, z):
        t = 1.5 * math.pi * (1.0 + 2.0 * z)
        return torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=2).reshape(len(z), -1) / 21.0

    def inverse(self, x):
        pairs = x.reshape(len(x), -1, 2)
        t = 21.0 * torch.sqrt((pairs * pairs).sum(dim=2))
        return (t / (1.5 * math.pi) - 1.0) / 2.0


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
