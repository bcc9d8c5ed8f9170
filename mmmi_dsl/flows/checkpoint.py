"""Resumable training checkpoints and sample grids for :mod:`mmmi_dsl.flows.train`, pickle-free.

A checkpoint is one safetensors file, written atomically: the tensors of the model
(``model.*``), its EMA (``ema.*``), the optimiser's state (``opt.<param>.<key>``) and the RNG
states (``rng.generator``, ``rng.torch``); everything else (step, running loss, optimiser
hyper-parameters, scheduler state, the run's fingerprint) is JSON in its metadata
(``mmmi_checkpoint``). Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from mmmi_dsl.files import write_atomic

KEY = "mmmi_checkpoint"
FORMAT = "mmmi_dsl.checkpoint/1"


def save_checkpoint(path: Path, *, net, avg, opt, sched, gen: torch.Generator, step: int, info: dict) -> None:
    """Write the training state after ``step`` steps to ``path`` (atomically; ``info`` is JSON)."""
    from safetensors.torch import save

    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in avg.state_dict().items()})
    opt_state = opt.state_dict()
    scalars = {}
    for i, entry in opt_state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"opt.{i}.{key}"] = value
            else:
                scalars[f"{i}.{key}"] = value
    tensors["rng.generator"] = gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"format": FORMAT, "step": int(step), "param_groups": opt_state["param_groups"],
            "opt_scalars": scalars, "sched": sched.state_dict(), **info}
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_atomic(Path(path), save(tensors, metadata={KEY: json.dumps(meta, sort_keys=True)}))


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a checkpoint written by :func:`save_checkpoint`."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a mapping
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as err:
        raise ValueError(f"`{path}` is not a training checkpoint: {err}") from None
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error type on malformed files
        raise ValueError(f"`{path}` is not a training checkpoint: {err}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"`{path}` is not a training checkpoint (format {meta.get('format')!r})")
    return tensors, meta


def restore(tensors: dict, meta: dict, *, net, avg, opt, sched, gen: torch.Generator) -> int:
    """Load a checkpoint into the (freshly built) training objects; returns its step."""
    def part(prefix):
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    device = next(net.parameters()).device
    net.load_state_dict(part("model."))
    avg.load_state_dict(part("ema."))
    state: dict = {}
    for k, v in part("opt.").items():
        i, key = k.split(".", 1)
        state.setdefault(int(i), {})[key] = v if key == "step" else v.to(device)
    for k, v in meta["opt_scalars"].items():
        i, key = k.split(".", 1)
        state.setdefault(int(i), {})[key] = v
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})
    sched.load_state_dict(meta["sched"])
    gen.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"])


@torch.no_grad()
def sample_images(net, shape: tuple[int, ...], n_classes: int, per_class: int, *, steps: int = 8,
                  seed: int = 0) -> torch.Tensor:
    """``per_class`` samples of every class from velocity net ``net`` (rk4, ``steps`` steps, own RNG):
    (n_classes, per_class, C, H, W) on the CPU."""
    p = next(net.parameters())
    gen = torch.Generator().manual_seed(seed)
    dim = int(np.prod(shape))
    x = torch.randn(n_classes * per_class, dim, generator=gen).to(device=p.device, dtype=p.dtype)
    c = torch.arange(n_classes, device=p.device).repeat_interleave(per_class)
    h = 1.0 / steps
    for k in range(steps):
        t = k * h
        k1 = net(x, torch.tensor(t), c)
        k2 = net(x + h / 2 * k1, torch.tensor(t + h / 2), c)
        k3 = net(x + h / 2 * k2, torch.tensor(t + h / 2), c)
        k4 = net(x + h * k3, torch.tensor(t + h), c)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x.float().cpu().reshape(n_classes, per_class, *shape)


def write_grid(images: torch.Tensor, path: Path, *, min_tile: int = 28) -> None:
    """A PNG grid, one row per class: ``images`` (rows, cols, C, H, W) in [-1, 1] (clipped), C = 1 or 3."""
    import io

    from PIL import Image

    rows, cols, c, h, w = images.shape
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    grid = np.zeros((rows * (h + 1), cols * (w + 1), c), np.uint8)
    for i in range(rows):
        for j in range(cols):
            grid[i * (h + 1):i * (h + 1) + h, j * (w + 1):j * (w + 1) + w] = pixels[i, j].transpose(1, 2, 0)
    img = Image.fromarray(grid[..., 0] if c == 1 else grid, "L" if c == 1 else "RGB")
    scale = max(1, -(-min_tile // h))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    write_atomic(Path(path), buf.getvalue())
