"""The estimator benchmark (``mmmic bench-estimators``): estimated against exact MI.

For each target MI ``t_i`` the free parameter is solved exactly
(:func:`mmmi_dsl.mi.solve.sweep_targets`), a dataset of ``n`` tuples is generated with
:func:`mmmi_dsl.dataset.generate.generate_dataset` (seed ``seed + i``), and every estimator reads
``I(a; b)`` from it. Per estimator, over the targets it did not fail on:

    correlation = Pearson r(estimate_i, exact_i)
    RMSE        = sqrt(mean_i (estimate_i - exact_i)^2)                       ("rmse")
    RMSE of fit = sqrt(mean_i (estimate_i - (a + b exact_i))^2)               ("regression_rmse")
    bias        = mean_i (estimate_i - exact_i)

where ``a + b exact`` is the least-squares line of the estimates on the exact MI
("regression_intercept", "regression_slope"). The RMSE of fit is the paper's RMSE
(arXiv:2510.21686, docs/paper.md): it measures the scatter about that line only, so an
estimator that is off by a constant or a factor can still score near 0; the RMSE is the
error against the exact MI itself.

Everything lands in ``DIR``: one dataset per target (``DIR/t00``, ...), ``results.json``
(every estimate, written after each one, so an interrupted run resumes where it
stopped), ``results.md`` (the tables) and ``plot.png`` (estimate against exact MI, one
panel per estimator).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mmmi_dsl import ir
from mmmi_dsl.errors import UsageError

DEFAULT_ESTIMATORS = ("gaussian", "ksg", "dv", "mine", "nwj", "infonce", "js",
                      "smile:tau=1", "smile:tau=5", "smile:tau=inf")
RESULTS = "results.json"
ORACLE = "oracle:f^-1+gaussian"  # not an estimator: it inverts the known flows (a check of the data)


@dataclass(frozen=True)
class EstimatorConfig:
    """One column of the benchmark: a label (``smile:tau=5``), an estimator name and its options."""

    label: str
    name: str
    options: tuple[tuple[str, bool | float | int | str], ...] = ()


def default_pair(model: ir.Model) -> str | None:
    """The first report ``I(a; b)`` of two modalities; else the first two modalities; None if there are
    fewer than two."""
    for q in model.reports:
        if not q.given and len(q.groups) == 2 and all(len(g) == 1 and g[0] in model.flows for g in q.groups):
            return f"I({q.groups[0][0]}; {q.groups[1][0]})"
    names = list(model.flows)
    if len(names) < 2:
        return None
    return f"I({names[0]}; {names[1]})"


def run_benchmark(model: ir.Model, param: str, query: str, targets: Sequence[float], n: int, out: Path, *,
                  estimators: Sequence[EstimatorConfig], seed: int = 0, device: str = "cpu",
                  threads: int = 1, max_steps: int | None = None, bracket: tuple | None = None,
                  oracle: bool = False, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the benchmark; returns the results (also written to ``out/results.json``).

    ``oracle`` adds the column :data:`ORACLE`: the modalities are mapped back through
    their own flows and the Gaussian plug-in reads the MI of the recovered latents. It
    is not an estimator (it knows the flows); it checks that the files hold the exact MI.
    """
    import torch

    from mmmi_dsl.backend import Sampler
    from mmmi_dsl.dataset import load_arrays
    from mmmi_dsl.estimators import EstimatorError, estimate

    q, pair, rows = solve_family(model, param, query, targets, bracket)
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    key = {"model": model.name, "spec_sha256": spec_hash(model), "values": model.env(), "param": param,
           "query": q.text, "targets": [float(t) for t in targets], "n": n, "seed": seed, "max_steps": max_steps}
    results = open_results(out / RESULTS, key, "mmmic-bench-estimators/1", _valid_point)
    points = results["points"]
    for i, row in enumerate(rows):
        point = points[i] if i < len(points) else None
        if point is None:
            point = {"target": float(row.target), "value": row.value, "exact": row.results[0].nats,
                     "dataset": f"t{i:02d}", "seed": seed + i, "estimates": {}}
            points.append(point)
        directory = out / point["dataset"]
        columns = [*estimators, *([EstimatorConfig(ORACLE, "gaussian")] if oracle else [])]
        missing = [c for c in columns if c.label not in point["estimates"]]
        if not missing:
            continue
        seconds = generate_point(model.with_params({param: row.value}), directory, n, seed=seed + i, device=device,
                                 progress=progress)
        point.setdefault("generate_seconds", seconds)
        x, y = (np.asarray(load_arrays(directory, name)) for name in pair)
        for config in missing:
            options = dict(config.options)
            if config.name not in ("gaussian", "ksg"):
                options.setdefault("threads", threads)
                if max_steps is not None:
                    options.setdefault("max_steps", max_steps)
            start = time.perf_counter()
            try:
                if config.label == ORACLE:
                    sampler = Sampler(model.with_params({param: row.value}), device=device)
                    est = estimate("gaussian", *(sampler.invert(name, a) if name in model.flows else a
                                                 for name, a in zip(pair, (x, y))))
                else:
                    est = estimate(config.name, x, y, seed=seed, device=device, **options)
                entry = {"nats": est.nats, "stderr": est.stderr}
            except EstimatorError as err:
                entry = {"nats": None, "stderr": None, "error": str(err)}
            entry["seconds"] = time.perf_counter() - start
            point["estimates"][config.label] = entry
            write_results(out / RESULTS, results)
            shown = f"{entry['nats']:.4f}" if entry["nats"] is not None else "failed"
            log(f"[{i + 1}/{len(rows)}] exact {point['exact']:.4f}  {config.label:<14} {shown}  "
                f"({entry['seconds']:.1f} s)")
    labels = [c.label for c in estimators] + ([ORACLE] if oracle else [])
    results["summary"] = summarize(points, labels)
    write_results(out / RESULTS, results)
    (out / "results.md").write_text(results_markdown(results, labels), encoding="utf-8")
    plot_results(results, labels, out / "plot.png")
    return results


def solve_family(model: ir.Model, param: str, query: str, targets: Sequence[float], bracket: tuple | None = None):
    """The family a benchmark runs on: ``query`` (a plain ``I(a; b)`` of two modalities or targets)
    resolved, and ``param`` solved for each target value of it.

    Returns:
        ``(q, (a, b), rows)``: the :class:`ir.Query`, its two names and one
        :func:`mmmi_dsl.mi.sweep.sweep_targets` row per target (``.target``, ``.value``, ``.results``).
    """
    from mmmi_dsl.estimators.saved import parse_pair
    from mmmi_dsl.mi.solve import resolve_with_unit
    from mmmi_dsl.mi.sweep import sweep_targets

    pair = parse_pair(query)
    if pair is None:
        raise UsageError(f"query {query!r}: give a plain \"I(a; b)\" of two variables")
    for name in pair:
        if name not in model.flows and name not in model.targets:
            raise UsageError(f"query {query!r}: `{name}` is not a modality or target of {model.name}")
    q = resolve_with_unit(model, query)
    rows = sweep_targets(model, param, q, targets, bracket, q.unit, sources={"--query": query})
    return q, pair, rows


def generate_point(model: ir.Model, directory: Path, n: int, *, seed: int, device: str, progress: bool) -> float:
    """Generate (or resume) one dataset of the family; returns the seconds it took."""
    from mmmi_dsl.dataset.generate import generate_dataset

    start = time.perf_counter()
    generate_dataset(model, directory, n, seed=seed, device=device, progress=progress)
    return time.perf_counter() - start


def spec_hash(model: ir.Model) -> str:
    """SHA-256 of the spec file's bytes (of the IR's JSON where there is no file)."""
    path = Path(model.source_file) if model.source_file else None
    text = path.read_bytes() if path and path.is_file() else model.model_dump_json().encode()
    return hashlib.sha256(text).hexdigest()


def open_results(path: Path, key: dict, fmt: str, valid: Callable[[object], bool]) -> dict:
    """The results so far in ``path`` if they are of this benchmark (same ``key``, every point
    ``valid``); fresh ones ``{"format": fmt, "key": key, "points": []}`` if there are none."""
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and old.get("key") == key and isinstance(old.get("points"), list):
            if all(valid(p) for p in old["points"]):
                return old
            raise UsageError(f"{path} is damaged (a point lacks its numbers); delete it to start over")
        if old is not None:
            raise UsageError(f"{path.parent} holds a different benchmark (other spec, values, targets, n or seed); "
                             "give another -o DIR or delete it")
    return {"format": fmt, "key": key, "points": []}


def _valid_point(p) -> bool:
    """A point of results.json as :func:`run_benchmark` writes it."""
    number = (int, float)
    return (isinstance(p, dict) and all(isinstance(p.get(k), number) for k in ("target", "value", "exact", "seed"))
            and isinstance(p.get("dataset"), str) and isinstance(p.get("estimates"), dict)
            and all(isinstance(e, dict) and isinstance(e.get("seconds"), number)
                    and (e.get("nats") is None or isinstance(e.get("nats"), number))
                    for e in p["estimates"].values()))


def write_results(path: Path, results: dict) -> None:
    """Write ``results`` to ``path`` as indented JSON, atomically (a crash leaves the old file)."""
    from mmmi_dsl.files import dumps_json, write_atomic
    write_atomic(path, dumps_json(results))  # no final newline, unlike files.write_json: files written so far


def summarize(points: Sequence[dict], labels: Sequence[str]) -> list[dict]:
    """Per estimator: correlation with the exact MI, RMSE, bias, max |error|, seconds, failures."""
    summary = []
    for label in labels:
        pairs = [(p["exact"], p["estimates"][label]["nats"]) for p in points
                 if label in p["estimates"] and p["estimates"][label]["nats"] is not None]
        failed = sum(1 for p in points if label in p["estimates"] and p["estimates"][label]["nats"] is None)
        seconds = sum(p["estimates"][label]["seconds"] for p in points if label in p["estimates"])
        exact, est = (np.array(v, dtype=float) for v in zip(*pairs)) if pairs else (np.zeros(0), np.zeros(0))
        err = est - exact
        corr = (float(np.corrcoef(exact, est)[0, 1])
                if len(pairs) >= 2 and np.std(exact) > 0 and np.std(est) > 0 else None)
        summary.append({"estimator": label, "points": len(pairs), "failed": failed, "correlation": corr,
                        "rmse": float(np.sqrt(np.mean(err ** 2))) if pairs else None,
                        "bias": float(np.mean(err)) if pairs else None,
                        "max_abs_error": float(np.max(np.abs(err))) if pairs else None,
                        "seconds": seconds, **regression_fit(exact, est)})
    return summary


def regression_fit(exact: np.ndarray, est: np.ndarray) -> dict:
    """The least-squares line ``est ~ a + b exact`` and the RMSE of its residuals (the paper's RMSE).

    Args:
        exact, est: (n,) exact MIs and their estimates.

    Returns:
        ``{"regression_rmse": sqrt(mean (est - a - b exact)^2), "regression_slope": b,
        "regression_intercept": a}``; all None with fewer than 3 points (two points lie on their
        line) or when every exact value is the same (no line).
    """
    from scipy.stats import linregress

    if len(exact) < 3 or np.ptp(exact) == 0:
        return {"regression_rmse": None, "regression_slope": None, "regression_intercept": None}
    fit = linregress(exact, est)
    resid = est - (fit.intercept + fit.slope * exact)
    return {"regression_rmse": float(np.sqrt(np.mean(resid ** 2))), "regression_slope": float(fit.slope),
            "regression_intercept": float(fit.intercept)}


def _f(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def results_markdown(results: dict, labels: Sequence[str]) -> str:
    """Two Markdown tables: the per-estimator summary and every estimate."""
    key, points = results["key"], results["points"]
    lines = [f"{key['query']} of `{key['model']}`, {key['param']} solved for {len(points)} target MIs, "
             f"{key['n']:,} tuples each (nats)", "",
             "| estimator | correlation | RMSE | RMSE of fit | slope | bias | max abs error | failed | seconds |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in results["summary"]:
        lines.append(f"| {s['estimator']} | {_f(s['correlation'], '.4f')} | {_f(s['rmse'], '.3f')} | "
                     f"{_f(s.get('regression_rmse'), '.3f')} | {_f(s.get('regression_slope'), '.3f')} | "
                     f"{_f(s['bias'], '+.3f')} | {_f(s['max_abs_error'], '.3f')} | {s['failed']} | "
                     f"{s['seconds']:.0f} |")
    lines += ["", "RMSE: of the estimates against the exact MI. RMSE of fit: of the estimates about their "
              "least-squares line on the exact MI (slope given), the RMSE the paper (arXiv:2510.21686) reports.",
              "", f"| target | {key['param']} | exact | " + " | ".join(labels) + " |",
              "| ---: | ---: | ---: | " + " | ".join("---:" for _ in labels) + " |"]
    for p in points:
        cells = [_f(p["estimates"].get(label, {}).get("nats"), ".3f") for label in labels]
        lines.append(f"| {p['target']:g} | {p['value']:.5g} | {p['exact']:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_results(results: dict, labels: Sequence[str], path: Path) -> Path:
    """Estimate (with its standard error) against exact MI, one panel per estimator (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = results["points"]
    cols = min(5, len(labels))
    rows = math.ceil(len(labels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows + 0.5), sharex=True, sharey=True,
                             squeeze=False)
    exact = [p["exact"] for p in points]
    finite = [e["nats"] for p in points for e in p["estimates"].values() if e["nats"] is not None]
    hi = max([*exact, *finite, 0.1]) * 1.08
    lo = min([0.0, *finite])
    by_label = {s["estimator"]: s for s in results.get("summary", [])}
    for ax, label in zip(axes.flat, labels):
        ax.plot([0, hi], [0, hi], color="0.6", lw=1, ls="--", zorder=1)
        pts = [(p["exact"], p["estimates"][label]) for p in points
               if p["estimates"].get(label, {}).get("nats") is not None]
        if pts:
            ax.errorbar([e for e, _ in pts], [r["nats"] for _, r in pts],
                        yerr=[r["stderr"] or 0.0 for _, r in pts], fmt="o", ms=3.5, lw=1, capsize=2, zorder=2)
        s = by_label.get(label, {})
        ax.set_title(f"{label}\nr = {_f(s.get('correlation'), '.3f')}, RMSE = {_f(s.get('rmse'), '.3f')}",
                     fontsize=9)
        ax.set_xlim(0, hi)
        ax.set_ylim(min(lo, 0) - 0.02 * hi, hi)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(labels):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("exact MI (nats)", fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel("estimate (nats)", fontsize=9)
    key = results["key"]
    fig.suptitle(f"{key['query']} of {key['model']}: {len(points)} datasets of {key['n']:,} tuples", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
