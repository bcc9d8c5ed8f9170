"""Reading a complete dataset by sample: roles of its variables, splits, lazily memory-mapped shards.

Used by :class:`mmmi_dsl.data.DiskDataset` and by the exports (:mod:`~mmmi_dsl.dataset.export`).
Nothing here copies a whole file: each shard file is opened with ``np.load(mmap_mode="r")``
the first time a sample of it is read, in the process that reads it (a DataLoader worker
opens its own maps; a pickled reader carries no map).

**Splits.** Sample ``k`` belongs to split ``s`` when ``k % modulus`` is one of the
residues listed for ``s``. The rule is recorded in the manifest as ``splits`` (written by
``mmmic generate``); a dataset without it gets :data:`DEFAULT_SPLITS`: ``k % 10`` in
0..7 is train, 8 is validation, 9 is test. A sample's split depends only on its index,
so it stays in the same split when a dataset of the same seed is generated with more
samples (sample ``k`` depends only on ``(seed, k)``).

**Roles.** ``modality`` (a flow's output), ``target``, ``label``, ``latent`` (saved with
``--save-latents``) or ``pmi`` (an exact PMI column, ``pmi:a;b``). Recorded as ``roles``
by ``mmmic generate``; read from the manifest's other fields for older datasets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmmi_dsl.dataset.format import MANIFEST, DatasetError, read_manifest
from mmmi_dsl.errors import SpecError, did_you_mean

SPLIT_NAMES = ("train", "validation", "test")
#: The split rule of a dataset whose manifest records none (see the module docstring).
DEFAULT_SPLITS = {"rule": "index modulo", "modulus": 10, "train": list(range(8)), "validation": [8], "test": [9]}
ROLES = ("modality", "target", "label", "latent", "pmi")


def split_rule(manifest: dict) -> dict:
    """The manifest's ``splits`` rule (checked), else :data:`DEFAULT_SPLITS`.

    Raises:
        DatasetError: a recorded rule whose residues are not a partition of ``0..modulus-1``.
    """
    rule = manifest.get("splits", DEFAULT_SPLITS)
    m = rule.get("modulus") if isinstance(rule, dict) else None
    if not isinstance(m, int) or isinstance(m, bool) or m < 1:
        raise DatasetError(f"manifest `splits` is {rule!r}: expected {{'modulus': M, 'train': [residues], ...}}")
    residues = [r for s in SPLIT_NAMES for r in rule.get(s, [])]
    if sorted(residues) != list(range(m)):
        raise DatasetError(f"manifest `splits`: the residues of {', '.join(SPLIT_NAMES)} must be 0..{m - 1}, "
                           f"each once; got {rule!r}")
    return rule


def split_indices(manifest: dict, split: str | None) -> np.ndarray:
    """The sample indices of ``split`` (all of them for None), ascending, int64."""
    n = manifest["n"]
    if split is None:
        return np.arange(n, dtype=np.int64)
    if split not in SPLIT_NAMES:
        raise ValueError(f"split {split!r}: expected one of {', '.join(SPLIT_NAMES)} or None")
    rule = split_rule(manifest)
    k = np.arange(n, dtype=np.int64)
    return k[np.isin(k % rule["modulus"], rule[split])]


def is_image(shape: tuple[int, ...]) -> bool:
    """Whether a per-sample shape can be drawn as a picture: ``(H, W)`` or ``(C, H, W)`` with C in 1, 3, 4."""
    return len(shape) == 2 or (len(shape) == 3 and shape[0] in (1, 3, 4))


@dataclass(frozen=True)
class Column:
    """One saved variable: ``name``, its ``role``, per-sample ``shape`` and numpy ``dtype`` name."""

    name: str
    role: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def image(self) -> bool:
        """A modality that can be written as a picture (see :func:`is_image`)."""
        return self.role == "modality" and is_image(self.shape)


def roles(manifest: dict) -> dict[str, str]:
    """Every variable's role: the manifest's ``roles``, else worked out from its other fields.

    Older manifests: flows are modalities, ``pmi:`` columns PMI, integer non-modalities labels;
    the rest are targets, or, with ``save_latents``, targets where the recorded spec's text
    declares them (``target NAME``) and latents otherwise.
    """
    recorded = manifest.get("roles")
    if isinstance(recorded, dict) and set(recorded) == set(manifest["variables"]):
        return dict(recorded)
    flows = manifest.get("flows", {}) if isinstance(manifest.get("flows"), dict) else {}
    targets = _declared_targets(manifest) if manifest.get("fingerprint", {}).get("save_latents") else None
    out = {}
    for name, spec in manifest["variables"].items():
        if name in flows:
            out[name] = "modality"
        elif name.startswith("pmi:"):
            out[name] = "pmi"
        elif np.dtype(spec["dtype"]).kind in "uib":
            out[name] = "label"
        else:
            out[name] = "target" if targets is None or name.split("[")[0] in targets else "latent"
    return out


def _declared_targets(manifest: dict) -> set[str]:
    """The names the recorded spec declares with ``target`` (``t`` also covers ``t[1]``); {} if none parse."""
    from mmmi_dsl.lang.parse import parse_text

    try:
        program = parse_text(str(manifest.get("spec", "")), str(manifest.get("spec_file", "spec")))
    except SpecError:
        return set()
    names, todo = set(), list(program.statements)
    while todo:
        st = todo.pop()
        todo += list(st.body)
        if st.kind == "target":
            names.add(st.decl.name if st.decl else st.name)
    return names


class ShardReader:
    """Samples of a complete dataset by global index, from lazily opened memory maps.

    ``columns``: the variables read (default all), in the manifest's order. Picklable: the
    maps are dropped on pickling and reopened on first use in the new process.
    """

    def __init__(self, root: str | Path, variables: list[str] | None = None):
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.is_file():
            raise DatasetError(f"{self.root}: no dataset here (no {MANIFEST})")
        self.manifest = read_manifest(path)
        if not self.manifest["complete"]:
            raise DatasetError(f"{self.root} is incomplete: resume the run (or merge its parts) first")
        names = list(self.manifest["variables"])
        for v in variables or []:
            if v not in self.manifest["variables"]:
                raise DatasetError(f"{self.root} has no variable `{v}`; {did_you_mean(v, names)}")
        role = roles(self.manifest)
        self.columns = [Column(v, role[v], tuple(self.manifest["variables"][v]["shape"]),
                               self.manifest["variables"][v]["dtype"])
                        for v in (variables if variables else names)]
        self.shards = sorted(self.manifest["shards"], key=lambda s: s["index"])
        self.shard_size = self.manifest["shard_size"]
        self._maps: dict[tuple[int, str], np.ndarray] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}}

    def _map(self, shard: int, var: str) -> np.ndarray:
        key = (shard, var)
        if key not in self._maps:
            entry = self.shards[shard]
            arr = np.load(self.root / entry["files"][var], mmap_mode="r", allow_pickle=False)
            if arr.shape[0] != entry["n"]:
                raise DatasetError(f"{self.root / entry['files'][var]} holds {arr.shape[0]} samples, "
                                   f"the manifest says {entry['n']}; run mmmic verify")
            self._maps[key] = arr
        return self._maps[key]

    def sample(self, k: int) -> dict[str, np.ndarray]:
        """Sample ``k``: ``{name: array of its per-sample shape}`` (copies, writable)."""
        s, r = divmod(int(k), self.shard_size)
        return {c.name: np.array(self._map(s, c.name)[r]) for c in self.columns}

    def rows(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Samples ``indices`` (ascending): ``{name: (len(indices), *shape)}``, read shard by shard."""
        indices = np.asarray(indices, dtype=np.int64)
        shard = indices // self.shard_size
        out = {}
        for c in self.columns:
            parts = [self._map(int(s), c.name)[indices[shard == s] - s * self.shard_size] for s in np.unique(shard)]
            out[c.name] = (np.concatenate(parts) if parts else
                           np.empty((0, *c.shape), dtype=self.manifest["variables"][c.name]["dtype"]))
        return out
