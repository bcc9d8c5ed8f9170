"""A preview figure of a dataset's first tuples (display only: the files are untouched).

One column per modality, titled with its name and, for a learned flow, its class; one row per
tuple, labelled with the targets' values (θ). Image-shaped modalities (C×H×W, H×W) are drawn as
pictures, each modality mapped to [0, 1] by its own 1st/99th percentiles over the shown samples;
vector modalities as small line plots of their components.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from mmmi_dsl.files import write_atomic

#: Inches per panel at ``scale = 1``.
PANEL_INCHES = 1.3


def flow_titles(spec_text: str, file: str = "<manifest>") -> dict[str, str]:
    """Column titles from the spec: ``x1 (digits, class 3)`` for a flow call with a class, else the name."""
    from mmmi_dsl.errors import SpecError
    from mmmi_dsl.lang.parse import parse_text
    from mmmi_dsl.lang.syntax import Call, Kwarg, Number

    try:
        program = parse_text(spec_text, file)
    except SpecError:
        return {}
    titles = {}
    for s in program.statements:
        if s.kind != "flow" or s.decl is None or not isinstance(s.value, Call):
            continue
        label = next((a.value.value for a in s.value.args if isinstance(a, Kwarg) and a.name == "class"
                      and isinstance(a.value, Number)), None)
        if label is not None and s.decl.index is None:
            titles[s.decl.name] = f"{s.decl.name} ({s.value.func}, class {int(label)})"
    return titles


def _display(arr: np.ndarray) -> np.ndarray:
    """(n, C, H, W) -> (n, H, W, 3) in [0, 1] by the 1st/99th percentiles of the shown samples."""
    lo, hi = np.percentile(arr, [1, 99])
    arr = np.clip((arr - lo) / max(hi - lo, 1e-12), 0, 1)
    if arr.shape[1] not in (1, 3):
        arr = arr[:, :1]
    return np.repeat(arr.transpose(0, 2, 3, 1), 3 // arr.shape[1], axis=3)


def preview_grid(dataset_dir: Path, out_png: Path, rows: int = 8, scale: float = 1.0) -> list[str]:
    """Draw the first ``rows`` tuples of a dataset into ``out_png``; returns the modalities drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmmi_dsl.dataset import MANIFEST, DatasetError, read_manifest

    dataset_dir = Path(dataset_dir)
    manifest = read_manifest(dataset_dir / MANIFEST)
    if not manifest.get("shards"):
        raise DatasetError(f"{dataset_dir}: no shards to preview yet")
    shard = min(manifest["shards"], key=lambda s: s["start"])
    variables = manifest["variables"]
    flows = [name for name in manifest.get("flows") or {} if name in variables]  # the modalities, in spec order
    if not flows:
        raise DatasetError(f"{dataset_dir}: no modality to preview")
    targets = [name for name, v in variables.items() if v["shape"] == [] and name not in flows
               and not name.startswith("pmi:") and v["dtype"].startswith("float")]

    def load(name: str) -> np.ndarray:
        return np.asarray(np.load(dataset_dir / shard["files"][name], mmap_mode="r", allow_pickle=False)[:rows],
                          dtype=np.float64)

    data = {name: load(name) for name in flows}
    thetas = {name: load(name).reshape(-1) for name in targets}
    n = min(len(a) for a in data.values())
    titles = flow_titles(manifest.get("spec", ""))
    fig, axes = plt.subplots(n, len(flows), figsize=(PANEL_INCHES * scale * len(flows) + 0.6,
                                                      PANEL_INCHES * scale * n + 0.4), squeeze=False)
    for j, name in enumerate(flows):
        arr = data[name][:n]
        image = arr.ndim in (3, 4)
        if image:
            tiles = _display(arr[:, None] if arr.ndim == 3 else arr)
        for i in range(n):
            ax = axes[i][j]
            if image:
                ax.imshow(tiles[i], interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                ax.plot(arr[i].reshape(-1), lw=0.8)
                ax.tick_params(labelsize=5)
            if i == 0:
                ax.set_title(titles.get(name, name), fontsize=8)
            if j == 0 and thetas:
                ax.set_ylabel(", ".join(f"{t} = {thetas[t][i]:.2f}" for t in targets), fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_atomic(Path(out_png), buf.getvalue())
    return flows
