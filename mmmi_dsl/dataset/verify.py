"""Checking a dataset directory: the files against the manifest, then the data against the exact MI.

:func:`verify` returns a :class:`VerifyReport`, data; its ``lines`` are for printing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from mmmi_dsl.dataset.format import FORMAT, MANIFEST, DatasetError, read_manifest, shard_count, shard_rows
from mmmi_dsl.dataset.oracle import DIRECTION_SIGMAS, MIN_SUBSAMPLE, SUBSAMPLE, FlowMismatch, Recovery
from mmmi_dsl.dataset.spec_files import copied_names, file_problems
from mmmi_dsl.dataset.stats import MI_BATCHES, batch_moments, covariance, gaussian_mi, plain_pair, plugin_bias
from mmmi_dsl.dataset.writer import run_to_resume
from mmmi_dsl.files import sha256_file
from mmmi_dsl.lang.laws import first_non_gaussian

MAX_PLUGIN_DIM = 512     # p + q above this: no plug-in check
MIN_ROWS_PER_DIM = 5     # each batch needs at least 5 (p + q) samples
MI_SIGMAS = 5.0
MAX_LINES = 20           # problems of one kind listed before "... and k more"


@dataclass(frozen=True)
class MICheck:
    """The test of one ``I(a; b)`` against the data: |plugin - bias - exact| <= tolerance (nats).

    ``method`` ``plug-in``: the Gaussian plug-in MI of saved Gaussian arrays, all n samples;
    ``se`` from MI_BATCHES batch means; ``tolerance`` = MI_SIGMAS se + 1e-3 (1 + |exact|).
    ``method`` ``directions``: the flows inverted on a subsample of ``n`` of ``total``
    tuples, the information tested through the model's canonical directions
    (:mod:`~mmmi_dsl.dataset.oracle`); ``tolerance`` = DIRECTION_SIGMAS se + 1e-3 (1 + |exact|).
    ``p``, ``q``: flattened columns of the two sides; ``how``: what was read or inverted;
    ``correlations``: the directions' exact canonical correlations.
    """

    query: str
    plugin: float
    bias: float
    exact: float
    se: float
    tolerance: float
    n: int
    p: int
    q: int
    method: Literal["plug-in", "directions"] = "plug-in"
    how: str = ""
    total: int = 0
    correlations: tuple[float, ...] = ()

    @property
    def estimate(self) -> float:
        return self.plugin - self.bias

    @property
    def diff(self) -> float:
        return self.estimate - self.exact

    @property
    def ok(self) -> bool:
        return abs(self.diff) <= self.tolerance

    def describe(self) -> str:
        if self.method == "directions":
            rho = ", ".join(f"{r:.3f}" for r in self.correlations[:4]) + (", ..." if len(self.correlations) > 4 else "")
            return (f"{self.query}: {self.how}, on {self.n:,} of {self.total:,} tuples (seeded); "
                    f"{len(self.correlations)} canonical pair(s) of the exact covariance (rho {rho}): "
                    f"{self.plugin:.4f} - bias {self.bias:.4f} = {self.estimate:.4f} +- {self.se:.4f} nats vs "
                    f"exact {self.exact:.4f} (diff {self.diff:+.4f}, allowed {self.tolerance:.4f} = "
                    f"{DIRECTION_SIGMAS:g} SE + slack; p={self.p}, q={self.q})")
        return (f"{self.query}: plug-in {self.plugin:.4f} - bias {self.bias:.4f} = {self.estimate:.4f} nats vs "
                f"exact {self.exact:.4f} (diff {self.diff:+.4f}, allowed {self.tolerance:.4f} = 5 SE + slack, "
                f"SE {self.se:.4f}; n={self.n}, p={self.p}, q={self.q})")


@dataclass(frozen=True)
class Finding:
    """One thing verify found: ``ok``, ``FAIL``, ``skip`` or ``incomplete``, with what (and the numbers
    of an MI check)."""

    status: Literal["ok", "FAIL", "skip", "incomplete"]
    message: str
    mi: MICheck | None = None

    def line(self) -> str:
        return f"{self.status}: {self.message}"


@dataclass
class VerifyReport:
    """What :func:`verify` found; ``lines`` are meant to be printed."""

    ok: bool = True
    incomplete: bool = False
    findings: list[Finding] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        """The findings as printable lines, each starting with ``ok:``, ``FAIL:``, ``skip:`` or ``incomplete:``."""
        return [f.line() for f in self.findings]

    def add(self, status: Literal["ok", "skip"], message: str, mi: MICheck | None = None) -> None:
        self.findings.append(Finding(status, message, mi))

    def mark_incomplete(self, message: str) -> None:
        """A run that is not finished (resume or merge it), not a corrupt one."""
        self.ok, self.incomplete = False, True
        self.findings.append(Finding("incomplete", message))

    def fail(self, problems: list[str], mi: MICheck | None = None) -> None:
        """Record problems (at most MAX_LINES listed)."""
        if problems:
            self.ok = False
            self.findings += [Finding("FAIL", p, mi) for p in problems[:MAX_LINES]]
            if len(problems) > MAX_LINES:
                self.findings.append(Finding("FAIL", f"... and {len(problems) - MAX_LINES} more"))


def verify(path: str | Path, subsample: int = SUBSAMPLE, data: bool = True) -> VerifyReport:
    """Check a dataset directory: files, then (``data``) the data against the exact MI.

    ``subsample``: at most this many tuples have their flows inverted (a learned image flow
    costs an ODE solve per tuple; fewer tuples give a weaker test, never a false pass).

    Files: format, every shard 0..S-1 listed exactly once with its rows (so the total is
    n), each file's size, ``.npy`` header (shape, dtype) and sha256, the complete flag. A
    killed run whose written shards are intact is ``incomplete`` (resume it), not corrupt.
    Data (only when the files are intact, and ``data``): see :func:`_check_mi`.
    """
    if isinstance(subsample, bool) or not isinstance(subsample, int) or subsample < MIN_SUBSAMPLE:
        raise ValueError(f"subsample {subsample!r}: must be an integer >= {MIN_SUBSAMPLE}")
    root = Path(path)
    report = VerifyReport()
    if not (root / MANIFEST).is_file():
        parts = sorted(root.glob("manifest.part-*-of-*.json"))
        if parts:
            report.mark_incomplete(f"no {MANIFEST} but {len(parts)} part manifests; merge them")
        elif run_to_resume(root):
            report.mark_incomplete(f"no {MANIFEST} yet, only the temp files of a generate run killed "
                                  "before it recorded anything; rerun the same command to resume")
        else:
            report.fail([f"no {MANIFEST} in {root}"])
        return report
    try:
        manifest = read_manifest(root / MANIFEST)
    except DatasetError as err:
        report.fail([str(err)])
        return report
    if manifest["format"] != FORMAT:
        report.fail([f"format is {manifest['format']!r}, expected {FORMAT!r}"])
        return report
    _check_listing(manifest, report)
    _check_files(root, manifest, report)
    if report.ok and data:
        _check_mi(root, manifest, report, subsample)
    return report


def _check_listing(manifest: dict, report: VerifyReport) -> None:
    """Every shard listed once with its rows; the complete flag agrees."""
    n_shards = shard_count(manifest["n"], manifest["shard_size"])
    seen: dict[int, int] = {}
    problems = []
    for s in manifest["shards"]:
        i = s["index"]
        seen[i] = seen.get(i, 0) + 1
        if not isinstance(i, int) or not 0 <= i < n_shards:
            problems.append(f"shard index {i!r} is outside 0..{n_shards - 1}")
        elif (s["start"], s["start"] + s["n"]) != shard_rows(manifest, i):
            problems.append(f"shard {i} covers samples [{s['start']}, {s['start'] + s['n']}), "
                            f"expected {list(shard_rows(manifest, i))}")
    problems += [f"shard {i} is listed {c} times" for i, c in seen.items() if c > 1]
    missing = [i for i in range(n_shards) if i not in seen]
    if manifest["complete"] and missing:
        problems.append(f"the manifest says complete but shards {_ranges(missing)} are missing")
    elif not manifest["complete"]:
        report.mark_incomplete(f"{n_shards - len(missing)} of {n_shards} shards written "
                               f"(missing {_ranges(missing) or 'none'}); rerun the same command to resume")
    report.fail(problems)


def _ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2, 5``."""
    out, i = [], 0
    while i < len(indices):
        j = i
        while j + 1 < len(indices) and indices[j + 1] == indices[j] + 1:
            j += 1
        out.append(str(indices[i]) if i == j else f"{indices[i]}-{indices[j]}")
        i = j + 1
    return ", ".join(out)


def _check_files(root: Path, manifest: dict, report: VerifyReport) -> None:
    """Size, header and sha256 of every listed file."""
    problems = []
    count = 0
    for s in manifest["shards"]:
        for var, rel in s["files"].items():
            count += 1
            problem = _file_problem(root / rel, manifest["variables"].get(var), s, var)
            if problem:
                problems.append(f"{rel}: {problem}")
    recorded = manifest["fingerprint"].get("files", {})
    spec_problems = file_problems(root, recorded)
    report.fail(problems + spec_problems)
    if not problems:
        rows = sum(s["n"] for s in manifest["shards"])
        report.add("ok", f"{len(manifest['shards'])} shards, {rows} samples, "
                         f"{len(manifest['variables'])} variables; sizes, headers and sha256 of {count} files match")
    kept = copied_names(recorded)
    if kept and not spec_problems:
        listed = ", ".join(kept[:4]) + (f" and {len(kept) - 4} more" if len(kept) > 4 else "")
        report.add("ok", f"the spec's {len(kept)} data file{'s' if len(kept) > 1 else ''} ({listed}): "
                         "sha256 as recorded")


def _file_problem(path: Path, spec: dict | None, shard: dict, var: str) -> str | None:
    """What is wrong with one shard file, or None."""
    if spec is None:
        return f"variable `{var}` is not in the manifest's variables"
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != shard["bytes"][var]:
        return f"size {size} bytes, the manifest says {shard['bytes'][var]} (truncated or rewritten)"
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
        except ValueError as err:
            return f"not a .npy file ({err})"
        expected = (shard["n"], *spec["shape"])
        if shape != expected or dtype != np.dtype(spec["dtype"]) or fortran:
            order = " (Fortran order)" if fortran else ""
            return f"header says {dtype}{list(shape)}{order}, expected {spec['dtype']}{list(expected)}"
        if f.tell() + math.prod(shape) * dtype.itemsize != size:
            return f"size {size} bytes does not match its header"
    if sha256_file(path) != shard["sha256"][var]:
        return "sha256 differs from the manifest (corrupted)"
    return None




def _check_mi(root: Path, manifest: dict, report: VerifyReport, subsample: int = SUBSAMPLE) -> None:
    """Compare the data with each exact ``I(a; b)`` of the manifest.

    Where both sides are saved Gaussian arrays (``manifest["gaussian_arrays"]`` maps query
    names to them) and n >= MI_BATCHES MIN_ROWS_PER_DIM (p + q): the Gaussian plug-in MI of
    all samples minus :func:`plugin_bias`, its standard error SE from MI_BATCHES batch
    means; pass: ``|estimate - exact| <= 5 SE + 1e-3 (1 + |exact|)``. Otherwise the model is
    rebuilt from the manifest, its flows inverted on a subsample and the information tested
    through its canonical directions (:mod:`~mmmi_dsl.dataset.oracle`), at any n.
    """
    arrays = manifest.get("gaussian_arrays", {})
    n = manifest["n"]
    recovery: list = []  # built on first use: [Recovery] or [the reason it cannot be]
    for result in manifest.get("mi", []):
        query = result["query"]
        sides = plain_pair(query)
        if sides is None:
            report.add("skip", f"{query}: only unconditional I(a; b) is checked against data")
            continue
        if not isinstance(result.get("nats"), (int, float)) or not math.isfinite(result["nats"]):
            report.add("skip", f"{query}: the exact value is {result.get('nats')}")
            continue
        unmapped = [x for x in sides[0] + sides[1] if arrays.get(x) not in manifest["variables"]]
        a, b = ([arrays.get(x) for x in side] for side in sides)
        if unmapped:
            why = f"no saved Gaussian array for `{unmapped[0]}`"
        elif set(a) & set(b):
            why = "both sides use the same saved array"
        else:
            p, q = (sum(math.prod(manifest["variables"][v]["shape"]) for v in side) for side in (a, b))
            why = (f"p + q = {p + q} dimensions for {n} samples; the plug-in check needs p + q <= {MAX_PLUGIN_DIM} "
                   f"and n >= {MI_BATCHES * MIN_ROWS_PER_DIM} (p + q)")
            if p + q <= MAX_PLUGIN_DIM and n >= MI_BATCHES * MIN_ROWS_PER_DIM * (p + q):
                _check_one(root, manifest, query, float(result["nats"]), a + b, p, report)
                continue
        _check_directions(root, manifest, query, float(result["nats"]), sides, why, recovery, report, subsample)


def _check_directions(root: Path, manifest: dict, query: str, exact: float, sides, why: str, recovery: list,
                      report: VerifyReport, subsample: int = SUBSAMPLE) -> None:
    """The test through the model's canonical directions; a skip saying ``why`` not when it cannot run."""
    if not recovery:
        try:
            recovery.append(Recovery(root, manifest, subsample))
        except DatasetError as err:
            recovery.append(str(err))
    if isinstance(recovery[0], str):
        report.add("skip", f"{query}: {why}, and {recovery[0]}")
        return
    rec: Recovery = recovery[0]
    other = first_non_gaussian(rec.model, sides[0] + sides[1])
    if other is not None:
        report.add("skip", f"{query}: `{other}` is Student-t or built from uniform noise; the data are checked "
                           "through Gaussian statistics only (mmmic estimate --estimator ksg compares them)")
        return
    if set(sides[0]) & set(sides[1]):
        report.add("skip", f"{query}: both sides share a variable")
        return
    try:
        test, spec_exact, how = rec.test(sides)
    except FlowMismatch as err:  # the data may be fine, but nothing here can map them back: not a pass
        report.fail([f"{query}: cannot invert its flows: {err}"])
        return
    except DatasetError as err:
        report.add("skip", f"{query}: {why}; {err}")
        return
    if not test.correlations:
        report.add("skip", f"{query}: exact value {exact:.4g}: no direction carries information, "
                           "and independence in every direction is not tested at this size")
        return
    if abs(spec_exact - exact) > 1e-6 * (1 + abs(exact)):
        report.fail([f"{query}: the manifest records {exact!r} nats, its spec gives {spec_exact!r}"])
        return
    p, q = (sum(rec.model.size_of(v) for v in side) for side in sides)
    check = MICheck(query=query, plugin=test.plugin, bias=test.bias, exact=exact, se=test.se,
                    tolerance=DIRECTION_SIGMAS * test.se + 1e-3 * (1 + abs(exact)), n=test.m, p=p, q=q,
                    method="directions", how=f"{how} ({rec.note})" if rec.note else how, total=manifest["n"],
                    correlations=test.correlations)
    if check.ok:
        report.add("ok", check.describe(), check)
    else:
        report.fail([check.describe()], check)


def _check_one(root: Path, manifest: dict, query: str, exact: float, names: list[str], p: int,
               report: VerifyReport) -> None:
    """The plug-in test of one query.

    Args:
        names: the saved arrays of side a, then of side b.
        p: the number of columns (flattened) of side a.
    """
    counts, sums, cross = batch_moments(root, manifest, names)
    d = sums.shape[1]
    try:
        full = gaussian_mi(covariance(counts.sum(), sums.sum(0), cross.sum(0)), p)
        means = [gaussian_mi(covariance(c, s, x), p) - plugin_bias(p, d - p, int(c))
                 for c, s, x in zip(counts, sums, cross)]
    except np.linalg.LinAlgError:
        report.add("skip", f"{query}: the sample covariance is singular")
        return
    n = int(counts.sum())
    bias = plugin_bias(p, d - p, n)
    se = float(np.std(means, ddof=1) / math.sqrt(len(means)))
    check = MICheck(query=query, plugin=full, bias=bias, exact=exact, se=se,
                    tolerance=MI_SIGMAS * se + 1e-3 * (1 + abs(exact)), n=n, p=p, q=d - p)
    if check.ok:
        report.add("ok", check.describe(), check)
    else:
        report.fail([check.describe()], check)
