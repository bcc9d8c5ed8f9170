"""Parse-and-check time of decay.mmi at N = 10 and N = 100 (issue 2's target: < 0.5 s at N = 100).

The baseline measured in the same run is the parse of the same text alone (Lark),
so the ratio shows what lowering and checking add; absolute times are also printed.

    python benchmarks/bench_parse.py
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from mmmi_dsl import load
from mmmi_dsl.lang.parse import parse_file

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "decay.mmi"


def timed(fn, repeat: int = 7) -> tuple[float, float]:
    fn()  # warm-up: grammar tables, imports
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts), statistics.median(ts)


def main() -> None:
    print(f"{'case':<28} {'min s':>8} {'median s':>9} {'x parse':>8}")
    for n in (10, 100):
        parse_min, _ = timed(lambda: parse_file(SPEC))
        full_min, full_med = timed(lambda: load(SPEC, {"N": str(n)}))
        print(f"{f'decay N={n} parse+check':<28} {full_min:8.3f} {full_med:9.3f} {full_min / parse_min:8.1f}")
    print(f"{'parse only (baseline)':<28} {parse_min:8.3f}")


if __name__ == "__main__":
    main()
