"""Bring your own model (issue 15 item 9): `mmmic convert-weights` and a plugin's own velocity network."""

from __future__ import annotations

import json
import pickle
from importlib.metadata import EntryPoint

import numpy as np
import pytest
import torch

import mmmi_dsl.builtins as b
from mmmi_dsl import SpecError, loads
from mmmi_dsl.backend import Sampler
from mmmi_dsl.flows.cnf import VelocityNet

from ..plugin_flow import TinyVelocity

MLP = {"arch": "mlp", "dim": 16, "hidden": 32, "depth": 2, "n_classes": 3, "t_freqs": 2, "c_dim": 4}


def spec(flow: str, d: int = 16) -> str:
    return f"proto u : scalar\nproto n : vector[{d}]\nlatent z = u * ones({d}) + n\nflow x = {flow}\ntarget t = u\n"


def test_a_checkpoint_converts_and_its_flow_runs(tmp_path, mmmic):
    torch.manual_seed(0)
    net = VelocityNet(dim=16, hidden=32, depth=2, n_classes=3, t_freqs=2, c_dim=4)
    torch.save({"model": {f"module.{k}": v for k, v in net.state_dict().items()}, "step": 7},
               tmp_path / "ckpt.pt")
    (tmp_path / "config.json").write_text(json.dumps(MLP))
    r = mmmic("convert-weights", tmp_path / "ckpt.pt", tmp_path / "w.safetensors", "--config",
              tmp_path / "config.json", "--prefix", "module.")
    assert r.code == 0 and "arch mlp, dim 16, 3 classes (from `model`)" in r.stdout, r.stderr
    (tmp_path / "s.mmi").write_text(spec('cnf(z, weights = "w.safetensors", class = 2, steps = 8)'))
    assert mmmic("check", "--flows", tmp_path / "s.mmi").code == 0
    from mmmi_dsl.flows.cnf import CNF

    flow = CNF(16, weights=str(tmp_path / "w.safetensors"), **{"class": 2}, steps=8)
    z = torch.randn(5, 16)
    with torch.no_grad():
        assert torch.allclose(flow.inverse(flow(z)), z, atol=1e-4)
        expected = net(z, torch.tensor(0.5), torch.full((5,), 2))
        assert torch.allclose(flow.net(z, torch.tensor(0.5), torch.full((5,), 2)), expected)


def test_a_checkpoint_that_needs_code_is_refused_unrun(tmp_path, mmmic):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"w": Payload()}))
    (tmp_path / "config.json").write_text(json.dumps(MLP))
    r = mmmic("convert-weights", tmp_path / "evil.pt", tmp_path / "w.safetensors", "--config",
              tmp_path / "config.json")
    assert r.code == 1 and "weights_only=True" in r.stderr and "refused" in r.stderr, r.stderr
    assert not marker.exists() and not (tmp_path / "w.safetensors").exists()


def test_tensors_that_do_not_fit_the_config_write_nothing(tmp_path, mmmic):
    net = VelocityNet(dim=16, hidden=32, depth=2, n_classes=3, t_freqs=2, c_dim=4)
    torch.save(net.state_dict(), tmp_path / "ckpt.pt")
    (tmp_path / "config.json").write_text(json.dumps({**MLP, "hidden": 64}))
    r = mmmic("convert-weights", tmp_path / "ckpt.pt", tmp_path / "w.safetensors", "--config",
              tmp_path / "config.json")
    assert r.code == 1 and "do not fit the architecture" in r.stderr, r.stderr
    assert not (tmp_path / "w.safetensors").exists() and list(tmp_path.glob(".*")) == []


def test_a_plugin_builds_its_own_velocity_network(tmp_path, monkeypatch, mmmic):
    torch.manual_seed(1)
    net = TinyVelocity(16, 3, 8)
    torch.save({"ema": net.state_dict()}, tmp_path / "tiny.pt")
    (tmp_path / "config.json").write_text(json.dumps({"arch": "custom", "dim": 16, "n_classes": 3, "width": 8}))
    assert mmmic("convert-weights", tmp_path / "tiny.pt", tmp_path / "tiny.safetensors", "--config",
                 tmp_path / "config.json").code == 0
    eps = [EntryPoint("tiny", "tests.plugin_flow:TinyFlow", b.FLOW_ENTRY_POINT_GROUP)]
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group=None: [e for e in eps if e.group == group])
    model = loads(spec('tiny(z, weights = "tiny.safetensors", class = 1, steps = 8)'), base_dir=tmp_path)
    out = Sampler(model, save_latents=True).sample_range(0, 50)
    assert out["x"].shape == (50, 16) and np.isfinite(out["x"]).all()
    with pytest.raises(SpecError, match="custom architecture, which cnf\\(\\) cannot build"):
        loads(spec('cnf(z, weights = "tiny.safetensors", class = 1)'), base_dir=tmp_path)
