"""A suite run's results as tables and a plot: by family and dimension, and one point per task.

``summarize`` groups the rows of ``results.json`` by (family, dims) and by family:

    tasks, failed, bias = mean(estimate - exact), RMSE = sqrt(mean (estimate - exact)^2),
    max |estimate - exact|, seconds (the estimator's, summed)

over the rows that did not fail. ``write_outputs`` writes ``results.csv`` (the rows), ``summary.csv``
(the groups), ``results.md`` and ``plot.png`` (estimate against exact, one panel per family).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

ROW_COLUMNS = ("task", "family", "dims", "query", "seed", "n", "exact_nats", "estimate_nats", "error", "seconds",
               "estimator", "failure")
GROUP_COLUMNS = ("family", "dims", "tasks", "failed", "bias", "rmse", "max_abs_error", "seconds")


def _group(rows: list[dict], family: str, dims: str) -> dict:
    ok = [r for r in rows if r["failure"] is None]
    err = np.array([r["error"] for r in ok], dtype=float)
    return {"family": family, "dims": dims, "tasks": len(rows), "failed": len(rows) - len(ok),
            "bias": float(err.mean()) if len(ok) else None,
            "rmse": float(np.sqrt(np.mean(err ** 2))) if len(ok) else None,
            "max_abs_error": float(np.abs(err).max()) if len(ok) else None,
            "seconds": float(sum(r["seconds"] for r in rows))}


def summarize(rows: list[dict]) -> dict:
    """``{"by_family_dims": [...], "by_family": [...], "all": {...}}`` (see the module docstring)."""
    families = list(dict.fromkeys(r["family"] for r in rows))
    by_dims = []
    for fam in families:
        dims = sorted({r["dims"] for r in rows if r["family"] == fam}, key=_dims_key)
        by_dims += [_group([r for r in rows if r["family"] == fam and r["dims"] == d], fam, d) for d in dims]
    return {"by_family_dims": by_dims,
            "by_family": [_group([r for r in rows if r["family"] == f], f, "all") for f in families],
            "all": _group(rows, "all", "all")}


def _dims_key(dims: str) -> tuple:
    return tuple(int(s) for s in dims.replace("|", "x").split("x") if s.strip().isdigit())


def _csv(columns, rows) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return buf.getvalue()


def _f(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _cell(text: str) -> str:
    """Text in a Markdown table cell (the ``|`` of a conditional MI's dims escaped)."""
    return str(text).replace("|", "\\|")


def markdown(results: dict, summary: dict) -> str:
    """The family and family-by-dimension tables, then every row."""
    est = results["estimator"]
    opts = ", ".join(f"{k}={v}" for k, v in est["options"].items()) or "none"
    lines = [f"# {results['suite']}: `{est['label']}` ({est['kind']}; options: {opts})", "",
             f"mmmic {results['package_version']}, seeds {', '.join(map(str, results['seeds']))}; "
             "errors are estimate - exact, in nats", "",
             "| family | dims | tasks | failed | bias | RMSE | max abs error | seconds |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for g in [*summary["by_family"], summary["all"], *summary["by_family_dims"]]:
        lines.append(f"| {g['family']} | {_cell(g['dims'])} | {g['tasks']} | {g['failed']} | {_f(g['bias'], '+.3f')} | "
                     f"{_f(g['rmse'], '.3f')} | {_f(g['max_abs_error'], '.3f')} | {g['seconds']:.1f} |")
    lines += ["", "| task | seed | dims | exact | estimate | error | seconds |",
              "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in results["rows"]:
        shown = _f(r["estimate_nats"], ".4f") if r["failure"] is None else _cell(f"failed: {r['failure'][:80]}")
        lines.append(f"| {r['task']} | {r['seed']} | {_cell(r['dims'])} | {r['exact_nats']:.4f} | {shown} | "
                     f"{_f(r['error'], '+.4f')} | {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> Path:
    """Estimate against exact MI, one panel per family, the diagonal dashed (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    families = list(dict.fromkeys(r["family"] for r in rows)) or ["(none)"]
    cols = min(4, len(families))
    nrows = math.ceil(len(families) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3 * cols, 3 * nrows + 0.4), squeeze=False)
    for ax, fam in zip(axes.flat, families):
        ok = [r for r in rows if r["family"] == fam and r["failure"] is None]
        exact = [r["exact_nats"] for r in rows if r["family"] == fam]
        hi = max([*exact, *(r["estimate_nats"] for r in ok), 0.1]) * 1.08
        lo = min([0.0, *(r["estimate_nats"] for r in ok)])
        ax.plot([0, hi], [0, hi], color="0.6", lw=1, ls="--")
        ax.scatter([r["exact_nats"] for r in ok], [r["estimate_nats"] for r in ok], s=14)
        failed = len([r for r in rows if r["family"] == fam]) - len(ok)
        ax.set_title(fam + (f" ({failed} failed)" if failed else ""), fontsize=9)
        ax.set_xlim(0, hi)
        ax.set_ylim(lo - 0.05 * hi, hi)
        ax.set_xlabel("exact MI (nats)", fontsize=8)
        ax.set_ylabel("estimate (nats)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(families):]:
        ax.axis("off")
    fig.suptitle(f"{results['suite']}: {results['estimator']['label']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(results: dict, out: Path) -> dict:
    """``results.csv``, ``summary.csv``, ``results.md``, ``plot.png``; the summary is also stored in
    ``results.json``. Returns the summary."""
    from mmmi_dsl.files import write_atomic, write_json

    summary = summarize(results["rows"])
    results["summary"] = summary
    write_json(out / "results.json", results)
    write_atomic(out / "results.csv", _csv(ROW_COLUMNS, results["rows"]))
    write_atomic(out / "summary.csv", _csv(GROUP_COLUMNS, [*summary["by_family"], summary["all"],
                                                             *summary["by_family_dims"]]))
    write_atomic(out / "results.md", markdown(results, summary))
    plot(results, out / "plot.png")
    return summary
