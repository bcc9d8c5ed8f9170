"""Sizes a spec may ask for: a clear E0215 instead of an out-of-memory crash or minutes of work.

Read at use time (``limits.MAX_TERMS``), so tests can lower a limit with monkeypatch.
"""

# Floats in one template or matrix, and modalities/latents in one spec.
MAX_VECTOR_SIZE = 50_000_000
MAX_MATRIX_ENTRIES = 100_000_000
MAX_VARIABLES = 100_000
# Terms that sum(...) may expand to in all. A long sum over a family (at least FAMILY_TERMS members,
# `c(j) * f[j]`) is one family term whose members cost well under 1 us each (decay.mmi at N = 1,000:
# 1,000,000 terms in about 4 s, end to end); the engine keeps one coefficient per member.
MAX_TERMS = 4_000_000
# Of them, terms unrolled one by one (any other sum body): each is an IR node of its own, ~30 us and ~1 kB
# (decay.mmi's 100,000 took 3 s before family terms). The limit MAX_TERMS had before.
MAX_UNROLLED_TERMS = 100_000
# A sum of at least this many members over a family becomes one family term (ir.Term with `index`);
# shorter ones are unrolled, so small specs' IR is unchanged.
FAMILY_TERMS = 32
# Expression nodes lowering may evaluate in all (~2 us each): a 100,000-member loop over a statement
# with a 10,000-node index took minutes. decay.mmi at N = 316 evaluates about 1.5 million.
MAX_WORK = 5_000_000
# `for` loops inside one another (each level is a frame of the expansion).
MAX_LOOP_DEPTH = 64
# Coordinates of one covariance given directly (`latent a, b ~ gaussian(cov = S)`): its factor takes
# n^3 work (eigenvalues of a 4,096 x 4,096 matrix: about 20 s).
MAX_COVARIANCE = 4096
