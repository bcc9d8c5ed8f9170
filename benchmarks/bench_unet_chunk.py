"""The fashion UNet against the rows of one call: why a convolutional flow gets small chunks.

Two tables, in the same run:

1. The network alone: milliseconds per sample per forward pass at 16 to 1,024 rows, with one and
   with two torch threads (the floor of a flow call at that many rows).
2. ``fashion_views`` drawn by the sampler at its default chunk (32 tuples, sized by the UNet's
   working set) and at the old default (1,024), the same number of tuples, with the solver cut to
   2 rk4 steps (8 passes a solve) so the old chunk fits in a minute: tuples per second and their
   ratio, beside the floor (the network's passes alone at 32 rows). The minor page faults of each
   (``resource.getrusage``) show where the old chunk's time went: activations of ~100 MB that the
   allocator maps afresh at every pass.

    python benchmarks/bench_unet_chunk.py            # ~4 minutes on the 2-core machine
    python benchmarks/bench_unet_chunk.py --quick    # table 1 at 1 thread only (~30 s)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import torch

from mmmi_dsl import load
from mmmi_dsl.builtins import weights
from mmmi_dsl.flows.cnf import net_from_config, read_weights

ROOT = Path(__file__).resolve().parent.parent
ROWS = (16, 32, 64, 128, 256, 1024)


def per_pass_ms(net, rows: int, passes: int) -> float:
    """Milliseconds per sample per forward pass of ``net`` on ``rows`` rows (after one warm-up pass)."""
    x, c, t = torch.randn(rows, net.dim), torch.ones(rows, dtype=torch.long), torch.tensor(0.5)
    with torch.no_grad():
        net(x, t, c)
        start = time.perf_counter()
        for _ in range(passes):
            net(x, t, c)
    return (time.perf_counter() - start) / passes / rows * 1e3


def sampler_rate(chunk: int | None, n: int) -> dict:
    """``fashion_views`` at ``chunk`` (None: the default), 2 rk4 steps: tuples/s and minor page faults."""
    sampler = load(ROOT / "specs" / "fashion_views.mmi").sampler(chunk_size=chunk)
    for name in sampler.model.flows:
        for step in sampler.learned_steps(name):
            step.steps = 2
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    sampler.sample_tensors(0, n)
    seconds = time.perf_counter() - start
    return {"chunk": sampler.chunk_size, "tuples": n, "seconds": round(seconds, 2),
            "tuples_per_s": round(n / seconds, 3),
            "minor_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    state, config, _ = read_weights(weights.shipped("fashion"))
    net = net_from_config(config)
    net.load_state_dict(state)
    net.eval()
    report: dict = {"load_average": os.getloadavg()[0], "per_pass_ms": {}}
    print(f"load average {report['load_average']:.2f}")
    print("| threads | " + " | ".join(f"{r} rows" for r in ROWS) + " |")
    print("|---" * (len(ROWS) + 1) + "|")
    for threads in (1,) if a.quick else (1, 2):
        torch.set_num_threads(threads)
        ms = {r: round(per_pass_ms(net, r, max(2, 512 // r)), 2) for r in ROWS}
        report["per_pass_ms"][threads] = ms
        print(f"| {threads} | " + " | ".join(f"{v:.2f} ms" for v in ms.values()) + " |")
    if not a.quick:
        torch.set_num_threads(2)
        new, old = sampler_rate(None, 1024), sampler_rate(1024, 1024)
        passes = 2 * 2 * 4  # two modalities, 2 rk4 steps of 4 passes
        floor = 1e3 / (passes * report["per_pass_ms"][2][32])
        report["sampler"] = {"default": new, "old_default": old, "ratio": round(new["tuples_per_s"] /
                                                                                  old["tuples_per_s"], 2),
                             "floor_tuples_per_s_at_32_rows": round(floor, 3)}
        print("\n| chunk | tuples/s (2 threads, 2 rk4 steps) | minor page faults |\n|---|---|---|")
        for r in (new, old):
            print(f"| {r['chunk']} | {r['tuples_per_s']:.3f} | {r['minor_faults']:,} |")
        print(f"\nratio {report['sampler']['ratio']:.2f}; floor (network alone at 32 rows) {floor:.3f} tuples/s")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
