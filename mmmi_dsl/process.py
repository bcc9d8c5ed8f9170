"""Settings of the ``mmmic`` console process, and the environment its users' commands get.

The console script runs one command and exits, so it skips pydantic's plugin discovery (a scan of
every installed package's metadata when pydantic builds its first validator: 55-60 ms of every
start). The commands a user gives mmmic to run (``suite --estimator-cmd``, the BMI adapter) get the
environment as the user set it, without that setting.
"""

from __future__ import annotations

import os

PLUGINS_VARIABLE = "PYDANTIC_DISABLE_PLUGINS"
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
