"""Settings of the ``mmmic`` console process, and the environment its users' commands get.

The console script runs one command and exits, so it skips pydantic's plugin discovery (a scan of
every installed package's metadata when pydantic builds its first validator: 55-60 ms of every
start), and on glibc it keeps freed memory for reuse (:func:`keep_freed_memory`). The commands a
user gives mmmic to run (``suite --estimator-cmd``, the BMI adapter) get the environment as the
user set it, without the first setting.
"""

from __future__ import annotations

import os
import sys

PLUGINS_VARIABLE = "PYDANTIC_DISABLE_PLUGINS"
#: glibc's ``mallopt`` parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
_set_by_mmmic = False


def skip_pydantic_plugins() -> None:
    """Turn pydantic's plugins off for this process, unless the user set the variable (even empty)."""
    global _set_by_mmmic
    if PLUGINS_VARIABLE not in os.environ:
        os.environ[PLUGINS_VARIABLE] = "__all__"
        _set_by_mmmic = True


def user_environment() -> dict[str, str]:
    """The environment for a command the user gave: this process's, less what :func:`skip_pydantic_plugins` set."""
    env = dict(os.environ)
    if _set_by_mmmic and env.get(PLUGINS_VARIABLE) == "__all__":
        del env[PLUGINS_VARIABLE]
    return env


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 128 << 20) -> bool:
    """Have glibc's allocator serve blocks of up to 32 MiB from its heap and give the heap's free top
    back to the kernel only past 128 MiB (False, and nothing changed, off glibc).

    A UNet's activations at 32 rows (up to 9.6 MB) are then reused from one network pass to the next.
    By default glibc raises its thresholds only as far as the largest block freed so far and trims at
    twice that, so a fresh process keeps returning those pages and faulting them in again: 1.05
    million minor faults for 128 fashion_views tuples at 2 rk4 steps, 31,559 with these settings
    (docs/benchmarks.md); 145 million, with 11 % of its CPU time in the kernel, in a 1,000-tuple
    ``generate`` before it.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no libc.so.6 with mallopt)
        return False
    return mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1 and mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1
