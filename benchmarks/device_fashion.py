"""One prepared session on a lent GPU for the fashion flow (issue 15): train on from the committed
checkpoint, measure the new weights at full size, check the GPU against the CPU, and leave all of
it in OUT, in at most 8 files (the device tool's limit), each under 16 MiB.

    OUT=/tmp/o bash benchmarks/device_fashion.sh            # the lent machine (docs/flows.md, "On a lent GPU")
    OUT=/tmp/o PYTHON=.venv/bin/python bash benchmarks/device_fashion.sh --device cpu --train-seconds 20 \\
        -n 2 --roundtrip-n 2 --classes 0,1 --gpu-batches '' --agree-n 2 --work /tmp/w \\
        --checkpoint /tmp/copy/checkpoint.safetensors --data /tmp/fashion   # the same plan, tiny, on a CPU

Phases, each a child process in its own process group (not its own session: whatever the device tool
ends at the end of a call ends them too) under its own time budget, which with its stop grace is
clipped to what is left of ``--total-seconds``; one that fails or runs over is recorded and the next
still runs. On SIGTERM, SIGHUP or SIGINT, and at exit, the driver ends every phase's process group
(SIGTERM, a few seconds, SIGKILL), so that nothing it started outlives it: a second call on a warm
machine never finds a trainer of the first still writing the checkpoint.

- ``env``: python, torch, CUDA and the GPU, the packages the others import, the data folder (its
  four files read and checked against Fashion-MNIST's SHA-256s).
- ``train``: ``python -m mmmi_dsl.train`` with runs/fashion/run.sh's arguments (:data:`TRAIN_ARGS`),
  ``--device cuda --resume`` from a copy of ``--checkpoint`` in ``--work``, stopped by SIGTERM after
  ``--train-seconds`` (training writes a checkpoint before it exits). Then into OUT: the checkpoint
  split into 15 MiB parts (``cat checkpoint.safetensors.part-* > checkpoint.safetensors``), the EMA
  weights and their JSON, the newest sample grid.
- ``agree`` (before ``quality``: it is short, and it is the correctness check): the same latents
  through the shipped fashion flow on the CPU and on the device (max |x_device - x_cpu|, both round
  trips).
- ``quality``: benchmarks/flow_quality.py on the new weights (the shipped ones if training made
  none) on the device, with the rest of the budget: ``-n`` per class, ``--roundtrip-n`` at
  ``--solvers``, throughput at ``--gpu-batches``; OUT/quality.json, rewritten after each part; each
  class's samples are cached in ``--work`` so that a second call on a warm machine resumes.

OUT/summary.json (every phase's status, rc, seconds and command; the checkpoint's step, SHA-256 and
parts) is rewritten after every phase; OUT/log is what the shell wrapper tees. At the end, temporary
files are deleted from OUT and only the files meant to come back stay (:func:`keep_files`). Only the
standard library is imported here; the phases import torch.
"""

from __future__ import annotations

import argparse
import atexit
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
DEFAULT_SOLVERS = "rk4:48:1.25,rk4:40:1.25,rk4:64:1.25"
#: the shipped fashion flow's own solver (mmmi_dsl.builtins.flows.FASHION_SOLVER, as flow_quality writes
#: it; tests/flows/test_device_fashion.py checks that they are the same)
SHIPPED_SOLVER = "rk4:48:1.25"
RESERVE_S = 15  # kept back from --total-seconds for packaging and the summary
STOP_S = 5  # on a signal or at exit: seconds between a phase's SIGTERM and its SIGKILL
PHASES = ("env", "train", "agree", "quality")


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
    p.add_argument("--phases", default=",".join(PHASES), help="which phases, in this order")
    p.add_argument("--total-seconds", type=positive, default=480, help="the whole plan's wall-clock budget")
    p.add_argument("--env-seconds", type=positive, default=90)
    p.add_argument("--train-seconds", type=positive, default=240, help="training time before SIGTERM")
    p.add_argument("--stop-grace", type=positive, default=120, help="seconds to write the last checkpoint")
    p.add_argument("--quality-seconds", type=positive, default=None, help="default: the rest of the budget")
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


class Interrupted(Exception):
    """SIGTERM, SIGHUP or SIGINT reached the driver (the device tool's timeout, say)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


#: the phases running now: {process group id: process}
LIVE: dict[int, subprocess.Popen] = {}


def end_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM to ``proc``'s process group, up to ``grace`` seconds for ``proc`` to exit, then SIGKILL to
    what is left of the group (children of its own included)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        if sig == signal.SIGTERM and proc.poll() is not None:
            continue
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass
    LIVE.pop(proc.pid, None)


def end_all(grace: float = STOP_S) -> None:
    """End every phase still running (at exit and on a signal)."""
    for proc in list(LIVE.values()):
        end_group(proc, grace)


def on_signal(signum, frame):
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):  # once: the cleanup is not interrupted again
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def own_group() -> dict:
    """Popen's arguments for a child in a process group of its own, in our session."""
    return {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}


def run_phase(name: str, cmd: list[str], seconds: float, env: dict, *, stop_grace: float = 30) -> dict:
    """Run ``cmd`` (its output to ours; its own process group) for at most ``seconds``, then SIGTERM,
    then after ``stop_grace`` SIGKILL (to its process group). ``status``: ok, failed (rc != 0), stopped
    (SIGTERM at the budget) or killed. Whatever of its group is left when it ends is killed; on
    :class:`Interrupted` it is ended (:data:`STOP_S`) before the exception goes on."""
    print(f"\n== {name} ({seconds:.0f} s at most, then {stop_grace:.0f} s to stop): {shlex.join(cmd)}", flush=True)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.STDOUT, **own_group())
    except OSError as err:
        print(f"== {name}: cannot start: {err}", flush=True)
        return {"status": "failed", "rc": None, "seconds": 0.0, "cmd": shlex.join(cmd), "error": str(err)}
    LIVE[proc.pid] = proc
    status = None
    try:
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
    finally:
        end_group(proc, STOP_S)
    status = status or ("ok" if rc == 0 else "failed")
    took = round(time.monotonic() - start, 1)
    print(f"== {name}: {status} (rc {rc}, {took} s)", flush=True)
    return {"status": status, "rc": rc, "seconds": took, "cmd": shlex.join(cmd)}


def keep_files(files: dict[str, int], limit: int = MAX_FILES, each: int = 16 * 2**20,
               total: int = 64 * 2**20) -> tuple[list[str], list[tuple[str, str]]]:
    """Which of OUT's ``files`` ({name: bytes}) to keep so that at most ``limit`` come back, each at most
    ``each`` bytes and ``total`` together: the intended ones (log, summary.json, the checkpoint's
    parts, all or none, fashion.json, quality.json, fashion.safetensors, the newest samples-*.png) in
    that order of importance (the EMA weights are in the checkpoint too); returns (kept, [(dropped,
    why)]). Temporary files (``*.tmp``) and anything else are dropped."""
    grids = sorted(n for n in files if n.startswith("samples-") and n.endswith(".png"))
    parts = sorted(n for n in files if n.startswith(f"{CHECKPOINT}.part-"))
    ranked = [["log"], ["summary.json"], parts, ["fashion.json"], ["quality.json"], ["fashion.safetensors"],
              grids[-1:]]
    kept, dropped, size = [], [], 0
    for group in ranked:
        group = [n for n in group if n in files]
        if not group:
            continue
        big = [n for n in group if files[n] > each]
        grow = sum(files[n] for n in group)
        if big or len(kept) + len(group) > limit or size + grow > total:
            why = f"over {each:,} bytes: {big}" if big else f"{limit} files or {total:,} bytes in all are the most"
            dropped += [(n, why) for n in group]
            continue
        kept += group
        size += grow
    listed = {n for group in ranked for n in group}
    dropped += [(n, "temporary" if n.endswith(".tmp") else "not one of the files meant to come back")
                for n in files if n not in listed]
    return kept, dropped


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
from mmmi_dsl.flows.data import fashion_files, load_fashion
info["fashion_files"] = [str(p) for s in ("train", "t10k") for p in fashion_files(s)]
info["fashion"] = [load_fashion(s).source for s in ("train", "t10k")]  # each file's SHA-256 checked
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

    def budget(self, seconds: float | None, stop_grace: float) -> tuple[float, float]:
        """(limit, grace) of a phase asking for ``seconds`` (None: all that is left) and ``stop_grace``:
        limit + grace fit in what is left of ``--total-seconds`` less :data:`RESERVE_S`, the grace at
        most a quarter of it."""
        left = self.deadline - time.monotonic() - RESERVE_S
        grace = max(0.0, min(stop_grace, left / 4))
        return min(left if seconds is None else seconds, left - grace), grace

    def phase(self, name: str, cmd: list[str], seconds: float | None, stop_grace: float = 30) -> dict:
        limit, grace = self.budget(seconds, stop_grace)
        if limit < 5:
            result = {"status": "skipped", "why": f"{limit:.0f} s left of --total-seconds"}
            print(f"\n== {name}: skipped ({result['why']})", flush=True)
        else:
            try:
                result = run_phase(name, cmd, limit, self.env, stop_grace=grace)
            except Interrupted as sig:
                self.summary["phases"][name] = {"status": "interrupted", "signal": str(sig), "cmd": shlex.join(cmd)}
                raise
            result.update(limit_s=round(limit, 1), grace_s=round(grace, 1))
        self.summary["phases"][name] = result
        self.save()
        return result

    # each phase

    def env_phase(self) -> None:
        data = Path(self.args.data)
        print(f"== data folder {data}: {sorted(p.name for p in data.glob('*')) if data.is_dir() else 'absent'}",
              flush=True)
        if shutil.which("nvidia-smi"):
            try:
                subprocess.run(["nvidia-smi"], check=False, timeout=30)
            except subprocess.TimeoutExpired:
                print("== nvidia-smi did not answer within 30 s", flush=True)
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
        solvers = quality_solvers(a.solvers, new.is_file())
        cmd = [a.python, str(ROOT / "benchmarks" / "flow_quality.py"), weights, "--device", a.device, "-n", str(a.n),
               "--roundtrip-n", str(a.roundtrip_n), "--solvers", solvers, "--threads", "", "--gpu-batches",
               a.gpu_batches, "--cache", str(self.work / "quality-cache"), "--json", str(self.out / "quality.json")]
        if a.classes:
            cmd += ["--classes", a.classes]
        (self.out / "quality.json").unlink(missing_ok=True)
        result = self.phase("quality", cmd, a.quality_seconds)
        result.update(weights=weights, solvers=solvers)

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

    def finish(self) -> None:
        """Temporary files out of OUT, and only the files meant to come back (:func:`keep_files`)."""
        files = {p.name: p.stat().st_size for p in sorted(self.out.iterdir()) if p.is_file()}
        files.setdefault("log", 0)  # the wrapper's tee writes it
        parts = set(self.summary.get("checkpoint", {}).get("parts", []))
        unfinished = [n for n in files if n.startswith(f"{CHECKPOINT}.part-") and n not in parts]
        if unfinished or not parts.issubset(files):  # a split cut short (a signal): no parts rather than some
            unfinished = [n for n in files if n.startswith(f"{CHECKPOINT}.part-")]
        kept, dropped = keep_files({n: v for n, v in files.items() if n not in unfinished})
        dropped += [(n, "not the parts of summary.json's checkpoint") for n in unfinished]
        for name, why in dropped:
            (self.out / name).unlink(missing_ok=True)
            print(f"== dropped {name} from OUT ({why})", flush=True)
        self.summary["files"] = {n: files[n] for n in kept}
        if dropped:
            self.summary["dropped"] = dict(dropped)
        write_json(self.out / "summary.json", self.summary)

    def run(self) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        self.save()
        handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
        atexit.unregister(end_all)  # once, however many plans this process runs
        atexit.register(end_all)
        rc = None
        try:
            for name in [p.strip() for p in self.args.phases.split(",") if p.strip()]:
                getattr(self, f"{name}_phase")()
        except Interrupted as sig:
            print(f"\n== {sig}: the running phase was ended; stopping here", flush=True)
            self.summary["interrupted"] = str(sig)
            rc = 128 + sig.signum
        finally:
            end_all()
            for sig in handlers:
                signal.signal(sig, signal.SIG_IGN)  # the last second's listing is not cut short
        self.finish()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        statuses = {k: v["status"] for k, v in self.summary["phases"].items()}
        print(f"\n== done: {statuses}; files in {self.out}: {', '.join(self.summary['files'])}", flush=True)
        return rc if rc is not None else 0 if all(s == "ok" for s in statuses.values()) else 1


def quality_solvers(solvers: str, new_weights: bool) -> str:
    """flow_quality's ``--solvers``: ``solvers`` once each; for the shipped weights their own solver
    (:data:`SHIPPED_SOLVER`) first, so that it generates, and not measured twice."""
    chosen = [v.strip() for v in solvers.split(",") if v.strip()]
    if not new_weights:
        chosen = [SHIPPED_SOLVER, *(SHIPPED_SOLVER if v == "default" else v for v in chosen)]
    return ",".join(dict.fromkeys(chosen))


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.command == "agree":
        write_json(Path(args.json), agree(args.device, args.n, args.label, args.threads))
        return 0
    if not args.out:
        p.error("--out (or $OUT) is required")
    unknown = [x for x in args.phases.split(",") if x.strip() and x.strip() not in PHASES]
    if unknown:
        p.error(f"--phases: unknown phase {unknown[0]!r} ({', '.join(PHASES)})")
    return Plan(args).run()


if __name__ == "__main__":
    raise SystemExit(main())
