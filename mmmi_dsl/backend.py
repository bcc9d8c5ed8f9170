"""Stage 5, backend: the IR compiled to a torch sampler (CPU or CUDA).

Sampling follows the block structure, never a dense A: for the outputs of one size
d, the identity-scaled part is ``einsum('vp,cpd->cvd', mix, protos)`` (an n_v x n_p
mixing of d-vectors, over the tiles of ``mix`` that matter at the sampling precision:
mmmi_dsl/mixing.py), the template part ``einsum('ck,vdk->cvd', u, loadings)``, and
only `M @ ...` / `dot(...)` terms use dense maps. Then, per modality, an optional
standardisation (an invertible affine map of that block) and its flow.

Determinism: samples are drawn in fixed-size chunks; chunk c uses a generator seeded
by ``SeedSequence([seed, c])`` and draws every proto-latent in IR order. Sample k
therefore depends only on (spec, params, seed, k): batch size, shard count and
resume points never change a byte on the same device type.

Non-Gaussian laws (mmmi_dsl/lang/laws.py) change nothing for models without them. A uniform
proto ``uniform[lo, hi]`` is its normal draw g mapped by ``lo + (hi - lo) Φ(g)`` (exactly
uniform; computed in float64). A Student group divides its variables by ``sqrt(W / nu)``, one
``W ~ chi2(nu)`` per sample from numpy's generator seeded by ``SeedSequence([seed, chunk, 1 + group])``
(float64, the same on every device).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from mmmi_dsl import ir
from mmmi_dsl.builtins import FLOWS
from mmmi_dsl.builtins.flows import STANDARDIZE
from mmmi_dsl.errors import Diagnostic, SpecError, UsageError
from mmmi_dsl.flows import build_flow
from mmmi_dsl.lang.laws import laws
from mmmi_dsl.mi.analysis import Analysis, Form
from mmmi_dsl.mixing import Mixing

#: A flow must give back its input to this fraction of the input's RMS on the first chunk (else refused).
ROUNDTRIP_RTOL = 1e-2


def auto_standardize(flow: ir.Flow, built=None) -> str:
    """What ``standardize="auto"`` applies before a flow chain: the strongest of what its steps ask
    for (``whiten`` > ``scale`` > ``radius`` > ``none``). A step asks what its definition says, unless
    its built flow (``built``, the chain) says otherwise: a ``cnf`` with convolutional weights asks
    for ``radius`` (whitening would erase where the templates put the causes); plugins ask for nothing."""
    steps = list(getattr(built, "steps", ())) if built is not None else []
    asked = []
    for i, s in enumerate(flow.steps):
        own = getattr(steps[i], "standardize", None) if i < len(steps) else None
        own = own if own in STANDARDIZE and own != "auto" else None  # a plugin's attribute is not trusted
        if own or s.name in FLOWS:
            asked.append(own or FLOWS[s.name].standardize)
    return max(asked, key=("none", "radius", "scale", "whiten").index, default="none")
MAX_CHUNK = 1024
#: ~32 MiB of float32 per chunk: its draws and outputs; and, apart, its widest flow call's working set
CHUNK_FLOATS = 8_000_000


def _power_of_two(n: int) -> int:
    """The largest power of two <= n (1 for n < 2)."""
    return 2 ** int(math.log2(max(1, n)))


def chunk_seed(seed: int, chunk: int) -> int:
    """The 63-bit generator seed of one chunk (counter-based, platform independent)."""
    return int(np.random.SeedSequence([int(seed), int(chunk)]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; a :class:`UsageError` if CUDA is asked for but absent. Asking
    for CUDA turns TF32 off for the process (:func:`mmmi_dsl.flows.base.ieee_float32`)."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise UsageError(f"device {name!r}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r}: CUDA is not available on this machine (use cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"device {name!r}: only cpu and cuda are supported")
    if dev.type == "cuda":  # flows are bijections to the solver's accuracy only in IEEE float32, not TF32
        from mmmi_dsl.flows.base import ieee_float32

        ieee_float32()
    return dev


@dataclass
class _Group:
    """Outputs of one size d: (n_v, n_p) identity mixing, (n_v, d, K) loadings."""

    size: int
    names: list[str]
    protos: list[str]
    mix: Mixing
    loadings: torch.Tensor | None


class Sampler(torch.nn.Module):
    """A compiled model that draws tuples.

    Args:
        model: a checked IR.
        device: ``torch.device`` or name.
        dtype: ``torch.float32`` (default) or ``torch.float64``.
        standardize: ``none``, ``scale`` (unit variance per component), ``whiten``
            (exactly N(0, I) marginally) before each modality's flow, or ``auto``:
            what the flow's definition asks for: ``whiten`` before learned flows (cnf, digits),
            ``scale`` before bounded or fast-growing ones (normal_cdf, sinh, half_cube), else ``none``.
        save_latents: also output every latent and target.
        pmi: pairs (a, b) whose exact pointwise MI is added as a column ``pmi:a;b``.
        seed: the dataset seed.
        chunk_size: samples per deterministic chunk (default: a power of two with ~CHUNK_FLOATS floats
            drawn and output, capped by ``flow_rows``, the rows that keep the widest flow call's
            working set within CHUNK_FLOATS; 1,024 at most).
        uint8_range: (lo, hi): export modalities as 8-bit, ``round(255 clip((x-lo)/(hi-lo), 0, 1))``.
            Lossy and not injective, so the exact MI becomes an upper bound of the data's
            (data processing inequality); the range is fixed, never taken from the batch.

    Outputs (``sample_range``): modality ``x`` -> (n, *shape) of ``dtype``; target ->
    (n,); label -> (n,) uint8; with ``save_latents`` each latent -> (n, size);
    PMI columns -> (n,) float64.
    """

    def __init__(self, model: ir.Model, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 standardize: str = "none", save_latents: bool = False,
                 pmi: list[tuple[str, str]] | None = None, seed: int = 0, chunk_size: int | None = None,
                 uint8_range: tuple[float, float] | None = None):
        super().__init__()
        if standardize not in STANDARDIZE:
            raise UsageError(f"standardize {standardize!r}: choose one of {', '.join(STANDARDIZE)}")
        self.model = model
        self.device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
        self.dtype = dtype
        self.seed = int(seed)
        self.standardize = standardize
        if chunk_size is not None and (isinstance(chunk_size, bool) or int(chunk_size) != chunk_size
                                       or chunk_size < 1):
            raise UsageError(f"chunk size must be a whole number of at least 1, got {chunk_size!r}")
        if uint8_range is not None and not uint8_range[0] < uint8_range[1]:
            raise UsageError(f"--uint8 {uint8_range}: the range must be LO,HI with LO < HI")
        self.uint8_range = uint8_range
        self.analysis = Analysis(model)
        self.pmi_pairs = list(pmi or [])
        self.proto_order = list(model.protos)
        self.scalar_protos = [p for p in self.proto_order if model.protos[p].kind == "scalar"]

        # which Gaussian variables must be computed
        wanted: list[str] = [f.latent for f in model.flows.values()] + model.targets
        if save_latents:
            wanted += [v for v in model.variables]
        for a, b in self.pmi_pairs:
            wanted += [self.analysis.block_of(a), self.analysis.block_of(b)]
        self.gaussians = list(dict.fromkeys(w for w in wanted if w in model.variables or w in model.protos))
        self.saved_latents = [v for v in model.variables if v in self.gaussians and
                              (save_latents or model.variables[v].role == "target")]
        self._proto_cols: dict[str, tuple[int, int]] = {}
        width = 0
        for p in self.proto_order:
            self._proto_cols[p] = (width, width + model.protos[p].size)
            width += model.protos[p].size
        self._proto_width = width
        self._build_groups()
        self._laws()
        self._consecutive = {}
        for grp in self.groups:
            cols = [self._proto_cols[p] for p in grp.protos]
            if cols and all(cols[i][1] == cols[i + 1][0] for i in range(len(cols) - 1)):
                self._consecutive[tuple(grp.protos)] = cols[0][0]
        self._dense = [(v, p, torch.as_tensor(d.T, dtype=dtype, device=self.device))
                       for v in self.gaussians for p, d in self.analysis.form(v).dense.items()]
        self.labels = {name: (self.analysis.score_block(name), lab.comparison,
                              ir.evaluate(lab.threshold, self.analysis.env))
                       for name, lab in model.labels.items()}
        self._label_forms = {name: self.analysis._terms_form(lab.terms, 1) for name, lab in model.labels.items()}
        self.flows = torch.nn.ModuleDict()
        self._standardizers: dict[str, tuple] = {}
        self.standardized_as: dict[str, str] = {}  # modality -> none | radius | scale | whiten, as applied
        self._cache: dict[tuple, object] = {}  # flow round trips, measured once
        for name, f in model.flows.items():
            size = model.size_of(name)
            self.flows[_key(name)] = build_flow(f, size).to(self.device)
            how = auto_standardize(f, self.flows[_key(name)]) if self.standardize == "auto" else self.standardize
            self.standardized_as[name] = how
            self._standardizers[name] = _standardizer(self.analysis, f.latent, how, self.dtype, self.device)
        # per modality, what _outputs applies: its standardiser and flow (None: identity steps only, nothing to call)
        self._modalities = []
        for name, f in model.flows.items():
            chain = self.flows[_key(name)]
            plain = all(step.builtin == "identity" for step in chain.steps)
            self._modalities.append((name, f, self._standardizers[name], None if plain else chain))
        # the proto-latents read one by one (dense maps, labels, saved protos); the mixing reads views of the draw
        read = {p for _, p, _ in self._dense} | set(self.gaussians)
        read |= {p for f in self._label_forms.values() for p in (*f.identity, *f.dense)}
        self._named_protos = [p for p in self.proto_order if p in read]
        per_sample = sum(p.size for p in model.protos.values()) + sum(model.size_of(v) for v in self.gaussians)
        per_sample += sum(math.prod(f.shape) for f in model.flows.values())  # an injective flow outputs more
        #: floats per sample the widest flow call holds besides its input and output (one flow runs at a time)
        self.working_floats = max((chain.working_floats for chain in self.flows.values()), default=0)
        #: rows of one flow call whose working set is ~CHUNK_FLOATS floats (a UNet's: 32), else MAX_CHUNK
        self.flow_rows = min(MAX_CHUNK, _power_of_two(CHUNK_FLOATS // max(1, self.working_floats)))
        fitting = _power_of_two(CHUNK_FLOATS // per_sample)  # ~CHUNK_FLOATS floats drawn and output
        self.chunk_size = int(chunk_size or min(MAX_CHUNK, fitting, self.flow_rows))
        self.variables = self._variables()

    # ----------------------------------------------------------- structure

    def _build_groups(self) -> None:
        by_size: dict[int, list[str]] = {}
        for v in self.gaussians:
            if v in self.model.variables:  # proto-latents are drawn, not computed
                by_size.setdefault(self.model.size_of(v), []).append(v)
        self.groups: list[_Group] = []
        K = len(self.scalar_protos)
        for size, names in by_size.items():
            forms = [self.analysis.form(v) for v in names]
            used = {p for f in forms for p in f.identity}
            protos = [p for p in self.proto_order if p in used]  # IR order: often one contiguous slice
            mix = np.array([[f.identity.get(p, 0.0) for p in protos] for f in forms]).reshape(len(names), len(protos))
            loads = np.stack([f.loadings for f in forms]) if K else None  # (n_v, d, K)
            if loads is not None and not np.any(loads):
                loads = None
            self.groups.append(_Group(size, names, protos, Mixing(mix, self.dtype, self.device),
                                      None if loads is None else torch.as_tensor(loads, dtype=self.dtype,
                                                                                 device=self.device)))

    def _laws(self) -> None:
        """Uniform protos' columns and ends; per Student group, its degrees of freedom and scaled variables."""
        m = self.model
        self._uniform = [(self._proto_cols[p][0], self.analysis.laws.half_width(p),
                          self.analysis.coef(law.low, law.span)) for p, law in m.uniform.items()]
        law = laws(m) if not m.gaussian else {}
        self._student = [(self.analysis.laws.df(i), [v for v in self.gaussians if law.get(v) == i])
                         for i in range(len(m.students))]
        self._student = [(i, nu, names) for i, (nu, names) in enumerate(self._student) if names]

    def student_scale(self, group: int, chunk: int) -> np.ndarray:
        """``sqrt(nu / W)`` of Student group ``group`` for the samples of chunk ``chunk``, (chunk_size,) float64."""
        nu = self.analysis.laws.df(group)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, int(chunk), 1 + int(group)])))
        return np.sqrt(nu / rng.chisquare(nu, size=self.chunk_size))

    def _variables(self) -> dict[str, tuple[tuple[int, ...], str]]:
        np_dtype = "float32" if self.dtype == torch.float32 else "float64"
        out: dict[str, tuple[tuple[int, ...], str]] = {}
        for name, f in self.model.flows.items():
            out[name] = (tuple(f.shape), "uint8" if self.uint8_range else np_dtype)
        for t in self.model.targets:
            out[t] = ((), np_dtype)
        for lab in self.model.labels:
            out[lab] = ((), "uint8")
        for v in self.saved_latents:
            if v not in out:
                out[v] = ((self.model.size_of(v),) if self.model.size_of(v) > 1 else (), np_dtype)
        for a, b in self.pmi_pairs:
            out[pmi_column(a, b)] = ((), "float64")
        return out

    # ----------------------------------------------------------- sampling

    def _chunk(self, index: int) -> dict[str, torch.Tensor]:
        protos, u, z = self._gaussians(index)
        return self._outputs(protos, u, z)

    def _gaussians(self, index: int):
        """Chunk ``index``: its proto-latents, scalar causes (C, K) and Gaussian variables."""
        C, dev, dt = self.chunk_size, self.device, self.dtype
        g = torch.Generator(device=dev)
        g.manual_seed(chunk_seed(self.seed, index))
        # one draw per chunk: every proto-latent, in IR order, side by side
        draw = torch.randn((C, self._proto_width), generator=g, device=dev, dtype=dt)
        for col, half, low in self._uniform:  # uniform[lo, hi] = lo + (hi - lo) Φ(g), exactly uniform
            draw[:, col] = (low + 2 * half * torch.special.ndtr(draw[:, col].double())).to(dt)
        protos = {p: draw[:, slice(*self._proto_cols[p])] for p in self._named_protos}
        u = torch.cat([draw[:, slice(*self._proto_cols[p])] for p in self.scalar_protos], dim=1) \
            if self.scalar_protos else None
        z: dict[str, torch.Tensor] = {}
        for grp in self.groups:
            if grp.protos:
                start = self._consecutive.get(tuple(grp.protos))
                if start is not None:  # a view, no copy
                    stacked = draw[:, start:start + len(grp.protos) * grp.size].view(C, len(grp.protos), grp.size)
                else:
                    stacked = torch.stack([draw[:, slice(*self._proto_cols[p])] for p in grp.protos], dim=1)
                out = grp.mix(stacked)
            else:
                out = torch.zeros((C, len(grp.names), grp.size), device=dev, dtype=dt)
            if grp.loadings is not None and u is not None:
                out += torch.einsum("ck,vdk->cvd", u, grp.loadings)  # out is this chunk's own
            z.update(zip(grp.names, out.unbind(1)))
        for v, p, d_t in self._dense:
            z[v] = z[v] + protos[p] @ d_t
        for p in self.gaussians:
            if p in protos:
                z[p] = protos[p]
        for group, _, names in self._student:  # X = G / sqrt(W / nu), one W per sample and group
            s = torch.as_tensor(self.student_scale(group, index), device=dev).to(dt)[:, None]
            for v in names:
                z[v] = z[v] * s
        return protos, u, z

    def _outputs(self, protos, u, z) -> dict[str, torch.Tensor]:
        C = self.chunk_size
        result: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for name, f, standardizer, flow in self._modalities:
                x = _standardized(standardizer, z[f.latent])
                x = x if flow is None else flow(x)
                if self.uint8_range is not None:
                    lo, hi = self.uint8_range
                    x = torch.round(((x - lo) / (hi - lo)).clamp(0, 1) * 255).to(torch.uint8)
                result[name] = x if x.shape[1:] == f.shape else x.reshape((C, *f.shape))
        for t in self.model.targets:
            result[t] = z[t][:, 0]
        for name, (score, cmp, thr) in self.labels.items():
            s = self._score(name, protos, u)
            result[name] = _compare(s, cmp, thr).to(torch.uint8)
        for v in self.saved_latents:
            if v not in result:
                result[v] = z[v] if z[v].shape[1] > 1 else z[v][:, 0]
        if self.pmi_pairs:
            lat = {k: t.detach().cpu().double().numpy() for k, t in z.items()}
            for a, b in self.pmi_pairs:
                col = self.analysis.pmi([a], [b], lat)
                result[pmi_column(a, b)] = torch.from_numpy(col)
        return result

    def learned_steps(self, name: str) -> list:
        """Modality ``name``'s learned flow steps (the :class:`~mmmi_dsl.flows.cnf.CNF` ones), in order."""
        from mmmi_dsl.flows.cnf import CNF

        return [f for f in self.flows[_key(name)].steps if isinstance(f, CNF)]

    def learned_flows(self) -> dict[str, list[dict]]:
        """Per modality with a learned flow, each such step's ``learned_identity()``: its weights'
        SHA-256 and solver, what decides its images besides the spec (modalities without one are
        left out)."""
        out = {}
        for name in self.model.flows:
            steps = [f.learned_identity() for f in self.learned_steps(name)]
            if steps:
                out[name] = steps
        return out

    def flow_roundtrip(self, n: int = 256) -> dict[str, dict]:
        """Per modality: its flow chain, the standardisation applied before it and ``|f^-1(f(z)) - z|``
        (max, mean) on the first latents.

        ``z`` is the standardised latent the flow reads for the first samples (:meth:`flow_inputs`; at
        most ``n`` rows, and at most the flow's ``roundtrip_rows``: 32 for a convolutional CNF).
        """
        return {name: {**{k: r[k] for k in ("chain", "roundtrip_max", "roundtrip_mean")},
                       "standardize": self.standardized_as[name]}
                for name, r in self._roundtrip(n).items()}

    def _roundtrip(self, n: int) -> dict[str, dict]:
        key = ("roundtrip", n)
        if key not in self._cache:
            report = {}
            with torch.no_grad():
                for name, f in self.model.flows.items():
                    flow = self.flows[_key(name)]
                    zs = self.flow_inputs(name, 0, min(n, flow.roundtrip_rows or n))
                    err = (flow.inverse(flow(zs)) - zs).abs()
                    err = torch.where(torch.isnan(err), torch.full_like(err, math.inf), err)
                    report[name] = {"chain": " -> ".join(s.name for s in f.steps),
                                    "roundtrip_max": float(err.max()), "roundtrip_mean": float(err.mean()),
                                    "scale": float(zs.double().pow(2).mean().sqrt()), "n": len(zs)}
            self._cache[key] = report
        return self._cache[key]

    def flow_problems(self, n: int = 256) -> list[Diagnostic]:
        """E0210 for each modality whose flow does not invert on the data it will see: a round trip
        that is not finite or off by more than ``ROUNDTRIP_RTOL`` of its input's RMS (a flow that
        saturates, like normal_cdf of a wide latent, or overflows, like sinh in float32)."""
        problems = []
        for name, r in self._roundtrip(n).items():
            worst, scale = r["roundtrip_max"], r["scale"]
            if math.isfinite(worst) and worst <= ROUNDTRIP_RTOL * max(scale, 1e-300):
                continue
            problems.append(Diagnostic(
                "E0210", f"flow `{name}` = {r['chain']} cannot be inverted on the data it will see: round trip "
                f"|f^-1(f(z)) - z| max {worst:.3g}, mean {r['roundtrip_mean']:.3g}, on {r['n']} latents of RMS "
                f"{scale:.3g} ({str(self.dtype).replace('torch.', '')})", self.model.flows[name].span,
                "saturates or overflows here",
                "standardize its input (standardize \"scale\"; --standardize scale), sample in float64 "
                "(--dtype float64), or give its latent a smaller coefficient"))
        return problems

    def flow_inputs(self, name: str, start: int, stop: int) -> torch.Tensor:
        """What modality ``name``'s flow reads for samples ``start..stop-1`` of this sampler's draw:
        their latent, standardised, (stop - start, size), drawn chunk by chunk as :meth:`sample_range`
        draws them (so the same rows, bit for bit)."""
        if not 0 <= start <= stop:
            raise ValueError(f"samples {start}..{stop - 1}: need 0 <= start <= stop")
        C, latent = self.chunk_size, self.model.flows[name].latent
        parts = [self._standardized(name, self._gaussians(c)[2][latent])[max(start - c * C, 0):stop - c * C]
                 for c in range(start // C, -(-stop // C))]  # whole chunks standardised, as _outputs does
        if not parts:
            return torch.zeros((0, self.model.size_of(latent)), dtype=self.dtype, device=self.device)
        return torch.cat(parts)

    def invert(self, name: str, x, batch: int = 4096) -> np.ndarray:
        """The standardised latents modality ``name``'s samples came from: ``f^-1(x)``, (n, size).

        They are an invertible linear map of the modality's latent, so any MI computed
        on them is the latent's (used as an oracle by the estimator benchmark). At most ``batch``
        rows a call, fewer for a flow whose working set is large (a UNet's: ~CHUNK_FLOATS a call).
        """
        flow = self.flows[_key(name)]
        batch = min(batch, _power_of_two(CHUNK_FLOATS // max(1, flow.out_size + flow.working_floats)))
        rows = []
        with torch.no_grad():
            for start in range(0, len(x), batch):
                xb = torch.as_tensor(np.array(x[start:start + batch]), dtype=self.dtype, device=self.device)
                rows.append(flow.inverse(xb.reshape(len(xb), -1)).cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, self.model.size_of(name)))

    def standardization(self, name: str) -> np.ndarray:
        """The matrix S (size, size) of modality ``name``'s standardisation: its flow reads ``S z``.

        ``z`` is the latent as a column; :meth:`invert` returns ``S z`` (float64 here).
        """
        size = self.model.size_of(self.model.flows[name].latent)
        with torch.no_grad():
            rows = self._standardized(name, torch.eye(size, dtype=self.dtype, device=self.device))
        return rows.double().cpu().numpy().T  # row j is S e_j

    def _standardized(self, name: str, z: torch.Tensor) -> torch.Tensor:
        return _standardized(self._standardizers[name], z)

    def _score(self, label: str, protos: dict, u) -> torch.Tensor:
        f = self._label_forms[label]
        s = torch.zeros(self.chunk_size, device=self.device, dtype=torch.float64)
        if u is not None:
            s = s + (u.double() @ torch.as_tensor(f.loadings[0], device=self.device))
        for p, a in f.identity.items():
            s = s + a * protos[p][:, 0].double()
        for p, d in f.dense.items():
            s = s + protos[p].double() @ torch.as_tensor(d[0], device=self.device)
        return s

    def sample_range(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Samples ``start..stop-1`` as numpy arrays (the dataset writer's protocol)."""
        return {k: v.detach().cpu().numpy() for k, v in self.sample_tensors(start, stop).items()}

    def sample_tensors(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        """Samples ``start..stop-1`` as tensors on the sampler's device."""
        if not 0 <= start <= stop:
            raise ValueError(f"bad range {start}..{stop}")
        C = self.chunk_size
        out: dict[str, torch.Tensor] = {}
        for c in range(start // C, (stop - 1) // C + 1 if stop > start else start // C):
            chunk = self._chunk(c)
            lo, hi = max(start - c * C, 0), min(stop - c * C, C)
            if not out:  # the batch, allocated once; each chunk is copied straight into it (no torch.cat)
                out = {k: torch.empty((stop - start, *v.shape[1:]), dtype=v.dtype, device=v.device)
                       for k, v in chunk.items()}
            at, whole = c * C + lo - start, lo == 0 and hi == C
            for k, v in chunk.items():
                out[k][at:at + hi - lo] = v if whole else v[lo:hi]
        if not out:
            return {k: torch.empty((0, *shape)) for k, (shape, _) in self.variables.items()}
        return out

    def sample(self, n: int, seed: int | None = None) -> dict[str, torch.Tensor]:
        """``n`` tuples; with ``seed`` a different dataset seed for this call."""
        if seed is not None and seed != self.seed:
            old, self.seed = self.seed, int(seed)
            try:
                return self.sample_tensors(0, n)
            finally:
                self.seed = old
        return self.sample_tensors(0, n)


def _standardizer(analysis: Analysis, latent: str, how: str, dtype: torch.dtype, device: torch.device) -> tuple:
    """The per-block invertible map applied before a flow (:func:`_standardized` applies it).

    ``scale``: each component to unit variance; ``radius``: one scale for the whole modality,
    ``z / sqrt(tr Σ / d)`` (E||z||² = d, the radius of N(0, I_d)), which keeps the spatial layout
    of templates; ``whiten``: ``Σ^{-1/2} z`` (exactly N(0, I)), which erases it.
    """
    if how == "none":
        return ("none",)
    f: Form = analysis.form(latent)
    var = sum(a * a for a in f.identity.values()) + np.sum(f.loadings ** 2, axis=1)
    var = var + sum(np.sum(d ** 2, axis=1) for d in f.dense.values()) if f.dense else var
    if how == "scale":
        if np.any(var <= 0):
            raise _singular(analysis.model, latent, "a component has zero variance", how)
        return ("scale", torch.as_tensor(1.0 / np.sqrt(var), dtype=dtype, device=device))
    if how == "radius":
        mean_var = float(np.mean(var))
        if mean_var <= 0:
            raise _singular(analysis.model, latent, "it has zero variance", how)
        return ("scale", torch.as_tensor(np.full(len(var), 1.0 / math.sqrt(mean_var)), dtype=dtype,
                                         device=device))
    # whiten: Σ^{-1/2} z
    if not f.dense:
        fvar = sum(a * a for a in f.identity.values())
        u, s, _ = np.linalg.svd(f.loadings, full_matrices=False)  # (d, K)
        if fvar <= 0:
            raise _singular(analysis.model, latent, "it has no noise term", how)
        coef = 1.0 / np.sqrt(fvar + s ** 2) - 1.0 / math.sqrt(fvar)
        return ("whiten-lowrank", 1.0 / math.sqrt(fvar),
                torch.as_tensor(u, dtype=dtype, device=device),
                torch.as_tensor(coef, dtype=dtype, device=device))
    cov = analysis.covariance([latent])
    w, v = np.linalg.eigh(cov)
    if w[0] <= 1e-12 * max(w[-1], 1e-300):
        raise _singular(analysis.model, latent, "its covariance is singular", how)
    inv_sqrt = (v / np.sqrt(w)[None, :]) @ v.T
    return ("whiten-dense", torch.as_tensor(inv_sqrt, dtype=dtype, device=device))


def _singular(model: ir.Model, latent: str, why: str, how: str) -> SpecError:
    v = model.variables.get(latent)
    return SpecError([Diagnostic("E0203", f"cannot {how} `{latent}`: {why}",
                                 v.span if v else None, "", "use --standardize none")])


def _standardized(st: tuple, z: torch.Tensor) -> torch.Tensor:
    """``z`` (n, size) through a standardiser of :func:`_standardizer`."""
    if st[0] == "none":
        return z
    if st[0] == "scale":
        return z * st[1]
    if st[0] == "whiten-lowrank":
        _, inv_sqrt_f, u, coef = st
        return z * inv_sqrt_f + ((z @ u) * coef) @ u.T
    return z @ st[1].T


def _compare(s: torch.Tensor, cmp: str, thr: float) -> torch.Tensor:
    return {">": s > thr, ">=": s >= thr, "<": s < thr, "<=": s <= thr}[cmp]


def _key(name: str) -> str:
    """A ModuleDict key for a modality name such as ``x[3]``."""
    return name.replace("[", "_").replace("]", "_").replace(".", "_")


def pmi_column(a: str, b: str) -> str:
    return f"pmi:{a};{b}"


class TupleStream(torch.utils.data.IterableDataset):
    """Fresh tuples on the fly for training without disk.

    Iterates over chunks ``start_chunk, start_chunk + 1, ...`` (split across
    DataLoader workers by chunk index), yielding one dict of tensors per sample;
    ``n=None`` streams forever. Deterministic in (sampler seed, chunk index).
    """

    def __init__(self, sampler: Sampler, n: int | None = None, start_chunk: int = 0):
        super().__init__()
        self.sampler, self.n, self.start_chunk = sampler, n, start_chunk

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, workers = (info.id, info.num_workers) if info else (0, 1)
        C = self.sampler.chunk_size
        c = self.start_chunk + wid
        produced = 0
        while True:
            first = (c - self.start_chunk) * C
            if self.n is not None and first >= self.n:
                return
            chunk = self.sampler._chunk(c)
            count = C if self.n is None else min(C, self.n - first)
            for i in range(count):
                yield {k: v[i] for k, v in chunk.items()}
                produced += 1
            c += workers


def compile_model(model: ir.Model, **kwargs) -> Sampler:
    """Compile a checked IR to a :class:`Sampler` (see its arguments)."""
    return Sampler(model, **kwargs)
