"""A user's own Python object named on the command line, ``module:attribute`` (never from a spec)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def import_named(text: str):
    """``module:name`` or ``module:Class.method``: imported with the working directory first on
    ``sys.path``, as ``python -m`` would find it.

    Raises:
        ValueError: not of the form ``module:name``, the module cannot be imported or raises while
            importing, or it has no such name (the message says which).
    """
    module, sep, attr = text.partition(":")
    if not sep or not module.strip() or not attr.strip():
        raise ValueError("expected module:function")
    cwd = str(Path.cwd())
    sys.path.insert(0, cwd)
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except ImportError as err:
        raise ValueError(f"cannot import {module!r} ({err})") from None
    except AttributeError:
        raise ValueError(f"{module!r} has no {attr!r}") from None
    except Exception as err:  # the user's module itself failed (a syntax error, a raise at import, ".x")
        raise ValueError(f"importing {module!r} raised {type(err).__name__}: {err}") from None
    finally:
        sys.path.remove(cwd)
    return obj
