"""Learned-flow weights, inspected without torch and without unpickling anything.

A ``.safetensors`` file is an 8-byte little-endian header length, a JSON header naming each
tensor's dtype and shape (and ``__metadata__``), then raw data. The architecture is the
config in ``__metadata__["mmmi_config"]`` (or a ``.json`` file beside the weights). Its
numbers are checked against bounds and against the tensors' shapes *before* any network is
built, so a lying config cannot make torch allocate gigabytes.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

FORMAT = "mmmi_dsl.cnf/1"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
#: Weights that ship inside the package, by flow name.
SHIPPED = {"digits": WEIGHTS_DIR / "digits.safetensors"}
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib")
MAX_HEADER_BYTES = 100 << 20
#: Bounds of the velocity network's config (inclusive).
CONFIG_BOUNDS = {"dim": (1, 50_000_000), "hidden": (1, 65_536), "depth": (1, 64), "n_classes": (1, 100_000),
                 "t_freqs": (0, 1_024), "c_dim": (1, 65_536)}
#: Parameters the velocity network may have in all (about 4 GB as float32).
MAX_PARAMETERS = 1_000_000_000


class WeightsError(ValueError):
    """A weights file that cannot be used; the message says why (and never names a flag)."""


@dataclass(frozen=True)
class WeightsInfo:
    """What a weights file holds: ``config`` (the architecture) and ``shapes`` of its tensors."""

    path: Path
    config: dict
    shapes: dict[str, tuple[int, ...]]

    @property
    def dim(self) -> int:
        return int(self.config["dim"])

    @property
    def n_classes(self) -> int:
        return int(self.config["n_classes"])


def file_problem(path: Path) -> str | None:
    """Why a weights file is not a safetensors file (reads 9 bytes, never unpickles), or None."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return f"is a pickled checkpoint ({path.suffix})"
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as err:
        return f"cannot be read: {err.strerror}"
    # safetensors: an 8-byte little-endian header length, then the JSON header's '{'
    return None if len(head) == 9 and head[8:9] == b"{" else "is not a safetensors file"


def resolve(weights) -> Path:
    """The weights path: ``.safetensors`` added when the name has no suffix; pickles refused unread."""
    if weights is None or str(weights) == "":
        raise WeightsError('give the weights, e.g. cnf(z, weights = "model.safetensors", class = 0)')
    p = Path(weights)
    if p.suffix == "" and not p.exists():
        p = p.with_suffix(".safetensors")
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise WeightsError(f"refusing weights `{p}`: pickled checkpoints ({p.suffix}) can run arbitrary code "
                           "when loaded; convert them to .safetensors (safetensors.torch.save_file)")
    if not p.is_file():
        raise FileNotFoundError(f"no weights file `{p}`")
    problem = file_problem(p)
    if problem:
        raise WeightsError(f"`{p}` {problem} (pickled or other formats are refused without being read: "
                           "they can run code)")
    return p


def read_header(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """(tensor shapes, metadata) from a safetensors header; nothing else of the file is read."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            size = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if not 2 <= size <= MAX_HEADER_BYTES:
                raise WeightsError(f"`{path}` is not a safetensors file (pickled or other formats are refused "
                                   "without being read: they can run code)")
            header = json.loads(f.read(size))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WeightsError(f"`{path}` is not a valid safetensors file: {err}") from None
    if not isinstance(header, dict):
        raise WeightsError(f"`{path}` has a safetensors header that is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    shapes = {}
    for name, entry in header.items():
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise WeightsError(f"`{path}`: tensor `{name}` has no valid shape")
        shapes[name] = tuple(shape)
    return shapes, meta if isinstance(meta, dict) else {}


def velocity_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of the MLP velocity network (:class:`mmmi_dsl.flows.cnf.VelocityNet`) of ``config``."""
    d, h, depth = config["dim"], config["hidden"], config["depth"]
    width = d + 1 + 2 * config["t_freqs"] + config["c_dim"]
    shapes = {"class_emb.weight": (config["n_classes"] + 1, config["c_dim"])}
    sizes = [width] + [h] * depth + [d]
    for k in range(depth + 1):
        shapes[f"mlp.{2 * k}.weight"] = (sizes[k + 1], sizes[k])
        shapes[f"mlp.{2 * k}.bias"] = (sizes[k + 1],)
    return shapes


def check_config(config, where: str) -> dict:
    """The config with its numbers checked against :data:`CONFIG_BOUNDS` (ints, not bools)."""
    if not isinstance(config, dict):
        raise WeightsError(f"{where} has a config that is not a JSON object")
    if config.get("format") != FORMAT:
        raise WeightsError(f"{where} has config format {config.get('format')!r}, expected {FORMAT!r}")
    for key, (lo, hi) in CONFIG_BOUNDS.items():
        v = config.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise WeightsError(f"{where}: config `{key}` must be an integer in {lo:,}..{hi:,}, got {v!r}")
    return config


def inspect(weights) -> WeightsInfo:
    """Read and check a weights file's config and tensor shapes (never builds a network).

    Raises:
        WeightsError: a pickle, not safetensors, no or bad config, or tensors that do not fit it.
    """
    p = resolve(weights)
    shapes, meta = read_header(p)
    if "mmmi_config" in meta:
        try:
            config = json.loads(meta["mmmi_config"])
        except (TypeError, json.JSONDecodeError) as err:
            raise WeightsError(f"`{p}` has a config that is not JSON: {err}") from None
    else:
        side = p.with_suffix(".json")
        if not side.is_file():
            raise WeightsError(f"`{p}` carries no config and there is no `{side.name}` next to it")
        try:
            config = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise WeightsError(f"`{side}` is not a JSON config: {err}") from None
    check_config(config, f"`{p}`")
    expected = velocity_shapes(config)
    n_params = sum(math.prod(s) for s in expected.values())
    if n_params > MAX_PARAMETERS:
        raise WeightsError(f"`{p}`: its config describes {n_params:,} parameters, more than {MAX_PARAMETERS:,}")
    if shapes != expected:
        diff = sorted(set(shapes) ^ set(expected)) or sorted(k for k in shapes if shapes[k] != expected[k])
        k = diff[0]
        raise WeightsError(f"the tensors in `{p}` do not fit the architecture of its config: tensor `{k}` is "
                           f"{shapes.get(k, 'missing')}, the config needs {expected.get(k, 'none')}")
    return WeightsInfo(p, config, shapes)
