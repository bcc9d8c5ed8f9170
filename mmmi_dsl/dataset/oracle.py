"""Checking a dataset's exact MI on its files, at any size: the known flows inverted, the
information tested through the directions that carry it.

The model is rebuilt from the manifest's spec text and parameters. On a seeded subsample
of at most SUBSAMPLE tuples, each modality is mapped back through its flow
(``Sampler.invert``: the standardised latent ``S z``); targets and saved latents are read
as they are. For ``I(A; B)`` the exact joint covariance of the recovered vectors comes from
the engine (:class:`~mmmi_dsl.mi.analysis.Analysis`). Its canonical correlation analysis
gives pairs of directions (a_i, b_i) with correlations rho_i, independent across i, and

    I(A; B) = -1/2 sum_i log(1 - rho_i^2)

(for a scalar target, the one pair is E[theta | z_S] = w . z_S, w = S_SS^-1 S_S.theta).
So the test needs only the pairs' sample correlations r_i, whatever p + q is: the estimate
is sum_i [-1/2 log(1 - r_i^2) - b], with b = :func:`plugin_bias` (1, 1, m) the exact bias
of a 2-dimensional plug-in, and standard error (delta method on Fisher's z, s^2 = 1/(m - 3))

    se^2 = sum_i rho_i^2 s^2 + (1 - rho_i^2)^2 s^4 / 2.

Pass: |estimate - exact| <= DIRECTION_SIGMAS se + 1e-3 (1 + |exact|). Information outside the
model's canonical directions is not tested (it is zero in the model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmmi_dsl.builtins.flows import SOLVER_KEYS, solver_problem
from mmmi_dsl.dataset.format import DatasetError, first_difference, short
from mmmi_dsl.dataset.stats import plugin_bias
from mmmi_dsl.errors import MmmicError

SUBSAMPLE = 2000         # tuples whose flows are inverted
SUBSAMPLE_SEED = 0
DIRECTION_SIGMAS = 4.0
MIN_SUBSAMPLE = 10
MIN_CORRELATION = 1e-6   # canonical pairs below this carry no information (rho^2 / 2 < 5e-13 nats)


@dataclass(frozen=True)
class DirectionTest:
    """The test of one ``I(A; B)`` through its canonical directions (nats).

    ``plugin``: sum of the pairs' plug-in MI; ``bias``: k plugin_bias(1, 1, m);
    ``correlations``: the exact rho_i; ``sample``: the r_i; ``m`` of ``n`` tuples used.
    """

    plugin: float
    bias: float
    se: float
    correlations: tuple[float, ...]
    sample: tuple[float, ...]
    m: int


class FlowMismatch(DatasetError):
    """A dataset drawn by a learned flow with other weights or another solver than this installation's:
    its files cannot be mapped back here."""


def match_learned_flows(recorded: dict | None, sampler) -> str:
    """Make ``sampler``'s learned flows solve as the manifest's record says, after checking that they
    are the same flows (the same weights' SHA-256, class and guidance); returns a note for the
    report ("" when all was recorded).

    ``recorded`` None on a manifest from before mmmic recorded them: nothing can be compared, and the
    note says the installed flows were used.

    Raises:
        FlowMismatch: another flow or other weights, naming the first field that differs.
    """
    here = sampler.learned_flows()
    if recorded is None:
        return ("" if not here else "written before mmmic recorded its learned flows' weights: inverted with "
                "the installed ones (" + ", ".join(f"{n}: {s[0]['flow']} {s[0]['weights_sha256'][:12]}"
                                                   for n, s in here.items()) + ")")
    def which(steps):  # what makes a flow this flow; the solver may differ and is taken from the record
        return [{k: v for k, v in s.items() if k not in SOLVER_KEYS} for s in steps or []]

    for name in sorted(set(recorded) | set(here)):
        old, new = which(recorded.get(name)), which(here.get(name))
        if old != new:
            where, a, b = first_difference(old, new, f"learned_flows.{name}")
            hint = ""
            if where.endswith("weights_sha256"):
                builtin = (recorded.get(name) or [{}])[0].get("flow")
                hint = ("; the weights file changed since: map it back with the file it was written with"
                        if builtin == "cnf" else f"; the shipped {builtin} weights changed since: map it back "
                        "with the mmmic version that wrote it")
            raise FlowMismatch(f"its {where} is {short(a)} in the manifest, {short(b)} here{hint}")
        for i, (step, record) in enumerate(zip(sampler.learned_steps(name), recorded[name])):
            problem = solver_problem(record)
            if problem:
                raise FlowMismatch(f"its learned_flows.{name}[{i}] records a solver this installation refuses: "
                                   f"{problem}")
            step.use_solver(record)
    return ""


class Recovery:
    """The model of a dataset, rebuilt from its manifest, and the Gaussian vectors behind its files."""

    def __init__(self, root: Path, manifest: dict, subsample: int = SUBSAMPLE):
        self.root, self.manifest = root, manifest
        self.model = rebuild(root, manifest)
        from mmmi_dsl.mi.analysis import Analysis

        self.analysis = Analysis(self.model)
        n = manifest["n"]
        self.m = min(n, subsample)
        rng = np.random.default_rng(SUBSAMPLE_SEED)
        self.rows = np.arange(n) if n <= subsample else np.sort(rng.choice(n, subsample, replace=False))
        self._sampler = None
        self._refused: FlowMismatch | None = None
        self.note = ""  # what the report should say about how the flows were matched
        self._cache: dict[str, tuple[np.ndarray, np.ndarray, str]] = {}

    def sampler(self):
        """The model's sampler as the dataset was written (seed, chunk size, dtype, standardisation,
        its flows' solvers), so its :meth:`~mmmi_dsl.backend.Sampler.flow_inputs` are the dataset's."""
        if self._sampler is None:
            import torch

            from mmmi_dsl.backend import Sampler

            fp = self.manifest["fingerprint"]
            dtype = torch.float64 if fp.get("dtype") == "float64" else torch.float32
            if self._refused is not None:
                raise self._refused
            sampler = Sampler(self.model, device="cpu", dtype=dtype, standardize=fp.get("standardize", "auto"),
                              seed=self.manifest["seed"], chunk_size=self.manifest["chunk_size"])
            try:
                self.note = match_learned_flows(fp.get("learned_flows"), sampler)
            except FlowMismatch as err:
                self._refused = err
                raise
            self._sampler = sampler
        return self._sampler

    def recover(self, name: str) -> tuple[np.ndarray, np.ndarray, str]:
        """``name``'s Gaussian vector on the subsample, (m, size) float64; the matrix T with vector = T z
        (z the block's latent); and how it was obtained.

        Raises:
            DatasetError: no file holds it (a label, an unsaved latent, a lossy export without latents).
        """
        if name not in self._cache:
            self._cache[name] = self._recover(name)
        return self._cache[name]

    def _recover(self, name: str) -> tuple[np.ndarray, np.ndarray, str]:
        m, variables = self.model, self.manifest["variables"]
        if name in m.labels:
            raise DatasetError(f"`{name}` is a label, not a Gaussian variable")
        if name not in m.flows and name not in m.variables and name not in m.protos:
            raise DatasetError(f"the manifest's spec has no variable `{name}`")
        lossy = self.manifest["fingerprint"].get("uint8") is not None
        if name in m.flows and name in variables and not lossy:
            x = self.read(name)
            z = self.sampler().invert(name, x).astype(np.float64)
            chain = " -> ".join(s.name for s in m.flows[name].steps)
            return z, self.sampler().standardization(name), f"{name} inverted through {chain}"
        saved = self.manifest.get("gaussian_arrays", {}).get(name, name) if name in m.flows else name
        if saved in variables and (saved in m.variables or saved in m.protos):
            size = m.size_of(saved)
            how = f"{name} read" if saved == name else f"{name} as its saved latent {saved}"
            return self.read(saved).reshape(self.m, -1).astype(np.float64), np.eye(size), how
        why = "its files are a lossy 8-bit export" if lossy and name in m.flows else "it is not saved"
        raise DatasetError(f"no file holds `{name}`'s Gaussian values ({why}; generate with --save-latents)")

    def read(self, var: str) -> np.ndarray:
        """Variable ``var`` at the subsample's rows, (m, *shape), read from the shards."""
        parts = []
        for s in sorted(self.manifest["shards"], key=lambda s: s["index"]):
            lo = np.searchsorted(self.rows, s["start"])
            hi = np.searchsorted(self.rows, s["start"] + s["n"])
            if hi > lo:
                data = np.load(self.root / s["files"][var], mmap_mode="r", allow_pickle=False)
                parts.append(np.asarray(data[self.rows[lo:hi] - s["start"]]))
        return np.concatenate(parts)

    def test(self, sides: tuple[list[str], list[str]]) -> tuple[DirectionTest, float, str]:
        """The direction test of ``I(A; B)``, the spec's exact value, and how the vectors were recovered.

        Raises:
            DatasetError: a side cannot be recovered, or too few tuples.
        """
        if self.m < MIN_SUBSAMPLE:
            raise DatasetError(f"{self.m} tuples are too few (the test needs {MIN_SUBSAMPLE})")
        got = [[self.recover(v) for v in side] for side in sides]
        values = [np.concatenate([g[0] for g in side], axis=1) for side in got]
        transform = _block_diag([g[1] for side in got for g in side])
        cov = transform @ self.analysis.covariance([v for side in sides for v in side]) @ transform.T
        rho, a, b = canonical(cov, values[0].shape[1])
        exact = float(-0.5 * np.sum(np.log1p(-rho ** 2)))
        how = ", ".join(g[2] for side in got for g in side)
        return direction_test(values[0], values[1], rho, a, b), exact, how


def rebuild(root: Path, manifest: dict):
    """The dataset's model: its recorded spec at its recorded parameters and dims
    (:func:`mmmi_dsl.dataset.recorded.load_dataset_spec`; files resolve in the dataset directory)."""
    from mmmi_dsl.dataset.recorded import load_dataset_spec

    try:
        model = load_dataset_spec(root, check_drift=False).model
    except DatasetError:
        raise
    except MmmicError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DatasetError(f"the manifest's spec does not load: {first}") from None
    for name, spec in manifest["variables"].items():
        if name not in model.flows and name not in model.variables:
            continue
        values = math.prod(model.flows[name].shape) if name in model.flows else model.size_of(name)
        if values != math.prod(spec["shape"]):  # a flow's output can outsize its latent (swissroll)
            raise DatasetError(f"the rebuilt model's `{name}` has {values} values, "
                               f"its files {math.prod(spec['shape'])}")
    return model


def canonical(cov: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical correlations of the first ``p`` coordinates and the rest of a (d, d) covariance.

    Returns rho (k,) above MIN_CORRELATION, descending, and the directions a (p, k), b (d - p, k)
    with unit variance: Var(a_i . A) = Var(b_i . B) = 1, Cov(a_i . A, b_j . B) = rho_i [i = j].
    A singular block is handled on its support.
    """
    wa, wb = _inv_sqrt(cov[:p, :p]), _inv_sqrt(cov[p:, p:])
    u, s, vt = np.linalg.svd(wa @ cov[:p, p:] @ wb, full_matrices=False)
    keep = s > MIN_CORRELATION
    return np.minimum(s[keep], 1.0), wa @ u[:, keep], wb @ vt[keep].T


def _inv_sqrt(cov: np.ndarray) -> np.ndarray:
    """The symmetric inverse square root of a covariance on its support (pseudo-inverse)."""
    w, v = np.linalg.eigh((cov + cov.T) / 2)
    keep = w > 1e-12 * max(w.max(initial=0.0), 1e-300)
    return (v[:, keep] / np.sqrt(w[keep])) @ v[:, keep].T


def direction_test(a_values: np.ndarray, b_values: np.ndarray, rho: np.ndarray, a: np.ndarray,
                   b: np.ndarray) -> DirectionTest:
    """The pairs' sample correlations and the bias-corrected MI estimate with its standard error.

    Args:
        a_values, b_values: (m, p) and (m, q) samples; rho (k,), a (p, k), b (q, k) from :func:`canonical`.
    """
    m = len(a_values)
    u = (a_values - a_values.mean(0)) @ a
    v = (b_values - b_values.mean(0)) @ b
    r = np.sum(u * v, 0) / np.sqrt(np.sum(u * u, 0) * np.sum(v * v, 0))
    r = np.clip(r, -1 + 1e-15, 1 - 1e-15)
    s2 = 1.0 / (m - 3)
    se = math.sqrt(float(np.sum(rho ** 2 * s2 + (1 - rho ** 2) ** 2 * s2 ** 2 / 2)))
    return DirectionTest(plugin=float(-0.5 * np.sum(np.log1p(-r ** 2))), bias=len(rho) * plugin_bias(1, 1, m),
                         se=se, correlations=tuple(map(float, rho)), sample=tuple(map(float, r)), m=m)


def _block_diag(mats: list[np.ndarray]) -> np.ndarray:
    size = sum(t.shape[0] for t in mats)
    out, i = np.zeros((size, size)), 0
    for t in mats:
        out[i:i + len(t), i:i + len(t)] = t
        i += len(t)
    return out
