"""Bring your own model: a torch checkpoint's tensors as a safetensors file that ``cnf`` reads.

The checkpoint is read with ``torch.load(weights_only=True)``: tensors, dicts, lists and numbers
only, so a checkpoint whose unpickling would run code is refused, not run. The architecture
comes from a config the user gives (``mlp``, ``unet``, or ``custom`` for a network a flow plugin
builds); it is written into the safetensors metadata and checked against the tensors at once.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import torch

from mmmi_dsl.builtins import weights

#: Where trainers usually keep the weights inside a checkpoint, tried in this order.
STATE_KEYS = ("ema", "ema_state_dict", "state_dict", "model", "net")


class ConversionError(ValueError):
    """A checkpoint that cannot be converted; the message says why."""


def _tensors(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def select_state(obj, key: str | None) -> tuple[dict[str, torch.Tensor], str]:
    """The dict of tensors in a loaded checkpoint: at ``key`` (dotted path) or at a usual key."""
    if key:
        node = obj
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConversionError(f"the checkpoint has no `{key}` (top-level keys: "
                                      f"{', '.join(map(str, obj)) if isinstance(obj, dict) else 'none'})")
            node = node[part]
        if not _tensors(node):
            raise ConversionError(f"`{key}` in the checkpoint is not a dict of tensors")
        return node, key
    if _tensors(obj):
        return obj, ""
    for k in STATE_KEYS:
        if isinstance(obj, dict) and _tensors(obj.get(k)):
            return obj[k], k
    keys = ", ".join(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
    raise ConversionError(f"no dict of tensors found (tried {', '.join(STATE_KEYS)}; the checkpoint has {keys}); "
                          "name it with key")


def convert_checkpoint(src: Path, dst: Path, config: dict, key: str | None = None, prefix: str = "") -> dict:
    """Write ``src``'s tensors (at ``key``, names stripped of ``prefix``) to ``dst`` with ``config``.

    Returns the config written. Raises ConversionError (unreadable, needs code, no tensors, a bad
    config) or :class:`mmmi_dsl.builtins.weights.WeightsError` (tensors that do not fit it).
    """
    src, dst = Path(src), Path(dst)
    if dst.suffix != ".safetensors":
        raise ConversionError(f"the output `{dst}` must end in .safetensors")
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConversionError(f"`{src}` cannot be read with weights_only=True ({first}); checkpoints whose "
                              "unpickling runs code are refused") from None
    state, where = select_state(obj, key)
    if prefix:
        state = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}
    config = {"format": weights.FORMAT, **config,
              "converted_from": {"file": src.name, "sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
                                 "key": where, "prefix": prefix}}
    weights.check_config(config, "the config")
    from safetensors.torch import save_file

    from mmmi_dsl.files import write_atomic

    tmp = dst.with_name(f".{dst.name}.converting")
    save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(tmp),
              metadata={"mmmi_config": json.dumps(config, sort_keys=True)})
    try:
        weights.inspect(tmp)  # the tensors fit the config, or nothing is written
        write_atomic(dst, tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)
    return config
