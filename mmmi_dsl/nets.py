"""Small torch networks and their training, shared by the variational critics and the θ regressors.

:func:`encoder` is an MLP on the flattened sample or a shallow CNN for image-shaped samples;
:func:`split` draws the validation, test and training indices; :func:`standardize` rescales
columns by the training split's moments; :func:`train_early_stopping` runs Adam on
mini-batches and keeps the state of the best validation score. torch is imported only when
one of these runs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def is_image(shape: tuple[int, ...]) -> bool:
    """Whether a sample of this shape is an image: (C, H, W) or (H, W) with H, W >= 8."""
    return len(shape) in (2, 3) and shape[-1] >= 8 and shape[-2] >= 8


def encoder(shape: tuple[int, ...], out: int, hidden: int, layers: int, conv: bool):
    """``(b, prod(shape)) -> (b, out)``: an MLP (``layers`` hidden layers of ``hidden``), or for an
    image two 3x3 stride-2 convolutions (16, 32 channels), a 4x4 average pool where the map is
    larger, then one hidden layer."""
    from torch import nn

    h = hidden
    if conv:
        channels = shape[0] if len(shape) == 3 else 1
        rows, cols = (math.ceil(math.ceil(size / 2) / 2) for size in shape[-2:])  # after two stride-2 convs
        pool = [] if rows * cols <= 16 else [nn.AdaptiveAvgPool2d(4)]  # only ever shrinks (upsampling is slow)
        return nn.Sequential(
            nn.Unflatten(1, (channels, shape[-2], shape[-1])),
            nn.Conv2d(channels, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            *pool, nn.Flatten(),
            nn.Linear(32 * min(rows * cols, 16), h), nn.ReLU(), nn.Linear(h, out))
    width = math.prod(shape)
    mods = [nn.Linear(width, h), nn.ReLU()]
    for _ in range(layers - 1):
        mods += [nn.Linear(h, h), nn.ReLU()]
    return nn.Sequential(*mods, nn.Linear(h, out))


def split(n: int, validation: float, test: float, rng: np.random.Generator
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(validation, test, train)`` indices: a permutation of ``range(n)`` cut at
    ``round(validation n)`` and ``round(test n)`` (at least 2 each)."""
    perm = rng.permutation(n)
    n_val = max(2, int(round(validation * n)))
    n_test = max(2, int(round(test * n)))
    return perm[:n_val], perm[n_val:n_val + n_test], perm[n_val + n_test:]


def standardize(a: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Subtract the training rows' column means from ``a`` (n, p) and divide by their sds (1 where 0),
    in place; returns ``(mean, sd)``."""
    mu, sd = a[train].mean(axis=0), a[train].std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    a -= mu
    a /= sd
    return mu, sd


@dataclass(frozen=True)
class Training:
    """How a run of :func:`train_early_stopping` went: ``steps`` taken, the ``best_step`` and its
    validation ``best_score``, and whether the loss turned non-finite (``diverged``)."""

    steps: int
    best_step: int
    best_score: float
    diverged: bool


def train_early_stopping(module, loss: Callable, score: Callable[[], float], train_idx: np.ndarray,
                         rng: np.random.Generator, *, batch: int, lr: float, max_steps: int, eval_every: int,
                         patience: int) -> Training:
    """Adam on ``loss(idx)`` over mini-batches of ``train_idx`` (a fresh permutation from ``rng`` each
    pass), with ``score()`` (higher is better) read every ``eval_every`` steps and at the last; stops
    after ``patience`` reads without a better score and loads the best state back into ``module``."""
    import torch

    optim = torch.optim.Adam(module.parameters(), lr=lr)
    best = (-math.inf, 0, copy.deepcopy(module.state_dict()))
    stale, step, diverged = 0, 0, False
    order, pos = rng.permutation(train_idx), 0
    while step < max_steps:
        if pos + batch > len(order):
            order, pos = rng.permutation(train_idx), 0
        idx = order[pos:pos + batch]
        pos += batch
        value = loss(idx)
        if not torch.isfinite(value):
            diverged = True
            break
        optim.zero_grad(set_to_none=True)
        value.backward()
        optim.step()
        step += 1
        if step % eval_every == 0 or step == max_steps:
            current = score()
            if current > best[0]:
                best, stale = (current, step, copy.deepcopy(module.state_dict())), 0
            else:
                stale += 1
                if stale >= patience:
                    break
    module.load_state_dict(best[2])
    return Training(step, best[1], best[0], diverged)
