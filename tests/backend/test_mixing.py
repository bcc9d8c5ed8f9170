"""The sampler's tiled mixing (mmmi_dsl/mixing.py): what it skips is below the sampling precision,
what it keeps is the dense product, and samples stay deterministic and exactly distributed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmmi_dsl import load, mixing
from mmmi_dsl.backend import Sampler
from mmmi_dsl.mixing import TOLERANCE, Mixing, tile_plan

from ..conftest import ROOT

CPU = torch.device("cpu")


def geometric(n: int, alpha: float) -> np.ndarray:
    """decay.mmi's mixing alpha^-|i-j|, (n, n)."""
    i = np.arange(n)
    return alpha ** -np.abs(i[:, None] - i[None, :]).astype(float)


def skipped_fraction(mix: np.ndarray, plan) -> np.ndarray:
    """Per row, the variance left out by the plan over the row's variance."""
    kept = np.zeros_like(mix, dtype=bool)
    for r0, r1, ranges in plan:
        for c0, c1 in ranges:
            kept[r0:r1, c0:c1] = True
    total = (mix ** 2).sum(axis=1)
    return np.where(total > 0, (np.where(kept, 0, mix) ** 2).sum(axis=1) / np.where(total > 0, total, 1), 0)


@settings(max_examples=40, deadline=None)
@given(n_v=st.integers(1, 300), n_p=st.integers(1, 300), alpha=st.floats(1.01, 50),
       shift=st.integers(-300, 300), tol_exp=st.sampled_from([30, 60]))
def test_what_a_plan_skips_is_within_the_tolerance_of_every_row(n_v, n_p, alpha, shift, tol_exp):
    i, j = np.arange(n_v)[:, None], np.arange(n_p)[None, :]
    mix = alpha ** -np.abs(i - j + shift).astype(float)
    plan = tile_plan(mix, 2.0 ** -tol_exp, tile=16)
    assert np.all(skipped_fraction(mix, plan) <= 2.0 ** (-2 * tol_exp) * (1 + 1e-12))
    assert [r0 for r0, _, _ in plan] == list(range(0, n_v, 16))


def test_decay_keeps_a_band_and_the_product_is_the_dense_one():
    mix = geometric(1000, 1.2)
    x = torch.randn(2, 1000, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = torch.einsum("vp,cpd->cvd", torch.as_tensor(mix), x)
    for dtype, rel in ((torch.float64, 1e-13), (torch.float32, 2e-6)):
        m = Mixing(mix, dtype, CPU)
        assert m.blocks is not None and m.kept < 0.5  # the band |i - j| <= 114 (float32), <= 228 (float64)
        got = m(x.to(dtype)).double()
        err = ((got - exact).norm(dim=2) / exact.norm(dim=2)).max()
        assert err < rel, (dtype, float(err))
        if dtype == torch.float32:  # no worse than the dense product's own rounding
            dense = torch.einsum("vp,cpd->cvd", torch.as_tensor(mix, dtype=dtype), x.to(dtype)).double()
            assert err < 4 * ((dense - exact).norm(dim=2) / exact.norm(dim=2)).max()


def test_exact_zero_tiles_are_skipped_whatever_the_tolerance():
    blocks = np.kron(np.eye(8), np.ones((64, 64)))  # 8 modalities' groups sharing nothing
    m = Mixing(blocks, torch.float64, CPU)
    assert m.blocks is not None and m.kept == pytest.approx(1 / 8)
    x = torch.randn(3, 512, 2, dtype=torch.float64)
    assert torch.equal(m(x), torch.einsum("vp,cpd->cvd", torch.as_tensor(blocks), x))


def test_a_dense_or_small_mix_is_one_product():
    assert Mixing(np.ones((300, 300)), torch.float32, CPU).blocks is None  # nothing negligible
    assert Mixing(geometric(100, 2.0), torch.float32, CPU).blocks is None  # too few columns to tile
    assert TOLERANCE[torch.float32] == 2.0 ** -30 and TOLERANCE[torch.float64] == 2.0 ** -60


def test_a_large_decay_samples_deterministically_and_with_the_exact_covariance():
    model = load(ROOT / "specs" / "decay.mmi", {"N": "300", "d": "2", "alpha": "2"})
    s = Sampler(model, dtype=torch.float64, seed=3, save_latents=True, chunk_size=256)
    assert s.groups[0].mix.blocks is not None  # the tiled path is the one tested
    whole = s.sample_range(0, 4096)
    parts = [s.sample_range(a, min(a + 700, 4096)) for a in range(0, 4096, 700)]
    for k in whole:
        assert np.array_equal(whole[k], np.concatenate([p[k] for p in parts]))
    # the first 20 modalities' covariance against the exact one (entrywise, 6 standard errors)
    names = [f"z[{i}]" for i in range(1, 21)]
    x = np.hstack([whole[v] for v in names])
    exact = s.analysis.covariance(names)
    sd = np.sqrt(np.diag(exact))
    se = np.sqrt((np.outer(sd, sd) ** 2 + exact ** 2) / len(x))
    assert np.all(np.abs(np.cov(x, rowvar=False) - exact) < 6 * se)
    # the latents are those of the dense product, to float64 rounding
    mixing.MIN_COLUMNS, saved = 1 << 62, mixing.MIN_COLUMNS
    try:
        dense = Sampler(model, dtype=torch.float64, seed=3, save_latents=True, chunk_size=256)
    finally:
        mixing.MIN_COLUMNS = saved
    assert dense.groups[0].mix.blocks is None
    ref = dense.sample_range(0, 512)
    for v in model.variables:
        assert np.allclose(whole[v][:512], ref[v], rtol=0, atol=1e-12 * np.abs(ref[v]).max()), v
