"""Template visibility (issue 15, item 5) on the shipped digits flow at small n."""

import numpy as np
import pytest

from mmmi_dsl.flows.visibility import blob_template, correlation, measure


def test_blob_template_matches_the_builtin_shape_and_peak():
    t = blob_template((1, 8, 8), 3, 6, 1.5)
    assert t.shape == (1, 8, 8)
    assert np.unravel_index(np.argmax(t), t.shape) == (0, 2, 5)  # 1-based (3, 6)


@pytest.mark.parametrize("standardize", ["radius", "whiten"])
def test_a_blob_cause_shows_where_the_blob_is(standardize):
    near = measure("digits", 3, (1, 8, 8), 3, 3, (6, 6), sigma=1.5, rho=3, n=300, standardize=standardize)
    far = measure("digits", 3, (1, 8, 8), 6, 6, (3, 3), sigma=1.5, rho=3, n=300, standardize=standardize)
    for v in (near, far):
        assert v.correlation > 0.5, v.correlation
        assert v.correlation - v.control_correlation > 0.4
    # moving the blob (both well inside the image) moves where the information is, not how much
    assert near.mi_nats == pytest.approx(far.mi_nats, rel=1e-9)


def test_without_the_cause_nothing_shows():
    """rho = 0: u leaves the images alone, so high-u minus low-u is sampling noise only (seeds 0-3 measured
    an RMS of 0.06-0.10 against 0.45-0.58 with rho = 3; the correlation of noise with the blob is not small
    on 64 smooth pixels, so the RMS is what is compared)."""
    rms = {}
    for rho in (0.0, 3.0):
        v = measure("digits", 3, (1, 8, 8), 3, 3, (6, 6), sigma=1.5, rho=rho, n=300, standardize="radius")
        rms[rho] = float(np.sqrt(np.mean(v.difference ** 2)))
        if rho == 0.0:
            assert v.mi_nats == 0.0
    assert rms[0.0] < rms[3.0] / 3
    assert correlation(v.difference, v.difference) == pytest.approx(1.0)


def test_bad_quantile_is_refused():
    with pytest.raises(ValueError, match="quantile"):
        measure("digits", 3, (1, 8, 8), 3, 3, (6, 6), n=10, quantile=0.9)
