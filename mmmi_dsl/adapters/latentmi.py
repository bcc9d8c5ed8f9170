"""latentmi's LMI estimator as a suite plug-in: ``--estimator mmmi_dsl.adapters.latentmi:estimate``.

LMI (Gowri et al.) learns low-dimensional embeddings of x and y with an autoencoder and reads their
MI with KSG; ``latentmi.lmi.estimate`` returns pointwise MIs in bits (NaN off its validation split),
so the estimate is ``nanmean(pmis) * ln 2`` nats. Options are ``latentmi.lmi.estimate``'s keywords
(``N_dims=8``, ``epochs=300``, ``batch_size=512``, ...), passed through.
"""

from __future__ import annotations

import math

import numpy as np


def estimate(x: np.ndarray, y: np.ndarray, seed: int = 0, **options) -> float:
    """LMI of ``x`` (n, p) and ``y`` (n, q) in nats; ``seed`` seeds numpy and torch (latentmi draws from both)."""
    try:
        from latentmi import lmi
    except ImportError:
        raise ImportError("latentmi is not installed: pip install 'mmmi-dsl[latentmi]' (or pip install latentmi)")
    import torch

    if not hasattr(np, "NaN"):  # latentmi 0.1.3 writes np.NaN, which NumPy 2 removed; it is np.nan
        np.NaN = np.nan
    np.random.seed(seed)
    torch.manual_seed(seed)
    options.setdefault("quiet", True)
    options.setdefault("device", "cpu")
    pmis, _embedding, _model = lmi.estimate(np.asarray(x, np.float64), np.asarray(y, np.float64), **options)
    return float(np.nanmean(pmis)) * math.log(2)
