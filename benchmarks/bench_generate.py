"""Generation speed: decay.mmi latents per second vs torch.randn, and vs the dense-A sampler.

1. Sampler throughput for decay.mmi (N = 10, d = 3072, latents of all modalities),
   as a ratio to `torch.randn` drawing the same number of floats in the same run
   (target >= 0.5).
2. The seed code's sampler (z = A u with the dense (1 + N d) x (K + N_u d) matrix A),
   at the largest d whose A fits comfortably here, against ours at the same size.
3. Peak memory (max RSS) of `mmmic generate specs/two_views.mmi --set d=64` at
   n = 100,000 and n = 1,000,000 (target: independent of n).

    python benchmarks/bench_generate.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mmmi_dsl import load
from mmmi_dsl.backend import Sampler

ROOT = Path(__file__).resolve().parent.parent


def best_of(fn, repeat=5) -> float:
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def ours_vs_randn(n_mod: int, d: int, n: int = 2048) -> tuple[float, float, int]:
    model = load(ROOT / "specs" / "decay.mmi", {"N": str(n_mod), "d": str(d)})
    s = Sampler(model, seed=0)
    floats = n * n_mod * d
    t_ours = best_of(lambda: s.sample_tensors(0, n))
    t_randn = best_of(lambda: torch.randn(floats))
    return n / t_ours, n / t_randn, s.chunk_size


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


def main() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print("1. decay.mmi latents per second vs torch.randn of the same floats")
    print(f"{'N':>4} {'d':>6} {'chunk':>6} {'ours tuples/s':>14} {'randn tuples/s':>15} {'ratio':>6}")
    for n_mod, d in [(10, 3072), (10, 64)]:
        ours, randn, chunk = ours_vs_randn(n_mod, d)
        print(f"{n_mod:>4} {d:>6} {chunk:>6} {ours:14.0f} {randn:15.0f} {ours / randn:6.2f}")
    print("\n2. ours vs the dense-A sampler (z = A u), N = 10")
    print(f"{'d':>6} {'A size GiB':>11} {'ours tuples/s':>14} {'dense tuples/s':>15} {'ours/dense':>11}")
    for d in (256, 1024, 2048):
        ours, _, _ = ours_vs_randn(10, d, n=512)
        dense = dense_sampler(10, d)
        gib = (10 * d) * (1 + 10 * d) * 4 / 2**30
        print(f"{d:>6} {gib:11.2f} {ours:14.0f} {dense:15.0f} {ours / dense:11.1f}")
    print("\n3. peak memory of mmmic generate two_views --set d=64")
    for n in (100_000, 1_000_000):
        print(f"  n = {n:>9,}: {peak_rss(n):7.0f} MiB max RSS")


if __name__ == "__main__":
    main()
