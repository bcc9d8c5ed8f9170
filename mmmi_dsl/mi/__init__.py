"""Stage 4, the exact engine: the IR's linear forms (:mod:`.analysis`), structured Gaussian MI
(:mod:`.gaussian` over :mod:`.blocks`, :mod:`.logdet`, :mod:`.information`, :mod:`.labels`, :mod:`.pmi`),
closed forms (:mod:`.symbolic`), and solving for parameters (:mod:`.solve`, :mod:`.sweep`, :mod:`.targets`).
numpy and sympy only; never torch."""
