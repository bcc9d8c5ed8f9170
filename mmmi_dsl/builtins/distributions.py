"""Distributions a block of latents may be declared with: ``latent a, b ~ gaussian(cov = S)``.

The block is realised at lowering as F ε, ε fresh standard-normal proto-latents and F a factor of
the covariance (:mod:`mmmi_dsl.lang.lower.factor`); nothing is realised here.
"""

from __future__ import annotations

from mmmi_dsl.builtins.signature import Arg, Builtin

DISTRIBUTIONS: dict[str, Builtin] = {b.name: b for b in (
    Builtin("gaussian", "distribution", "jointly Gaussian, mean zero, with the covariance cov",
            (Arg("cov", "matrix", help="a positive semi-definite matrix over the block's values, in order: a "
                                       "name, a constructor (equicorrelation, diagonal, blockdiag, npy) or rows "
                                       "[[a, b], [c, d]]"),)),
)}
