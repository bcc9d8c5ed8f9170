"""How good a learned class-conditional flow is, measured (issue 15, item 6).

- class consistency: an independent classifier's (:mod:`mmmi_dsl.flows.classifier`) accuracy on
  ``n`` generated samples per class, beside its accuracy on ``n`` real test images per class;
- a Fréchet distance in the classifier's feature space between the generated samples and as
  many real test images (the same classes, ``n`` each), beside the real-train vs real-test
  distance at the same sizes as the floor (the distance has a finite-sample bias of its own);
- the round trip ``|f^-1(f(z)) - z|`` (elementwise max and mean) per ODE solver, with its
  time and network evaluations, so a default solver is chosen by the round trip, then speed;
- throughput (samples per second through the flow's ``forward``) per thread count, each in a
  fresh process, beside the floor of the same network's evaluations timed alone in the same
  process, and that process's peak resident memory; on a GPU (``device="cuda"``) per batch size
  in the measuring process, timed between ``torch.cuda.synchronize()`` calls, with the peak of
  ``torch.cuda.max_memory_allocated``.

Latents are ``numpy.random.default_rng([seed, class]).standard_normal((n, d))`` (float32),
the standardised N(0, I) latent a spec's flow reads, so the numbers are the same on every run.
With ``device="cuda"`` the flows and the judge run on the GPU in IEEE float32 (no TF32), fed the
same numpy latents and handing back numpy arrays: the numbers match the CPU's up to rounding.
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from mmmi_dsl.flows.base import ieee_float32
from mmmi_dsl.flows.classifier import Classifier, predict, reference_data
from mmmi_dsl.flows.cnf import CNF


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """The squared Fréchet (2-Wasserstein) distance between N(mu1, cov1) and N(mu2, cov2).

    ``d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)``, the quantity FID
    reports. ``S1^1/2 S2 S1^1/2`` is symmetric positive semi-definite with the eigenvalues of
    ``S1 S2``, so the trace is the sum of the square roots of its eigenvalues (``eigh``; round-off
    negatives clipped to 0): no non-symmetric matrix square root, no complex parts to drop.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    w, v = scipy.linalg.eigh((cov1 + cov1.T) / 2)
    root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = root @ cov2 @ root
    ev = scipy.linalg.eigvalsh((m + m.T) / 2)
    diff = mu1 - mu2
    d2 = float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.sqrt(np.clip(ev, 0.0, None)).sum())
    return max(d2, 0.0)


def frechet_of(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`frechet_distance` between the Gaussians fitted to samples ``a`` (n, f) and ``b`` (m, f)
    (sample means, unbiased covariances)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


@dataclass(frozen=True)
class Solver:
    """An ODE solver setting of a cnf flow: fixed-step (``steps``) or adaptive (``rtol``, ``atol``)."""

    method: str = "rk4"
    steps: int = 32
    rtol: float = 1e-7
    atol: float = 1e-8
    grid_power: float = 1.0

    @property
    def adaptive(self) -> bool:
        from mmmi_dsl.builtins.flows import FIXED_STEP

        return self.method not in FIXED_STEP

    @property
    def label(self) -> str:
        if self.adaptive:
            return f"{self.method} (rtol {self.rtol:g}, atol {self.atol:g})"
        grid = "" if self.grid_power == 1.0 else f", grid power {self.grid_power:g}"
        return f"{self.method}, {self.steps} steps{grid}"

    def args(self) -> dict:
        return {"method": self.method, "steps": self.steps, "rtol": self.rtol, "atol": self.atol,
                "grid_power": self.grid_power}


def build(weights: Path, dim: int, label: int, solver: Solver, guidance: float = 0.0, device: str = "cpu") -> CNF:
    """The cnf flow of ``weights`` for class ``label`` at ``solver``, on ``device``."""
    return CNF(dim, weights=str(weights), guidance=guidance, **{"class": label}, **solver.args()).to(device)


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def latents(seed: int, label: int, n: int, dim: int) -> np.ndarray:
    """(n, dim) float32 standard-normal latents of one class; the first rows do not depend on n."""
    return np.random.default_rng([seed, label]).standard_normal((n, dim)).astype(np.float32)


class Counter:
    """Counts the velocity network's calls (a forward hook): network evaluations per integration."""

    def __init__(self, flow: CNF):
        self.calls = 0
        self.handle = flow.net.register_forward_hook(self.hook)

    def hook(self, *_):
        self.calls += 1


@torch.no_grad()
def run_flow(flow: CNF, x: np.ndarray, batch: int, inverse: bool = False) -> tuple[np.ndarray, float, float]:
    """(flow(x) or its inverse, seconds, network evaluations per batch) in batches of ``batch`` rows, on
    the flow's device (numpy in and out)."""
    counter = Counter(flow)
    device = next(flow.net.parameters()).device
    out, batches = [], 0
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        t = torch.from_numpy(x[i:i + batch]).to(device)
        out.append((flow.inverse(t) if inverse else flow(t)).cpu().numpy())
        batches += 1
    seconds = time.perf_counter() - start
    counter.handle.remove()
    return np.concatenate(out) if out else x[:0], seconds, counter.calls / max(batches, 1)


def first_of_each(y: np.ndarray, counts: dict[int, int]) -> np.ndarray:
    """Indices of the first ``counts[k]`` rows of each class ``k`` (fewer where a class has fewer)."""
    return np.concatenate([np.flatnonzero(y == k)[:m] for k, m in counts.items()])


@dataclass
class Report:
    """The measured quality of one weights file (every number a plain value; JSON as it stands)."""

    weights: str
    steps_done: int | None
    arch: str
    classifier: dict
    classes: list[int]
    class_names: list[str]
    n: int
    seed: int
    solver: str
    guidance: float
    consistency: list[float] = field(default_factory=list)
    real_accuracy: list[float] = field(default_factory=list)
    real_n: list[int] = field(default_factory=list)
    generate_seconds: float = 0.0
    frechet: float | None = None
    frechet_floor: float | None = None
    frechet_n: int = 0
    roundtrip: list[dict] = field(default_factory=list)
    throughput: list[dict] = field(default_factory=list)
    peak_rss_mib: float = 0.0
    seconds: dict = field(default_factory=dict)
    device: str = "cpu"
    device_info: dict = field(default_factory=dict)
    device_throughput: list[dict] = field(default_factory=list)
    peak_gpu_mib: float | None = None


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB: Linux's ``VmHWM`` (the high-water mark of this
    process image; ``ru_maxrss`` would also count the parent's before a spawn's exec), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


_JUDGES: dict[tuple[str, str], Classifier] = {}  # this process's judges, loaded once per device


def load_classifier_model(path, device: str = "cpu") -> Classifier:
    """The judge of ``path`` on ``device``, loaded once per process."""
    from mmmi_dsl.flows.classifier import load_classifier

    key = (str(path), str(device))
    if key not in _JUDGES:
        _JUDGES[key] = load_classifier(path)[0].to(device)
    return _JUDGES[key]


@dataclass(frozen=True, eq=False)
class Solve:
    """Rows of one class through its flow (``inverse`` False, from its seeded latents) or back (``x``).

    With ``cache`` (a folder) the result is kept in a file named by the SHA-256 of everything that
    decides it (the weights' bytes, class, solver, guidance, batch, device, the input, and the
    versions of mmmic, torch and torchdiffeq), so an interrupted measurement resumes where it
    stopped (on CUDA the key also holds torch's TF32 switches). The seconds and evaluations of a cached
    part are those measured when it was made.
    ``start``: the first of the class's seeded latents this job takes (rows ``start`` to
    ``start + rows``), so one class can be made in parts that are cached, and resumed, one by one.
    """

    weights: str
    dim: int
    label: int
    solver: Solver
    guidance: float
    seed: int
    rows: int
    batch: int
    inverse: bool = False
    x: np.ndarray | None = None
    cache: str | None = None
    device: str = "cpu"
    start: int = 0

    def input(self) -> np.ndarray:
        return self.x if self.inverse else latents(self.seed, self.label, self.start + self.rows, self.dim)[self.start:]

    def key(self, data: np.ndarray) -> str:
        import hashlib

        import torchdiffeq

        from mmmi_dsl.version import __version__

        h = hashlib.sha256(Path(self.weights).read_bytes())
        h.update(repr((self.label, self.solver, self.guidance, self.inverse, data.shape, self.batch, self.device,
                       __version__, torch.__version__, torchdiffeq.__version__)).encode())
        if torch.device(self.device).type == "cuda":  # TF32 or IEEE float32 (ieee_float32) decide the bits there
            h.update(repr((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)).encode())
        h.update(np.ascontiguousarray(data).tobytes())
        return h.hexdigest()[:24]


#: rows in one cached part of a class's samples, rounded down to whole batches (at least one batch):
#: :func:`measure_classes`
PART_ROWS = 128


def run_solve(job: Solve) -> tuple[np.ndarray, float, float]:
    """(output, seconds, network evaluations per batch) of ``job``, from its cache file when there is one."""
    data = job.input()
    path = Path(job.cache) / f"{'inverse' if job.inverse else 'forward'}-{job.label}-{job.key(data)}.npz" \
        if job.cache else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as f:
            return f["out"], float(f["seconds"]), float(f["nfe"])
    out, seconds, nfe = run_flow(build(Path(job.weights), job.dim, job.label, job.solver, job.guidance, job.device),
                                 data, job.batch, inverse=job.inverse)
    if path is not None:
        import io

        from mmmi_dsl.files import write_atomic

        buf = io.BytesIO()
        np.savez(buf, out=out, seconds=seconds, nfe=nfe)
        write_atomic(path, buf.getvalue())
    return out, seconds, nfe


def _worker_init(threads: int) -> None:
    """A spawned worker: ``threads`` torch threads, and the console's allocator settings (the same bits)."""
    from mmmi_dsl.process import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(threads)


def run_all(jobs: list[Solve], workers: int = 1) -> list[tuple[np.ndarray, float, float]]:
    """:func:`run_solve` of every job: here, or in ``workers`` spawned processes of one torch thread each
    (the same results, since every job is seeded apart)."""
    if workers <= 1 or len(jobs) <= 1:
        return [run_solve(j) for j in jobs]
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs)), initializer=_worker_init,
                                                   initargs=(1,)) as pool:
        return pool.map(run_solve, jobs, chunksize=1)


def measure_classes(report: Report, weights: Path, dim: int, classifier: Path, reference: str,
                    solver: Solver, batch: int, workers: int = 1, cache: str | None = None
                    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Class consistency and the Fréchet distances into ``report`` (on ``report.device``); returns
    {class: (z, x)} generated."""
    start = time.perf_counter()
    part = batch * max(1, PART_ROWS // batch)  # whole batches: the parts' batches are the whole class's
    jobs = [Solve(str(weights), dim, k, solver, report.guidance, report.seed, min(part, report.n - first), batch,
                  cache=cache, device=report.device, start=first)
            for k in report.classes for first in range(0, report.n, part)]
    done = run_all(jobs, workers)
    judge = load_classifier_model(classifier, report.device)
    generated, feats = {}, []
    for k in report.classes:
        x = np.concatenate([out for job, (out, _, _) in zip(jobs, done) if job.label == k])
        generated[k] = (latents(report.seed, k, report.n, dim), x)
        pred, f = predict(judge, x)
        report.consistency.append(float(np.mean(pred == k)))
        feats.append(f)
    report.generate_seconds = round(time.perf_counter() - start, 2)
    train, test = reference_data(reference)
    y_test = test.y[first_of_each(test.y, {k: report.n for k in report.classes})]
    pred_test, _ = predict(judge, test.x[first_of_each(test.y, {k: report.n for k in report.classes})])
    report.real_accuracy = [float(np.mean(pred_test[y_test == k] == k)) for k in report.classes]
    report.real_n = [int(np.sum(y_test == k)) for k in report.classes]
    # the Fréchet distance compares sets of one size and class balance: m_k of class k in all three
    counts = {k: min(report.n, int(np.sum(test.y == k)), int(np.sum(train.y == k))) for k in report.classes}
    f_gen = np.concatenate([f[:counts[k]] for k, f in zip(report.classes, feats)])
    report.frechet_n = len(f_gen)
    if len(f_gen) > 1:
        f_test = predict(judge, test.x[first_of_each(test.y, counts)])[1]
        f_train = predict(judge, train.x[first_of_each(train.y, counts)])[1]
        report.frechet = frechet_of(f_gen, f_test)
        report.frechet_floor = frechet_of(f_train, f_test)
    report.seconds["classes"] = round(time.perf_counter() - start, 2)
    return generated


def measure_roundtrip(report: Report, weights: Path, dim: int, solvers: list[Solver], n: int, batch: int,
                      generated: dict[int, tuple[np.ndarray, np.ndarray]] | None = None, workers: int = 1,
                      cache: str | None = None) -> None:
    """``|f^-1(f(z)) - z|`` over ``n`` latents spread over the classes, per solver, into ``report``.

    For the first solver (the one the samples were generated with) the generated samples are
    reused: only the inverse is run again.
    """
    start = time.perf_counter()
    per = max(1, math.ceil(n / len(report.classes)))
    for i, solver in enumerate(solvers):
        def job(k: int, **kw) -> Solve:
            return Solve(str(weights), dim, k, solver, report.guidance, report.seed, per, batch, cache=cache,
                         device=report.device, **kw)

        reuse = i == 0 and generated is not None and all(len(generated[k][1]) >= per for k in report.classes)
        forward = None if reuse else run_all([job(k) for k in report.classes], workers)
        xs = [generated[k][1][:per] for k in report.classes] if reuse else [f[0] for f in forward]
        back = run_all([job(k, inverse=True, x=x) for k, x in zip(report.classes, xs)], workers)
        err = np.concatenate([np.abs(zr.astype(np.float64) - latents(report.seed, k, per, dim))
                              for k, (zr, _, _) in zip(report.classes, back)])
        count = len(err)
        fwd_s = None if forward is None else sum(f[1] for f in forward) / count
        report.roundtrip.append({
            "solver": solver.label, **solver.args(), "n": count, "max": float(err.max()), "mean": float(err.mean()),
            "forward_s_per_sample": fwd_s,
            "inverse_s_per_sample": sum(b[1] for b in back) / count,
            "nfe_forward": None if forward is None else float(np.mean([f[2] for f in forward])),
            "nfe_inverse": float(np.mean([b[2] for b in back]))})
    report.seconds["roundtrip"] = round(time.perf_counter() - start, 2)


def throughput_child(weights: str, dim: int, label: int, solver: Solver, guidance: float, batch: int,
                     threads: int, floor_evals: int) -> dict:
    """Samples per second of one batch through the flow, beside the floor of its network timed alone.

    Runs in a fresh process (spawned) so that its peak memory is its own. The floor is the
    time of ``nfe`` network evaluations on the same batch, each timed alone (median of
    ``floor_evals``, after one warm-up evaluation that also warms the flow): what the ODE solver
    costs beyond the network is the gap. It keeps freed memory as the console does (:func:`_worker_init`).
    """
    _worker_init(threads)
    flow = build(Path(weights), dim, label, solver, guidance)
    z = latents(0, label, batch, dim)
    rss_before = peak_rss_mib()
    rows = 2 * batch if guidance else batch  # guidance evaluates the batch and its null-class copy at once
    xt = torch.from_numpy(np.concatenate([z, z]) if guidance else z)
    c = torch.full((rows,), label, dtype=torch.long)
    times = []
    with torch.no_grad():
        for j in range(floor_evals + 1):  # the first (warm-up) evaluation is not counted
            t0 = time.perf_counter()
            flow.net(xt, torch.tensor(j / max(floor_evals, 1)), c)
            times.append(time.perf_counter() - t0)
    _, seconds, nfe = run_flow(flow, z, batch)
    per_eval = float(np.median(times[1:]))
    floor_s = nfe * per_eval
    return {"threads": threads, "batch": batch, "samples_per_s": batch / seconds, "nfe": nfe,
            "net_eval_s": per_eval, "floor_samples_per_s": batch / floor_s, "fraction_of_floor": floor_s / seconds,
            "peak_rss_mib": peak_rss_mib(), "rss_before_mib": rss_before}


def measure_throughput(report: Report, weights: Path, dim: int, solver: Solver, batch: int,
                       threads: list[int], floor_evals: int = 8) -> None:
    """:func:`throughput_child` for each thread count, each in a fresh spawned process, into ``report``."""
    import multiprocessing

    start = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    for t in threads:
        with ctx.Pool(1) as pool:
            report.throughput.append(pool.apply(throughput_child, (str(weights), dim, report.classes[0], solver,
                                                                   report.guidance, batch, t, floor_evals)))
    report.seconds["throughput"] = round(time.perf_counter() - start, 2)


@torch.no_grad()
def device_throughput(flow: CNF, dim: int, batch: int, floor_evals: int = 8) -> dict:
    """Samples per second of one batch through ``flow`` on its own device, in this process, beside the
    floor of its network's evaluations timed alone (median of ``floor_evals`` after a warm-up), each
    timing between synchronisations of the device; on CUDA also the peak memory allocated while it ran
    (``torch.cuda.max_memory_allocated``, reset first)."""
    device = next(flow.net.parameters()).device
    cuda = device.type == "cuda"
    z = torch.from_numpy(latents(0, flow.label, batch, dim)).to(device)
    rows = 2 * batch if flow.guidance else batch
    xt = torch.cat([z, z]) if flow.guidance else z
    c = torch.full((rows,), flow.label, dtype=torch.long, device=device)
    if cuda:
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) / 2**20 if cuda else None
    times = []
    for j in range(floor_evals + 1):  # the first (warm-up) evaluation is not counted
        t = torch.tensor(j / max(floor_evals, 1), device=device)
        synchronize(device)
        t0 = time.perf_counter()
        flow.net(xt, t, c)
        synchronize(device)
        times.append(time.perf_counter() - t0)
    counter = Counter(flow)
    synchronize(device)
    t0 = time.perf_counter()
    flow(z)
    synchronize(device)
    seconds = time.perf_counter() - t0
    counter.handle.remove()
    per_eval = float(np.median(times[1:]))
    floor_s = counter.calls * per_eval
    return {"device": str(device), "batch": batch, "samples_per_s": batch / seconds, "nfe": counter.calls,
            "seconds": seconds, "net_eval_s": per_eval, "floor_samples_per_s": batch / floor_s,
            "fraction_of_floor": floor_s / seconds,
            "peak_gpu_mib": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
            "gpu_mib_before": before}


def measure_device_throughput(report: Report, weights: Path, dim: int, solver: Solver, batches: list[int],
                              floor_evals: int = 8, on_row=None) -> None:
    """:func:`device_throughput` of the first class's flow on ``report.device`` at each batch size, into
    ``report`` (one flow, warmed by the first batch's floor); ``on_row(report)`` after each."""
    start = time.perf_counter()
    flow = build(weights, dim, report.classes[0], solver, report.guidance, report.device)
    for b in batches:
        report.device_throughput.append(device_throughput(flow, dim, b, floor_evals))
        report.seconds["device_throughput"] = round(time.perf_counter() - start, 2)
        if on_row is not None:
            on_row(report)


def device_info(device: str) -> dict:
    """What the measuring device is: its name, torch's and CUDA's versions, the float32 mode."""
    info = {"device": device, "torch": torch.__version__}
    if torch.device(device).type == "cuda":
        info.update({"name": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
                     "memory_mib": round(torch.cuda.get_device_properties(device).total_memory / 2**20),
                     "float32": "tf32" if torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32
                     else "ieee (no TF32)"})
    return info


def assess(weights, classifier_path, *, classes: list[int] | None = None, n: int = 1000,
           roundtrip_n: int = 1000, solvers: list[Solver] | None = None, threads: list[int] | None = None,
           batch: int = 256, throughput_batch: int = 256, seed: int = 0, guidance: float = 0.0,
           workers: int = 1, cache: str | Path | None = None, device: str = "cpu",
           device_batches: list[int] | None = None, on_part=None, log=None) -> Report:
    """Every measurement of this module on one weights file, judged by one classifier file.

    ``solvers[0]`` generates the samples (default: ``cnf``'s own, rk4 with 32 uniform steps; the
    script's ``default`` gives a shipped flow's);
    ``roundtrip_n = 0`` or ``threads = []`` skip those parts. Runs with the calling process's
    torch thread count, except the throughput children and ``workers`` > 1 (the classes generated in
    that many processes of one thread each). ``cache``: a folder keeping every class's samples and
    inverses as they are made (:class:`Solve`), so a rerun of an interrupted measurement resumes.
    ``device``: where the flows and the judge run (``cuda``: in IEEE float32, ``workers`` must be 1);
    ``device_batches``: batch sizes of :func:`measure_device_throughput` there (None or []: skipped).
    ``on_part(report)`` is called after each part (classes, round trip, each throughput), so a caller
    can keep what is done when a later part fails.
    """
    from mmmi_dsl.builtins import weights as weight_files
    from mmmi_dsl.flows.classifier import load_classifier, reference_kind

    start = time.perf_counter()
    device = str(device)
    if min(n, batch, throughput_batch, workers) < 1 or roundtrip_n < 0:
        raise ValueError(f"n, batch, throughput_batch and workers must be at least 1 and roundtrip_n at least 0 "
                         f"(got {n}, {batch}, {throughput_batch}, {workers}, {roundtrip_n})")
    if torch.device(device).type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: torch sees no CUDA device")
        if workers > 1:
            raise ValueError("workers > 1 run on the CPU; on a GPU use workers = 1")
        ieee_float32()
    info = weight_files.inspect(weights)
    model, record = load_classifier(classifier_path)
    _JUDGES[(str(classifier_path), device)] = model.to(device)
    if math.prod(model.shape) != info.dim:
        raise ValueError(f"the classifier judges images of {'x'.join(map(str, model.shape))} = "
                         f"{math.prod(model.shape)} values, the flow makes {info.dim}")
    classes = list(range(info.n_classes)) if classes is None else list(dict.fromkeys(int(k) for k in classes))
    if not classes:
        raise ValueError("no classes to measure")
    bad = [k for k in classes if not 0 <= k < min(info.n_classes, int(record["config"]["n_classes"]))]
    if bad:
        raise ValueError(f"class {bad[0]} is not one of the flow's and classifier's classes")
    solvers = solvers or [Solver()]
    names = info.config.get("classes") or record.get("classes") or [str(k) for k in range(info.n_classes)]
    report = Report(weights=str(info.path), steps_done=info.config.get("steps_done"),
                    arch=weight_files.arch(info.config),
                    classifier={"path": str(classifier_path), "test_accuracy": record.get("test_accuracy"),
                                "features": record["config"]["features"], "command": record.get("command")},
                    classes=classes, class_names=[str(names[k]) for k in classes], n=n, seed=seed,
                    solver=solvers[0].label, guidance=guidance, device=device, device_info=device_info(device))
    say = log or (lambda _line: None)
    done = on_part or (lambda _report: None)
    cuda = torch.device(device).type == "cuda"
    say(f"generating {n} samples for each of {len(classes)} classes ({solvers[0].label})")
    cache = None if cache is None else str(cache)
    generated = measure_classes(report, info.path, info.dim, classifier_path, reference_kind(record), solvers[0],
                                batch, workers, cache)
    done(report)
    if roundtrip_n:
        say(f"round trip over {roundtrip_n} latents for {len(solvers)} solver(s)")
        measure_roundtrip(report, info.path, info.dim, solvers, roundtrip_n, batch, generated, workers, cache)
        done(report)
    if cuda:  # before the throughput's own peaks reset the counter
        report.peak_gpu_mib = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    if threads:
        say(f"throughput at {', '.join(map(str, threads))} thread(s), batch {throughput_batch}")
        measure_throughput(report, info.path, info.dim, solvers[0], throughput_batch, threads)
        done(report)
    if device_batches:
        say(f"throughput on {device} at batch {', '.join(map(str, device_batches))}")
        measure_device_throughput(report, info.path, info.dim, solvers[0], device_batches, on_row=done)
    report.peak_rss_mib = round(peak_rss_mib(), 1)
    report.seconds["total"] = round(time.perf_counter() - start, 2)
    done(report)
    return report
