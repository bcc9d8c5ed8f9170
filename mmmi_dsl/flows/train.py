"""Train a class-conditional CNF by conditional flow matching (deterministic on the CPU given the seed).

Path: ``x_t = (1 - t) z + t x`` with ``z ~ N(0, I)``, ``t ~ U(0, 1)``; the network regresses the
target velocity ``x - z`` (Lipman et al. 2023, rectified flow). Labels are dropped to the
null class with probability ``p_uncond`` so the same net also gives the unconditional field
for classifier-free guidance. A small Gaussian jitter (``data_noise``) dequantises the
integer-valued pixels, so the data distribution is full-rank and the learned flow stays
well-conditioned (its inverse does not have to expand degenerate directions). The EMA of
the weights is what gets saved as the flow.

Usage::

    python -m mmmi_dsl.train --data digits --out mmmi_dsl/weights/digits --steps 10000 \
        --seed 0 --threads 1 --no-progress

``--data``: ``digits``, ``fashion-mnist`` (Debian's ``dataset-fashion-mnist``), a ``.npz`` with
arrays ``x`` (n, C, H, W) and ``y``, a ``.npy`` (one class, or ``--labels``), or a folder of one
PNG subfolder per class (:mod:`mmmi_dsl.flows.data`). ``--arch unet`` trains the convolutional
velocity network (:mod:`mmmi_dsl.flows.unet`). Writes ``OUT.safetensors`` (weights, config in
its metadata) and ``OUT.json``; with ``--checkpoint-every K`` also a resumable checkpoint (and
the current EMA weights as OUT) every K steps, with ``--sample-every K`` a sample grid PNG.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mmmi_dsl.builtins import weights
from mmmi_dsl.files import write_atomic
from mmmi_dsl.flows import checkpoint as ckpt
from mmmi_dsl.flows.cnf import FORMAT, net_from_config
from mmmi_dsl.flows.data import load_digits_array, load_training_data

__all__ = ["RunFiles", "Schedule", "architecture", "build_parser", "load_digits_array", "main", "save_weights",
           "segment", "train", "train_flow"]

#: The UNet's defaults (about 1.3 M parameters on 1x28x28).
UNET_DEFAULTS = {"channels": 32, "mults": [1, 2, 2], "res_blocks": 1, "attention": 1, "heads": 4, "groups": 8,
                 "t_freqs": 8, "t_dim": 128}


@dataclass(frozen=True)
class Schedule:
    """How to train: ``steps`` Adam steps of ``batch_size`` under a one-cycle learning rate peaking at
    ``lr``; class dropout ``p_uncond``; dequantisation jitter sd ``data_noise``; EMA decay ``ema``;
    gradient-norm clipping at ``grad_clip`` (0: none)."""

    steps: int = 6000
    batch_size: int = 256
    lr: float = 2e-3
    seed: int = 0
    p_uncond: float = 0.1
    data_noise: float = 0.05
    ema: float = 0.999
    grad_clip: float = 0.0


@dataclass(frozen=True)
class RunFiles:
    """Where a long run keeps its state: a checkpoint every ``checkpoint_every`` steps and a sample
    grid every ``sample_every`` steps (0: never) in ``directory``; ``resume`` continues from the
    checkpoint there; ``stop_after`` ends this process after that many steps in all (a checkpoint
    is written), so that a later run resumes."""

    directory: Path
    checkpoint_every: int = 0
    sample_every: int = 0
    resume: bool = False
    stop_after: int | None = None

    @property
    def checkpoint(self) -> Path:
        return Path(self.directory) / "checkpoint.safetensors"


def architecture(arch: str, dim: int, n_classes: int, shape: tuple[int, ...] | None = None, **fields) -> dict:
    """A checked ``mmmi_dsl.cnf/1`` config: the MLP (``hidden``, ``depth``, ``t_freqs``, ``c_dim``) or
    the UNet (``shape`` and :data:`UNET_DEFAULTS` overridden by ``fields``).

    Raises:
        WeightsError: fields out of bounds or not fitting together (e.g. groups not dividing channels).
    """
    if arch == "mlp":
        config = {"format": FORMAT, "dim": int(dim), "hidden": 256, "depth": 3, "n_classes": int(n_classes),
                  "t_freqs": 8, "c_dim": 32}
        config.update({k: v for k, v in fields.items() if k in ("hidden", "depth", "t_freqs", "c_dim")})
    elif arch == "unet":
        if shape is None or len(shape) != 3:
            raise weights.WeightsError(f"the unet needs images (n, C, H, W), got data of size {dim}")
        config = {"format": FORMAT, "arch": "unet", "dim": int(dim), "shape": [int(s) for s in shape],
                  "n_classes": int(n_classes), **UNET_DEFAULTS}
        config.update({k: v for k, v in fields.items() if k in UNET_DEFAULTS})
        config["mults"] = [int(m) for m in config["mults"]]
    else:
        raise weights.WeightsError(f"unknown architecture {arch!r}; one of {', '.join(weights.ARCHS)}")
    weights.check_config(config, "the architecture")
    if weights.parameter_count(config) > weights.MAX_PARAMETERS:
        raise weights.WeightsError(f"the architecture has more than {weights.MAX_PARAMETERS:,} parameters")
    return config


def _bar(steps: int, start: int, progress: bool):
    from tqdm import tqdm

    quiet = not sys.stderr.isatty()  # a log file gets a line every 30 s, not every step
    return tqdm(range(start, steps), initial=start, total=steps, disable=not progress, desc="flow matching",
                unit="step", mininterval=30.0 if quiet else 0.1)


def segment(first: int, last: int, device: torch.device | None) -> dict:
    """One process's part of a run: steps ``first``..``last`` on ``device`` (None: not recorded), its
    precision (``float32``, or ``bf16 autocast`` on CUDA: from there the run is not the CPU's and not
    bit-reproducible), torch's version, and the GPU's name on CUDA."""
    if device is None:
        return {"steps": [int(first), int(last)], "device": None, "precision": None, "torch": None}
    cuda = device.type == "cuda"
    entry = {"steps": [int(first), int(last)], "device": device.type,
             "precision": "bf16 autocast" if cuda else "float32", "torch": torch.__version__}
    if cuda:
        entry["gpu"] = torch.cuda.get_device_name(device)
    return entry


def train(data: np.ndarray, labels: np.ndarray, config: dict, schedule: Schedule, *, device: str = "cpu",
          run: RunFiles | None = None, progress: bool = True, fingerprint: dict | None = None,
          on_save: Callable[[dict, dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None,
          shape: tuple[int, ...] | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Fit ``v(x, t, c)`` of ``config`` by conditional flow matching; returns the EMA weights and the config.

    The config's ``segments`` lists each process's part of the run (:func:`segment`), in the
    checkpoint too, appended on every resume; a checkpoint without the list (older ones) starts it
    with its own steps, their device unrecorded (None).

    Args:
        data: (n, ...) samples, flattened to (n, dim); labels: (n,) integers in 0..n_classes-1.
        device: ``cpu`` or ``cuda`` (bf16 autocast there; the random numbers are drawn on the CPU).
        run: checkpoints, sample grids and resuming (None: none).
        fingerprint: what must match to resume (data hash, command's settings); checked on resume.
        on_save: called with ``(ema_state, config)`` at every checkpoint (to write the current weights).
        should_stop: polled every step; when true a checkpoint is written and training stops.
        shape: (C, H, W) of the samples for sample grids (default: the UNet's shape; None: no grids).
    """
    s = schedule
    shape = tuple(shape or config.get("shape") or ()) or None
    data = np.asarray(data, dtype=np.float32).reshape(len(data), -1)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if len(labels) != len(data):
        raise ValueError(f"{len(data)} samples but {len(labels)} labels")
    if labels.min() < 0 or labels.max() >= config["n_classes"]:
        raise ValueError(f"labels must be integers in 0..{config['n_classes'] - 1}")
    n, dim = data.shape
    dev = torch.device(device)
    amp = dev.type == "cuda"
    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(int(s.seed))
    net = net_from_config(config).to(dev)
    avg = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=s.lr)
    # warm up over >= 2 steps: OneCycleLR divides by the length of each phase
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=s.steps,
                                                pct_start=max(0.05, 2.0 / s.steps))
    fingerprint = {"config": config, "schedule": asdict(s), **(fingerprint or {})}
    start, loss_avg, seconds, segments = 0, None, 0.0, []
    if run is not None and run.resume and run.checkpoint.is_file():
        tensors, meta = ckpt.read_checkpoint(run.checkpoint)
        for key, value in fingerprint.items():
            if json.loads(json.dumps(value)) != meta["fingerprint"].get(key):
                raise ValueError(f"the checkpoint `{run.checkpoint}` is of another run: its {key} differs "
                                 f"({meta['fingerprint'].get(key)!r}, now {value!r})")
        start = ckpt.restore(tensors, meta, net=net, avg=avg, opt=opt, sched=sched, gen=gen)
        loss_avg, seconds = meta["loss_avg"], float(meta["seconds"])
        segments = list(meta.get("segments") or ([segment(0, start, None)] if start else []))
    x_all, y_all = torch.from_numpy(data), torch.from_numpy(labels)
    n_classes = config["n_classes"]
    end = s.steps if run is None or run.stop_after is None else max(start, min(s.steps, run.stop_after))

    def result(step: int) -> tuple[dict, dict]:
        done = dict(config)
        done.update({"seed": int(s.seed), "steps": int(s.steps), "steps_done": int(step),
                     "batch_size": int(s.batch_size), "lr": float(s.lr), "p_uncond": float(s.p_uncond),
                     "data_noise": float(s.data_noise), "ema": float(s.ema), "n_train": int(n),
                     "final_loss": float(loss_avg) if loss_avg is not None else None,
                     "train_seconds": round(seconds + time.perf_counter() - t0, 1), "torch": torch.__version__,
                     "torch_threads": torch.get_num_threads(), "device": dev.type,
                     "path": "linear x_t = (1-t) z + t x, target x - z; t=0 noise, t=1 data"})
        if s.grad_clip:
            done["grad_clip"] = float(s.grad_clip)
        done["segments"] = segments + ([segment(start, step, dev)] if step > start else [])
        return {k: v.detach().cpu().clone().contiguous() for k, v in avg.state_dict().items()}, done

    def save(step: int) -> None:
        state, done = result(step)
        info = {"loss_avg": loss_avg, "seconds": done["train_seconds"], "fingerprint": fingerprint,
                "segments": done["segments"]}
        ckpt.save_checkpoint(run.checkpoint, net=net, avg=avg, opt=opt, sched=sched, gen=gen, step=step, info=info)
        if on_save is not None:
            on_save(state, done)

    t0 = time.perf_counter()
    bar = _bar(end, start, progress)
    step = start
    for step in bar:
        idx = torch.randint(n, (s.batch_size,), generator=gen)
        x1 = x_all[idx] + s.data_noise * torch.randn(s.batch_size, dim, generator=gen)
        c = y_all[idx].clone()
        c[torch.rand(s.batch_size, generator=gen) < s.p_uncond] = n_classes
        z = torch.randn(s.batch_size, dim, generator=gen)
        t = torch.rand(s.batch_size, 1, generator=gen)
        xt = (1 - t) * z + t * x1
        xt, t, c, target = xt.to(dev), t.to(dev), c.to(dev), (x1 - z).to(dev)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            pred = net(xt, t, c)
        loss = ((pred.float() - target) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if s.grad_clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), s.grad_clip)
        opt.step()
        sched.step()
        with torch.no_grad():
            for pa, pn in zip(avg.parameters(), net.parameters()):
                pa.mul_(s.ema).add_(pn, alpha=1 - s.ema)
        loss_avg = loss.item() if loss_avg is None else 0.99 * loss_avg + 0.01 * loss.item()
        bar.set_postfix(loss=f"{loss_avg:.4f}", refresh=False)
        done = step + 1
        if run is not None and run.sample_every and done % run.sample_every == 0 and shape:
            images = ckpt.sample_images(avg, shape, n_classes, 8, seed=s.seed)
            ckpt.write_grid(images, Path(run.directory) / f"samples-{done:07d}.png")
        stopping = should_stop is not None and should_stop()
        if run is not None and (stopping or done == end or (run.checkpoint_every and done % run.checkpoint_every == 0)):
            save(done)
            bar.write(f"step {done:,}/{s.steps:,}  loss {loss_avg:.4f}  "
                      f"{(time.perf_counter() - t0) / max(1, done - start):.3f} s/step  checkpoint {run.checkpoint}")
        if stopping:
            step = done
            break
    else:
        step = end
    bar.close()
    return result(step)


def train_flow(data: np.ndarray, labels: np.ndarray, *, steps: int = 6000, batch_size: int = 256,
               lr: float = 2e-3, seed: int = 0, hidden: int = 256, depth: int = 3, t_freqs: int = 8,
               c_dim: int = 32, p_uncond: float = 0.1, data_noise: float = 0.05, ema: float = 0.999,
               progress: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """The MLP flow of ``data`` (n, d): :func:`train` with :func:`architecture` ``("mlp", ...)``."""
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if len(labels) and labels.min() < 0:
        raise ValueError("labels must be non-negative integers")
    config = architecture("mlp", int(np.prod(np.shape(data)[1:])), int(labels.max()) + 1, hidden=int(hidden),
                          depth=int(depth), t_freqs=int(t_freqs), c_dim=int(c_dim))
    schedule = Schedule(steps=steps, batch_size=batch_size, lr=lr, seed=seed, p_uncond=p_uncond,
                        data_noise=data_noise, ema=ema)
    return train(data, labels, config, schedule, progress=progress)


def save_weights(path, state_dict: dict[str, torch.Tensor], config: dict) -> tuple[Path, Path]:
    """Write ``path.safetensors`` (config also in its metadata) and ``path.json``, each atomically."""
    from safetensors.torch import save

    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    st, js = p.with_suffix(".safetensors"), p.with_suffix(".json")
    net_from_config(config).load_state_dict(state_dict)  # refuse to save something that will not load
    write_atomic(st, save({k: v.contiguous() for k, v in state_dict.items()},
                          metadata={"mmmi_config": json.dumps(config, sort_keys=True)}))
    write_atomic(js, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return st, js


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, e.g. 1,2,2; got {text!r}") from None


def build_parser(prog: str = "python -m mmmi_dsl.train") -> argparse.ArgumentParser:
    """The arguments of ``mmmic train-flow`` / ``python -m mmmi_dsl.train`` (also read by docs/build.py)."""
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True,
                    help="digits | fashion-mnist | file.npz (arrays x (n, C, H, W), y) | file.npy | DIR (a PNG "
                         "subfolder per class)")
    ap.add_argument("--labels", default=None, help="a .npy of integer labels for --data file.npy")
    ap.add_argument("--out", required=True, help="output stem: writes OUT.safetensors and OUT.json")
    ap.add_argument("--arch", choices=weights.ARCHS, default="mlp", help="velocity network (default mlp)")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the one-cycle schedule")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=256, help="mlp: width")
    ap.add_argument("--depth", type=int, default=3, help="mlp: hidden layers")
    ap.add_argument("--channels", type=int, default=UNET_DEFAULTS["channels"], help="unet: base channels")
    ap.add_argument("--mults", type=_ints, default=UNET_DEFAULTS["mults"], metavar="M1,M2,...",
                    help="unet: channel multipliers per resolution (default 1,2,2: 28 -> 14 -> 7)")
    ap.add_argument("--res-blocks", type=int, default=UNET_DEFAULTS["res_blocks"], help="unet: blocks per level")
    ap.add_argument("--attention", type=int, choices=(0, 1), default=UNET_DEFAULTS["attention"], metavar="{0,1}",
                    help="unet: self-attention at the lowest resolution (1) or not (0)")
    ap.add_argument("--heads", type=int, default=UNET_DEFAULTS["heads"], help="unet: attention heads")
    ap.add_argument("--groups", type=int, default=UNET_DEFAULTS["groups"], help="unet: GroupNorm groups")
    ap.add_argument("--t-dim", type=int, default=UNET_DEFAULTS["t_dim"], help="unet: time/class embedding width")
    ap.add_argument("--p-uncond", type=float, default=0.1)
    ap.add_argument("--data-noise", type=float, default=0.05)
    ap.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved weights")
    ap.add_argument("--grad-clip", type=float, default=0.0, help="clip the gradient norm (0: no clipping)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda trains with bf16 autocast")
    ap.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                    help="checkpoints and sample grids (default: OUT-run)")
    ap.add_argument("--checkpoint-every", type=int, default=0, metavar="K",
                    help="write a resumable checkpoint and the current weights every K steps (0: only at the end "
                         "with --resume or --stop-after)")
    ap.add_argument("--sample-every", type=int, default=0, metavar="K", help="write a sample grid PNG every K steps")
    ap.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    ap.add_argument("--stop-after", type=int, default=None, metavar="S",
                    help="stop (with a checkpoint) once S steps in all are done; rerun with --resume to go on")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (results depend on it)")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: list[str] | None = None, prog: str = "python -m mmmi_dsl.train") -> int:
    from mmmi_dsl.errors import UsageError

    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser(prog)
    a = ap.parse_args(argv)
    if a.steps < 10:
        ap.error("--steps must be at least 10")
    for flag in ("checkpoint_every", "sample_every"):
        if getattr(a, flag) < 0:
            ap.error(f"--{flag.replace('_', '-')} must be 0 or more")
    if a.stop_after is not None and a.stop_after < 1:
        ap.error("--stop-after must be at least 1")
    if a.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device")
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        data = load_training_data(a.data, a.labels)
    except UsageError as err:
        raise UsageError(f"--data: {err}") from None
    n_classes = int(data.y.max()) + 1
    fields = {"hidden": a.hidden, "depth": a.depth, "channels": a.channels, "mults": a.mults,
              "res_blocks": a.res_blocks, "attention": a.attention, "heads": a.heads, "groups": a.groups,
              "t_dim": a.t_dim}
    try:
        config = architecture(a.arch, int(np.prod(data.x.shape[1:])), n_classes, data.shape, **fields)
    except weights.WeightsError as err:
        raise UsageError(f"--arch {a.arch}: {err}") from None
    schedule = Schedule(steps=a.steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed, p_uncond=a.p_uncond,
                        data_noise=a.data_noise, ema=a.ema, grad_clip=a.grad_clip)
    sha = data.sha256()
    extra = {"data": data.source, "data_sha256": sha, "command": f"{prog} " + shlex.join(argv)}
    if data.classes:
        extra["classes"] = list(data.classes)
    if data.shape:
        extra["image_shape"] = list(data.shape)
    run = None
    if a.checkpoint_every or a.sample_every or a.resume or a.stop_after is not None:
        run = RunFiles(Path(a.checkpoint_dir or f"{a.out}-run"), a.checkpoint_every, a.sample_every, a.resume,
                       a.stop_after)
    stop = {"now": False}

    def on_term(signum, frame):  # a polite kill (SIGTERM): checkpoint, then exit
        stop["now"] = True

    previous = signal.signal(signal.SIGTERM, on_term) if run is not None else None
    try:
        state, config = train(data.x, data.y, config, schedule, device=a.device, run=run,
                              progress=not a.no_progress, fingerprint={"data_sha256": sha},
                              on_save=lambda st, cfg: save_weights(a.out, st, {**cfg, **extra}),
                              should_stop=lambda: stop["now"], shape=data.shape)
    except ValueError as err:
        raise UsageError(str(err)) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    config.update(extra)
    st, js = save_weights(a.out, state, config)
    done = config["steps_done"]
    left = "" if done >= schedule.steps else f" ({done:,} of {schedule.steps:,} steps; --resume goes on)"
    print(f"wrote {st} and {js} ({config['train_seconds']} s, final loss {config['final_loss']:.4f}){left}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
