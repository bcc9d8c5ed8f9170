"""The CNF flows: bijection to solver accuracy, class consistency of the shipped digits
weights, MI invariance through the flow, and pickle-free weight loading."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("torchdiffeq")
pytest.importorskip("safetensors")
pytest.importorskip("sklearn")

from mmmi_dsl.flows import REGISTRY  # noqa: E402
from mmmi_dsl.flows.cnf import CNF, DIGITS_WEIGHTS, Digits, load_weights  # noqa: E402
from mmmi_dsl.flows.train import load_digits_array, save_weights, train_flow  # noqa: E402


def _z(n, seed=0, dtype=torch.float32):
    return torch.randn(n, 64, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


# Max |f^-1(f(z)) - z| over standard-normal latents. Measured on 256 latents x classes
# {0, 3, 8} (docs/flows.md): float32 rk4/32 4.9e-5, rk4/64 7.4e-6, dopri5 4.1e-5;
# float64 rk4/64 1.6e-6. Tolerances keep ~4x headroom.
ROUNDTRIP = [
    ("rk4", 32, torch.float32, 2e-4),
    ("rk4", 64, torch.float32, 5e-5),
    ("dopri5", 32, torch.float32, 2e-4),
    ("rk4", 64, torch.float64, 1e-5),
]


@pytest.mark.parametrize("method,steps,dtype,tol", ROUNDTRIP,
                         ids=[f"{m}-{s}-{str(d)[6:]}" for m, s, d, _ in ROUNDTRIP])
def test_shipped_digits_flow_round_trips(method, steps, dtype, tol):
    z = _z(128, dtype=dtype)
    worst = 0.0
    with torch.no_grad():
        for k in (3, 8):
            f = Digits(64, **{"class": k}, method=method, steps=steps)
            x = f(z)
            assert x.dtype == dtype and x.shape == z.shape and torch.isfinite(x).all()
            worst = max(worst, float((f.inverse(x) - z).abs().max()))
    assert worst < tol, f"{method}/{steps}/{dtype}: max round-trip error {worst:.3g} >= {tol}"


def test_round_trip_shrinks_with_more_steps():
    z = _z(32, dtype=torch.float64)
    with torch.no_grad():
        errs = []
        for steps in (8, 32):
            f = Digits(64, **{"class": 5}, steps=steps)
            errs.append(float((f.inverse(f(z)) - z).abs().max()))
    assert errs[1] < errs[0] / 4, errs


@pytest.fixture(scope="module")
def classifier():
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits_array()
    clf = LogisticRegression(max_iter=5000).fit(x, y)
    assert clf.score(x, y) > 0.98
    return clf


def test_shipped_weights_draw_the_requested_class(classifier):
    """An independent classifier (trained on the real digits) labels class-k samples as k >= 90%."""
    acc = {}
    with torch.no_grad():
        for k in range(10):
            x = Digits(64, **{"class": k})(_z(200, seed=100 + k)).numpy()
            assert np.all(np.abs(x) < 3), "samples far outside the data range [-1, 1]"
            acc[k] = float(np.mean(classifier.predict(x) == k))
    assert min(acc.values()) >= 0.90, acc


def test_guidance_sharpens_the_class(classifier):
    with torch.no_grad():
        x = Digits(64, **{"class": 9}, guidance=1.0)(_z(200, seed=7)).numpy()
    assert np.mean(classifier.predict(x) == 9) >= 0.95


def test_mi_is_kept_through_the_flow():
    """Correlated latents -> two digit classes -> inverse: the recovered latents are the
    originals up to the round-trip error, and their plug-in MI matches the exact MI."""
    rho, n = 0.8, 1000
    g = torch.Generator().manual_seed(11)
    u = torch.randn(n, 64, generator=g)
    z1 = u
    z2 = rho * u + math.sqrt(1 - rho ** 2) * torch.randn(n, 64, generator=g)
    z2[:, 1:] = torch.randn(n, 63, generator=g)  # only coordinate 0 is shared: I = -1/2 log(1 - rho^2)
    f3, f8 = Digits(64, **{"class": 3}), Digits(64, **{"class": 8})
    with torch.no_grad():
        x1, x2 = f3(z1), f8(z2)
        r1, r2 = f3.inverse(x1), f8.inverse(x2)
    assert float((r1 - z1).abs().max()) < 1e-3 and float((r2 - z2).abs().max()) < 1e-3

    def plugin(a, b):  # Gaussian plug-in MI of two scalars
        c = np.corrcoef(a.double().numpy(), b.double().numpy())[0, 1]
        return -0.5 * math.log(1 - c * c)

    exact = -0.5 * math.log(1 - rho ** 2)
    assert abs(plugin(r1[:, 0], r2[:, 0]) - plugin(z1[:, 0], z2[:, 0])) < 1e-4
    assert abs(plugin(r1[:, 0], r2[:, 0]) - exact) < 0.08  # ~3 sampling sd at n = 1000


def test_weights_are_safetensors_with_config():
    from safetensors.torch import load_file

    state = load_file(str(DIGITS_WEIGHTS))
    _, config = load_weights(DIGITS_WEIGHTS)
    assert config["dim"] == 64 and config["n_classes"] == 10
    assert config["command"].startswith("python -m mmmi_dsl.train --data digits")
    assert "seed" in config and "seed" in config["command"]
    assert sum(v.numel() for v in state.values()) < 300_000
    assert DIGITS_WEIGHTS.with_suffix(".json").is_file()


class _Payload:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):  # unpickling this creates the file
        return (open, (self.path, "w"))


@pytest.mark.parametrize("name", ["evil.pt", "evil.pkl", "evil.safetensors", "evil"])
def test_pickled_weights_are_refused_unexecuted(tmp_path, name):
    marker = tmp_path / "pwned"
    target = tmp_path / name
    target.write_bytes(pickle.dumps({"w": _Payload(marker)}))
    with pytest.raises(ValueError, match="(?i)pickle|safetensors"):
        CNF(64, weights=str(target), **{"class": 0})
    assert not marker.exists(), "the pickle was executed"


def test_constructor_errors(tmp_path):
    with pytest.raises(ValueError, match="size 64"):
        Digits(32, **{"class": 0})
    with pytest.raises(ValueError, match="class"):
        Digits(64, **{"class": 10})
    with pytest.raises(ValueError, match="method"):
        Digits(64, method="nope")
    with pytest.raises(FileNotFoundError):
        CNF(64, weights=str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="weights"):
        CNF(64)


def test_training_is_deterministic_and_saves_loadable_weights(tmp_path):
    x, y = load_digits_array()
    a, cfg = train_flow(x[:300], y[:300], steps=15, batch_size=32, hidden=32, depth=2, seed=3, progress=False)
    b, _ = train_flow(x[:300], y[:300], steps=15, batch_size=32, hidden=32, depth=2, seed=3, progress=False)
    assert all(torch.equal(a[k], b[k]) for k in a)
    cfg["command"] = "test"
    st, js = save_weights(tmp_path / "tiny", a, cfg)
    assert st.suffix == ".safetensors" and js.is_file()
    f = CNF(64, weights=str(st), **{"class": 1}, steps=4)
    with torch.no_grad():
        z = _z(8)
        assert torch.isfinite(f(z)).all()
    js.unlink()  # the config also travels in the safetensors metadata
    CNF(64, weights=str(st), **{"class": 1})


def test_registry_is_lazy():
    assert {"cnf", "digits"} <= set(REGISTRY)
    code = ("import sys, mmmi_dsl.flows, mmmi_dsl.backend; "
            "assert 'torchdiffeq' not in sys.modules and 'mmmi_dsl.flows.cnf' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert type(REGISTRY["digits"](64, **{"class": 2})).__name__ == "Digits"
