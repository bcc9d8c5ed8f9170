"""One way to stop a block of Python after some seconds: a real-time interval timer (SIGALRM).

Used by the symbolic engine (sympy may run for ever) and the estimator suite (a user's estimator may).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Callable


@contextlib.contextmanager
def deadline(seconds: float | None, error: Callable[[], BaseException]):
    """Raise ``error()`` inside the block once ``seconds`` have passed (``None`` or <= 0: no limit).

    The timer interrupts Python code wherever it is (a long C call returns first). An outer
    timer that is already set is restored afterwards, and one that ends sooner stays in charge.
    Outside the main thread, or without ``setitimer``, the block runs without a limit.
    """
    if not seconds or seconds <= 0 or threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "setitimer"):
        yield
        return
    outer_left, _ = signal.getitimer(signal.ITIMER_REAL)
    if outer_left and outer_left <= seconds:  # an outer deadline comes first: leave it in charge
        yield
        return

    def on_alarm(signum, frame):
        raise error()

    start = time.monotonic()
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer_left:
            signal.setitimer(signal.ITIMER_REAL, max(outer_left - (time.monotonic() - start), 1e-3))
