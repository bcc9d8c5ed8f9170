"""Training on a generated dataset: :class:`DiskDataset`, a map-style torch ``Dataset`` over its files.

>>> from torch.utils.data import DataLoader
>>> ds = DiskDataset("out/tv", variables=["x1", "x2", "theta"], split="train")
>>> batch = next(iter(DataLoader(ds, batch_size=256, shuffle=True, num_workers=2)))
>>> batch["x1"].shape                                      # (256, *shape of x1)

Each shard file is memory-mapped (``np.load(mmap_mode="r")``) the first time one of its
samples is read, in the process that reads it: DataLoader workers open their own maps and
nothing copies a whole file. Splits follow the rule the manifest records
(:func:`mmmi_dsl.dataset.reader.split_indices`; the default puts ``k % 10`` in 0..7 in
train, 8 in validation, 9 in test). ``docs/dataset-format.md`` has a complete training loop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmmi_dsl.dataset.reader import Column, ShardReader, split_indices


class DiskDataset(torch.utils.data.Dataset):
    """The samples of a complete dataset directory as ``{name: tensor}`` dicts.

    Args:
        root: the dataset directory (holding ``manifest.json``; merged parts work too).
        variables: the names to read (default every saved variable).
        split: ``"train"``, ``"validation"``, ``"test"`` or None (every sample).
        with_index: also return the sample's index in the dataset as ``"index"`` (int64).

    ``ds[i]`` is sample ``ds.indices[i]``: each variable as a tensor of its per-sample shape
    and dtype (labels uint8, PMI float64). Works with ``DataLoader(shuffle=True,
    num_workers=k)`` and ``DistributedSampler``.

    Raises:
        DatasetError: no dataset, an incomplete one, or an unknown variable (exit 1 in the CLI).
        ValueError: an unknown split.
    """

    def __init__(self, root: str | Path, variables: list[str] | None = None, split: str | None = None,
                 with_index: bool = False):
        self.reader = ShardReader(root, variables)
        self.split = split
        self.indices = split_indices(self.reader.manifest, split)
        self.with_index = with_index

    @property
    def manifest(self) -> dict:
        """The dataset's manifest (``mi`` holds the exact MI of its default queries)."""
        return self.reader.manifest

    @property
    def columns(self) -> list[Column]:
        """The variables read: name, role, per-sample shape, dtype."""
        return self.reader.columns

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} of a dataset of {len(self)}")
        k = int(self.indices[i])
        out = {name: torch.from_numpy(a) for name, a in self.reader.sample(k).items()}
        if self.with_index:
            out["index"] = torch.tensor(k, dtype=torch.int64)
        return out

    def __getitems__(self, items: list[int]) -> list[dict[str, torch.Tensor]]:
        """A batch of samples (the DataLoader's batched fetch), read shard by shard in one go."""
        pos = np.asarray(items, dtype=np.int64)
        if len(pos) and not (-len(self) <= pos.min() and pos.max() < len(self)):
            raise IndexError(f"samples {items} of a dataset of {len(self)}")
        ks = self.indices[pos]
        order = np.argsort(ks, kind="stable")
        rows = self.reader.rows(ks[order])
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        out = [{name: torch.from_numpy(np.array(a[j])) for name, a in rows.items()} for j in back]
        if self.with_index:
            for d, k in zip(out, ks):
                d["index"] = torch.tensor(int(k), dtype=torch.int64)
        return out
