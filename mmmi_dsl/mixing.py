"""The sampler's identity mixing ``z_v = sum_p M[v, p] n_p`` of d-vectors, skipping the blocks of M
that contribute nothing at the sampling precision.

``M`` (n_v, n_p) is cut into square tiles of ``TILE`` rows and columns. A tile is skipped when it is
exactly zero, or when it is negligible: for every row v it touches, the skipped entries of that row
together carry a variance ``sum_skipped M[v, p]^2`` of at most ``tol^2 sum_p M[v, p]^2`` (the protos
are independent with unit variance, so that is the variance of what is left out, relative to the
row's own). ``tol`` is 2^-30 for float32 (a 64th of float32's half-ulp, 2^-24) and 2^-60 for float64
(below its 2^-53): what is skipped is below the rounding the dense sum already commits; each
variance the samples follow differs from the model's by at most ``tol^2`` relatively, and each
covariance by at most about ``2 tol`` of the two rows' standard deviations. The model,
and every MI computed from it, is untouched.

Decay's ``alpha^-|i-j|`` (alpha = 1.2, N = 1,000) keeps a band of |i - j| <= 114 in float32: about a
quarter of the tiles. A dense mix keeps every tile and is one product, as before.
"""

from __future__ import annotations

import numpy as np
import torch

#: Rows and columns of a tile.
TILE = 64
#: Below this many proto columns, or above this fraction of tiles kept, the mix is one dense product.
MIN_COLUMNS = 4 * TILE
MAX_KEPT = 0.6
#: The relative standard deviation a row may lose to skipped tiles, per sampling dtype.
TOLERANCE = {torch.float32: 2.0 ** -30, torch.float64: 2.0 ** -60}


def tile_plan(mix: np.ndarray, tol: float, tile: int | None = None) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """Per block of rows, the column ranges to multiply: ``[(r0, r1, [(c0, c1), ...]), ...]``.

    ``mix``: (n_v, n_p) float64. Adjacent kept tiles are merged into one range, so a band becomes
    one product per row block. Rows whose kept list is empty are zero.
    """
    tile = tile or TILE
    n_v, n_p = mix.shape
    row_total = np.einsum("vp,vp->v", mix, mix)
    plan = []
    for r0 in range(0, n_v, tile):
        r1 = min(r0 + tile, n_v)
        block = mix[r0:r1] ** 2  # (rows, n_p)
        cols = list(range(0, n_p, tile))
        mass = np.stack([block[:, c0:c0 + tile].sum(axis=1) for c0 in cols], axis=1)  # (rows, tiles)
        allowed = tol * tol * row_total[r0:r1]
        skipped = np.zeros(r1 - r0)
        keep = np.ones(len(cols), dtype=bool)
        for t in np.argsort(mass.max(axis=0), kind="stable"):  # the lightest tiles first
            if np.all(skipped + mass[:, t] <= allowed):
                skipped += mass[:, t]
                keep[t] = False
        ranges: list[tuple[int, int]] = []
        for t in np.flatnonzero(keep):
            c0, c1 = cols[t], min(cols[t] + tile, n_p)
            if ranges and ranges[-1][1] == c0:
                ranges[-1] = (ranges[-1][0], c1)
            else:
                ranges.append((c0, c1))
        plan.append((r0, r1, ranges))
    return plan


class Mixing:
    """``(C, n_p, d) -> (C, n_v, d)``: ``einsum('vp,cpd->cvd', M, protos)``, over kept tiles only.

    Args:
        mix: M (n_v, n_p), float64.
        dtype, device: of the samples; ``dtype`` also sets the tolerance (``TOLERANCE``).
    """

    def __init__(self, mix: np.ndarray, dtype: torch.dtype, device: torch.device):
        self.shape = mix.shape
        self.dense = None  # the whole mix on the device, only when it is one product
        self.blocks = None  # else the kept tiles per row block
        self.kept = 1.0
        if mix.shape[1] >= MIN_COLUMNS and dtype in TOLERANCE:
            plan = tile_plan(mix, TOLERANCE[dtype])
            kept = sum(c1 - c0 for _, _, ranges in plan for c0, c1 in ranges) / (mix.shape[1] * len(plan))
            if kept <= MAX_KEPT:
                self.kept = kept
                self.blocks = [(r0, r1, [(c0, c1, torch.as_tensor(mix[r0:r1, c0:c1], dtype=dtype, device=device))
                                         for c0, c1 in ranges]) for r0, r1, ranges in plan]
        if self.blocks is None:
            self.dense = torch.as_tensor(mix, dtype=dtype, device=device)

    def __call__(self, protos: torch.Tensor) -> torch.Tensor:
        if self.blocks is None:
            return torch.einsum("vp,cpd->cvd", self.dense, protos)
        C, _, d = protos.shape
        out = torch.zeros((C, self.shape[0], d), dtype=protos.dtype, device=protos.device)
        for r0, r1, ranges in self.blocks:
            for c0, c1, m in ranges:
                out[:, r0:r1] += torch.matmul(m, protos[:, c0:c1])
        return out
