"""Parse+check of decay.mmi (N = 10, 100) in two checkouts, interleaved, in one run (machines are noisy).

    python benchmarks/bench_parse_ab.py BEFORE_DIR [AFTER_DIR]   (AFTER_DIR: this checkout)

Each round starts one fresh process per checkout that times ``load(decay.mmi, N=...)`` (best of 7
after a warm-up); the table gives the best and median over the rounds and the ratio after/before.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import json, sys, time
from mmmi_dsl import load
spec, n = sys.argv[1], sys.argv[2]
load(spec, {"N": n})
ts = []
for _ in range(7):
    t = time.perf_counter(); load(spec, {"N": n}); ts.append(time.perf_counter() - t)
print(json.dumps(min(ts)))
"""


def probe(tree: Path, n: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", PROBE, str(tree / "specs" / "decay.mmi"), str(n)], env=env,
                         cwd=tree, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main(argv: list[str]) -> None:
    before = Path(argv[0]).resolve()
    after = Path(argv[1]).resolve() if len(argv) > 1 else ROOT
    rounds = 5
    print(f"load average {os.getloadavg()[0]:.2f}; {rounds} rounds; before {before}, after {after}")
    print(f"{'case':<22} {'before min':>10} {'after min':>10} {'before med':>10} {'after med':>10} "
          f"{'after/before':>12}")
    for n in (10, 100):
        b, a = [], []
        for _ in range(rounds):
            b.append(probe(before, n))
            a.append(probe(after, n))
        ratio = min(a) / min(b)
        print(f"{f'decay N={n}':<22} {min(b):10.3f} {min(a):10.3f} {statistics.median(b):10.3f} "
              f"{statistics.median(a):10.3f} {ratio:12.2f}")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
