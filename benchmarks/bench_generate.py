"""Generation speed: decay.mmi latents per second vs torch.randn, vs the write floor, vs dense A.

1. Sampler throughput for decay.mmi (N = 10, latents of all modalities), as a ratio to
   `torch.randn` drawing the same number of floats in the same run (target >= 0.5); also the
   same chunks assembled the old way (slices, then torch.cat), to show what writing them
   straight into the batch saves.
2. `generate_dataset` of decay.mmi to disk, streaming (its fixed setup apart), against the floor of
   the same bytes: randn, write, fsync and sha256 in the same batches (target >= 0.5); at N = 10 and
   at N = 1,000 (issue 20), there also with the mixing as one dense product (tiles off).
3. The seed code's sampler (z = A u with the dense (1 + N d) x (K + N_u d) matrix A),
   at the largest d whose A fits comfortably here, against ours at the same size.
4. Peak memory (max RSS) of `mmmic generate specs/two_views.mmi --set d=64` at
   n = 100,000 and n = 1,000,000 (target: independent of n).

One torch thread (the CLI default); the load average is printed with each table.

    python benchmarks/bench_generate.py            # ~2 minutes
    python benchmarks/bench_generate.py --quick    # 1 and 2 only, small n (~20 s)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mmmi_dsl import load, mixing
from mmmi_dsl.backend import Sampler
from mmmi_dsl.dataset.generate import default_sizes, generate_dataset

ROOT = Path(__file__).resolve().parent.parent


def best_of(fn, repeat=5) -> float:
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def concatenated(s: Sampler, start: int, stop: int) -> dict[str, torch.Tensor]:
    """The batch as it was built before issue 20: each chunk's slice, then torch.cat."""
    C = s.chunk_size
    parts = [{k: v[max(start - c * C, 0):min(stop - c * C, C)] for k, v in s._chunk(c).items()}
             for c in range(start // C, (stop - 1) // C + 1)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def ours_vs_randn(n_mod: int, d: int, n: int = 2048, repeat: int = 5) -> tuple[float, float, float, int]:
    """Tuples/s of the sampler, of the old torch.cat assembly and of randn of the same floats."""
    model = load(ROOT / "specs" / "decay.mmi", {"N": str(n_mod), "d": str(d)})
    s = Sampler(model, seed=0)
    floats = n * n_mod * d
    t_ours = best_of(lambda: s.sample_tensors(0, n), repeat)
    t_cat = best_of(lambda: concatenated(s, 0, n), repeat)
    t_randn = best_of(lambda: torch.randn(floats), repeat)
    return n / t_ours, n / t_cat, n / t_randn, s.chunk_size


def to_disk_vs_floor(n_mod: int, d: int, n: int, dense_mixing: bool = False) -> tuple[float, float, float]:
    """Tuples/s streamed by generate_dataset (decay, to disk, the CLI's shard and batch sizes), its
    fixed setup in seconds, and tuples/s of the floor: randn + write + fsync + sha256 of the same bytes.

    The streaming rate is (n - 1) / (t(n) - t(1)): two runs, of n tuples and of one, so the setup
    both share (compiling the sampler, the exact MI of every report, the manifest) cancels.
    ``dense_mixing``: every mixing as one dense product (mmmi_dsl/mixing.py's tiles off), for comparison.
    """
    model = load(ROOT / "specs" / "decay.mmi", {"N": str(n_mod), "d": str(d)})
    saved = mixing.MIN_COLUMNS
    mixing.MIN_COLUMNS = 1 << 62 if dense_mixing else saved
    try:
        with tempfile.TemporaryDirectory() as out:
            times = []
            for size in (1, n):
                t = time.perf_counter()
                generate_dataset(model, Path(out) / f"ds{size}", size, progress=False)
                times.append(time.perf_counter() - t)
                shutil.rmtree(Path(out) / f"ds{size}")
    finally:
        mixing.MIN_COLUMNS = saved
    stream = (n - 1) / (times[1] - times[0])
    _, batch = default_sizes(Sampler(model, seed=0), None, None)
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        files = [open(Path(out) / f"floor{i}.npy", "wb") for i in range(n_mod)]
        shas = [hashlib.sha256() for _ in files]
        for a in range(0, n, batch):
            x = torch.randn(min(batch, n - a), n_mod, d).numpy()
            for i, (f, h) in enumerate(zip(files, shas)):
                data = x[:, i].copy().data  # one modality's file, as the writer's
                f.write(data)
                h.update(data)
        for f in files:
            f.flush()
            os.fsync(f.fileno())
            f.close()
        t_floor = time.perf_counter() - t
    return stream, times[0] - (times[1] - times[0]) / (n - 1), n / t_floor


def dense_sampler(n_mod: int, d: int, n: int = 512) -> float:
    """Samples/s of z = A u with the dense A the seed code built."""
    model = load(ROOT / "specs" / "decay.mmi", {"N": str(n_mod), "d": str(d)})
    from mmmi_dsl.mi.analysis import Analysis
    an = Analysis(model)
    protos = list(model.protos)
    rows = []
    for i in range(1, n_mod + 1):
        f = an.form(f"z[{i}]")
        blocks = []
        for p in protos:
            if model.protos[p].kind == "scalar":
                blocks.append(torch.as_tensor(f.loadings[:, [an._k_index[p]]], dtype=torch.float32))
            else:
                blocks.append(f.identity.get(p, 0.0) * torch.eye(d))
        rows.append(torch.cat(blocks, dim=1))
    A = torch.cat(rows, dim=0)  # (N d, K + N d)
    u = torch.randn(n, A.shape[1])
    t = best_of(lambda: u @ A.T, repeat=3)
    return n / t


def peak_rss(n: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        r = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "mmmi_dsl", "generate",
                            str(ROOT / "specs" / "two_views.mmi"), "-o", out, "-n", str(n), "--set", "d=64",
                            "--no-progress"], capture_output=True, text=True, check=True)
        return int(r.stderr.strip().splitlines()[-1]) / 1024


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tables 1 and 2 only, small n")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"1. decay.mmi latents per second vs torch.randn of the same floats (load average "
          f"{os.getloadavg()[0]:.2f})")
    print(f"{'N':>4} {'d':>6} {'chunk':>6} {'ours tuples/s':>14} {'old cat tuples/s':>17} {'randn tuples/s':>15} "
          f"{'ours/randn':>11} {'cat/randn':>10}")
    for n_mod, d in [(10, 3072), (10, 64)]:
        n = (512 if d > 1024 else 8192) * (1 if args.quick else 4)  # whole chunks
        ours, cat, randn, chunk = ours_vs_randn(n_mod, d, n, 3 if args.quick else 5)
        print(f"{n_mod:>4} {d:>6} {chunk:>6} {ours:14.0f} {cat:17.0f} {randn:15.0f} {ours / randn:11.2f} "
              f"{cat / randn:10.2f}", flush=True)
    print(f"\n2. decay.mmi to disk (generate_dataset, streaming) vs randn + write + fsync + sha256 of the same "
          f"bytes (load average {os.getloadavg()[0]:.2f})")
    print(f"{'N':>5} {'d':>6} {'n':>6} {'mixing':>7} {'setup s':>8} {'ours tuples/s':>14} {'floor tuples/s':>15} "
          f"{'ours/floor':>11}")
    rows = [(10, 3072, 1024 if args.quick else 4096, False), (10, 64, 20_000 if args.quick else 100_000, False),
            (1000, 3072, 64 if args.quick else 256, False), (1000, 3072, 64 if args.quick else 256, True)]
    for n_mod, d, n, dense in rows:
        stream, setup, floor = to_disk_vs_floor(n_mod, d, n, dense_mixing=dense)
        print(f"{n_mod:>5} {d:>6} {n:>6} {'dense' if dense else 'tiles':>7} {setup:8.1f} {stream:14.1f} "
              f"{floor:15.1f} {stream / floor:11.2f}", flush=True)
    if args.quick:
        return
    print("\n3. ours vs the dense-A sampler (z = A u), N = 10")
    print(f"{'d':>6} {'A size GiB':>11} {'ours tuples/s':>14} {'dense tuples/s':>15} {'ours/dense':>11}")
    for d in (256, 1024, 2048):
        ours, _, _, _ = ours_vs_randn(10, d, n=512)
        dense = dense_sampler(10, d)
        gib = (10 * d) * (1 + 10 * d) * 4 / 2**30
        print(f"{d:>6} {gib:11.2f} {ours:14.0f} {dense:15.0f} {ours / dense:11.1f}")
    print("\n4. peak memory of mmmic generate two_views --set d=64")
    for n in (100_000, 1_000_000):
        print(f"  n = {n:>9,}: {peak_rss(n):7.0f} MiB max RSS")


if __name__ == "__main__":
    main()
