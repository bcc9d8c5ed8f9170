"""Estimators on a generated dataset (``mmmic estimate``), beside the manifest's exact MI.

:func:`load_pair` reads two saved variables and the exact MI the manifest holds for
them; :func:`run_estimators` runs estimators on them and returns one
:class:`EstimatorRow` per estimator (a failure is a row, not an exception). Rendering is
:func:`mmmi_dsl.report.estimate_table` and :func:`mmmi_dsl.report.estimate_json`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mmmi_dsl.errors import SpecError, UsageError, did_you_mean
from mmmi_dsl.estimators import VARIATIONAL, EstimatorError, estimate


def parse_pair(query: str) -> tuple[str, str] | None:
    """The two names of a plain ``I(a; b)``; None for anything else (groups, ``|``, TC, II, bad syntax).

    Parsed with the language's own query grammar (:func:`mmmi_dsl.lang.parse.parse_query`);
    a member ``x[1]`` is named as the dataset saves it, ``x[1]``.
    """
    from mmmi_dsl.lang.parse import parse_query

    text = query.strip()
    try:
        q, _unit = parse_query(text, "query")
    except SpecError:
        return None
    if q.op != "I" or q.given or len(q.groups) != 2 or any(len(g) != 1 for g in q.groups):
        return None
    return _ref_name(q.groups[0][0], text), _ref_name(q.groups[1][0], text)


def _ref_name(ref, text: str) -> str:
    """``x``, ``x[3]`` for an integer index, else the reference as written (``x[N]``)."""
    from mmmi_dsl.lang.parse import Number

    if ref.index is None:
        return ref.name
    if isinstance(ref.index, Number) and ref.index.is_int:
        return f"{ref.name}[{int(ref.index.value)}]"
    return text[ref.span.column - 1:ref.span.end_column - 1]


def exact_value(manifest: dict, pair: tuple[str, str]):
    """The manifest's exact MI (nats; float, or "inf") of this pair, in either order; None if unknown."""
    for entry in manifest.get("mi", []):
        other = parse_pair(str(entry.get("query", "")))
        if other in (pair, pair[::-1]):
            return entry.get("nats")
    return None


@dataclass(frozen=True)
class SavedPair:
    """Two saved variables: ``x`` (n, *shape_x), ``y`` (n, *shape_y) and their exact MI
    from the manifest (nats; a float, ``"inf"``, or None when it holds none)."""

    names: tuple[str, str]
    x: np.ndarray
    y: np.ndarray
    exact: float | str | None

    @property
    def n(self) -> int:
        return len(self.x)


def load_pair(directory: str | Path, pair: tuple[str, str], max_samples: int | None = None) -> SavedPair:
    """The first ``max_samples`` (default: all) samples of the two saved variables ``pair``.

    Raises:
        UsageError: a name that is not a saved variable of the dataset.
        DatasetError: no readable, complete dataset in ``directory``.
    """
    from mmmi_dsl.dataset import MANIFEST, load_arrays, read_manifest

    manifest = read_manifest(Path(directory) / MANIFEST)
    for name in pair:
        if name not in manifest["variables"]:
            raise UsageError(f"`{name}` is not a saved variable of {directory}; "
                             f"{did_you_mean(name, manifest['variables'])}")
    arrays = [load_arrays(directory, name) for name in pair]
    n = len(arrays[0]) if max_samples is None else min(len(arrays[0]), max_samples)
    x, y = (np.asarray(a[:n]) for a in arrays)
    return SavedPair(tuple(pair), x, y, exact_value(manifest, tuple(pair)))


@dataclass(frozen=True)
class EstimatorRow:
    """One estimator's result: ``nats`` and ``stderr`` (None if it failed, with ``error``), wall seconds."""

    estimator: str
    nats: float | None
    stderr: float | None
    seconds: float
    error: str | None = None

    def to_json(self) -> dict:
        out = {"estimator": self.estimator, "nats": self.nats, "stderr": self.stderr, "seconds": self.seconds}
        if self.error is not None:
            out["error"] = self.error
        return out


def run_estimators(names: Sequence[str], x, y, *, seed: int = 0, device: str = "cpu",
                   options: dict | None = None) -> list[EstimatorRow]:
    """Each estimator of ``names`` on (x, y); ``options`` go to the variational ones only.

    An :class:`~mmmi_dsl.estimators.EstimatorError` (data it cannot work on) becomes a
    failed row; a bad option is a :class:`UsageError`.
    """
    rows = []
    for name in names:
        start = time.perf_counter()
        opts = {k: v for k, v in (options or {}).items() if name in VARIATIONAL}
        try:
            est = estimate(name, x, y, seed=seed, device=device, **opts)
        except EstimatorError as err:
            rows.append(EstimatorRow(name, None, None, time.perf_counter() - start, str(err)))
            continue
        rows.append(EstimatorRow(name, est.nats, est.stderr, time.perf_counter() - start))
    return rows
