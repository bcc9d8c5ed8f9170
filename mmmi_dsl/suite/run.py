"""Running the suite: datasets generated on demand into a cache, verified, then one estimate per task.

A task's dataset is ``CACHE/<spec>-<key>`` where the key hashes the spec's path and text, the
``--set`` values, n, the seed and whether latents are saved: tasks that share them share the data.
It is generated (or resumed) with :func:`mmmi_dsl.dataset.generate.generate_dataset`, then
checked by :func:`mmmi_dsl.dataset.verify.verify` in full once (files and data against the exact
MI; recorded in ``suite-verified.json``) and by its files (sizes, sha256) before every later use.

``run_suite`` writes ``OUT/results.json`` after every row (a rerun of the same command resumes);
a task that fails (generation, verification, the estimator, its timeout) is a row with
``failure``, not an exception.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mmmi_dsl.errors import MmmicError, UsageError
from mmmi_dsl.suite.definition import Resolved, Suite, Task, resolve, spec_path
from mmmi_dsl.suite.plugins import Estimator, TaskTimeout

RESULTS_FORMAT = "mmmic-suite-results/1"
STAMP = "suite-verified.json"


def default_cache() -> Path:
    """``$MMMIC_CACHE``, else ``$XDG_CACHE_HOME/mmmic/suite``, else ``~/.cache/mmmic/suite``."""
    if os.environ.get("MMMIC_CACHE"):
        return Path(os.environ["MMMIC_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mmmic" / "suite"


def dataset_dir(cache: Path, task: Task, n: int, seed: int) -> Path:
    """The cache directory of ``task``'s dataset of ``n`` tuples at ``seed``."""
    text = spec_path(task).read_bytes()
    key = {"spec": task.spec, "sha256": hashlib.sha256(text).hexdigest(), "set": dict(sorted(task.set.items())),
           "n": n, "seed": seed, "latents": task.latents}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache / f"{Path(task.spec).stem}-{digest}"


@dataclass(frozen=True)
class Prepared:
    """A verified dataset: its directory and how long generating and verifying it took (0 if cached)."""

    directory: Path
    generate_seconds: float
    verify_seconds: float


def prepare(task: Task, cache: Path, n: int, seed: int, *, device: str = "cpu", progress: bool = False,
            full_verify: bool = True) -> Prepared:
    """Generate (or resume) ``task``'s dataset in the cache and verify it.

    Raises:
        MmmicError: the spec does not load, generation fails, or the dataset fails verification.
    """
    from mmmi_dsl import load
    from mmmi_dsl.dataset import MANIFEST, DatasetError
    from mmmi_dsl.dataset.generate import generate_dataset
    from mmmi_dsl.dataset.verify import verify
    from mmmi_dsl.files import write_atomic

    directory = dataset_dir(cache, task, n, seed)
    manifest = directory / MANIFEST
    gen = 0.0
    if not _complete(manifest):
        start = time.perf_counter()
        model = load(spec_path(task), dict(task.set))
        generate_dataset(model, directory, n, seed=seed, device=device, save_latents=task.latents, progress=progress)
        gen = time.perf_counter() - start
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
    stamp = directory / STAMP
    verified = _stamp(stamp) == digest
    start = time.perf_counter()
    report = verify(directory, data=full_verify and not verified)
    if not report.ok:
        problems = [f.message for f in report.findings if f.status in ("FAIL", "incomplete")]
        raise DatasetError(f"{directory} failed verification: " + "; ".join(problems[:3]))
    if full_verify and not verified:
        write_atomic(stamp, json.dumps({"manifest_sha256": digest, "findings": report.lines}, indent=2))
    return Prepared(directory, gen, time.perf_counter() - start)


def _complete(manifest: Path) -> bool:
    try:
        return bool(json.loads(manifest.read_text(encoding="utf-8")).get("complete"))
    except (OSError, ValueError, AttributeError):
        return False


def _stamp(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("manifest_sha256")
    except (OSError, ValueError, AttributeError):
        return None


def side(directory: Path, names: tuple[str, ...], shaped: bool) -> np.ndarray:
    """The saved variables ``names`` as one array: a single variable with its shape (``shaped``), else
    every variable flattened to (n, size) and concatenated along the features, float64."""
    from mmmi_dsl.dataset import load_arrays

    arrays = [np.asarray(load_arrays(directory, name)) for name in names]
    if shaped and len(arrays) == 1:
        return arrays[0]
    return np.concatenate([a.reshape(len(a), -1).astype(np.float64) for a in arrays], axis=1)


def estimate_task(resolved: Resolved, directory: Path, estimator: Estimator, *, seed: int, device: str,
                  timeout: float | None) -> tuple[float, list[dict]]:
    """The estimate of ``resolved``'s query on its dataset (nats) and, for ``I(a; b | c)``, its two parts.

    A conditional MI is estimated by the chain rule ``I(a; b | c) = I(a; b, c) - I(a; c)``: two calls of
    the estimator, sharing the timeout.
    """
    a, b = resolved.sides
    x = side(directory, a, estimator.shaped())
    if not resolved.given:
        return estimator(x, side(directory, b, estimator.shaped()), seed=seed, device=device, timeout=timeout), []
    c = resolved.given
    start = time.perf_counter()
    joint = estimator(x, side(directory, b + c, False), seed=seed, device=device, timeout=timeout)
    left = None if timeout is None else max(timeout - (time.perf_counter() - start), 1e-3)
    marginal = estimator(x, side(directory, c, estimator.shaped()), seed=seed, device=device, timeout=left)
    parts = [{"query": f"I({', '.join(a)}; {', '.join(b + c)})", "estimate_nats": joint},
             {"query": f"I({', '.join(a)}; {', '.join(c)})", "estimate_nats": marginal}]
    return joint - marginal, parts


def run_suite(suite: Suite, tasks: list[Task], estimator: Estimator, out: Path, *, cache: Path,
              seeds: tuple[int, ...] | None = None, n: int | None = None, timeout: float | None = None,
              device: str = "cpu", full_verify: bool = True, progress: bool = False,
              log: Callable[[str], None] = print) -> dict:
    """Run (or resume) ``estimator`` on ``tasks`` x ``seeds``; returns the results (also in ``out/results.json``).

    Raises:
        UsageError: ``out`` holds results of another estimator, suite, n or device.
        SuiteError: a selected task's spec is missing or its exact MI moved (before anything runs).
    """
    from mmmi_dsl.files import write_json
    from mmmi_dsl.version import __version__

    seeds = tuple(suite.seeds if seeds is None else seeds)
    resolved = {t.id: resolve(t) for t in tasks}  # every truth checked before the first dataset
    key = {"suite": suite.format, "estimator": estimator.describe(), "n": n, "device": device}
    out.mkdir(parents=True, exist_ok=True)
    results = _load(out / "results.json", key)
    results.update({"package_version": __version__, "seeds": sorted({*results.get("seeds", []), *seeds})})
    done = {(r["task"], r["seed"]) for r in results["rows"]}
    todo = [(t, s) for t in tasks for s in seeds if (t.id, s) not in done]
    for i, (task, seed) in enumerate(todo):
        row = _run_one(suite, resolved[task.id], estimator, cache, n or suite.size(task), seed, timeout=timeout,
                       device=device, full_verify=full_verify, progress=progress)
        results["rows"].append(row)
        write_json(out / "results.json", results)
        shown = f"{row['estimate_nats']:.4f}" if row["failure"] is None else f"failed: {row['failure']}"
        log(f"[{i + 1}/{len(todo)}] {task.id} (seed {seed}): exact {row['exact_nats']:.4f}, {shown} "
            f"({row['seconds']:.1f} s)")
    return results


def _run_one(suite: Suite, resolved: Resolved, estimator: Estimator, cache: Path, n: int, seed: int, *,
             timeout: float | None, device: str, full_verify: bool, progress: bool) -> dict:
    task = resolved.task
    row = {"task": task.id, "family": task.family, "dims": resolved.dims, "query": resolved.query, "seed": seed,
           "n": n, "exact_nats": resolved.exact_nats, "estimate_nats": None, "error": None, "seconds": 0.0,
           "estimator": estimator.label, "options": estimator.options, "failure": None}
    try:
        data = prepare(task, cache, n, seed, device=device, progress=progress, full_verify=full_verify)
    except MmmicError as err:
        row["failure"] = f"dataset: {err}"
        return row
    except RuntimeError as err:  # torch's own (out of memory on the device, a flow's numerics): this task fails
        row["failure"] = f"dataset: {type(err).__name__}: {err}"
        return row
    row.update(dataset=data.directory.name, generate_seconds=data.generate_seconds,
               verify_seconds=data.verify_seconds)
    start = time.perf_counter()
    try:
        value, parts = estimate_task(resolved, data.directory, estimator, seed=seed, device=device, timeout=timeout)
        row.update(estimate_nats=value, error=value - resolved.exact_nats)
        if parts:
            row["parts"] = parts
    except UsageError:
        raise  # a bad option of a built-in: the whole run is wrong, not this task
    except TaskTimeout as err:
        row["failure"] = f"timeout: {err}"
    except Exception as err:  # noqa: BLE001 - the user's estimator (EstimatorFailed and any other): recorded, not fatal
        row["failure"] = f"{type(err).__name__}: {err}"
    row["seconds"] = time.perf_counter() - start
    return row


def _load(path: Path, key: dict) -> dict:
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise UsageError(f"{path} is not readable JSON; delete it to start over") from None
        if not isinstance(old, dict) or old.get("format") != RESULTS_FORMAT or not isinstance(old.get("rows"), list):
            raise UsageError(f"{path} is not a suite results file; give another -o DIR")
        if old.get("key") != key:
            raise UsageError(f"{path.parent} holds results of another run ({_diff(old.get('key'), key)}); "
                             "give another -o DIR or delete it")
        return old
    return {"format": RESULTS_FORMAT, "key": key, "suite": key["suite"], "estimator": key["estimator"], "rows": []}


def _diff(old, new: dict) -> str:
    if not isinstance(old, dict):
        return "no key"
    names = [k for k in new if old.get(k) != new[k]]
    return ", ".join(f"{k} was {old.get(k)!r}" for k in names) or "a different key"
