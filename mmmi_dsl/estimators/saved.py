"""Estimators on a generated dataset (``mmmic estimate``), beside the manifest's exact MI.

:func:`load_pair` reads two saved variables, or two groups of them, and their exact
MI (recorded in the manifest, else computed from the spec it records);
:func:`run_estimators` runs estimators on them and returns one :class:`EstimatorRow`
per estimator (a failure is a row, not an exception). Rendering is
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
    groups = parse_groups(query)
    if groups is None or any(len(g) != 1 for g in groups):
        return None
    return groups[0][0], groups[1][0]


def parse_groups(query: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The two groups of ``I(a1, a2; b)`` (one name or more each); None for ``|``, TC, II or bad syntax."""
    from mmmi_dsl.lang.parse import parse_query

    text = query.strip()
    try:
        q, _unit = parse_query(text, "query")
    except SpecError:
        return None
    if q.op != "I" or q.given or len(q.groups) != 2 or any(not g for g in q.groups):
        return None
    return tuple(tuple(_ref_name(r, text) for r in g) for g in q.groups)


def _ref_name(ref, text: str) -> str:
    """``x``, ``x[3]`` for an integer index, else the reference as written (``x[N]``)."""
    from mmmi_dsl.lang.parse import Number

    if ref.index is None:
        return ref.name
    if isinstance(ref.index, Number) and ref.index.is_int:
        return f"{ref.name}[{int(ref.index.value)}]"
    return text[ref.span.column - 1:ref.span.end_column - 1]


Groups = tuple[tuple[str, ...], tuple[str, ...]]


def _as_groups(pair) -> Groups:
    """``("x1", "x2")`` or ``(("x1", "x2"), ("theta",))`` as two tuples of names."""
    return tuple((g,) if isinstance(g, str) else tuple(g) for g in pair)


def query_text(groups: Groups) -> str:
    """``I(x1, x2; theta)``."""
    return f"I({', '.join(groups[0])}; {', '.join(groups[1])})"


def _same(a: Groups, b: Groups) -> bool:
    """The same MI: equal sets of names on each side, in either order of the sides."""
    sa, sb = [frozenset(g) for g in a], [frozenset(g) for g in b]
    return sa == sb or sa == sb[::-1]


def exact_value(manifest: dict, pair):
    """The manifest's recorded exact MI (nats; float, or "inf") of this pair or these groups, in either
    order (of the sides and within a group); None if it records none."""
    want = _as_groups(pair)
    for entry in manifest.get("mi", []):
        other = parse_groups(str(entry.get("query", "")))
        if other is not None and _same(other, want):
            return entry.get("nats")
    return None


def spec_value(directory: str | Path, groups: Groups) -> tuple[float | str | None, str | None]:
    """The exact MI of ``groups`` from the spec the manifest records, at its recorded values:
    (nats, or "inf"; None) or (None, why there is none).

    Uses :func:`mmmi_dsl.dataset.recorded.load_dataset_spec` (files the spec reads resolve
    against the dataset directory).
    """
    import math

    from mmmi_dsl.dataset import DatasetError
    from mmmi_dsl.dataset.recorded import load_dataset_spec
    from mmmi_dsl.lang.lower import resolve_query
    from mmmi_dsl.mi.analysis import Analysis

    try:
        model = load_dataset_spec(directory, check_drift=False).model
        nats = Analysis(model).evaluate(resolve_query(model, query_text(groups), "manifest")).nats
    except SpecError as err:
        return None, err.diagnostics[0].message
    except DatasetError as err:
        return None, str(err)
    return ("inf" if math.isinf(nats) else nats), None


@dataclass(frozen=True)
class SavedPair:
    """Two groups of saved variables: ``x`` (n, *shape_x), ``y`` (n, *shape_y), and their exact MI
    (nats; a float, ``"inf"``, or None when none is known, with ``note`` saying why).

    A group of one variable keeps its shape; a group of several is their arrays flattened
    to (n, size) and concatenated along the features, in the order given.
    """

    groups: Groups
    x: np.ndarray
    y: np.ndarray
    exact: float | str | None
    note: str | None = None

    @property
    def names(self) -> tuple[str, str]:
        """Each side's names joined: ``("x1, x2", "theta")``."""
        return ", ".join(self.groups[0]), ", ".join(self.groups[1])

    @property
    def n(self) -> int:
        return len(self.x)


def load_pair(directory: str | Path, pair, max_samples: int | None = None) -> SavedPair:
    """The first ``max_samples`` (default: all) samples of two saved variables, or of two groups of them.

    ``pair``: ``("x1", "x2")`` or ``(("x1", "x2"), ("theta",))``. The exact MI is the
    manifest's recorded value when it has one (either order), else it is computed from
    the recorded spec (:func:`spec_value`).

    Raises:
        UsageError: a name that is not a saved variable of the dataset.
        DatasetError: no readable, complete dataset in ``directory``.
    """
    from mmmi_dsl.dataset import MANIFEST, load_arrays, read_manifest

    groups = _as_groups(pair)
    root = Path(directory)
    if root.suffix.lower() == ".json" and root.is_file():  # DIR/manifest.json names DIR
        root = root.parent
    manifest = read_manifest(root / MANIFEST)
    for name in [n for g in groups for n in g]:
        if name not in manifest["variables"]:
            raise UsageError(f"`{name}` is not a saved variable of {directory}; "
                             f"{did_you_mean(name, manifest['variables'])}")
    arrays = {name: load_arrays(root, name) for name in dict.fromkeys(n for g in groups for n in g)}
    total = len(next(iter(arrays.values())))
    n = total if max_samples is None else min(total, max_samples)
    x, y = (_side(g, arrays, n) for g in groups)
    exact, note = exact_value(manifest, groups), None
    if exact is None:
        exact, note = spec_value(root, groups)
    return SavedPair(groups, x, y, exact, note)


def _side(group: tuple[str, ...], arrays: dict, n: int) -> np.ndarray:
    if len(group) == 1:
        return np.asarray(arrays[group[0]][:n])
    return np.concatenate([np.asarray(arrays[name][:n]).reshape(n, -1) for name in group], axis=1)


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
