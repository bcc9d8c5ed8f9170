"""GalSim galaxy renderer (mmmi_dsl/flows/galaxies.py): shapes, seeding, scaling, the two PSFs,
colours, the .npz through the training loader, and the documented telescopes spec.

GalSim is the optional `galaxies` extra: these tests skip without it (except the one that checks
the error a user without it gets)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys

import numpy as np
import pytest

from mmmi_dsl.errors import UsageError
from mmmi_dsl.flows import galaxies as G
from mmmi_dsl.flows.data import load_training_data

from ..conftest import ROOT

needs_galsim = pytest.mark.skipif(importlib.util.find_spec("galsim") is None,
                                  reason="GalSim (the `galaxies` extra) is not installed")


@pytest.fixture(scope="module")
def rendered():
    return G.render_dataset(6, seed=3)


def _moments(image: np.ndarray, scale: float) -> tuple[float, float]:
    """(second moment <r^2> about the centroid in arcsec^2, peak surface brightness / flux in arcsec^-2)."""
    yy, xx = np.indices(image.shape) * scale
    w = image / image.sum()
    cx, cy = (w * xx).sum(), (w * yy).sum()
    return float((w * ((xx - cx) ** 2 + (yy - cy) ** 2)).sum()), float(image.max() / image.sum() / scale**2)


def test_without_galsim_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "galsim", None)  # import galsim now raises ImportError
    with pytest.raises(UsageError, match=r"mmmi-dsl\[galaxies\]"):
        G.render_dataset(1)


@needs_galsim
def test_shapes_classes_and_parameters(rendered):
    x, y = rendered["x"], rendered["y"]
    assert x.shape == (6, 3, 32, 32) and x.dtype == np.float32
    assert y.tolist() == [0, 1, 0, 1, 0, 1]
    assert rendered["classes"].tolist() == ["ground", "space"] and rendered["bands"].tolist() == ["g", "r", "i"]
    assert rendered["pixel_scale"].tolist() == [0.2, 0.1] * 3 and rendered["sigma"].tolist() == [1.0, 0.5] * 3
    assert rendered["bulge_colour"].shape == (6, 3) and rendered["flux"].shape == (6,)
    assert 300 <= rendered["flux"].min() and rendered["flux"].max() <= 30000
    g = G.galaxy_from_arrays(rendered, 4)
    assert g == G.draw_galaxy(G.image_seeds(3, 4)[0])  # the stored parameters are the ones drawn


@needs_galsim
def test_value_range_and_stretch(rendered):
    x = rendered["x"]
    assert x.min() >= -1 and x.max() <= 1
    # blank sky (a galaxy of no flux) sits at the stretch of 0 counts; every galaxy rises well above it
    sky = 2 * G.A0 / (G.A0 + G.A1) - 1
    blank = G.Galaxy(**{**G.galaxy_from_arrays(rendered, 0).__dict__, "flux": 1e-9})
    for t in G.TELESCOPES:
        noise = G.stretch(G.render_counts(blank, t, 5), t.sigma)
        assert abs(np.median(noise) - sky) < 0.02 and 0.1 < noise.std() < 0.2  # asinh(N(0, 1)): sd 0.79
    assert (x.max(axis=(1, 2, 3)) > sky + 0.3).all()
    counts = np.array([-3.0, -1.0, 0.0, 0.5, 7.0, 1e3, 9999.0])
    for sigma in (1.0, 0.5):
        s = G.stretch(counts * sigma, sigma)
        assert s[0] == pytest.approx(-1, abs=1e-6) and s[2] == pytest.approx(sky, abs=1e-6)
        np.testing.assert_allclose(G.unstretch(s, sigma), counts * sigma, rtol=1e-4, atol=1e-5 * sigma)  # float32
    assert G.stretch(np.array([1e6]), 1.0)[0] == 1.0  # clipped above 1e4 sd


@needs_galsim
def test_deterministic_per_seed_and_per_image(rendered):
    again = G.render_dataset(6, seed=3, chunk=4)
    for k in rendered:
        np.testing.assert_array_equal(again[k], rendered[k], err_msg=k)
    head = G.render_dataset(2, seed=3)  # image i does not depend on n or on the chunking
    np.testing.assert_array_equal(head["x"], rendered["x"][:2])
    other = G.render_dataset(2, seed=4)
    assert not np.array_equal(other["x"], head["x"]) and other["flux"][0] != head["flux"][0]


@needs_galsim
@pytest.mark.slow
def test_workers_give_the_same_images(rendered):
    np.testing.assert_array_equal(G.render_dataset(6, seed=3, workers=2, chunk=2)["x"], rendered["x"])


@needs_galsim
def test_psf_sizes():
    import galsim

    ground = G.TELESCOPES[0]
    for band, lam in enumerate(G.WAVELENGTHS_NM):
        # Kolmogorov FWHM is the seeing scaled by lambda^-0.2; Airy FWHM ~ 1.03 lambda/D (a little less obscured)
        assert G.psf(ground, band, 0.8).calculateFWHM() == pytest.approx(0.8 * (lam / 620) ** -0.2, rel=0.02)
        airy = lam * 1e-9 / 1.2 * 180 / np.pi * 3600
        drawn = G.psf(G.TELESCOPES[1], band, 0.8).drawImage(nx=128, ny=128, scale=0.004, method="no_pixel")
        assert 0.85 * airy < drawn.calculateFWHM() < 1.05 * airy, (band, drawn.calculateFWHM(), airy)
    assert isinstance(G.psf(G.TELESCOPES[1], 1, 0.8), galsim.Airy)


@needs_galsim
def test_space_images_are_sharper_for_the_same_galaxy():
    for i in range(4):
        galaxy = G.draw_galaxy(G.image_seeds(11, i)[0])
        (m_ground, p_ground), (m_space, p_space) = (
            _moments(G.render_counts(galaxy, t, None)[1], t.pixel_scale) for t in G.TELESCOPES)
        # the ground PSF alone adds (FWHM / 2.355)^2 * 2 >= 0.17 arcsec^2 to <r^2>; the space PSF ~0.004
        assert m_space < m_ground - 0.1, (i, m_space, m_ground)
        assert p_space > 1.5 * p_ground, (i, p_space, p_ground)


@needs_galsim
def test_fluxes_and_colours():
    """A small galaxy's counts per band are its flux times the bulge/disk mix of colours."""
    galaxy = G.draw_galaxy(G.image_seeds(0, 0)[0])
    small = G.Galaxy(**{**galaxy.__dict__, "disk_hlr": 0.2, "bulge_hlr": 0.06, "dx": 0.0, "dy": 0.0})
    expected = small.flux * (small.bulge_fraction * np.array(small.bulge_colour)
                             + (1 - small.bulge_fraction) * np.array(small.disk_colour))
    for t in G.TELESCOPES:
        counts = G.render_counts(small, t, None).sum(axis=(1, 2))
        np.testing.assert_allclose(counts, expected, rtol=0.05)  # a few % of the light falls off the stamp
    noisy = G.render_counts(small, G.TELESCOPES[0], 7) - G.render_counts(small, G.TELESCOPES[0], None)
    assert noisy.std() == pytest.approx(1.0, rel=0.1) and abs(noisy.mean()) < 0.1  # sky sd 1 count


@needs_galsim
def test_npz_loads_through_the_training_loader(tmp_path, rendered):
    path = tmp_path / "galaxies.npz"
    G.save_npz(path, rendered)
    data = load_training_data(str(path))
    assert data.shape == (3, 32, 32) and data.x.dtype == np.float32
    np.testing.assert_array_equal(data.x, rendered["x"])
    assert data.y.tolist() == rendered["y"].tolist()


@needs_galsim
def test_render_script_writes_the_npz(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("render_galaxies", ROOT / "benchmarks" / "render_galaxies.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "g.npz"
    assert script.main(["-n", "2", "--seed", "3", "--out", str(out)]) == 0
    assert "x (2, 3, 32, 32)" in capsys.readouterr().out
    with np.load(out, allow_pickle=False) as f:
        np.testing.assert_array_equal(f["x"], G.render_dataset(2, seed=3)["x"])
    with pytest.raises(SystemExit):
        script.main(["-n", "2", "--out", str(tmp_path / "g.npy")])


def test_documented_spec_lowers_with_cnf_weights(tmp_path, mmmic):
    """docs/flows.md's telescopes spec: with `galaxies(...)` written as `cnf(..., weights = ...)` and a
    randomly initialised 3x32x32, 2-class UNet, it checks and its MI equals specs/telescopes.mmi's."""
    import torch

    from mmmi_dsl.flows.cnf import net_from_config
    from mmmi_dsl.flows.train import architecture, save_weights

    text = (ROOT / "docs" / "flows.md").read_text()
    spec = re.search(r"```mmi\n([^`]*?model telescopes_galaxies[^`]*?)```", text, re.S)
    assert spec, "docs/flows.md lacks the telescopes_galaxies spec"
    source = spec.group(1)
    assert source.count("galaxies(z") == 2
    config = architecture("unet", 3072, 2, (3, 32, 32), channels=8, mults=[1, 2], groups=4, heads=2,
                          t_dim=16, t_freqs=4)
    torch.manual_seed(0)
    save_weights(tmp_path / "galaxies", net_from_config(config).state_dict(), config)
    shutil.copytree(ROOT / "specs" / "templates", tmp_path / "templates")
    cnf = re.sub(r"galaxies\((z\d), class", r'cnf(\1, weights = "galaxies.safetensors", class', source)
    (tmp_path / "t.mmi").write_text(cnf)
    assert mmmic("check", str(tmp_path / "t.mmi")).code == 0
    ours = mmmic("mi", str(tmp_path / "t.mmi"), "--json")
    theirs = mmmic("mi", str(ROOT / "specs" / "telescopes.mmi"), "--json")
    assert ours.code == theirs.code == 0
    mi = {r["query"]: r["nats"] for r in json.loads(ours.stdout)["results"]}
    ref = {r["query"]: r["nats"] for r in json.loads(theirs.stdout)["results"]}
    assert mi == ref and len(mi) == 7
