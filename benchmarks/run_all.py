"""Run the speed benchmarks one after another (docs/benchmarks.md), each in its own process.

    python benchmarks/run_all.py           # the full settings (~10 minutes on a busy 2-core machine)
    python benchmarks/run_all.py --quick   # small settings (~1-2 minutes): lowering, MI, generation, CNF floor

The estimator benchmark is a command of its own (``mmmic bench-estimators``, docs/benchmarks.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: (script, takes --quick); scripts without it are fast already or skipped under --quick
SCRIPTS = [("bench_parse.py", False), ("bench_lower.py", True), ("bench_mi.py", True),
           ("bench_generate.py", True), ("bench_flows.py", True), ("bench_unet_chunk.py", True),
           ("bench_symbolic.py", False)]
QUICK_SKIPS = {"bench_symbolic.py"}


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))}
    for script, has_quick in SCRIPTS:
        if quick and script in QUICK_SKIPS:
            continue
        print(f"\n== {script} (load average {os.getloadavg()[0]:.2f})", flush=True)
        cmd = [sys.executable, str(HERE / script), *(["--quick"] if quick and has_quick else [])]
        if subprocess.run(cmd, env=env, cwd=HERE.parent).returncode:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
