"""Train a class-conditional CNF by conditional flow matching (CPU, deterministic given the seed).

Path: ``x_t = (1 - t) z + t x`` with ``z ~ N(0, I)``, ``t ~ U(0, 1)``; the network regresses the
target velocity ``x - z`` (Lipman et al. 2023, rectified flow). Labels are dropped to the
null class with probability ``p_uncond`` so the same net also gives the unconditional field
for classifier-free guidance. A small Gaussian jitter (``data_noise``) dequantises the
integer-valued pixels, so the data distribution is full-rank and the learned flow stays
well-conditioned (its inverse does not have to expand degenerate directions).

Usage::

    python -m mmmi_dsl.train --data digits --out mmmi_dsl/weights/digits --steps 10000 --seed 0 --threads 1 --no-progress

``--data`` is ``digits`` (scikit-learn's 8x8 digits, shipped inside scikit-learn), a ``.npy``
array (n, ...) (one class; or give ``--labels file.npy``) or an ``.npz`` with arrays ``x`` and
``y``. Writes ``OUT.safetensors`` (weights, with the config in its metadata) and ``OUT.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mmmi_dsl.flows.cnf import FORMAT, VelocityNet, net_from_config


def load_digits_array() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits: (1797, 64) float32 in [-1, 1] (pixel / 16 * 2 - 1) and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0 * 2.0 - 1.0).astype(np.float32), d.target.astype(np.int64)


def train_flow(data: np.ndarray, labels: np.ndarray, *, steps: int = 6000, batch_size: int = 256,
               lr: float = 2e-3, seed: int = 0, hidden: int = 256, depth: int = 3, t_freqs: int = 8,
               c_dim: int = 32, p_uncond: float = 0.1, data_noise: float = 0.05, ema: float = 0.999,
               progress: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """Fit ``v(x, t, c)`` by conditional flow matching; returns the EMA weights and the config."""
    from tqdm import tqdm

    data = np.asarray(data, dtype=np.float32).reshape(len(data), -1)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if len(labels) != len(data):
        raise ValueError(f"{len(data)} samples but {len(labels)} labels")
    if labels.min() < 0:
        raise ValueError("labels must be non-negative integers")
    n, dim = data.shape
    n_classes = int(labels.max()) + 1
    config = {"format": FORMAT, "dim": dim, "hidden": int(hidden), "depth": int(depth),
              "n_classes": n_classes, "t_freqs": int(t_freqs), "c_dim": int(c_dim)}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(int(seed))
    net = VelocityNet(**{k: config[k] for k in ("dim", "hidden", "depth", "n_classes", "t_freqs", "c_dim")})
    avg = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    # warm up over >= 2 steps: OneCycleLR divides by the length of each phase
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=max(0.05, 2.0 / steps))
    x_all, y_all = torch.from_numpy(data), torch.from_numpy(labels)
    t0 = time.perf_counter()
    bar = tqdm(range(steps), disable=not progress, desc="flow matching", unit="step")
    loss_avg = None
    for _ in bar:
        idx = torch.randint(n, (batch_size,), generator=gen)
        x1 = x_all[idx] + data_noise * torch.randn(batch_size, dim, generator=gen)
        c = y_all[idx].clone()
        c[torch.rand(batch_size, generator=gen) < p_uncond] = n_classes
        z = torch.randn(batch_size, dim, generator=gen)
        t = torch.rand(batch_size, 1, generator=gen)
        xt = (1 - t) * z + t * x1
        loss = ((net(xt, t, c) - (x1 - z)) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for pa, pn in zip(avg.parameters(), net.parameters()):
                pa.mul_(ema).add_(pn, alpha=1 - ema)
        loss_avg = loss.item() if loss_avg is None else 0.99 * loss_avg + 0.01 * loss.item()
        bar.set_postfix(loss=f"{loss_avg:.4f}", refresh=False)
    config.update({"seed": int(seed), "steps": int(steps), "batch_size": int(batch_size), "lr": float(lr),
                   "p_uncond": float(p_uncond), "data_noise": float(data_noise), "ema": float(ema),
                   "n_train": int(n), "final_loss": float(loss_avg) if loss_avg is not None else None,
                   "train_seconds": round(time.perf_counter() - t0, 1), "torch": torch.__version__,
                   "torch_threads": torch.get_num_threads(),
                   "path": "linear x_t = (1-t) z + t x, target x - z; t=0 noise, t=1 data"})
    state = {k: v.detach().clone().contiguous() for k, v in avg.state_dict().items()}
    return state, config


def save_weights(path, state_dict: dict[str, torch.Tensor], config: dict) -> tuple[Path, Path]:
    """Write ``path.safetensors`` (config also in its metadata) and ``path.json``."""
    from safetensors.torch import save_file

    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    p.parent.mkdir(parents=True, exist_ok=True)
    st, js = p.with_suffix(".safetensors"), p.with_suffix(".json")
    net_from_config(config).load_state_dict(state_dict)  # refuse to save something that will not load
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(st),
              metadata={"mmmi_config": json.dumps(config, sort_keys=True)})
    js.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return st, js


def _load_data(spec: str, labels: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """(x (n, d), integer labels (n,), description) from ``digits``, a .npy or a .npz (x, y).

    Raises:
        UsageError: not one of those kinds. DatasetError: unreadable, pickled or malformed data.
    """
    from mmmi_dsl.dataset import DatasetError
    from mmmi_dsl.errors import UsageError

    if spec == "digits":
        x, y = load_digits_array()
        return x, y, "sklearn.datasets.load_digits, pixel/16*2-1"
    p = Path(spec)
    if p.suffix not in (".npz", ".npy"):
        raise UsageError(f"--data: expected `digits`, a .npy or a .npz file, got {spec}")
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as f:
                if "x" not in f:
                    raise DatasetError(f"{p}: expected arrays `x` (and optionally `y`)")
                x = f["x"]
                y = f["y"] if "y" in f else np.zeros(len(x), np.int64)
        else:
            x = np.load(p, allow_pickle=False)
            y = np.zeros(len(x), np.int64)
        if labels:
            y = np.load(labels, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read training data: {err}") from None
    if len(y) != len(x) or not np.issubdtype(np.asarray(y).dtype, np.integer):
        raise DatasetError(f"labels must be {len(x)} integers, got {np.asarray(y).shape} {np.asarray(y).dtype}")
    return x.reshape(len(x), -1), y, str(p)


def build_parser(prog: str = "python -m mmmi_dsl.train") -> argparse.ArgumentParser:
    """The arguments of ``mmmic train-flow`` / ``python -m mmmi_dsl.train`` (also read by docs/build.py)."""
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="digits | file.npy | file.npz (arrays x, y)")
    ap.add_argument("--labels", default=None, help="a .npy of integer labels for --data file.npy")
    ap.add_argument("--out", required=True, help="output stem: writes OUT.safetensors and OUT.json")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--p-uncond", type=float, default=0.1)
    ap.add_argument("--data-noise", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (results depend on it)")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: list[str] | None = None, prog: str = "python -m mmmi_dsl.train") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser(prog)
    a = ap.parse_args(argv)
    if a.steps < 10:
        ap.error("--steps must be at least 10")
    if a.threads:
        torch.set_num_threads(a.threads)
    x, y, source = _load_data(a.data, a.labels)
    state, config = train_flow(x, y, steps=a.steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                               hidden=a.hidden, depth=a.depth, p_uncond=a.p_uncond, data_noise=a.data_noise,
                               progress=not a.no_progress)
    config["data"] = source
    config["command"] = f"{prog} " + shlex.join(argv)
    st, js = save_weights(a.out, state, config)
    print(f"wrote {st} and {js} ({config['train_seconds']} s, final loss {config['final_loss']:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
