"""One prepared session on a lent GPU for the fashion flow (issue 15): train on from the committed
checkpoint, measure the new weights at full size, check the GPU against the CPU, and leave all of
it in OUT, in at most 8 files (the device tool's limit), each under 16 MiB.

    OUT=/tmp/o bash benchmarks/device_fashion.sh            # the lent machine (docs/flows.md, "On a lent GPU")
    OUT=/tmp/o PYTHON=.venv/bin/python bash benchmarks/device_fashion.sh --device cpu --train-seconds 20 \\
        -n 2 --roundtrip-n 2 --classes 0,1 --gpu-batches '' --agree-n 2 --work /tmp/w \\
        --checkpoint /tmp/copy/checkpoint.safetensors --data /tmp/fashion   # the same plan, tiny, on a CPU

Phases, each a child process under its own time budget (clipped to what is left of
``--total-seconds``); one that fails or runs over is recorded and the next still runs:

- ``env``: python, torch, CUDA and the GPU, the packages the others import, the data folder.
- ``train``: ``python -m mmmi_dsl.train`` with runs/fashion/run.sh's arguments (:data:`TRAIN_ARGS`),
  ``--device cuda --resume`` from a copy of ``--checkpoint`` in ``--work``, stopped by SIGTERM after
  ``--train-seconds`` (training writes a checkpoint before it exits). Then into OUT: the checkpoint
  split into 15 MiB parts (``cat checkpoint.safetensors.part-* > checkpoint.safetensors``), the EMA
  weights and their JSON, the newest sample grid.
- ``quality``: benchmarks/flow_quality.py on the new weights (the shipped ones if training made
  none) on the device: ``-n`` per class, ``--roundtrip-n`` at ``--solvers``, throughput at
  ``--gpu-batches``; OUT/quality.json, rewritten after each part.
- ``agree``: the same latents through the shipped fashion flow on the CPU and on the device
  (max |x_device - x_cpu|, both round trips).

OUT/summary.json (every phase's status, rc, seconds and command; the checkpoint's step, SHA-256 and
parts) is rewritten after every phase; OUT/log is what the shell wrapper tees. Only the standard
library is imported here; the phases import torch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: runs/fashion/run.sh's training arguments, less the run's files (tests/flows/test_device_fashion.py
#: checks that they are the same); the checkpoint refuses to resume if any of them differs
TRAIN_ARGS = ("--data", "fashion-mnist", "--arch", "unet", "--channels", "32", "--mults", "1,2,2", "--res-blocks", "1",
              "--attention", "1", "--heads", "4", "--groups", "8", "--t-dim", "128", "--steps", "250000",
              "--batch-size", "24", "--lr", "5e-4", "--grad-clip", "1", "--ema", "0.9995", "--seed", "0",
              "--threads", "1")
CHECKPOINT = "checkpoint.safetensors"
PART_BYTES = 15 * 2**20  # the device tool brings back files of at most 16 MiB
MAX_FILES = 8
DEFAULT_SOLVERS = "rk4:28:1.5,rk4:40:1.5,rk4:56:1.5"
RESERVE_S = 15  # kept back from --total-seconds for packaging and the summary


def ints(text: str) -> str:
    """A comma-separated list of integers, checked, kept as text for the child's command line."""
    try:
        [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None
    return text


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command")
    a = sub.add_parser("agree", help="(a phase) the shipped fashion flow on the CPU and on --device")
    a.add_argument("--device", default="cuda")
    a.add_argument("--n", type=int, default=32)
    a.add_argument("--label", type=int, default=7)
    a.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads of the reference")
    a.add_argument("--json", required=True)
    p.add_argument("--out", default=os.environ.get("OUT"), help="the folder that comes back (default $OUT)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--work", default="/tmp/fashion-run", help="the training's folder (checkpoint, weights, grids)")
    p.add_argument("--checkpoint", default=str(ROOT / "runs" / "fashion" / CHECKPOINT),
                   help="the checkpoint to resume (copied into --work unless a later one is there)")
    p.add_argument("--data", default=str(ROOT / ".fashion"),
                   help="Fashion-MNIST's four IDX files (MMMI_FASHION_DIR for the phases)")
    p.add_argument("--python", default=sys.executable, help="the Python of the phases")
    p.add_argument("--phases", default="env,train,quality,agree", help="which phases, in this order")
    p.add_argument("--total-seconds", type=positive, default=480, help="the whole plan's wall-clock budget")
    p.add_argument("--env-seconds", type=positive, default=90)
    p.add_argument("--train-seconds", type=positive, default=240, help="training time before SIGTERM")
    p.add_argument("--stop-grace", type=positive, default=120, help="seconds to write the last checkpoint")
    p.add_argument("--quality-seconds", type=positive, default=170)
    p.add_argument("--agree-seconds", type=positive, default=60)
    p.add_argument("--checkpoint-every", type=int, default=2000)
    p.add_argument("--sample-every", type=int, default=2000)
    p.add_argument("-n", type=int, default=1000, help="quality: generated samples per class")
    p.add_argument("--roundtrip-n", type=int, default=1000, help="quality: latents of the round trip")
    p.add_argument("--classes", type=ints, default=None, help="quality: classes (default all ten)")
    p.add_argument("--solvers", default=DEFAULT_SOLVERS, help="quality: round-trip solvers, the first generates")
    p.add_argument("--gpu-batches", type=ints, default="256,1024,4096", help="quality: GPU throughput batches")
    p.add_argument("--agree-n", type=int, default=32, help="agree: latents")
    return p


# ---------------------------------------------------------------- files


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def safetensors_metadata(path: Path) -> dict:
    """The ``__metadata__`` of a safetensors file (8-byte little-endian header length, JSON header)."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(size)).get("__metadata__") or {}


def checkpoint_state(path: Path) -> dict | None:
    """A training checkpoint's step, running loss and training seconds (None if it is not there)."""
    if not Path(path).is_file():
        return None
    meta = json.loads(safetensors_metadata(path)["mmmi_checkpoint"])
    return {"step": int(meta["step"]), "loss_avg": meta.get("loss_avg"), "train_seconds": meta.get("seconds")}


def split_file(path: Path, out: Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """``path`` as ``out/NAME.part-aa``, ``-ab``, ... (``split -b``'s names), ``part_bytes`` each."""
    parts = []
    with open(path, "rb") as f:
        for i, block in enumerate(iter(lambda: f.read(part_bytes), b"")):
            name = out / f"{Path(path).name}.part-{chr(97 + i // 26)}{chr(97 + i % 26)}"
            name.write_bytes(block)
            parts.append(name)
    return parts


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------- phases


def run_phase(name: str, cmd: list[str], seconds: float, env: dict, *, stop_grace: float = 30) -> dict:
    """Run ``cmd`` (its output to ours) for at most ``seconds``, then SIGTERM, then after ``stop_grace``
    SIGKILL (to its process group). ``status``: ok, failed (rc != 0), stopped (SIGTERM at the budget)
    or killed."""
    print(f"\n== {name} ({seconds:.0f} s at most): {shlex.join(cmd)}", flush=True)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as err:
        print(f"== {name}: cannot start: {err}", flush=True)
        return {"status": "failed", "rc": None, "seconds": 0.0, "cmd": shlex.join(cmd), "error": str(err)}
    status = None
    try:
        rc = proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        status = "stopped"
        try:
            rc = proc.wait(timeout=stop_grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc, status = proc.wait(), "killed"
    status = status or ("ok" if rc == 0 else "failed")
    took = round(time.monotonic() - start, 1)
    print(f"== {name}: {status} (rc {rc}, {took} s)", flush=True)
    return {"status": status, "rc": rc, "seconds": took, "cmd": shlex.join(cmd)}


ENV_PROBE = """
import json, os, platform
info = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
import torch, numpy, scipy, safetensors, torchdiffeq, pydantic
info.update(torch=torch.__version__, numpy=numpy.__version__, scipy=scipy.__version__, pydantic=pydantic.__version__,
            cuda_available=torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, gpu_memory_mib=p.total_memory // 2**20, cuda=torch.version.cuda)
import mmmi_dsl.flows.train, mmmi_dsl.flows.quality  # what the phases import
from mmmi_dsl.flows.data import fashion_files
info["fashion_files"] = [str(p) for s in ("train", "t10k") for p in fashion_files(s)]
print("ENV " + json.dumps(info))
"""


def agree(device: str, n: int, label: int, threads: int) -> dict:
    """The same ``n`` latents of class ``label`` through the shipped fashion flow at its default solver
    on the CPU (``threads`` threads) and on ``device``: how far apart the images are, both round trips."""
    import numpy as np
    import torch

    from mmmi_dsl.builtins import weights
    from mmmi_dsl.builtins.flows import FASHION_SOLVER
    from mmmi_dsl.flows.quality import Solver, build, ieee_float32, latents, run_flow

    torch.set_num_threads(threads)
    if torch.device(device).type == "cuda":
        ieee_float32()
    path, solver = weights.shipped("fashion"), Solver("rk4", **FASHION_SOLVER)
    z = latents(0, label, n, 784)
    result = {"weights": str(path), "solver": solver.label, "label": label, "n": n, "device": device,
              "cpu_threads": threads}
    images = {}
    for where, dev in (("cpu", "cpu"), ("device", device)):
        flow = build(path, 784, label, solver, device=dev)
        x, forward_s, _ = run_flow(flow, z, n)
        zr, inverse_s, _ = run_flow(flow, x, n, inverse=True)
        images[where] = x.astype(np.float64)
        result.update({f"roundtrip_max_{where}": float(np.abs(zr.astype(np.float64) - z).max()),
                       f"seconds_{where}": round(forward_s + inverse_s, 3)})
    result["max_abs_x_difference"] = float(np.abs(images["device"] - images["cpu"]).max())
    result["max_abs_x"] = float(np.abs(images["cpu"]).max())
    return result


class Plan:
    """The phases of one session, their budgets and where everything goes."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out, self.work = Path(args.out).resolve(), Path(args.work).resolve()
        self.deadline = time.monotonic() + args.total_seconds
        self.summary: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "argv": sys.argv[1:],
                              "args": vars(args), "phases": {}}
        path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, "MMMI_FASHION_DIR": args.data}

    def save(self) -> None:
        self.summary["files"] = {p.name: p.stat().st_size for p in sorted(self.out.iterdir()) if p.is_file()
                                 and not p.name.endswith(".tmp")}
        write_json(self.out / "summary.json", self.summary)

    def budget(self, seconds: float) -> float:
        return min(seconds, self.deadline - time.monotonic() - RESERVE_S)

    def phase(self, name: str, cmd: list[str], seconds: float, **kw) -> dict:
        left = self.budget(seconds)
        if left < 5:
            result = {"status": "skipped", "why": f"{left:.0f} s left of --total-seconds"}
            print(f"\n== {name}: skipped ({result['why']})", flush=True)
        else:
            result = run_phase(name, cmd, left, self.env, **kw)
        self.summary["phases"][name] = result
        self.save()
        return result

    # each phase

    def env_phase(self) -> None:
        data = Path(self.args.data)
        print(f"== data folder {data}: {sorted(p.name for p in data.glob('*')) if data.is_dir() else 'absent'}",
              flush=True)
        if shutil.which("nvidia-smi"):
            subprocess.run(["nvidia-smi"], check=False)
        result = self.phase("env", [self.args.python, "-c", ENV_PROBE], self.args.env_seconds)
        result["cmd"] = f"{self.args.python} -c ENV_PROBE"  # the probe is in benchmarks/device_fashion.py

    def prepare_checkpoint(self) -> dict | None:
        """Copy ``--checkpoint`` into ``--work`` unless a checkpoint of a later step is there already (a
        second call on the same warm machine goes on from where the first stopped)."""
        self.work.mkdir(parents=True, exist_ok=True)
        source, here = Path(self.args.checkpoint), self.work / CHECKPOINT
        given, kept = checkpoint_state(source), checkpoint_state(here)
        if given is None and kept is None:
            print(f"== no checkpoint at {source}: training starts from step 0", flush=True)
            return None
        if given is not None and (kept is None or kept["step"] < given["step"]):
            shutil.copyfile(source, here)
            print(f"== resuming {source} (step {given['step']:,}) in {self.work}", flush=True)
            return given
        print(f"== resuming {here} (step {kept['step']:,}), later than or as {source}", flush=True)
        return kept

    def train_command(self) -> list[str]:
        a = self.args
        return [a.python, "-m", "mmmi_dsl.train", *TRAIN_ARGS, "--device", a.device, "--checkpoint-dir",
                str(self.work), "--checkpoint-every", str(a.checkpoint_every), "--sample-every", str(a.sample_every),
                "--resume", "--out", str(self.work / "fashion")]

    def train_phase(self) -> None:
        try:
            before = self.prepare_checkpoint()
        except (OSError, KeyError, ValueError) as err:
            print(f"== the checkpoint cannot be read: {err}", flush=True)
            self.summary["phases"]["train"] = {"status": "failed", "error": str(err)}
            self.save()
            return
        for stale in (self.work / "fashion.safetensors", self.work / "fashion.json"):
            stale.unlink(missing_ok=True)  # weights in --work are this call's, or none
        result = self.phase("train", self.train_command(), self.args.train_seconds,
                            stop_grace=self.args.stop_grace)
        if result["status"] == "stopped" and result["rc"] == 0:  # the budget's SIGTERM: the planned end
            result.update(status="ok", stopped_at_budget=True)
        result["step_before"] = None if before is None else before["step"]
        self.package_training(result)
        self.save()

    def package_training(self, result: dict) -> None:
        """The checkpoint (in parts), the EMA weights, their JSON and the newest grid into OUT."""
        ckpt = self.work / CHECKPOINT
        state = checkpoint_state(ckpt)
        if state is None or state["step"] == result.get("step_before"):
            print("== no new checkpoint: nothing of the training to bring back", flush=True)
            return
        for old in self.out.glob(f"{CHECKPOINT}.part-*"):
            old.unlink()
        parts = split_file(ckpt, self.out)
        result.update({"step_after": state["step"], "loss_avg": state["loss_avg"]})
        if result.get("step_before") is not None and result.get("seconds"):
            result["steps_per_s"] = round((state["step"] - result["step_before"]) / result["seconds"], 2)
        self.summary["checkpoint"] = {**state, "sha256": sha256(ckpt), "bytes": ckpt.stat().st_size,
                                      "parts": [p.name for p in parts],
                                      "join": f"cat {CHECKPOINT}.part-* > {CHECKPOINT}"}
        for name in ("fashion.safetensors", "fashion.json"):
            if (self.work / name).is_file():
                shutil.copyfile(self.work / name, self.out / name)
        grids = sorted(self.work.glob("samples-*.png"))
        for old in self.out.glob("samples-*.png"):
            old.unlink()
        if grids:
            shutil.copyfile(grids[-1], self.out / grids[-1].name)

    def quality_phase(self) -> None:
        a = self.args
        new = self.work / "fashion.safetensors"
        weights = str(new) if new.is_file() else "fashion"
        solvers = a.solvers if new.is_file() else "default," + a.solvers
        cmd = [a.python, str(ROOT / "benchmarks" / "flow_quality.py"), weights, "--device", a.device, "-n", str(a.n),
               "--roundtrip-n", str(a.roundtrip_n), "--solvers", solvers, "--threads", "", "--gpu-batches",
               a.gpu_batches, "--json", str(self.out / "quality.json")]
        if a.classes:
            cmd += ["--classes", a.classes]
        (self.out / "quality.json").unlink(missing_ok=True)
        result = self.phase("quality", cmd, a.quality_seconds)
        result["weights"] = weights

    def agree_phase(self) -> None:
        a = self.args
        target = self.work / "agree.json"
        target.unlink(missing_ok=True)
        threads = os.cpu_count() if a.device == "cuda" else 1
        result = self.phase("agree", [a.python, str(Path(__file__).resolve()), "agree", "--device", a.device,
                                      "--n", str(a.agree_n), "--threads", str(threads), "--json", str(target)],
                            a.agree_seconds)
        if target.is_file():
            result.update(json.loads(target.read_text()))

    def run(self) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        self.save()
        phases = [p.strip() for p in self.args.phases.split(",") if p.strip()]
        for name in phases:
            getattr(self, f"{name}_phase")()
        files = self.summary["files"] = {p.name: p.stat().st_size for p in sorted(self.out.iterdir()) if p.is_file()}
        files.setdefault("log", 0)  # the wrapper's tee writes it
        big = [n for n, size in files.items() if size > 16 * 2**20]
        if len(files) > MAX_FILES or big:
            print(f"== WARNING: {len(files)} files in OUT (at most {MAX_FILES} come back); over 16 MiB: {big}",
                  flush=True)
        write_json(self.out / "summary.json", self.summary)
        statuses = {k: v["status"] for k, v in self.summary["phases"].items()}
        print(f"\n== done: {statuses}; files in {self.out}: {', '.join(files)}", flush=True)
        return 0 if all(s == "ok" for s in statuses.values()) else 1


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.command == "agree":
        write_json(Path(args.json), agree(args.device, args.n, args.label, args.threads))
        return 0
    if not args.out:
        p.error("--out (or $OUT) is required")
    unknown = [x for x in args.phases.split(",") if x.strip() and x.strip() not in ("env", "train", "quality", "agree")]
    if unknown:
        p.error(f"--phases: unknown phase {unknown[0]!r} (env, train, quality, agree)")
    return Plan(args).run()


if __name__ == "__main__":
    raise SystemExit(main())
