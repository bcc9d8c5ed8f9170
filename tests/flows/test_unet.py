"""The convolutional flows: the UNet's torch-free shape enumeration, its round trip as a CNF,
deterministic and resumable training, image training data, and the `fashion` flow."""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("torchdiffeq")
pytest.importorskip("safetensors")

from mmmi_dsl import load
from mmmi_dsl.builtins import weights
from mmmi_dsl.errors import SpecError
from mmmi_dsl.flows import cnf
from mmmi_dsl.flows import data as flow_data
from mmmi_dsl.flows.cnf import CNF, Fashion, net_from_config
from mmmi_dsl.flows.train import RunFiles, Schedule, architecture, main, save_weights, train
from mmmi_dsl.flows.unet import UNet

from ..conftest import ROOT

TINY = {"channels": 8, "mults": [1, 2], "groups": 4, "heads": 2, "t_dim": 16, "t_freqs": 4}
FASHION_MISSING = not weights.SHIPPED["fashion"].is_file()
NO_FASHION_WEIGHTS = "the fashion weights are not installed; train them (docs/flows.md)"
SPECS = ROOT / "specs"


CONFIGS = [
    ((1, 28, 28), {}),
    ((1, 28, 28), {"res_blocks": 2, "attention": 0}),
    ((3, 16, 16), {"channels": 16, "mults": [1, 2, 2, 4], "heads": 8, "groups": 8}),
    ((1, 8, 8), TINY),
    ((2, 12, 20), {"channels": 6, "mults": [1], "groups": 3, "heads": 3, "res_blocks": 3}),
]


@pytest.mark.parametrize("shape,fields", CONFIGS, ids=[f"{'x'.join(map(str, s))}-{i}" for i, (s, _) in
                                                        enumerate(CONFIGS)])
def test_shape_enumeration_equals_the_module(shape, fields):
    """weights.unet_shapes (torch-free) lists exactly the module's state_dict, in its order."""
    config = architecture("unet", int(np.prod(shape)), 7, shape, **fields)
    net = net_from_config(config)
    assert isinstance(net, UNet)
    real = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert list(weights.unet_shapes(config).items()) == list(real.items())
    assert weights.parameter_count(config) == sum(p.numel() for p in net.parameters())


def test_default_unet_is_small():
    config = architecture("unet", 784, 10, (1, 28, 28))
    assert 500_000 <= weights.parameter_count(config) <= 2_000_000


@pytest.mark.parametrize("fields,needle", [
    ({"groups": 5}, "groups"), ({"heads": 3}, "heads"), ({"mults": [1, 2, 2, 2]}, "divisible"),
    ({"attention": 2}, "attention"), ({"channels": 0}, "channels"), ({"mults": []}, "mults"),
])
def test_bad_unet_configs_are_refused(fields, needle):
    with pytest.raises(weights.WeightsError, match=needle):
        architecture("unet", 784, 10, (1, 28, 28), **fields)


def _random_unet(path, seed=0):
    """A tiny UNet on 1x8x8 with every tensor random (the zero-initialised ones too), saved to path."""
    config = architecture("unet", 64, 3, (1, 8, 8), **TINY)
    torch.manual_seed(seed)
    net = net_from_config(config)
    with torch.no_grad():
        for p in net.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.1)
    save_weights(path, {k: v.clone() for k, v in net.state_dict().items()}, config)
    return config


def test_tiny_random_unet_round_trips(tmp_path):
    _random_unet(tmp_path / "u")
    z = torch.randn(16, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        f = CNF(64, weights=str(tmp_path / "u.safetensors"), **{"class": 2}, method="rk4", steps=16)
        x = f(z)
        assert float((x - z).abs().max()) > 1e-2  # the field does move the latent
        assert float((f.inverse(x) - z).abs().max()) < 1e-4
        g = CNF(64, weights=str(tmp_path / "u.safetensors"), **{"class": 1}, guidance=1.0, steps=16)
        assert float((g.inverse(g(z)) - z).abs().max()) < 1e-4


def test_config_tensor_mismatch_is_refused_before_building(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    config = _random_unet(tmp_path / "u")
    state = cnf.load_weights(tmp_path / "u.safetensors")[0]
    state["up.0.blocks.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    save_file(state, str(tmp_path / "bad.safetensors"), metadata={"mmmi_config": json.dumps(config)})
    lying = {**config, "channels": 4096, "mults": [64, 64]}
    save_file(cnf.load_weights(tmp_path / "u.safetensors")[0], str(tmp_path / "lie.safetensors"),
              metadata={"mmmi_config": json.dumps(lying)})

    def boom(*a, **k):
        raise AssertionError("a network was built")

    monkeypatch.setattr(cnf, "net_from_config", boom)
    monkeypatch.setattr(UNet, "__init__", boom)
    with pytest.raises(weights.WeightsError, match="up.0.blocks.0.conv1.weight"):
        CNF(64, weights=str(tmp_path / "bad.safetensors"))
    with pytest.raises(weights.WeightsError, match="shape|divisible|parameters|do not fit"):
        CNF(64, weights=str(tmp_path / "lie.safetensors"))


def _digits():
    d = flow_data.load_training_data("digits")
    return d.x[:200], d.y[:200]


def test_training_is_deterministic(tmp_path):
    x, y = _digits()
    config = architecture("unet", 64, 10, (1, 8, 8), **TINY)
    schedule = Schedule(steps=10, batch_size=8, lr=1e-3, seed=4, grad_clip=1.0)
    a, cfg = train(x, y, config, schedule, progress=False)
    b, _ = train(x, y, config, schedule, progress=False)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert cfg["arch"] == "unet" and cfg["steps_done"] == 10 and np.isfinite(cfg["final_loss"])
    c, _ = train(x, y, config, Schedule(steps=10, batch_size=8, lr=1e-3, seed=5, grad_clip=1.0), progress=False)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_resume_gives_the_uninterrupted_weights(tmp_path):
    x, y = _digits()
    config = architecture("unet", 64, 10, (1, 8, 8), **TINY)
    schedule = Schedule(steps=12, batch_size=8, lr=1e-3, seed=1)
    whole, _ = train(x, y, config, schedule, progress=False)
    saved = []
    run = RunFiles(tmp_path / "run", checkpoint_every=4, sample_every=4, stop_after=6)
    _, cfg = train(x, y, config, schedule, run=run, progress=False, on_save=lambda s, c: saved.append(c))
    assert cfg["steps_done"] == 6 and [c["steps_done"] for c in saved] == [4, 6]
    assert (tmp_path / "run" / "samples-0000004.png").is_file()
    assert (tmp_path / "run" / "checkpoint.safetensors").read_bytes()[8:9] == b"{"  # safetensors, no pickle
    rest, cfg = train(x, y, config, schedule, run=RunFiles(tmp_path / "run", resume=True), progress=False)
    assert cfg["steps_done"] == 12
    assert all(torch.equal(whole[k], rest[k]) for k in whole)
    other = Schedule(steps=12, batch_size=8, lr=2e-3, seed=1)
    with pytest.raises(ValueError, match="another run: its schedule differs"):
        train(x, y, config, other, run=RunFiles(tmp_path / "run", resume=True), progress=False)


def test_each_segment_of_a_run_is_recorded(tmp_path):
    """The checkpoint and the weights' config list each process's steps, device, precision and torch,
    appended on resume; a checkpoint from before the list starts it with its steps, device unrecorded."""
    from safetensors.torch import save

    from mmmi_dsl.flows import checkpoint as ckpt

    x, y = _digits()
    config = architecture("unet", 64, 10, (1, 8, 8), **TINY)
    schedule = Schedule(steps=9, batch_size=8, lr=1e-3, seed=1)
    path = tmp_path / "run" / "checkpoint.safetensors"
    cpu = {"device": "cpu", "precision": "float32", "torch": torch.__version__}
    _, cfg = train(x, y, config, schedule, run=RunFiles(tmp_path / "run", stop_after=3), progress=False)
    assert cfg["segments"] == [{"steps": [0, 3], **cpu}] and cfg["device"] == "cpu"
    tensors, meta = ckpt.read_checkpoint(path)
    assert meta["segments"] == cfg["segments"]
    del meta["segments"]  # as a checkpoint written before segments were recorded
    path.write_bytes(save(tensors, metadata={ckpt.KEY: json.dumps(meta)}))
    _, cfg = train(x, y, config, schedule, run=RunFiles(tmp_path / "run", resume=True, stop_after=6), progress=False)
    unknown = {"steps": [0, 3], "device": None, "precision": None, "torch": None}
    assert cfg["segments"] == [unknown, {"steps": [3, 6], **cpu}]
    saved = []
    _, cfg = train(x, y, config, schedule, run=RunFiles(tmp_path / "run", resume=True), progress=False,
                   on_save=lambda s, c: saved.append(c))
    assert cfg["segments"] == [unknown, {"steps": [3, 6], **cpu}, {"steps": [6, 9], **cpu}]
    assert saved[-1]["segments"] == cfg["segments"] == ckpt.read_checkpoint(path)[1]["segments"]
    _, cfg = train(x, y, config, schedule, run=RunFiles(tmp_path / "run", resume=True), progress=False)
    assert len(cfg["segments"]) == 3  # a resume with no step left adds none


@pytest.mark.gpu
def test_a_cuda_segment_says_bf16_and_the_gpu():
    from mmmi_dsl.flows.train import segment

    entry = segment(5, 9, torch.device("cuda"))
    assert entry["precision"] == "bf16 autocast" and entry["steps"] == [5, 9] and entry["gpu"]


def test_train_flow_command_resumes(tmp_path, capsys):
    common = ["--data", "digits", "--arch", "unet", "--channels", "8", "--mults", "1,2", "--groups", "4",
              "--heads", "2", "--t-dim", "16", "--steps", "10", "--batch-size", "8", "--no-progress",
              "--checkpoint-every", "3", "--sample-every", "5"]
    assert main([*common, "--out", str(tmp_path / "whole")]) == 0
    assert main([*common, "--out", str(tmp_path / "part"), "--stop-after", "4"]) == 0
    assert "--resume goes on" in capsys.readouterr().out
    assert json.loads((tmp_path / "part.json").read_text())["steps_done"] == 4
    assert main([*common, "--out", str(tmp_path / "part"), "--resume"]) == 0
    a, ca = cnf.load_weights(tmp_path / "whole.safetensors")
    b, cb = cnf.load_weights(tmp_path / "part.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ca["data_sha256"] == cb["data_sha256"] and len(ca["data_sha256"]) == 64
    assert ca["command"].startswith("python -m mmmi_dsl.train --data digits --arch unet")
    assert ca["image_shape"] == [1, 8, 8] and ca["steps_done"] == 10 and np.isfinite(ca["final_loss"])
    assert [seg["steps"] for seg in ca["segments"]] == [[0, 10]]
    assert [seg["steps"] for seg in cb["segments"]] == [[0, 4], [4, 10]]
    assert json.loads((tmp_path / "part.json").read_text())["segments"] == cb["segments"]
    assert (tmp_path / "whole-run" / "samples-0000010.png").is_file()


def _idx(path, array: np.ndarray):
    head = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + array.astype(np.uint8).tobytes())


def _accept(monkeypatch, folder):
    """Let load_fashion take the tiny stand-ins in ``folder``: their SHA-256s in place of the release's."""
    sums = {f.name.removesuffix(".gz").removesuffix(".xz"): hashlib.sha256(flow_data.idx_bytes(f)).hexdigest()
            for f in Path(folder).iterdir()}
    monkeypatch.setattr(flow_data, "FASHION_SHA256", {**flow_data.FASHION_SHA256, **sums})


def test_fashion_files_are_read_as_idx(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 10, 5)
    _idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    _idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    monkeypatch.setattr(flow_data, "FASHION_DIR", tmp_path)
    monkeypatch.setattr(flow_data.shutil, "which", lambda name: None)
    monkeypatch.delenv(flow_data.FASHION_ENV, raising=False)
    _accept(monkeypatch, tmp_path)
    d = flow_data.load_fashion("train")
    assert d.x.shape == (5, 1, 28, 28) and d.shape == (1, 28, 28) and d.x.dtype == np.float32
    np.testing.assert_allclose(d.x[:, 0], images / 255 * 2 - 1, atol=1e-6)
    assert d.y.tolist() == labels.tolist() and len(d.classes) == 10
    monkeypatch.setattr(flow_data, "FASHION_DIR", tmp_path / "absent")
    with pytest.raises(flow_data.DatasetError, match="apt-get install dataset-fashion-mnist"):
        flow_data.load_fashion("train")


def test_fashion_folder_from_the_environment_takes_gz_xz_or_plain_files(tmp_path, monkeypatch):
    """MMMI_FASHION_DIR replaces the Debian package (a copy carried to a GPU machine): each file
    gzipped, xz-compressed or plain, the same arrays from each; a file missing there is named."""
    import lzma

    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, (4, 28, 28)), rng.integers(0, 10, 4)
    (tmp_path / "gz").mkdir()
    _idx(tmp_path / "gz" / "t10k-images-idx3-ubyte.gz", images)
    _idx(tmp_path / "gz" / "t10k-labels-idx1-ubyte.gz", labels)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        raw = gzip.decompress((tmp_path / "gz" / f"{name}.gz").read_bytes())
        (tmp_path / "xz").mkdir(exist_ok=True)
        (tmp_path / "xz" / f"{name}.xz").write_bytes(lzma.compress(raw))
        (tmp_path / "plain").mkdir(exist_ok=True)
        (tmp_path / "plain" / name).write_bytes(raw)
    monkeypatch.setattr(flow_data, "FASHION_DIR", tmp_path / "absent")  # the package is not consulted
    arrays = []
    for kind in ("gz", "xz", "plain"):
        monkeypatch.setenv(flow_data.FASHION_ENV, str(tmp_path / kind))
        _accept(monkeypatch, tmp_path / kind)
        d = flow_data.load_fashion("t10k")
        assert f"({flow_data.FASHION_ENV}={tmp_path / kind}:" in d.source
        arrays.append((d.x, d.y))
    np.testing.assert_allclose(arrays[0][0][:, 0], images / 255 * 2 - 1, atol=1e-6)
    assert all(np.array_equal(x, arrays[0][0]) and np.array_equal(y, labels) for x, y in arrays)
    with pytest.raises(flow_data.DatasetError, match=r"MMMI_FASHION_DIR=.* has no `train-images-idx3-ubyte.gz`"):
        flow_data.load_fashion("train")
    (tmp_path / "xz" / "t10k-labels-idx1-ubyte.xz").write_bytes(b"not xz")
    monkeypatch.setenv(flow_data.FASHION_ENV, str(tmp_path / "xz"))
    with pytest.raises(flow_data.DatasetError, match="cannot read"):
        flow_data.load_fashion("t10k")


@pytest.mark.skipif(not flow_data.FASHION_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_installed_fashion_mnist(monkeypatch):
    monkeypatch.delenv(flow_data.FASHION_ENV, raising=False)
    d = flow_data.load_fashion("t10k")  # its files pass the SHA-256 check
    assert d.x.shape == (10_000, 1, 28, 28) and d.x.min() == -1.0 and d.x.max() == 1.0
    assert sorted(set(d.y.tolist())) == list(range(10))
    assert d.source == f"dataset-fashion-mnist t10k ({flow_data.FASHION_DIR})"


def test_a_fashion_file_that_is_not_the_release_s_is_refused(tmp_path, monkeypatch):
    """The judge's reference data must be Fashion-MNIST itself: a tiny stand-in, or a real file with one
    pixel changed, is refused from MMMI_FASHION_DIR and from the package alike, naming folder and file."""
    rng = np.random.default_rng(2)
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (3, 28, 28)))
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 3))
    monkeypatch.setenv(flow_data.FASHION_ENV, str(tmp_path))
    with pytest.raises(flow_data.DatasetError, match=r"`t10k-images-idx3-ubyte.gz` in `.*` \(MMMI_FASHION_DIR=.*\) "
                                                      r"is not the release's file"):
        flow_data.load_fashion("t10k")
    monkeypatch.delenv(flow_data.FASHION_ENV)
    monkeypatch.setattr(flow_data, "FASHION_DIR", tmp_path)
    monkeypatch.setattr(flow_data.shutil, "which", lambda name: None)
    with pytest.raises(flow_data.DatasetError, match=r"\(the installed package\) is not the release's file"):
        flow_data.load_fashion("t10k")
    real = Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")
    if real.is_file():  # the real labels with one changed: same size, same header, another hash
        raw = bytearray(gzip.decompress(real.read_bytes()))
        raw[-1] = (raw[-1] + 1) % 10
        (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
        _accept(monkeypatch, tmp_path)
        monkeypatch.setitem(flow_data.FASHION_SHA256, "t10k-labels-idx1-ubyte",
                            hashlib.sha256(gzip.decompress(real.read_bytes())).hexdigest())
        with pytest.raises(flow_data.DatasetError, match="`t10k-labels-idx1-ubyte.gz` in .* is not the release's"):
            flow_data.load_fashion("t10k")


def test_png_folder_and_npz(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(("a", "b")):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (6, 4), dtype=np.uint8)).save(tmp_path / "imgs" / name / f"{i}.png")
    d = flow_data.load_training_data(str(tmp_path / "imgs"))
    assert d.x.shape == (6, 1, 6, 4) and d.y.tolist() == [0, 0, 0, 1, 1, 1] and d.classes == ("a", "b")
    assert -1 <= d.x.min() and d.x.max() <= 1
    np.savez(tmp_path / "im.npz", x=rng.integers(0, 256, (4, 3, 4, 4)).astype(np.uint8), y=np.arange(4))
    e = flow_data.load_training_data(str(tmp_path / "im.npz"))
    assert e.shape == (3, 4, 4) and -1 <= e.x.min() and e.x.max() <= 1 and e.sha256() != d.sha256()


def test_fashion_without_weights_is_a_clear_e0208(tmp_path, monkeypatch):
    import mmmi_dsl

    monkeypatch.setitem(weights.SHIPPED, "fashion", tmp_path / "fashion.safetensors")
    spec = ("model f\ndim img = 1x28x28\nproto n : vector[size(img)]\nlatent z = n\n"
            "flow x = fashion(z, class = 3) : image[img]\nreport I(z; x)\n")
    with pytest.raises(SpecError) as err:
        mmmi_dsl.loads(spec)
    d = err.value.diagnostics[0]
    assert d.code == "E0208" and "fashion weights are not installed" in d.message and "docs/flows.md" in d.message
    assert "mmmic train-flow --data fashion-mnist --arch unet" in d.message
    assert d.span.line == 5
    with pytest.raises(weights.WeightsError, match="not installed"):
        Fashion(784)


@pytest.mark.skipif(FASHION_MISSING, reason=NO_FASHION_WEIGHTS)
def test_shipped_fashion_round_trips_at_its_default_grid_on_a_specs_latents():
    """The default solver (rk4, 48 steps on the grid t_k = 1 - (1 - k/48)^1.25) inverts within 1e-3 on
    the latents a spec gives it, not only on N(0, I): ``fashion_views``' radius-standardised trouser
    latent carries its all-ones template, up to 12.6 standard deviations along it in 1,000 draws. There
    session 7's default (28 steps at p = 1.5) missed 1e-3 (1.3e-3 on the 16 most extreme of 1,000
    draws; docs/flows.md, "Choosing the solver"); on these two latents, 12 standard deviations out,
    6.2e-4 at 28 steps, 1.2e-4 at session 8's 40 and 3.0e-5 at the default's 48 (one thread)."""
    g = torch.Generator().manual_seed(0)
    along = torch.tensor([12.0, -12.0])[:, None] * torch.ones(784) / 28  # 12 along the unit template direction
    z = torch.randn(2, 784, generator=g) * 0.99 + along  # the noise, as radius scales it
    with torch.no_grad():
        f = Fashion(784, **{"class": 1})
        assert (f.steps, f.grid_power) == (48, 1.25)
        default = float((f.inverse(f(z)) - z).abs().max())
        old = Fashion(784, **{"class": 1}, steps=28, grid_power=1.5)
        before = float((old.inverse(old(z)) - z).abs().max())
    assert default < 1e-3 and default < before / 2, (default, before)


@pytest.mark.skipif(FASHION_MISSING, reason=NO_FASHION_WEIGHTS)
def test_a_graded_grid_beats_the_uniform_one_at_the_same_steps():
    """The grid is what makes few steps enough: 28 rk4 steps on t_k = 1 - (1 - k/28)^1.5 invert
    within 1e-3 and several times better than the same 28 steps spread uniformly (class 7: 1.7e-4 on
    32 latents, where even 32 uniform steps give 2.7e-3; docs/flows.md, "Choosing the solver")."""
    z = torch.randn(4, 784, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        f = Fashion(784, **{"class": 7}, steps=28, grid_power=1.5)
        graded = float((f.inverse(f(z)) - z).abs().max())
        uniform = Fashion(784, **{"class": 7}, steps=28, grid_power=1.0)
        flat = float((uniform.inverse(uniform(z)) - z).abs().max())
    assert graded < 1e-3 and graded < flat / 3, (graded, flat)


def test_time_grid_refines_toward_the_data_end():
    """t_k = 1 - (1 - k/N)^p: exact ends, increasing, the last step (1/N)^p long; p = 1 is linspace itself."""
    from mmmi_dsl.flows.cnf import CNF

    flow = CNF.__new__(CNF)  # the grid needs only steps and grid_power
    flow.steps, flow.grid_power = 8, 1.5
    t = flow.time_grid(torch.float64)
    assert t[0] == 0.0 and t[-1] == 1.0 and bool((t.diff() > 0).all())
    assert abs(float(t[-1] - t[-2]) - (1 / 8) ** 1.5) < 1e-15
    assert float(t.diff()[0]) > float(t.diff()[-1]) * 2
    flow.grid_power = 1.0
    assert torch.equal(flow.time_grid(torch.float32), torch.linspace(0, 1, 9))


def test_inverse_walks_the_forward_grid_backwards(tmp_path):
    """Both directions evaluate the field at every time of the graded grid, exactly as given."""
    _random_unet(tmp_path / "u")
    f = CNF(64, weights=str(tmp_path / "u.safetensors"), steps=4, grid_power=1.5)
    seen: list[list[float]] = []
    field = f.velocity

    def recorded(t, x):
        seen[-1].append(float(t))
        return field(t, x)

    f.velocity = recorded
    z = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        seen.append([])
        x = f(z)
        seen.append([])
        f.inverse(x)
    grid = set(f.time_grid(torch.float32).tolist())
    forward, backward = seen
    assert grid <= set(forward) and grid <= set(backward)
    assert forward == sorted(forward) and backward == sorted(backward, reverse=True)
    assert len(forward) == len(backward) == 4 * 4  # rk4: four evaluations a step


@pytest.mark.skipif(FASHION_MISSING, reason=NO_FASHION_WEIGHTS)
def test_generate_checks_a_convolutional_flow_on_few_latents():
    """The round trip before sampling costs 2 x 128 UNet passes per latent: 32 latents, not 256."""
    from mmmi_dsl import loads
    from mmmi_dsl.backend import Sampler
    from mmmi_dsl.flows.cnf import UNET_ROUNDTRIP_ROWS

    model = loads("model f\ndim img = 1x28x28\nproto n : vector[784]\nlatent z = n\n"
                  "flow x = fashion(z, class = 1) : image[img]\nflow y = identity(z) : vector[784]\n")
    sampler = Sampler(model, chunk_size=64)
    sampler.flows["x"].steps[0].steps = 1  # one rk4 step per solve: this test counts latents, not accuracy
    rows = {name: r["n"] for name, r in sampler._roundtrip(256).items()}
    assert rows == {"x": UNET_ROUNDTRIP_ROWS, "y": 256}  # y's 256 from four chunks of 64


def test_a_unets_working_set_is_its_skip_maps_and_twice_its_widest_block_input():
    """The default UNet (32 channels, mults 1, 2, 2 on 1x28x28, one block a level) keeps for the way up
    32 x 784 (stem) + 32 x 784 + 32 x 196 (level 0 and its downsampling) + 64 x 196 + 64 x 49 + 64 x 49
    = 75,264 floats a sample; its widest block input is 64 + 32 channels at 28 x 28, counted twice."""
    assert UNet().working_floats == 75_264 + 2 * 96 * 784


@pytest.mark.skipif(FASHION_MISSING, reason=NO_FASHION_WEIGHTS)
def test_a_convolutional_flow_gets_small_chunks_batches_and_shards():
    """A flow call's working set caps the chunk: fashion_views' UNet holds ~230,000 floats a tuple, so
    32 tuples a chunk (~7.4 M floats, within CHUNK_FLOATS) instead of 1,024 (whose 100 MB activations
    cost half of generate's time in page faults), and fashion_decay's ten 32 too; counted in a tuple's
    bytes, a progress step every 32 and a shard every 288. Guidance runs the network on twice the rows.
    The MLP of the digits specs caps nothing: their chunks, batches and shards are as before."""
    from mmmi_dsl.backend import CHUNK_FLOATS
    from mmmi_dsl.dataset.generate import default_sizes

    views = load(SPECS / "fashion_views.mmi").sampler()
    assert views.chunk_size == views.flow_rows == 32 and views.chunk_size * views.working_floats <= CHUNK_FLOATS
    assert default_sizes(views, None, None) == (288, 32)
    assert load(SPECS / "fashion_decay.mmi").sampler().chunk_size == 32
    plain, guided = Fashion(784, **{"class": 1}), Fashion(784, **{"class": 1}, guidance=1.0)
    assert (plain.working_floats, guided.working_floats) == (225_792 + 6 * 784, 2 * 225_792 + 7 * 784)
    digits = load(SPECS / "digits_views.mmi").sampler()
    assert (digits.chunk_size, digits.flow_rows, default_sizes(digits, None, None)) == (1024, 1024, (520192, 64512))


def test_a_fixed_step_solve_one_step_a_call_is_the_whole_grids_bit_for_bit(tmp_path):
    """The CNF calls the solver once per step (no (steps + 1, n, dim) trajectory kept): the same bits
    as one call on the whole grid, both ways, on a uniform and a graded grid."""
    from torchdiffeq import odeint

    _random_unet(tmp_path / "u")
    z = torch.randn(8, 64, generator=torch.Generator().manual_seed(2))
    for power in (1.0, 1.25):
        f = CNF(64, weights=str(tmp_path / "u.safetensors"), **{"class": 2}, steps=6, grid_power=power)
        with torch.no_grad():
            t = f.time_grid()
            x = odeint(f.velocity, z, t, method="rk4")[-1]
            back = odeint(f.velocity, x, t.flip(0) if power != 1.0 else torch.linspace(1.0, 0.0, 7), method="rk4")[-1]
            assert torch.equal(f(z), x) and torch.equal(f.inverse(x), back), power


def test_auto_standardize_keeps_the_layout_for_a_cnf_with_convolutional_weights(tmp_path):
    """`cnf` whitens an MLP's latent by default, but a UNet's gets one scale (radius): whitening would
    move where a template put its cause. The choice is recorded per modality in the manifest's flows."""
    from mmmi_dsl import loads
    from mmmi_dsl.backend import Sampler

    _random_unet(tmp_path / "u")
    model = loads("model f\ndim img = 1x8x8\nproto n : vector[64]\nlatent z = n\n"
                  "flow x = cnf(z, weights = \"u.safetensors\", steps = 1) : image[img]\n"
                  "flow y = digits(z, steps = 1) : image[img]\n", base_dir=tmp_path)
    sampler = Sampler(model, standardize="auto", chunk_size=8)
    assert sampler.standardized_as == {"x": "radius", "y": "whiten"}
    assert {k: v["standardize"] for k, v in sampler.flow_roundtrip(4).items()} == {"x": "radius", "y": "whiten"}


def test_manifest_records_learned_flows_and_refuses_other_weights(tmp_path, capsys):
    """A learned flow's images depend on its weights and solver, not only on the spec: the manifest
    records both (weights SHA-256, method, steps, grid), and a resume or a verify with other weights
    is refused, naming what changed, instead of mixing or mis-inverting images."""
    from mmmi_dsl.cli import main

    _random_unet(tmp_path / "u")
    spec = tmp_path / "s.mmi"
    spec.write_text("model s\ndim img = 1x8x8\nproto u : scalar\nproto n : vector[64]\ntarget theta = u\n"
                    "latent z = 0.4 * u * ones(64) + n\n"
                    "flow x = cnf(z, weights = \"u.safetensors\", steps = 4, grid_power = 1.5) : image[img]\n"
                    "report I(theta; x)\n")
    out, args = tmp_path / "d", ["--chunk-size", "64", "--no-progress"]
    assert main(["generate", str(spec), "-n", "256", "-o", str(tmp_path / "d"), *args]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (record,) = manifest["fingerprint"]["learned_flows"]["x"]
    assert record["steps"] == 4 and record["grid_power"] == 1.5 and record["method"] == "rk4"
    assert record["weights_sha256"] == hashlib.sha256((tmp_path / "u.safetensors").read_bytes()).hexdigest()
    # a dataset's spec reads its files from the dataset directory: generate copied the weights there
    assert (out / "u.safetensors").read_bytes() == (tmp_path / "u.safetensors").read_bytes()
    assert main(["verify", str(out)]) == 0
    assert "ok: I(theta; x)" in capsys.readouterr().out
    _random_unet(out / "u", seed=1)  # the same file name, other weights
    assert main(["verify", str(out)]) == 1
    err = capsys.readouterr()
    assert '"u.safetensors": sha256 differs from the manifest' in err.out  # the copy is checked first
    _random_unet(tmp_path / "u", seed=1)
    assert main(["generate", str(spec), "-n", "256", "-o", str(out), *args]) == 1
    assert "fingerprint.files.u.safetensors is" in capsys.readouterr().err  # the file's hash, then the record's
    # a manifest from before the record: a resume cannot tell, and says so
    _random_unet(tmp_path / "u")  # the weights it was written with
    del manifest["fingerprint"]["learned_flows"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert main(["generate", str(spec), "-n", "256", "-o", str(out), *args]) == 1
    assert "written before mmmic recorded its learned flows" in capsys.readouterr().err


def test_verify_maps_a_dataset_back_with_its_recorded_solver(tmp_path):
    """A dataset drawn under another default solver is inverted as it was drawn (the record's steps and
    grid); other weights are refused; a manifest without a record says the installed flows were used."""
    from mmmi_dsl import loads
    from mmmi_dsl.backend import Sampler
    from mmmi_dsl.dataset.oracle import FlowMismatch, match_learned_flows

    _random_unet(tmp_path / "u")
    model = loads("model f\ndim img = 1x8x8\nproto n : vector[64]\nlatent z = n\n"
                  "flow x = cnf(z, weights = \"u.safetensors\", steps = 4, grid_power = 1.5) : image[img]\n",
                  base_dir=tmp_path)
    sampler = Sampler(model, chunk_size=8)
    (step,) = sampler.learned_steps("x")
    record = sampler.learned_flows()
    assert match_learned_flows(record, sampler) == "" and (step.steps, step.grid_power) == (4, 1.5)
    older = {"x": [{**record["x"][0], "steps": 32, "grid_power": 1.0}]}
    assert match_learned_flows(older, sampler) == "" and (step.steps, step.grid_power) == (32, 1.0)
    with pytest.raises(FlowMismatch, match=r"learned_flows\.x\[0\]\.weights_sha256 .* the weights file changed"):
        match_learned_flows({"x": [{**record["x"][0], "weights_sha256": "0" * 64}]}, sampler)
    with pytest.raises(FlowMismatch, match=r"learned_flows\.x\[0\]\.class is 1 in the manifest, 0 here"):
        match_learned_flows({"x": [{**record["x"][0], "class": 1}]}, sampler)
    assert "written before mmmic recorded" in match_learned_flows(None, sampler)
    # a recorded solver is a manifest's value: checked as a spec's cnf(...) would be, never run as given
    for bad, why in [({"steps": 10 ** 9}, "`steps` must be in 1..10,000"), ({"grid_power": 6.0, "steps": 28},
                                                                              "same float32 number")]:
        with pytest.raises(FlowMismatch, match=why):
            match_learned_flows({"x": [{**record["x"][0], **bad}]}, sampler)
