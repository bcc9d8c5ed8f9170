"""BMI's bijections as mmmic flows: values against BMI's own samples, exact inverses, MI kept.

The fixture (tests/fixtures/bmi/, written by benchmarks/bmi_fixture.py with BMI 0.1.3) holds, for
every transformed task, draws of its innermost sampler (``base_x``, ``base_y``) and of the task
itself at the same seed (``out_x``, ``out_y``): the task's maps applied to those base draws.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmmi_dsl.estimators.classical import ksg
from mmmi_dsl.flows import REGISTRY
from mmmi_dsl.flows.base import Chain

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "bmi"
TASKS = {t["id"]: t for t in json.loads((FIXTURE / "tasks.json").read_text())["tasks"]}

#: A task id's prefix -> the mmmic flows of its x and y maps (name, keyword arguments).
PREFIXES = {
    "normal_cdf": (("normal_cdf", {}), ("normal_cdf", {})),
    "half_cube": (("half_cube", {"convention": "bmi"}), ("half_cube", {"convention": "bmi"})),
    "wiggly": (("wiggly", {"variant": "x"}), ("wiggly", {"variant": "y"})),
    "spiral": (("spiral", {"convention": "bmi", "plane": 1}), ("spiral", {"convention": "bmi", "plane": 2})),
    "asinh": (("asinh", {}), ("asinh", {})),
    "swissroll_x": (("swissroll", {}), ("identity", {})),
}
#: BMI's bimodal task: its CDF mixtures (bmi/benchmark/tasks/bimodal_gaussians.py), Phi included.
BIMODAL = (("bimodal", {"weight": 0.3, "mean1": 0, "mean2": 5}), ("bimodal", {"weight": 0.5, "mean1": -1, "mean2": 3}))


def chains(task_id: str) -> tuple[list, list]:
    """The x and y flow steps of a transformed task, innermost first (its id lists them outermost first)."""
    xs, ys = [], []
    while True:
        if task_id.startswith("1v1-bimodal-"):
            xs.insert(0, BIMODAL[0]), ys.insert(0, BIMODAL[1])
            return xs, ys
        prefix = task_id.split("-", 1)[0]
        if prefix not in PREFIXES:
            return xs, ys
        xs.insert(0, PREFIXES[prefix][0]), ys.insert(0, PREFIXES[prefix][1])
        task_id = task_id.split("-", 1)[1]


def build(steps: list, size: int) -> Chain:
    built = []
    for name, kwargs in steps:
        built.append(REGISTRY[name](built[-1].out_size if built else size, **kwargs))
    return Chain(built)


TRANSFORMED = sorted(t for t in TASKS if TASKS[t]["pairs"])


def test_every_transformed_task_is_made_of_known_flows():
    assert len(TRANSFORMED) == 21
    for task_id in TRANSFORMED:
        xs, ys = chains(task_id)
        assert xs and ys, task_id


@pytest.mark.parametrize("task_id", TRANSFORMED)
def test_flows_give_bmis_values_on_bmis_base_samples(task_id):
    """mmmic's flows (float64) on BMI's base draws give BMI's transformed draws.

    BMI runs jax in float32: its values are off by float32 rounding, ~1e-7 relative, more where
    it amplifies it (its spiral's angle ||z||^2 / d, a few radians: 6e-6; bimodal's bisection of a
    float32 Phi(z): 2e-6). Measured: at most 5.9e-6 of 1 + |x|; any other definition misses by far more.
    """
    data = np.load(FIXTURE / f"{task_id}.npz")
    tol = 2e-5
    for side, steps in zip("xy", chains(task_id)):
        base = data[f"base_{side}"].astype(np.float64)
        flow = build(steps, base.shape[1])
        out = flow(torch.from_numpy(base)).numpy()
        want = data[f"out_{side}"]
        assert out.shape == want.shape
        err = np.abs(out - want) / (1 + np.abs(want))
        assert err.max() < tol, (task_id, side, err.max())


BMI_FLOWS = {  # name, size, kwargs, latents it is one-to-one on
    "wiggly x": ("wiggly", 3, {"variant": "x"}, "normal"),
    "wiggly y": ("wiggly", 3, {"variant": "y"}, "normal"),
    "bimodal": ("bimodal", 2, {"weight": 0.3, "mean1": 0, "mean2": 5}, "normal"),
    "bimodal one component": ("bimodal", 2, {"weight": 0.0, "mean1": 0, "mean2": 5}, "normal"),
    "half_cube bmi": ("half_cube", 3, {"convention": "bmi"}, "normal"),
    "spiral bmi": ("spiral", 4, {"convention": "bmi", "plane": 3, "speed": 2.0}, "normal"),
    "swissroll": ("swissroll", 2, {}, "unit"),
}


def latents(kind: str, size: int, n: int = 2000) -> torch.Tensor:
    z = torch.randn(n, size, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2
    return torch.special.ndtr(z) if kind == "unit" else z


@pytest.mark.parametrize("case", sorted(BMI_FLOWS))
def test_bmi_flows_invert_exactly(case):
    name, size, kwargs, kind = BMI_FLOWS[case]
    f = REGISTRY[name](size, **kwargs)
    z = latents(kind, size)
    x = f(z)
    assert x.shape == (len(z), f.out_size) and torch.isfinite(x).all()
    assert not torch.allclose(x[:, :size], z)
    assert (f.inverse(x) - z).abs().max() < 1e-9


def test_wiggly_and_bimodal_are_strictly_increasing_and_reach_the_far_tails():
    z = torch.linspace(-30, 30, 20001, dtype=torch.float64).reshape(-1, 1)
    for f in (REGISTRY["wiggly"](1, variant="x"), REGISTRY["wiggly"](1, variant="y"),
              REGISTRY["bimodal"](1, weight=0.3, mean1=0, mean2=5)):
        x = f(z)
        assert torch.isfinite(x).all() and (torch.diff(x[:, 0]) > 0).all()
        back = f.inverse(x)
        assert (back - z).abs().max() < 1e-6  # Phi^-1(F(x)) far out: F's tail to ~1e-198, still resolved


def test_bimodal_is_bimodal_with_the_mixtures_quantiles():
    """x = F^-1(Phi(z)) has CDF F: its samples' quantiles are the mixture's (a KS check)."""
    from scipy import stats

    f = REGISTRY["bimodal"](1, weight=0.3, mean1=0, mean2=5)
    x = f(torch.randn(20000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)).numpy()[:, 0]
    cdf = lambda v: 0.3 * stats.norm.cdf(v) + 0.7 * stats.norm.cdf(v - 5)  # noqa: E731
    assert stats.kstest(x, cdf).pvalue > 1e-3
    assert stats.kstest(x, stats.norm(loc=3.5, scale=2.3).cdf).pvalue < 1e-6  # a unimodal fit is rejected


def test_bmi_conventions_leave_the_defaults_as_they_were():
    z = torch.randn(50, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.allclose(REGISTRY["half_cube"](3)(z), 0.5 * z ** 3)
    assert torch.allclose(REGISTRY["half_cube"](3, convention="mmmic")(z), 0.5 * z ** 3)
    mmmic, bmi = REGISTRY["spiral"](3, seed=2)(z), REGISTRY["spiral"](3, convention="bmi")(z)
    assert not torch.allclose(mmmic, bmi)
    # BMI's turns the first plane by speed ||z||^2 / d and leaves the third coordinate
    angle = (z * z).sum(1) / 3
    assert torch.allclose(bmi[:, 0], torch.cos(angle) * z[:, 0] - torch.sin(angle) * z[:, 1])
    assert torch.allclose(bmi[:, 2], z[:, 2])


def test_spiral_bmi_plane_must_fit():
    with pytest.raises(ValueError, match="turns coordinates 3 and 4; the latent has 3"):
        REGISTRY["spiral"](3, convention="bmi", plane=3)


RHO = 0.75
EXACT = -0.5 * np.log(1 - RHO ** 2)


def _pair(n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((2, n, 1))
    return a, RHO * a + np.sqrt(1 - RHO ** 2) * b


def _through(steps, v: np.ndarray) -> np.ndarray:
    return build(steps, v.shape[1])(torch.from_numpy(v)).numpy()


MAPS = {"wiggly": PREFIXES["wiggly"], "half_cube": PREFIXES["half_cube"], "bimodal": BIMODAL}


@pytest.mark.parametrize("case", ["wiggly", "half_cube", "bimodal", "swissroll"])
def test_ksg_sees_the_same_mi_before_and_after_the_flow(case):
    """KSG (k = 3) on 4,000 draws of BMI's 1v1 normal (rho 0.75) before and after the flows.

    Both estimate the same exact MI, 0.4133 nats; KSG's sampling sd at this n is about 0.012 nats and
    its bias changes a little with the marginals' shapes, so the two must agree to 0.05 nats and each
    lie within 0.06 of the exact value. A map that is not one-to-one (x -> x^2, below) loses ~0.3 nats:
    far outside.
    """
    x, y = _pair()
    before = ksg(x, y, seed=0).nats
    if case == "swissroll":
        fx, fy = _through([("normal_cdf", {}), ("swissroll", {})], x), _through([("normal_cdf", {})], y)
    else:
        (sx, kx), (sy, ky) = MAPS[case]
        fx, fy = _through([(sx, kx)], x), _through([(sy, ky)], y)
    after = ksg(fx, fy, seed=0).nats
    assert abs(before - EXACT) < 0.06 and abs(after - EXACT) < 0.06, (before, after)
    assert abs(after - before) < 0.05, (before, after)


def test_the_ksg_invariance_check_fails_for_a_map_that_is_not_one_to_one():
    x, y = _pair()
    before, folded = ksg(x, y, seed=0).nats, ksg(x ** 2, y, seed=0).nats
    assert abs(folded - before) > 0.2, (before, folded)


ROLL = """
proto a : scalar
proto b : scalar
latent zx = a
latent zy = 0.75 * a + sqrt(1 - 0.75^2) * b
flow x = FLOW
flow y = normal_cdf(zy)
report I(x; y)
"""


def test_a_chain_after_an_injective_step_reads_its_larger_output():
    from mmmi_dsl import loads

    spec = loads(ROLL.replace("FLOW", "affine(swissroll(normal_cdf(zx)), seed = 2)"))
    assert spec.flows["x"].shape == (2,) and spec.size_of("x") == 1  # the modality's Gaussian is its latent's
    assert abs(spec.results()[0].nats - EXACT) < 1e-12
    sampler = spec.sampler(dtype="float64")
    assert sampler.sample(64)["x"].shape == (64, 2)
    assert sampler.flow_roundtrip()["x"]["roundtrip_max"] < 1e-9


def test_size_errors_of_the_bmi_flows_are_spec_errors():
    from mmmi_dsl import loads
    from mmmi_dsl.errors import SpecError

    with pytest.raises(SpecError, match="chain maps latent `zx` of size 1 to 2"):
        loads(ROLL.replace("FLOW", "swissroll(normal_cdf(zx)) : vector[1]"))
    with pytest.raises(SpecError, match=r"turns coordinates 1 and 2; the latent has 1"):
        loads(ROLL.replace("FLOW", 'spiral(zx, convention = "bmi")'))
