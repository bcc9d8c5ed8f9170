"""A preview grid of a dataset's first tuples (display only: the files are untouched)."""

from __future__ import annotations

import io
from pathlib import Path

from mmmi_dsl.files import write_atomic

def preview_grid(dataset_dir: Path, out_png: Path, rows: int = 8, scale: int = 4) -> list[str]:
    """Draw the first ``rows`` tuples of a dataset, one column per image-shaped modality.

    Display only: each modality is mapped to [0, 255] with its own 1st/99th
    percentiles over the shown samples (the data on disk are untouched).
    Returns the modalities drawn.
    """
    import numpy as np
    from PIL import Image

    from mmmi_dsl.dataset.format import MANIFEST, DatasetError, read_manifest

    manifest = read_manifest(Path(dataset_dir) / MANIFEST)
    if not manifest.get("shards"):
        raise DatasetError(f"{dataset_dir}: no shards to preview yet")
    shard = min(manifest["shards"], key=lambda s: s["start"])
    images = [name for name, v in manifest["variables"].items() if len(v["shape"]) in (2, 3)]
    if not images:
        raise DatasetError(f"{dataset_dir}: no image-shaped modality (shapes CxHxW or HxW) to preview")
    columns = []
    for name in images:
        arr = np.load(Path(dataset_dir) / shard["files"][name], mmap_mode="r", allow_pickle=False)[:rows]
        arr = np.asarray(arr, dtype=np.float64)
        if arr.ndim == 3:
            arr = arr[:, None]
        lo, hi = np.percentile(arr, [1, 99])
        arr = np.clip((arr - lo) / max(hi - lo, 1e-12), 0, 1)
        if arr.shape[1] not in (1, 3):
            arr = arr[:, :1]
        tiles = [np.repeat(a.transpose(1, 2, 0), 3 // a.shape[0], axis=2) for a in arr]
        columns.append(np.concatenate([np.pad(t, ((1, 1), (1, 1), (0, 0)), constant_values=1) for t in tiles]))
    height = max(c.shape[0] for c in columns)
    grid = np.concatenate([np.pad(c, ((0, height - c.shape[0]), (0, 0), (0, 0)), constant_values=1)
                           for c in columns], axis=1)
    img = Image.fromarray((grid * 255).round().astype(np.uint8), mode="RGB")
    tile = max(max(c.shape[0] for c in columns) // max(1, min(rows, len(arr))), 1)
    scale = max(scale, -(-64 // tile))  # small images (8x8 digits) get at least 64 px per tile
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    write_atomic(Path(out_png), buf.getvalue())
    return images
