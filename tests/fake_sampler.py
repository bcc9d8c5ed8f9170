"""A deterministic stand-in for the torch sampler (the ChunkSampler protocol of mmmi_dsl.dataset.writer).

A cause u ~ N(0, I_2) is seen by an image ``x[1] = A u + 0.5 e`` of shape (1, 4, 4) and by
``y = u + 0.8 e'`` of shape (2,); ``label = [y_0 > 0]`` is an int64 scalar per sample. The
exact MI I(x; y) follows from the joint covariance (:func:`exact_mi`). Chunk c is drawn
from PCG64 seeded by (seed, c), so sample k depends only on (seed, k).

As a script it writes a dataset, dying by SIGKILL at a chosen moment (the kill-and-resume
tests run it in a subprocess)::

    python tests/fake_sampler.py OUT N SEED SHARD_SIZE BATCH_SIZE [--die-at-sample K | --die-at-manifest K]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import signal
import sys
from pathlib import Path

import numpy as np

SIGMA_X, SIGMA_Y = 0.5, 0.8
SPEC = "model fake\n"
A = np.stack([np.cos(np.arange(16) / 3), np.sin(np.arange(16) / 5)], axis=1) / 2  # (16, 2)


class FakeSampler:
    """The fake's ChunkSampler: ``variables`` and ``sample_range`` of the protocol."""

    chunk_size = 64
    variables = {"x[1]": ((1, 4, 4), "float32"), "y": ((2,), "float32"), "label": ((), "int64")}

    def __init__(self, seed: int):
        self.seed = seed

    def _chunk(self, c: int) -> dict[str, np.ndarray]:
        rng = np.random.Generator(np.random.PCG64([self.seed, c]))
        u = rng.standard_normal((self.chunk_size, 2))
        x = u @ A.T + SIGMA_X * rng.standard_normal((self.chunk_size, 16))
        y = u + SIGMA_Y * rng.standard_normal((self.chunk_size, 2))
        return {"x[1]": x.reshape(-1, 1, 4, 4).astype(np.float32), "y": y.astype(np.float32),
                "label": (y[:, 0] > 0).astype(np.int64)}

    def sample_range(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Samples [start, stop) of every variable, (stop - start, *shape)."""
        first, last = start // self.chunk_size, -(-stop // self.chunk_size)
        chunks = [self._chunk(c) for c in range(first, last)]
        offset = first * self.chunk_size
        return {k: np.concatenate([ch[k] for ch in chunks])[start - offset:stop - offset] for k in self.variables}


def exact_mi() -> float:
    """I(x; y) in nats: 1/2 (log|S_xx| + log|S_yy| - log|S|) of the joint covariance."""
    sxx = A @ A.T + SIGMA_X**2 * np.eye(16)
    syy = (1 + SIGMA_Y**2) * np.eye(2)
    joint = np.block([[sxx, A], [A.T, syy]])
    return 0.5 * (np.linalg.slogdet(sxx)[1] + np.linalg.slogdet(syy)[1] - np.linalg.slogdet(joint)[1])


def metadata(mi_offset: float = 0.0) -> dict:
    """The run metadata a caller passes to write_dataset (exact MI shifted by ``mi_offset``)."""
    nats = exact_mi() + mi_offset
    return {"spec": SPEC, "spec_sha256": hashlib.sha256(SPEC.encode()).hexdigest(),
            "params": {"sigma_x": SIGMA_X, "sigma_y": SIGMA_Y},
            "mi": [{"query": "I(x; y)", "nats": nats, "bits": nats / math.log(2)},
                   {"query": "I(x; y | label)", "nats": 0.1, "bits": 0.1 / math.log(2)},
                   {"query": "I(label; y)", "nats": 0.3, "bits": 0.3 / math.log(2)}],
            "gaussian_arrays": {"x": "x[1]", "y": "y"},
            "device": "cpu"}


FINGERPRINT = {"standardize": False, "dtype": "float32"}


class _Dying(FakeSampler):
    """Kills its own process (SIGKILL) when asked for a range starting at ``die_at``."""

    def __init__(self, seed: int, die_at: int):
        super().__init__(seed)
        self.die_at = die_at

    def sample_range(self, start: int, stop: int) -> dict[str, np.ndarray]:
        if start == self.die_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().sample_range(start, stop)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    for name in ("out", "n", "seed", "shard_size", "batch_size"):
        p.add_argument(name, type=str if name == "out" else int)
    p.add_argument("--die-at-sample", type=int, default=-1, help="SIGKILL when asked for this sample")
    p.add_argument("--die-at-manifest", type=int, default=0, help="SIGKILL instead of the K-th manifest write")
    args = p.parse_args(argv)
    from mmmi_dsl import dataset
    from mmmi_dsl.dataset import writer

    if args.die_at_manifest:
        calls = [0]
        real = writer.write_atomic

        def dying_write(path, data):
            calls[0] += 1
            if calls[0] == args.die_at_manifest:
                os.kill(os.getpid(), signal.SIGKILL)
            real(path, data)

        writer.write_atomic = dying_write
    dataset.write_dataset(Path(args.out), _Dying(args.seed, args.die_at_sample), args.n, seed=args.seed,
                          shard_size=args.shard_size, batch_size=args.batch_size, metadata=metadata(),
                          fingerprint=FINGERPRINT, progress=False)


if __name__ == "__main__":
    main(sys.argv[1:])
