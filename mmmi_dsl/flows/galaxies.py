"""Galaxy images rendered with GalSim: training data for a two-telescope ``galaxies`` flow (numpy, no torch).

Each image is one galaxy in three bands (g, r, i at 480, 620, 760 nm), 3 x 32 x 32, seen by one of
two telescopes, its class ``y``:

- ``0`` ground: a Kolmogorov PSF whose r-band FWHM (the seeing) is drawn per image from
  [0.7, 1.0] arcsec and scales as lambda^-0.2 across the bands; 0.2 arcsec pixels (6.4" stamps).
- ``1`` space: a diffraction-limited Airy PSF of a 1.2 m aperture with a 0.3 central obscuration
  (FWHM about 1.03 lambda / D = 0.085, 0.11, 0.13" in g, r, i); 0.1 arcsec pixels (3.2" stamps).

The galaxy (:class:`Galaxy`, parameters in arcsec and counts) is a de Vaucouleurs bulge (Sersic
n = 4, truncated at 8 half-light radii) plus an exponential disk (Sersic n = 1), each with its own
axis ratio, sharing a position angle, then sheared by a weak (g1, g2) and shifted by a sub-pixel
offset. The r-band flux is log-uniform in [300, 30000] counts; each component has its own colours
(flux ratios to r), a red bulge and a bluer disk, so the colour varies across the galaxy. Sky noise
is Gaussian with sd ``sigma`` = 1 count per pixel for the ground and 0.5 for space (the same sky
surface brightness on pixels of a quarter the area).

Scaling (Lupton et al. 2004's asinh stretch, in units of the noise sd, the same for every band)::

    x = clip(2 (asinh(I / sigma) + A0) / (A0 + A1) - 1, -1, 1),   A0 = asinh(3), A1 = asinh(1e4)

so -3 sigma maps to -1 and 1e4 sigma to 1; the sky (0 counts) sits at 2 A0 / (A0 + A1) - 1 = -0.69.
The brightest peaks reach about 1,400 sigma on the ground (x = 0.67) and 8,400 sigma in space (0.97),
so only the sky's < -3 sigma dips (0.13 % of the sky's pixels) are clipped. The inverse (up to the
clip) is ``I = sigma sinh((x + 1) / 2 (A0 + A1) - A0)``.

Deterministic: image ``i`` of seed ``s`` draws its parameters from ``numpy.random.default_rng`` and
its noise from a ``galsim.BaseDeviate``, both seeded from ``numpy.random.SeedSequence([s, i])``, so an
image does not depend on how many are rendered or by how many workers.

GalSim is the optional ``galaxies`` extra (``pip install 'mmmi-dsl[galaxies]'``), imported only here
when rendering.
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from mmmi_dsl.errors import UsageError

BANDS = ("g", "r", "i")
WAVELENGTHS_NM = (480.0, 620.0, 760.0)
CLASSES = ("ground", "space")
STAMP = 32
#: The stretch's ends: -3 sd maps to -1, 1e4 sd to 1.
A0 = math.asinh(3.0)
A1 = math.asinh(1e4)
BULGE_TRUNC = 8.0


@dataclass(frozen=True)
class Telescope:
    """A telescope: pixel scale (arcsec), sky noise sd per pixel (counts), PSF kind; for the ground
    a seeing FWHM range at 620 nm (arcsec), for space the aperture (m) and central obscuration."""

    name: str
    pixel_scale: float
    sigma: float
    psf: str
    seeing: tuple[float, float] = (0.7, 1.0)
    diameter: float = 1.2
    obscuration: float = 0.3


TELESCOPES = (Telescope("ground", 0.2, 1.0, "kolmogorov"), Telescope("space", 0.1, 0.5, "airy"))


@dataclass(frozen=True)
class Galaxy:
    """One galaxy: r-band flux (counts), bulge-to-total flux ratio, half-light radii (arcsec), axis
    ratios, position angle (rad), shear, offset (arcsec), per-band colours (flux / r-band flux) of
    each component, and the ground seeing FWHM at 620 nm (arcsec; drawn for every image, used by the
    ground telescope only)."""

    flux: float
    bulge_fraction: float
    bulge_hlr: float
    disk_hlr: float
    bulge_q: float
    disk_q: float
    angle: float
    g1: float
    g2: float
    dx: float
    dy: float
    bulge_colour: tuple[float, float, float]
    disk_colour: tuple[float, float, float]
    seeing: float


def draw_galaxy(rng: np.random.Generator) -> Galaxy:
    """Draw a galaxy's parameters (the distributions of the module docstring)."""
    disk_hlr = float(np.exp(rng.uniform(np.log(0.2), np.log(0.7))))
    shear = np.clip(rng.normal(0.0, 0.03, 2), -0.2, 0.2)
    return Galaxy(
        flux=float(np.exp(rng.uniform(np.log(300.0), np.log(30000.0)))),
        bulge_fraction=float(rng.uniform(0.0, 1.0)),
        bulge_hlr=disk_hlr * float(rng.uniform(0.2, 0.6)),
        disk_hlr=disk_hlr,
        bulge_q=float(rng.uniform(0.6, 1.0)),
        disk_q=float(rng.uniform(0.2, 1.0)),
        angle=float(rng.uniform(0.0, np.pi)),
        g1=float(shear[0]), g2=float(shear[1]),
        dx=float(rng.uniform(-0.1, 0.1)), dy=float(rng.uniform(-0.1, 0.1)),
        bulge_colour=(0.4 * float(np.exp(rng.normal(0, 0.1))), 1.0, 1.4 * float(np.exp(rng.normal(0, 0.05)))),
        disk_colour=(1.0 * float(np.exp(rng.normal(0, 0.2))), 1.0, 0.95 * float(np.exp(rng.normal(0, 0.05)))),
        seeing=float(rng.uniform(*TELESCOPES[0].seeing)),
    )


def galsim_module():
    """``galsim``, or a :class:`UsageError` naming the extra that installs it."""
    try:
        import galsim
    except ImportError:
        raise UsageError("rendering galaxies needs GalSim, the optional `galaxies` extra: "
                         "pip install 'mmmi-dsl[galaxies]' (or pip install 'galsim>=2.5')") from None
    return galsim


def psf(telescope: Telescope, band: int, seeing: float):
    """The GalSim PSF of ``telescope`` in band ``band`` (0, 1, 2) for a ground seeing FWHM at 620 nm."""
    galsim = galsim_module()
    lam = WAVELENGTHS_NM[band]
    if telescope.psf == "kolmogorov":
        return galsim.Kolmogorov(fwhm=seeing * (lam / 620.0) ** -0.2)
    return galsim.Airy(lam=lam, diam=telescope.diameter, obscuration=telescope.obscuration,
                       scale_unit=galsim.arcsec)


def render_counts(galaxy: Galaxy, telescope: Telescope, noise_seed: int | None) -> np.ndarray:
    """(3, 32, 32) float64 counts per pixel of ``galaxy`` seen by ``telescope``; noiseless if
    ``noise_seed`` is None, else with Gaussian sky noise of sd ``telescope.sigma`` from
    ``galsim.BaseDeviate(noise_seed)``."""
    galsim = galsim_module()
    beta = galaxy.angle * galsim.radians
    bulge = galsim.DeVaucouleurs(half_light_radius=galaxy.bulge_hlr, trunc=BULGE_TRUNC * galaxy.bulge_hlr)
    bulge = bulge.shear(q=galaxy.bulge_q, beta=beta)
    disk = galsim.Exponential(half_light_radius=galaxy.disk_hlr).shear(q=galaxy.disk_q, beta=beta)
    rng = None if noise_seed is None else galsim.BaseDeviate(int(noise_seed))
    out = np.empty((len(BANDS), STAMP, STAMP))
    for k in range(len(BANDS)):
        f_bulge = galaxy.flux * galaxy.bulge_fraction * galaxy.bulge_colour[k]
        f_disk = galaxy.flux * (1.0 - galaxy.bulge_fraction) * galaxy.disk_colour[k]
        gal = galsim.Add(bulge.withFlux(f_bulge), disk.withFlux(f_disk))
        gal = gal.shear(g1=galaxy.g1, g2=galaxy.g2).shift(galaxy.dx, galaxy.dy)
        image = galsim.Convolve(gal, psf(telescope, k, galaxy.seeing)).drawImage(
            nx=STAMP, ny=STAMP, scale=telescope.pixel_scale)
        if rng is not None:
            image.addNoise(galsim.GaussianNoise(rng, sigma=telescope.sigma))
        out[k] = image.array
    return out


def stretch(counts: np.ndarray, sigma: float) -> np.ndarray:
    """The asinh stretch of the module docstring: counts -> x in [-1, 1] (float32)."""
    x = 2.0 * (np.arcsinh(counts / sigma) + A0) / (A0 + A1) - 1.0
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def unstretch(x: np.ndarray, sigma: float) -> np.ndarray:
    """Counts from stretched values (exact except where :func:`stretch` clipped)."""
    return sigma * np.sinh((np.asarray(x, np.float64) + 1.0) / 2.0 * (A0 + A1) - A0)


def image_seeds(seed: int, i: int) -> tuple[np.random.Generator, int]:
    """Image ``i``'s parameter generator and GalSim noise seed, from ``SeedSequence([seed, i])``."""
    state = np.random.SeedSequence([seed, i]).generate_state(2)
    return np.random.default_rng(int(state[0])), int(state[1]) % (2**31 - 1) + 1


def _render_range(seed: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, list[Galaxy]]:
    # one OpenMP thread per process: GalSim's noise generation is OpenMP-parallel, and with threads
    # competing for busy cores it is 300x slower (20 ms for 1,024 normals); processes scale instead
    galsim_module().utilities.set_omp_threads(1)
    xs, ys, galaxies = [], [], []
    for i in range(start, stop):
        rng, noise_seed = image_seeds(seed, i)
        galaxy = draw_galaxy(rng)
        telescope = TELESCOPES[i % 2]
        xs.append(stretch(render_counts(galaxy, telescope, noise_seed), telescope.sigma))
        ys.append(i % 2)
        galaxies.append(galaxy)
    return np.stack(xs), np.array(ys, np.int64), galaxies


def render_dataset(n: int, seed: int = 0, workers: int = 1, chunk: int = 500,
                   progress=None) -> dict[str, np.ndarray]:
    """``n`` images (image ``i`` by telescope ``i % 2``, each its own galaxy) as the arrays of
    :func:`save_npz`: ``x`` (n, 3, 32, 32) float32 in [-1, 1], ``y`` (n,) int64, and per-image
    parameters. ``workers`` > 1 renders chunks in that many processes (same result).
    ``progress(k)`` is called with each finished chunk's size.
    """
    if n < 1 or workers < 1 or chunk < 1:
        raise ValueError(f"n, workers and chunk must be positive, got {n}, {workers}, {chunk}")
    galsim_module()
    ranges = [(seed, a, min(a + chunk, n)) for a in range(0, n, chunk)]
    parts = []
    if workers == 1:
        for r in ranges:
            parts.append(_render_range(*r))
            if progress:
                progress(r[2] - r[1])
    else:
        import multiprocessing

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for r, part in zip(ranges, pool.map(_render_range, *zip(*ranges))):
                parts.append(part)
                if progress:
                    progress(r[2] - r[1])
    galaxies = [g for _, _, gs in parts for g in gs]
    y = np.concatenate([p[1] for p in parts])
    arrays = {"x": np.concatenate([p[0] for p in parts]), "y": y}
    for f in fields(Galaxy):
        arrays[f.name] = np.array([getattr(g, f.name) for g in galaxies], np.float64)
    arrays["pixel_scale"] = np.array([t.pixel_scale for t in TELESCOPES])[y]
    arrays["sigma"] = np.array([t.sigma for t in TELESCOPES])[y]
    arrays["classes"] = np.array(CLASSES)
    arrays["bands"] = np.array(BANDS)
    arrays["wavelength_nm"] = np.array(WAVELENGTHS_NM)
    arrays["stretch"] = np.array([A0, A1])
    arrays["seed"] = np.array(seed, np.int64)
    return arrays


def save_npz(path: Path | str, arrays: dict[str, np.ndarray]) -> None:
    """Write the arrays (no object arrays: the file loads with ``allow_pickle=False``), compressed."""
    np.savez_compressed(path, **arrays)


def galaxy_from_arrays(arrays, i: int) -> Galaxy:
    """Image ``i``'s :class:`Galaxy` read back from the arrays of :func:`render_dataset`."""
    values = {}
    for f in fields(Galaxy):
        v = arrays[f.name][i]
        values[f.name] = tuple(float(c) for c in v) if np.ndim(v) else float(v)
    return Galaxy(**values)

