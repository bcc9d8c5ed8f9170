"""The quality of a learned class-conditional flow's weights (issue 15, item 6), in one command.

Class consistency (an independent classifier's accuracy on N generated samples per class),
the Fréchet distance in its penultimate features (N per class generated vs as many real test
images, beside real train vs real test as the floor), the round trip |f^-1(f(z)) - z| per
ODE solver with its time, and throughput per thread count beside the floor of the network's
evaluations alone, with peak memory. Printed as markdown, written as JSON.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/flow_quality.py fashion -n 1000 \\
        --json benchmarks/results/fashion-quality.json
    python benchmarks/flow_quality.py digits --classifier benchmarks/data/digits-classifier.safetensors -n 200
    python benchmarks/flow_quality.py my.safetensors --classes 0,3 -n 100 --roundtrip-n 100 --threads 1
    python benchmarks/flow_quality.py fashion --device cuda --threads '' --json q.json   # GPU, batch 256-4096

WEIGHTS is a .safetensors file or the name of a shipped flow (digits, fashion). The
measurements run on one torch thread (--gen-threads); throughput in fresh processes at each
of --threads. Deterministic for a given --seed. With --device cuda the flows and the judge run
on the GPU (IEEE float32; the latents are still drawn with numpy on the CPU, so the numbers
match the CPU's up to rounding) and the throughput is also measured there at --gpu-batches.
The JSON is rewritten after each part, so an interrupted run keeps the parts it finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from mmmi_dsl.builtins import weights as weight_files
from mmmi_dsl.cli.args import integer, integers
from mmmi_dsl.files import dumps_json, write_atomic
from mmmi_dsl.flows.quality import Report, Solver, assess
from mmmi_dsl.process import keep_freed_memory

DATA = Path(__file__).resolve().parent / "data"
DEFAULT_SOLVERS = "default,rk4:16,rk4:64,dopri5"


def solver(text: str) -> Solver | None:
    """``rk4:32`` (method:steps, a uniform grid), ``rk4:28:1.5`` (method:steps:grid_power), ``dopri5``
    (default tolerances), ``dopri5:1e-5`` (rtol; atol = rtol / 10), or ``default`` (None: the flow's
    own default solver)."""
    method, _, arg = text.strip().partition(":")
    from mmmi_dsl.builtins.flows import FIXED_STEP, METHODS

    if method == "default" and not arg:
        return None
    if method not in METHODS:
        raise argparse.ArgumentTypeError(f"solver {text!r}: the method must be one of default, {', '.join(METHODS)}")
    try:
        if method in FIXED_STEP:
            steps, _, power = arg.partition(":")
            chosen = Solver(method, int(steps or 32), grid_power=float(power or 1.0))
        else:
            chosen = Solver(method, rtol=float(arg), atol=float(arg) / 10) if arg else Solver(method)
    except ValueError:
        raise argparse.ArgumentTypeError(f"solver {text!r}: expected METHOD:STEPS[:GRID_POWER] or METHOD:RTOL") \
            from None
    from mmmi_dsl.builtins.flows import solver_problem

    problem = solver_problem(chosen.args())  # the bounds a spec's cnf(...) would check, the time grid's too
    if problem:
        raise argparse.ArgumentTypeError(f"solver {text!r}: {problem}")
    return chosen


def default_solver(name: str) -> Solver:
    """The solver a flow uses by default: a shipped flow's own (its definition's ``steps`` and
    ``grid_power``), else ``cnf``'s."""
    from mmmi_dsl.builtins import FLOWS

    args = FLOWS[name if name in weight_files.SHIPPED else "cnf"].defaults()
    return Solver(args["method"], int(args["steps"]), grid_power=float(args["grid_power"]))


def solvers(text: str) -> list[Solver]:
    return [solver(s) for s in text.split(",") if s.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", help="a .safetensors file, or a shipped flow's name (digits, fashion)")
    p.add_argument("--classifier", default=None,
                   help="the judge (default: benchmarks/data/<fashion|digits>-classifier.safetensors by image size)")
    p.add_argument("--classes", type=integers(0, empty=False), default=None,
                   help="classes to measure (default: all)")
    p.add_argument("-n", type=integer(1), default=1000, help="generated samples per class (and real images per class)")
    p.add_argument("--roundtrip-n", type=integer(0), default=1000, help="latents for the round trip, spread over the "
                                                                  "classes (0: skip)")
    p.add_argument("--solvers", type=solvers, default=solvers(DEFAULT_SOLVERS),
                   help=f"ODE solvers for the round trip, the first generates the samples (default {DEFAULT_SOLVERS})")
    p.add_argument("--threads", type=integers(1), default=[1, 2], help="thread counts for throughput ('' to skip)")
    p.add_argument("--gen-threads", type=integer(1), default=1, help="torch threads for everything but throughput")
    p.add_argument("--batch", type=integer(1), default=256, help="rows per flow call")
    p.add_argument("--throughput-batch", type=integer(1), default=256)
    p.add_argument("--guidance", type=float, default=0.0)
    p.add_argument("--workers", type=integer(1), default=1, help="processes generating the classes (one thread each)")
    p.add_argument("--cache", default=None,
                   help="a folder keeping each class's samples, in parts of 128 rows (whole batches), as they are "
                        "made: rerunning the same command resumes an interrupted measurement")
    p.add_argument("--seed", type=integer(0), default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where the flows and the judge run (cuda: IEEE float32, one process)")
    p.add_argument("--gpu-batches", type=integers(1), default=[256, 1024, 4096],
                   help="with --device cuda: batch sizes of the GPU throughput ('' to skip; default 256,1024,4096)")
    p.add_argument("--json", default=None, help="write the report here as JSON (after each part)")
    return p


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def render(r: Report) -> str:
    """The report as markdown tables."""
    step = f" at step {r.steps_done:,}" if r.steps_done is not None else ""
    where = "" if r.device == "cpu" else f", on {r.device_info.get('name', r.device)}"
    out = [f"## Flow quality: `{r.weights}`{step} ({r.arch}, {r.solver}, guidance {r.guidance:g}, seed {r.seed}"
           f"{where})",
           "", f"Judge: `{r.classifier['path']}` (test accuracy {pct(r.classifier['test_accuracy'])}, "
           f"{r.classifier['features']} features).", "",
           f"Class consistency, {r.n} generated samples per class ({r.generate_seconds:.1f} s to generate), "
           f"beside the judge's accuracy on (up to) as many real test images:", "",
           "| class | name | generated | real test (n) |", "|---|---|---|---|"]
    for k, name, c, a, m in zip(r.classes, r.class_names, r.consistency, r.real_accuracy, r.real_n):
        out.append(f"| {k} | {name} | {pct(c)} | {pct(a)} ({m}) |")
    if r.frechet is not None:
        out += ["", f"Fréchet distance (squared, as FID) in the judge's features, {r.frechet_n:,} vs {r.frechet_n:,} "
                    f"images: generated vs real test **{r.frechet:.3g}**; floor (real train vs real test) "
                    f"{r.frechet_floor:.3g}."]
    if r.roundtrip:
        out += ["", "Round trip `|f^-1(f(z)) - z|` (float32), elementwise over the latents:", "",
                "| solver | n | max | mean | forward s/sample | inverse s/sample | evaluations (fwd, inv) |",
                "|---|---|---|---|---|---|---|"]
        for t in r.roundtrip:
            fwd = "-" if t["forward_s_per_sample"] is None else f"{t['forward_s_per_sample']:.3g}"
            nfe = "-" if t["nfe_forward"] is None else f"{t['nfe_forward']:.0f}"
            out.append(f"| {t['solver']} | {t['n']} | {t['max']:.2e} | {t['mean']:.2e} | {fwd} | "
                       f"{t['inverse_s_per_sample']:.3g} | {nfe}, {t['nfe_inverse']:.0f} |")
    if r.throughput:
        out += ["", f"Throughput through the flow's forward ({r.solver}), each in a fresh process:", "",
                "| threads | batch | samples/s | floor: network alone | of floor | network eval (s) "
                "| RSS before, peak (MiB) |",
                "|---|---|---|---|---|---|---|"]
        for t in r.throughput:
            out.append(f"| {t['threads']} | {t['batch']} | {t['samples_per_s']:.3g} | {t['floor_samples_per_s']:.3g} | "
                       f"{t['fraction_of_floor']:.0%} | {t['net_eval_s']:.3g} | {t['rss_before_mib']:.0f}, "
                       f"{t['peak_rss_mib']:.0f} |")
    if r.device_throughput:
        out += ["", f"Throughput on {r.device_info.get('name', r.device)} through the flow's forward ({r.solver}), "
                    "in the measuring process, timed between device synchronisations:", "",
                "| batch | samples/s | floor: network alone | of floor | network eval (s) | peak GPU memory (MiB) |",
                "|---|---|---|---|---|---|"]
        for t in r.device_throughput:
            peak = "-" if t["peak_gpu_mib"] is None else f"{t['peak_gpu_mib']:.0f}"
            out.append(f"| {t['batch']} | {t['samples_per_s']:.4g} | {t['floor_samples_per_s']:.4g} | "
                       f"{t['fraction_of_floor']:.0%} | {t['net_eval_s']:.3g} | {peak} |")
    secs = ", ".join(f"{k} {v:.0f} s" for k, v in r.seconds.items())
    gpu = "" if r.peak_gpu_mib is None else f"; peak GPU memory {r.peak_gpu_mib:.0f} MiB before the throughput"
    out += ["", f"Peak RSS of the measuring process {r.peak_rss_mib:.0f} MiB{gpu}; time: {secs}."]
    return "\n".join(out)


def default_classifier(weights: Path) -> Path:
    dim = weight_files.inspect(weights).dim
    return DATA / ("digits-classifier.safetensors" if dim == 64 else "fashion-classifier.safetensors")


def main(argv: list[str] | None = None) -> Report:
    p = parser()
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device")
    if args.device == "cuda" and args.workers > 1:
        p.error("--workers runs CPU processes; with --device cuda leave it at 1")
    keep_freed_memory()  # as the console does; the workers and throughput children do it too
    weights = weight_files.shipped(args.weights) if args.weights in weight_files.SHIPPED else Path(args.weights)
    torch.set_num_threads(args.gen_threads)
    chosen = [s or default_solver(args.weights) for s in args.solvers]

    def save(report: Report) -> None:
        if args.json:
            write_atomic(Path(args.json), dumps_json(dataclasses.asdict(report)) + "\n")

    report = assess(weights, args.classifier or default_classifier(weights), classes=args.classes, n=args.n,
                    roundtrip_n=args.roundtrip_n, solvers=chosen, threads=args.threads, batch=args.batch,
                    throughput_batch=args.throughput_batch, seed=args.seed, guidance=args.guidance,
                    workers=args.workers, cache=args.cache, device=args.device,
                    device_batches=args.gpu_batches if args.device == "cuda" else None, on_part=save,
                    log=lambda line: print(line, file=sys.stderr, flush=True))
    print(render(report))
    return report


if __name__ == "__main__":
    main()
