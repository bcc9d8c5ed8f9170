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
SHIPPED = {"digits": WEIGHTS_DIR / "digits.safetensors", "fashion": WEIGHTS_DIR / "fashion.safetensors"}
#: Where the docs say how shipped weights that are not installed yet are made.
TRAINED_BY = {"fashion": "`mmmic train-flow --data fashion-mnist --arch unet ...` (the exact command is in "
                         "docs/flows.md), then copy OUT.safetensors to mmmi_dsl/weights/fashion.safetensors"}
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib")
MAX_HEADER_BYTES = 100 << 20
#: Velocity-network architectures: ``arch`` in the config (absent: the MLP).
#: Architectures of velocity networks: the two built in, and ``custom``, built by the flow plugin that
#: registered it (its tensors cannot be enumerated here, so only their total size is checked).
ARCHS = ("mlp", "unet", "custom")
#: Bounds of the velocity network's integer config fields (inclusive), per architecture.
CONFIG_BOUNDS = {
    "mlp": {"dim": (1, 50_000_000), "hidden": (1, 65_536), "depth": (1, 64), "n_classes": (1, 100_000),
            "t_freqs": (0, 1_024), "c_dim": (1, 65_536)},
    "unet": {"dim": (1, 50_000_000), "channels": (1, 4_096), "res_blocks": (1, 16), "attention": (0, 1),
             "heads": (1, 256), "groups": (1, 1_024), "n_classes": (1, 100_000), "t_freqs": (0, 1_024),
             "t_dim": (1, 65_536)},
    "custom": {"dim": (1, 50_000_000), "n_classes": (1, 100_000)},
}
#: Bounds of the UNet's list fields: (length bounds, bounds of each entry).
LIST_BOUNDS = {"shape": ((3, 3), (1, 65_536)), "mults": ((1, 8), (1, 64))}
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


def arch(config: dict) -> str:
    """The architecture a config describes: its ``arch`` (``mlp`` when absent)."""
    return config.get("arch", "mlp")


def velocity_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of the velocity network a checked ``config`` describes (by its ``arch``)."""
    return unet_shapes(config) if arch(config) == "unet" else mlp_shapes(config)


def mlp_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of the MLP velocity network (:class:`mmmi_dsl.flows.cnf.VelocityNet`) of ``config``."""
    d, h, depth = config["dim"], config["hidden"], config["depth"]
    width = d + 1 + 2 * config["t_freqs"] + config["c_dim"]
    shapes = {"class_emb.weight": (config["n_classes"] + 1, config["c_dim"])}
    sizes = [width] + [h] * depth + [d]
    for k in range(depth + 1):
        shapes[f"mlp.{2 * k}.weight"] = (sizes[k + 1], sizes[k])
        shapes[f"mlp.{2 * k}.bias"] = (sizes[k + 1],)
    return shapes


def _res_block(shapes: dict, name: str, c_in: int, c_out: int, t_dim: int) -> None:
    shapes.update({f"{name}.norm1.weight": (c_in,), f"{name}.norm1.bias": (c_in,),
                   f"{name}.conv1.weight": (c_out, c_in, 3, 3), f"{name}.conv1.bias": (c_out,),
                   f"{name}.emb.weight": (c_out, t_dim), f"{name}.emb.bias": (c_out,),
                   f"{name}.norm2.weight": (c_out,), f"{name}.norm2.bias": (c_out,),
                   f"{name}.conv2.weight": (c_out, c_out, 3, 3), f"{name}.conv2.bias": (c_out,)})
    if c_in != c_out:
        shapes.update({f"{name}.skip.weight": (c_out, c_in, 1, 1), f"{name}.skip.bias": (c_out,)})


def unet_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of the UNet (:class:`mmmi_dsl.flows.unet.UNet`) of a checked ``config``.

    Note:
        Enumerated here without torch, in the module's order (tests compare it with ``state_dict()``):
        skips are the stem's output, every down block's and every downsampling's; each up level has
        ``res_blocks + 1`` blocks, each taking one skip (popped last first) concatenated to its input.
    """
    n_ch, base, t_dim, rb = config["shape"][0], config["channels"], config["t_dim"], config["res_blocks"]
    widths = [base * m for m in config["mults"]]
    tf = 1 + 2 * config["t_freqs"]
    shapes = {"time_mlp.0.weight": (t_dim, tf), "time_mlp.0.bias": (t_dim,),
              "time_mlp.2.weight": (t_dim, t_dim), "time_mlp.2.bias": (t_dim,),
              "class_emb.weight": (config["n_classes"] + 1, t_dim),
              "stem.weight": (base, n_ch, 3, 3), "stem.bias": (base,)}
    skips, c = [base], base
    for i, w in enumerate(widths):
        for j in range(rb):
            _res_block(shapes, f"down.{i}.blocks.{j}", c, w, t_dim)
            c = w
            skips.append(c)
        if i < len(widths) - 1:
            shapes.update({f"down.{i}.resample.weight": (c, c, 3, 3), f"down.{i}.resample.bias": (c,)})
            skips.append(c)
    _res_block(shapes, "mid1", c, c, t_dim)
    if config["attention"]:
        shapes.update({"attn.norm.weight": (c,), "attn.norm.bias": (c,), "attn.qkv.weight": (3 * c, c, 1, 1),
                       "attn.qkv.bias": (3 * c,), "attn.proj.weight": (c, c, 1, 1), "attn.proj.bias": (c,)})
    _res_block(shapes, "mid2", c, c, t_dim)
    for k, (i, w) in enumerate(reversed(list(enumerate(widths)))):
        for j in range(rb + 1):
            _res_block(shapes, f"up.{k}.blocks.{j}", c + skips.pop(), w, t_dim)
            c = w
        if i > 0:
            shapes.update({f"up.{k}.resample.weight": (c, c, 3, 3), f"up.{k}.resample.bias": (c,)})
    shapes.update({"out_norm.weight": (c,), "out_norm.bias": (c,), "out.weight": (n_ch, c, 3, 3),
                   "out.bias": (n_ch,)})
    return shapes


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _unet_problem(config: dict) -> str | None:
    """Why a UNet config's fields do not fit together (sizes, divisibility), or None."""
    for key, ((nlo, nhi), (lo, hi)) in LIST_BOUNDS.items():
        v = config.get(key)
        if not isinstance(v, list) or not nlo <= len(v) <= nhi or not all(_is_int(e) and lo <= e <= hi for e in v):
            length = f"{nlo}" if nlo == nhi else f"{nlo}..{nhi}"
            return f"config `{key}` must be a list of {length} integers in {lo:,}..{hi:,}, got {v!r}"
    c, h, w = config["shape"]
    if c * h * w != config["dim"]:
        return f"config `shape` {c}x{h}x{w} has {c * h * w:,} values but `dim` is {config['dim']:,}"
    factor = 2 ** (len(config["mults"]) - 1)
    if h % factor or w % factor:
        return f"config `shape` {h}x{w} must be divisible by {factor} (one halving per level after the first)"
    widths = [config["channels"] * m for m in config["mults"]]
    if any(wd % config["groups"] for wd in [config["channels"], *widths]):
        return f"config `groups` {config['groups']} must divide every level's channels {widths}"
    if config["attention"] and widths[-1] % config["heads"]:
        return f"config `heads` {config['heads']} must divide the lowest level's {widths[-1]} channels"
    return None


def check_config(config, where: str) -> dict:
    """The config with its fields checked against :data:`CONFIG_BOUNDS` of its ``arch`` (ints, not bools)."""
    if not isinstance(config, dict):
        raise WeightsError(f"{where} has a config that is not a JSON object")
    if config.get("format") != FORMAT:
        raise WeightsError(f"{where} has config format {config.get('format')!r}, expected {FORMAT!r}")
    kind = config.get("arch", "mlp")
    if kind not in ARCHS:
        raise WeightsError(f"{where}: config `arch` must be one of {', '.join(ARCHS)}, got {kind!r}")
    for key, (lo, hi) in CONFIG_BOUNDS[kind].items():
        v = config.get(key)
        if not _is_int(v) or not lo <= v <= hi:
            raise WeightsError(f"{where}: config `{key}` must be an integer in {lo:,}..{hi:,}, got {v!r}")
    problem = _unet_problem(config) if kind == "unet" else None
    if problem:
        raise WeightsError(f"{where}: {problem}")
    return config


def parameter_count(config: dict) -> int:
    """How many parameters the velocity network of a checked ``config`` has."""
    return sum(math.prod(s) for s in velocity_shapes(config).values())


def shipped(name: str) -> Path:
    """The path of flow ``name``'s shipped weights.

    Raises:
        WeightsError: they are not installed (the message says how they are trained).
    """
    path = SHIPPED[name]
    if not path.is_file():
        how = TRAINED_BY.get(name, "mmmic train-flow (docs/flows.md)")
        raise WeightsError(f"the {name} weights are not installed (no `{path.name}` in the package); "
                           f"train them with {how}")
    return path


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
    if arch(config) == "custom":  # the plugin's network: its layout is unknown here, its size is not
        n_params = sum(math.prod(s) for s in shapes.values())
        if n_params > MAX_PARAMETERS:
            raise WeightsError(f"`{p}` holds {n_params:,} parameters, more than {MAX_PARAMETERS:,}")
        return WeightsInfo(p, config, shapes)
    expected = velocity_shapes(config)
    n_params = parameter_count(config)
    if n_params > MAX_PARAMETERS:
        raise WeightsError(f"`{p}`: its config describes {n_params:,} parameters, more than {MAX_PARAMETERS:,}")
    if shapes != expected:
        diff = sorted(set(shapes) ^ set(expected)) or sorted(k for k in shapes if shapes[k] != expected[k])
        k = diff[0]
        raise WeightsError(f"the tensors in `{p}` do not fit the architecture of its config: tensor `{k}` is "
                           f"{shapes.get(k, 'missing')}, the config needs {expected.get(k, 'none')}")
    return WeightsInfo(p, config, shapes)
