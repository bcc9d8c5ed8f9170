"""A toy estimator for the suite tests, written without mmmic: the Gaussian plug-in MI in numpy.

As a module (``f(x, y, **options)``), a class (``Toy(**options).estimate(x, y)``) and a command
(``python toy_estimator.py X.npy Y.npy`` prints the estimate), as a user's own would be.
"""

import sys

import numpy as np


def gaussian_mi(x, y, bias: bool = True) -> float:
    """1/2 (log|S_xx| + log|S_yy| - log|S|) of the sample covariance, minus p q / 2n when ``bias``."""
    x, y = np.asarray(x, float).reshape(len(x), -1), np.asarray(y, float).reshape(len(y), -1)
    s = np.cov(np.concatenate([x, y], axis=1), rowvar=False)
    p, q = x.shape[1], y.shape[1]
    mi = 0.5 * (np.linalg.slogdet(s[:p, :p])[1] + np.linalg.slogdet(s[p:, p:])[1] - np.linalg.slogdet(s)[1])
    return float(mi - (p * q / (2 * len(x)) if bias else 0.0))


def plugin(x, y, scale: float = 1.0, seed: int = 0):
    """The module:function form; ``seed`` is the suite's."""
    assert x.ndim == 2 and y.ndim == 2 and x.dtype == np.float64
    return scale * gaussian_mi(x, y)


class Toy:
    def __init__(self, bias: bool = True):
        self.bias = bias

    def estimate(self, x, y):
        return gaussian_mi(x, y, self.bias)


def broken(x, y):
    raise RuntimeError("this estimator always fails")


def slow(x, y):
    import time
    while True:
        time.sleep(0.01)


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[3] == "--fail":
        sys.exit("failing on purpose")
    print("reading", sys.argv[1], sys.argv[2])  # chatter before the number is allowed
    print(gaussian_mi(np.load(sys.argv[1]), np.load(sys.argv[2])))
