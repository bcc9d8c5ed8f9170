"""Job splits (I, K) of a dataset run: from an ``I/K`` text, a SLURM array, HTCondor or torchrun.

Job I of K (0-based) writes the shards with ``index % K == I``.
"""

from __future__ import annotations

import os
import re

from mmmi_dsl.errors import UsageError


def check_split(i: int, k: int, source: str) -> tuple[int, int]:
    """Check a job split (I, K): K >= 1 and 0 <= I < K; ``source`` says where it came from."""
    if k < 1 or not 0 <= i < k:
        raise UsageError(f"{source}: job {i} of {k} is not a split; need K >= 1 and 0 <= I < K (I is 0-based)")
    return i, k


def parse_split(text: str) -> tuple[int, int]:
    """``"2/5"`` -> (2, 5).

    Raises:
        UsageError: not ``I/K`` with 0 <= I < K.
    """
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise UsageError(f"{text!r}: expected I/K with 0 <= I < K, e.g. 0/4")
    return check_split(int(m[1]), int(m[2]), text)


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise UsageError(f"{name} is not set")
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{name}={value!r} is not an integer") from None


def split_from_env() -> tuple[int, int]:
    """This process's job split (I, K) from the environment, else (0, 1).

    A SLURM array (``SLURM_ARRAY_TASK_ID`` relative to ``SLURM_ARRAY_TASK_MIN``, in steps
    of ``SLURM_ARRAY_TASK_STEP``, of ``SLURM_ARRAY_TASK_COUNT`` tasks) wins over an HTCondor
    process number (``_CONDOR_PROCNO`` of ``_CONDOR_NPROCS``: set by HTCondor's parallel
    universe, or ``$(Process)`` passed on by a submit file's ``environment``), which wins
    over torchrun's ``RANK`` of ``WORLD_SIZE``.

    Raises:
        UsageError: a malformed value, or an array whose task ids are not evenly spaced.
    """
    if "SLURM_ARRAY_TASK_ID" in os.environ:
        task, count = _env_int("SLURM_ARRAY_TASK_ID"), _env_int("SLURM_ARRAY_TASK_COUNT")
        low, step = _env_int("SLURM_ARRAY_TASK_MIN", 0), _env_int("SLURM_ARRAY_TASK_STEP", 1)
        i, rem = divmod(task - low, step) if step >= 1 else (0, 1)
        if rem:
            raise UsageError(f"SLURM array task {task} is not min {low} + a multiple of step {step}")
        return check_split(i, count, f"SLURM array task {task} (min {low}, step {step}, count {count})")
    if "_CONDOR_PROCNO" in os.environ or "_CONDOR_NPROCS" in os.environ:
        return check_split(_env_int("_CONDOR_PROCNO"), _env_int("_CONDOR_NPROCS"), "_CONDOR_PROCNO/_CONDOR_NPROCS")
    if "RANK" in os.environ or "WORLD_SIZE" in os.environ:
        return check_split(_env_int("RANK"), _env_int("WORLD_SIZE"), "RANK/WORLD_SIZE")
    return 0, 1


def shard_from_env(arg: str | None) -> tuple[int, int]:
    """This process's job split (I, K), 0-based: from ``arg`` (``"I/K"``) if given, else
    from the environment (:func:`split_from_env`).

    Raises:
        UsageError: a malformed value, or an array whose task ids are not evenly spaced.
    """
    return parse_split(arg) if arg is not None else split_from_env()


def auto_threads(learned_flow: bool, cores: int, load: float) -> int:
    """``--threads auto``: torch CPU threads for a run, from the spec and the machine's load.

    Two threads when the spec has a learned flow (a CNF: its network's forward passes are the
    run's whole cost), the process may use at least 2 cores, and at least 1.5 of them are idle
    (``load``, the 1-minute load average, at most ``cores - 1.5``); else one. Measured on a
    2-core machine (docs/benchmarks.md): two threads ran the digits flow 1.3-1.8x faster when
    it was idle and 9x slower when other jobs kept both cores busy; Gaussian-only specs did
    not care either way.
    """
    return 2 if learned_flow and cores >= 2 and load <= cores - 1.5 else 1


def machine_load() -> tuple[int, float]:
    """(cores this process may use, 1-minute load average); an unknown load counts as busy (inf)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        return cores, os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows)
        return cores, float("inf")
