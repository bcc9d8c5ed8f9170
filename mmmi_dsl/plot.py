"""Output stage: pictures of exact MI (matplotlib, no pyplot state).

- :func:`plot_mi_matrix`: the pairwise exact MI between the targets and modalities.
- :func:`plot_mi_vs_param`: MI curves against a free parameter, optionally one line per
  value of a second parameter (``by``).
- :func:`plot_mi_vs_index`: MI against a family index, e.g. ``I(x[1]; x[j])`` for
  ``j = 2..N`` (decay with distance), optionally for several values of a parameter.

Every number comes from :class:`mmmi_dsl.analysis.Analysis` at the model's parameter
values (``Model.with_params``); nothing here computes MI itself. Each function returns
the numbers it drew, so tests (and users) can read them back.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mmmi_dsl import ir
from mmmi_dsl.errors import UsageError
from mmmi_dsl.mi.analysis import LN2, Analysis

PICTURE_SUFFIXES = (".png", ".svg", ".pdf")

#: Below this many nats everywhere, a curve is 0 up to the engine's round-off (about 1e-8).
ZERO = 1e-6


@dataclass(frozen=True)
class MIMatrix:
    """The drawn matrix: ``nats[i, j] = I(names[i]; names[j])``; NaN on the diagonal."""

    names: tuple[str, ...]
    nats: np.ndarray


@dataclass(frozen=True)
class MICurve:
    """One drawn line: ``nats[k]`` is the query's MI at ``x[k]`` (``inf`` kept, not drawn)."""

    query: str
    x: np.ndarray
    nats: np.ndarray
    by: tuple[str, float] | None = None


def _figure(w: float, h: float, layout: str | None = None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w, h), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def check_path(path: str | Path) -> Path:
    """``path`` as a Path if it ends in a picture suffix (.png, .svg, .pdf); a UsageError otherwise."""
    path = Path(path)
    if path.suffix.lower() not in PICTURE_SUFFIXES:
        raise UsageError(f"{path}: a plot must end in {', '.join(PICTURE_SUFFIXES)}")
    return path


def _save(fig, path: Path) -> Path:
    import matplotlib
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(path, format=path.suffix.lower().lstrip("."), facecolor="white")
    return path


def _pair(a: str, b: str) -> ir.Query:
    return ir.Query(kind="I", groups=((a,), (b,)), text=f"I({a}; {b})")


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}" if abs(x) >= 0.01 else f"{x:.1e}"


# ---------------------------------------------------------------- MI matrix


def mi_matrix(model: ir.Model, names: Sequence[str] | None = None) -> MIMatrix:
    """Exact pairwise MI (nats) between ``names`` (default: the targets, then the modalities).

    NaN on the diagonal and between two labels (a query has at most one label, alone on its side).
    """
    names = tuple(names) if names is not None else tuple(model.targets) + tuple(model.modalities)
    for name in names:
        try:
            model.size_of(name)
        except KeyError:
            known = [*model.targets, *model.modalities, *model.variables, *model.labels, *model.protos]
            raise UsageError(f"`{name}` is not a variable of {model.name} (e.g. "
                             f"{', '.join(list(dict.fromkeys(known))[:8])})") from None
    if len(set(names)) != len(names):
        raise UsageError(f"a name is given twice ({', '.join(names)})")
    engine = Analysis(model)
    n = len(names)
    out = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(i + 1, n):
            if names[i] in model.labels and names[j] in model.labels:
                continue
            out[i, j] = out[j, i] = engine.evaluate(_pair(names[i], names[j])).nats
    return MIMatrix(names, out)


def plot_mi_matrix(model: ir.Model, path: str | Path, names: Sequence[str] | None = None,
                   unit: str = "nats") -> MIMatrix:
    """Draw the pairwise exact MI of ``names`` (default: the targets and modalities) as a heatmap.

    Cells hold I(row; column) in ``unit``, written in the cell (up to 24 variables),
    ``∞`` where the MI is infinite (drawn in the brightest colour). The diagonal would be
    I(X; X) = H(X), infinite for continuous variables: it is left blank (grey, "—"), as is
    a pair of labels ("n/a"). Values spanning more than 50x get a log colour scale.
    Returns the matrix drawn, always in nats.
    """
    from matplotlib.colors import LogNorm, Normalize

    path = check_path(path)
    if unit not in ("nats", "bits"):
        raise UsageError(f"unit must be nats or bits, got {unit!r}")
    m = mi_matrix(model, names)
    n = len(m.names)
    if n < 2:
        raise UsageError(f"{model.name} has {n} target/modality: the MI matrix needs at least two")
    scale = 1 / LN2 if unit == "bits" else 1.0
    values = m.nats * scale
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    log = positive.size > 0 and vmax / positive.min() > 50  # values over orders of magnitude: log colours
    if log:
        vmin = max(float(positive.min()), vmax * 1e-6)
        norm = LogNorm(vmin, vmax)
        shown = np.where(np.isinf(values), vmax, values)
        shown = np.where(shown < vmin, vmin / 2, shown)  # below the scale (0 or nearly): drawn white
    else:
        norm = Normalize(0.0, vmax)
        shown = np.where(np.isinf(values), vmax, values)
    shown = np.ma.masked_invalid(shown)
    cell = 0.62 if n <= 12 else max(0.12, 9.0 / n)
    side = max(3.2, cell * n)
    fig = _figure(side + 2.6, side + 1.9, layout="constrained")
    ax = fig.add_subplot()
    import matplotlib
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd", under="#ffffff")
    im = ax.imshow(shown, cmap=cmap, norm=norm, interpolation="nearest")
    step = math.ceil(n / 40)  # at most about 40 tick labels a side
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks, [m.names[i] for i in ticks], rotation=90 if n > 6 else 45,
                  ha="center" if n > 6 else "right", fontsize=9 if n <= 24 else 6,
                  rotation_mode="default" if n > 6 else "anchor")
    ax.set_yticks(ticks, [m.names[i] for i in ticks], fontsize=9 if n <= 24 else 6)
    if n <= 24:
        for i in range(n):
            for j in range(n):
                v = values[i, j]
                if i == j or np.isnan(v):  # the diagonal; two labels
                    ax.text(j, i, "—" if i == j else "n/a", ha="center", va="center", fontsize=8, color="#777777")
                    continue
                light = np.isinf(v) or float(norm(shown[i, j])) > 0.55 or float(norm(shown[i, j])) < 0
                ax.text(j, i, _fmt(v), ha="center", va="center", fontsize=8 if n <= 12 else 6,
                        color="black" if light else "white")
    under = log and bool(np.any(values[np.isfinite(values)] < vmin))
    fig.colorbar(im, ax=ax, shrink=0.9, extend="min" if under else "neither",
                 label=f"I(row; column) [{unit}]" + (", log colour scale" if log else "")
                 + (f"; white: < {vmin:.2g}" if under else ""))
    inf_note = "\n∞: infinite MI (a deterministic relation)" if np.isinf(values).any() else ""
    ax.set_title(f"{model.name}: exact pairwise MI [{unit}]", fontsize=11)
    ax.set_xlabel(f"diagonal I(X; X) = H(X) not shown (infinite for continuous X){inf_note}", fontsize=8,
                  color="#444444")
    _save(fig, path)
    return m


# ---------------------------------------------------------------- MI curves


def _free(model: ir.Model, name: str) -> ir.Param:
    p = model.params.get(name)
    if p is None:
        known = ", ".join(k for k, q in model.params.items() if q.derived is None) or "none"
        raise UsageError(f"`{name}` is not a parameter of {model.name} (free parameters: {known})")
    if p.derived is not None:
        raise UsageError(f"`{name}` is derived (:=); vary the parameters it uses")
    return p


def _check_values(p: ir.Param, values: Sequence[float]) -> list[float]:
    out = []
    for v in values:
        v = float(v)
        if not math.isfinite(v):
            raise UsageError(f"`{p.name}` = {v} is not a finite number")
        if p.bounds is not None and not p.bounds.contains(v):
            raise UsageError(f"{v:g} is outside the bounds {p.bounds.text()} of `{p.name}`")
        out.append(v)
    if not out:
        raise UsageError(f"no values of `{p.name}`")
    return out


def _at(model: ir.Model, values: dict[str, float]) -> ir.Model:
    from mmmi_dsl.mi.solve import spec_error
    try:
        return model.with_params(values)
    except ValueError as err:
        where = ", ".join(f"{k} = {v:g}" for k, v in values.items())
        raise spec_error("E0212", f"cannot evaluate the model at {where}: {err}", None) from None


def _by_values(model: ir.Model, by: tuple[str, Sequence[float]] | None) -> list[tuple[str, float] | None]:
    if by is None:
        return [None]
    name, values = by
    return [(name, v) for v in _check_values(_free(model, name), values)]


def mi_vs_param(model: ir.Model, param: str, values: Sequence[float], queries: Sequence[ir.Query],
                by: tuple[str, Sequence[float]] | None = None) -> list[MICurve]:
    """Each query's exact MI at each value of ``param`` (for each ``by`` value)."""
    xs = _check_values(_free(model, param), values)
    if by is not None and by[0] == param:
        raise UsageError(f"`{param}` is the x axis: it cannot also give one line per value")
    curves = []
    for b in _by_values(model, by):
        base = _at(model, {b[0]: b[1]}) if b else model
        table = np.array([[Analysis(_at(base, {param: x})).evaluate(q).nats for q in queries] for x in xs])
        curves += [MICurve(q.text, np.array(xs), table[:, k], b) for k, q in enumerate(queries)]
    return curves


def index_queries(model: ir.Model, index: str, texts: Sequence[str] | None) -> list[str]:
    """Query templates for :func:`mi_vs_index`: ``texts``, or for each modality family ``x``
    ``I(x[1]; x[j])`` and ``I(target; x[j])`` for each target."""
    if texts:
        bad = [t for t in texts if not re.search(rf"\b{re.escape(index)}\b", t)]
        if bad:
            raise UsageError(f"the query {bad[0]!r} does not use the index `{index}` (write e.g. "
                             f"\"I(x[1]; x[{index}])\")")
        return list(texts)
    out = []
    for stem, members in model.families.items():
        if members and members[0] in model.flows:
            first = members[0]
            out.append(f"I({first}; {stem}[{index}])")
            out += [f"I({t}; {stem}[{index}])" for t in model.targets]
    if not out:
        raise UsageError(f"{model.name} has no family of modalities: give queries with the index `{index}`")
    return out


def mi_vs_index(model: ir.Model, index: str, values: Sequence[int], queries: Sequence[str],
                by: tuple[str, Sequence[float]] | None = None) -> list[MICurve]:
    """Each query template's exact MI with ``index`` replaced by each value (for each ``by`` value)."""
    from mmmi_dsl.lang.lower import resolve_query
    pattern = re.compile(rf"\b{re.escape(index)}\b")
    curves = []
    for b in _by_values(model, by):
        base = _at(model, {b[0]: b[1]}) if b else model
        engine = Analysis(base)
        for text in queries:
            ys = []
            for v in values:
                q = resolve_query(base, pattern.sub(str(v), text), "--query")
                _refuse_limit(q)
                ys.append(engine.evaluate(q).nats)
            curves.append(MICurve(text, np.array(values, dtype=float), np.array(ys), b))
    return curves


def _draw_curves(model: ir.Model, path: Path, curves: list[MICurve], xlabel: str, unit: str,
                 title: str, integer_x: bool = False, log_x: bool = False) -> None:
    """One panel per query when there is a ``by`` parameter (one line per its value), else
    one panel with one line per query. Infinite values are not drawn (noted below)."""
    import matplotlib
    scale = 1 / LN2 if unit == "bits" else 1.0
    bys = list(dict.fromkeys(c.by for c in curves))
    queries = list(dict.fromkeys(c.query for c in curves))
    panels = queries if bys != [None] else [None]
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig = _figure(4.6 * cols + 1.2 + (1.8 if bys == [None] else 0), 3.4 * rows + 0.9)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    cmap = matplotlib.colormaps["viridis"]
    had_inf = False
    for k, panel in enumerate(panels):
        ax = axes[k // cols][k % cols]
        mine = [c for c in curves if panel is None or c.query == panel]
        # a curve below ZERO nats everywhere is 0 up to round-off: it does not choose the scale
        zero = [bool(np.all(~np.isfinite(c.nats) | (np.abs(c.nats) < ZERO))) for c in mine]
        ys = np.concatenate([c.nats for c, z in zip(mine, zero) if not z] or [np.array([])]) * scale
        ys = ys[np.isfinite(ys) & (ys > 0)]
        log_y = ys.size > 1 and ys.max() / ys.min() > 100  # spans orders of magnitude
        for i, c in enumerate(mine):
            y = c.nats * scale
            had_inf |= bool(np.isinf(y).any())
            y = np.where(np.isfinite(y), y, np.nan)
            if panel is None:  # one line per query: 10 colours, then the same colours dashed, dotted, ...
                label, colour = c.query, matplotlib.colormaps["tab10"](i % 10)
                style = ("-", "--", ":", "-.")[(i // 10) % 4]
                marker = ("o", "s", "^", "D")[(i // 10) % 4]
            else:  # one line per value of the `by` parameter, in order
                label = f"{c.by[0]} = {c.by[1]:g}"
                colour = cmap(i / max(len(mine) - 1, 1) * 0.9)
                style = ("-", "--", ":", "-.")[i % 4]
                marker = ("o", "s", "^", "D", "v")[i % 5]
            xs = c.x
            if zero[i]:
                label += f" = 0 (< {ZERO:g} nats)"
                if log_y:  # nothing to draw on a log axis: the legend says it
                    xs, y = [], []
            ax.plot(xs, y, ls=style, marker=marker if len(c.x) <= 25 else None, ms=3.5, lw=1.6, label=label,
                    color=colour)
        if log_y:
            ax.set_yscale("log")
        ax.set_ylabel(f"MI [{unit}]" + (", log scale" if log_y else ""))
        ax.grid(True, alpha=0.3)
        if log_x:
            from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
            ax.set_xscale("log")
            decades = math.log10(max(c.x.max() for c in mine) / min(c.x.min() for c in mine))
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 2 else (1.0,)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        if integer_x:
            ax.xaxis.get_major_locator().set_params(integer=True)
        if panel is not None:
            ax.set_title(panel, fontsize=10)
        if not log_y:
            ax.set_ylim(bottom=0)
        if k // cols == rows - 1 or k + cols >= len(panels):
            ax.set_xlabel(xlabel)
            ax.tick_params(labelbottom=True)
    for k in range(len(panels), rows * cols):
        axes[k // cols][k % cols].axis("off")
    if bys == [None]:
        axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
                           ncol=1 if len(queries) <= 14 else 2)
    else:
        axes[0][-1].legend(fontsize=8, loc="best", frameon=True)
    fig.suptitle(title, fontsize=11)
    if had_inf:
        fig.text(0.01, 0.005, "points where the MI is infinite are not drawn", fontsize=8, color="#444444")
    fig.tight_layout(rect=(0, 0.03 if had_inf else 0, 1, 1))
    _save(fig, path)


def plot_mi_vs_param(model: ir.Model, path: str | Path, param: str, values: Sequence[float],
                     queries: Sequence[ir.Query] | None = None, by: tuple[str, Sequence[float]] | None = None,
                     unit: str = "nats") -> list[MICurve]:
    """Draw exact MI against ``param`` over ``values``.

    Without ``by``: one panel, one line per query. With ``by = (name, [v1, v2, ...])``:
    one panel per query, one line per value of ``name``. ``queries`` default to the
    spec's reports (else I(target; x) and all pairs). Returns the curves drawn (nats).
    """
    from mmmi_dsl.mi.analysis import default_queries
    path = check_path(path)
    qs = list(queries) if queries else [q for q in default_queries(model) if q.kind not in ir.LIMIT_KINDS]
    _check_panels(qs, by)
    curves = mi_vs_param(model, param, values, qs, by)
    steps = np.diff(np.log(np.asarray(values, dtype=float))) if all(v > 0 for v in values) else np.array([])
    log_x = len(values) > 2 and steps.size > 0 and bool(np.allclose(steps, steps[0])) and steps[0] != 0  # logspace
    _draw_curves(model, path, curves, param, unit, f"{model.name}: exact MI against {param}", log_x=log_x)
    return curves


def plot_mi_vs_index(model: ir.Model, path: str | Path, index: str, values: Sequence[int],
                     queries: Sequence[str] | None = None, by: tuple[str, Sequence[float]] | None = None,
                     unit: str = "nats") -> list[MICurve]:
    """Draw exact MI against a family index: each query template (e.g. ``I(x[1]; x[j])``)
    with ``index`` set to each of ``values`` — for decay, MI against distance.

    Panels and lines as in :func:`plot_mi_vs_param`. Returns the curves drawn (nats).
    """
    path = check_path(path)
    texts = index_queries(model, index, queries)
    _check_panels(texts, by)
    curves = mi_vs_index(model, index, values, texts, by)
    _draw_curves(model, path, curves, index, unit, f"{model.name}: exact MI against {index}", integer_x=True)
    return curves


def _refuse_limit(q: ir.Query) -> None:
    if q.kind in ir.LIMIT_KINDS:
        raise UsageError(f"this picture draws exact MI; {q.text} is a limit of prediction (tabulate it with "
                         "`mmmic sweep SPEC --for PARAM --values ... --query ...`)")


def _check_panels(queries: Sequence, by) -> None:
    for q in queries:
        if isinstance(q, ir.Query):
            _refuse_limit(q)
    if by is not None and len(queries) > 9:
        raise UsageError(f"one line per value of `{by[0]}` draws one panel per query: give at most 9 queries, "
                         f"not {len(queries)}")
    if by is not None and len(by[1]) > 10:
        raise UsageError(f"at most 10 values of `{by[0]}` (one line each), not {len(by[1])}")


def default_values(model: ir.Model, param: str, points: int = 50) -> list[float] | None:
    """``points`` values evenly across a free parameter's bounds (open ends kept 0.1% inside);
    None when the bounds are not both finite."""
    b = _free(model, param).bounds
    if b is None or not (math.isfinite(b.lower) and math.isfinite(b.upper)):
        return None
    inset = (b.upper - b.lower) * 1e-3
    lo = b.lower + (inset if b.lower_open else 0.0)
    hi = b.upper - (inset if b.upper_open else 0.0)
    return [lo + (hi - lo) * i / (points - 1) for i in range(points)]


__all__ = ["MIMatrix", "MICurve", "mi_matrix", "plot_mi_matrix", "mi_vs_param", "mi_vs_index",
           "plot_mi_vs_param", "plot_mi_vs_index", "index_queries", "default_values", "check_path"]


def plot_regression(results, path: str | Path) -> Path:
    """Test RMSE (with its interval) against the exact I(θ; X), beside the Bayes curve sd(θ) e^{−I}
    (a :class:`mmmi_dsl.regression.RegressionResults`)."""
    path = check_path(path)
    points = results.points
    fig = _figure(5.2, 3.8, layout="constrained")
    ax = fig.subplots()
    i = np.array([p.target_nats for p in points])
    hi = max([*i, 0.1]) * 1.08
    grid = np.linspace(0.0, hi, 200)
    sd = points[0].sd if points else 1.0
    ax.plot(grid, sd * np.exp(-grid), color="0.3", lw=1.2, label=f"Bayes RMSE sd({results.target}) e^(-I)")
    if points:
        rmse = np.array([p.rmse for p in points])
        lo, up = (np.array([p.rmse_ci[k] for p in points]) for k in (0, 1))
        ax.errorbar(i, rmse, yerr=[rmse - lo, up - rmse], fmt="o", ms=4, lw=1, capsize=2,
                    label=f"{results.key['regressor']}, test RMSE (95 % interval)")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, sd * 1.08)
    ax.set_xlabel(f"exact I({results.target}; {results.modality}) (nats)")
    ax.set_ylabel("RMSE")
    ax.set_title(f"{results.key['model']}: {len(points)} datasets of {results.key['n']:,} tuples", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_regression_errors(results, shown: Sequence[tuple], path: str | Path) -> Path:
    """Histograms of the test errors θ − θ̂ of some points of ``results``, given as
    ``(RegressionPoint, errors)`` pairs, each beside the Bayes error density N(0, Bayes RMSE²)."""
    from scipy.stats import norm

    path = check_path(path)
    pairs = list(shown)
    fig = _figure(4.0 * max(1, len(pairs)), 3.2, layout="constrained")
    axes = fig.subplots(1, max(1, len(pairs)), squeeze=False)[0]
    for ax, (p, e) in zip(axes, pairs):
        width = 4 * max(p.bayes_rmse, p.rmse)
        ax.hist(e, bins=40, range=(-width, width), density=True, alpha=0.6, label=f"test errors (RMSE {p.rmse:.3f})")
        grid = np.linspace(-width, width, 200)
        ax.plot(grid, norm.pdf(grid, scale=p.bayes_rmse), color="0.2", lw=1.2,
                label=f"Bayes N(0, {p.bayes_rmse:.3f}²)")
        ax.set_title(f"I = {p.target_nats:.3f} nats ({p.dataset})", fontsize=10)
        ax.set_xlabel(f"{results.target} − prediction")
        ax.legend(fontsize=7)
    return _save(fig, path)
