"""Flow constructors: per-modality bijections, each declared once (torch-free).

The first positional argument of a flow is the latent (or the inner flow of a
composition); the rest are keywords declared here with their bounds. ``implementation``
names the torch class (:mod:`mmmi_dsl.flows`) that builds it; it is imported only when a
flow is built, so checking a spec never loads torch.
"""

from __future__ import annotations

from mmmi_dsl.builtins.signature import MAX_SEED, Arg, Builtin

#: torchdiffeq solvers a learned flow may use; the fixed-step ones take ``steps``.
METHODS = ("rk4", "euler", "midpoint", "dopri5", "bosh3", "adaptive_heun", "dopri8")
FIXED_STEP = ("rk4", "euler", "midpoint")
#: The most solver steps a learned flow may take over [0, 1] (each is a pass of the network).
MAX_STEPS = 10_000
#: The largest latent of flows that build a dense size x size matrix (10^8 entries, 0.75 GiB as float64).
MAX_DENSE_SIZE = 10_000

#: Standardisations applied to a latent before its flow (``auto``: the one each flow's definition asks for).
STANDARDIZE = ("auto", "none", "scale", "radius", "whiten")

SEED = Arg("seed", "int", 0, low=0, high=MAX_SEED, help="a non-negative integer seed")


def _coupling_memory(size: int, args: dict) -> str | None:
    """A coupling keeps about 1.5 * size * hidden weights per layer."""
    entries = 1.5 * size * int(args["hidden"]) * int(args["layers"])
    if entries > 1e8:
        return (f"coupling with size {size:,}, hidden = {args['hidden']} and layers = {args['layers']} needs "
                f"about {entries * 8 / 2**30:.1f} GiB of weights; use fewer layers or a smaller hidden")
    return None


def learned(steps: int = 32, grid_power: float = 1.0) -> tuple[Arg, ...]:
    """The keywords of a learned (CNF) flow, with its solver's defaults: a shipped flow's ``steps`` and
    ``grid_power`` are the ones its measured round trip chose (docs/flows.md)."""
    return (
        Arg("class", "int", 0, low=0, high=100_000, help="the class label, 0..n_classes-1 of the weights"),
        Arg("guidance", "float", 0.0, low=0.0, high=100.0, help="classifier-free guidance weight w (0: none)"),
        Arg("method", "str", "rk4", choices=METHODS, help="the ODE solver"),
        Arg("steps", "int", steps, low=1, high=MAX_STEPS, help="fixed steps over [0, 1] (rk4, euler, midpoint)"),
        Arg("grid_power", "float", grid_power, low=0.1, high=10.0,
            help="fixed-step times t_k = 1 - (1 - k/steps)^grid_power: 1 is uniform, above 1 the steps "
                 "shrink toward the data end t = 1, where a trained field is stiffest"),
        Arg("rtol", "float", 1e-7, low=1e-12, high=1.0, open_high=True,
            help="relative tolerance of adaptive solvers"),
        Arg("atol", "float", 1e-8, low=1e-12, high=1.0, open_high=True,
            help="absolute tolerance of adaptive solvers"),
    )


def time_grid(steps: int, grid_power: float):
    """A fixed-step solver's times over [0, 1], (steps + 1,) float64: ``t_k = 1 - (1 - k/steps)^grid_power``
    with exact ends (the one definition; the cnf flow casts it to its dtype)."""
    import numpy as np

    t = 1.0 - (1.0 - np.linspace(0.0, 1.0, int(steps) + 1)) ** float(grid_power)
    t[-1] = 1.0
    return t


def _time_grid(size: int, args: dict) -> str | None:
    """A graded grid (:func:`time_grid`) must be strictly increasing in float32, the coarsest dtype a
    flow runs in (a large power makes the last times round to 1)."""
    import numpy as np

    if args["method"] not in FIXED_STEP or args["grid_power"] == 1:
        return None
    steps, power = int(args["steps"]), float(args["grid_power"])
    t = time_grid(steps, power).astype(np.float32)
    if np.all(np.diff(t) > 0):
        return None
    k = int(np.argmin(np.diff(t) > 0))
    return (f"with {steps} steps and grid_power = {power:g} the times t_{k} and t_{k + 1} are the same float32 "
            f"number ({t[k]:.9g}): the last steps are too short to tell apart; use a smaller grid_power or "
            "fewer steps")


#: the arguments of a learned flow that say how its ODE is solved (the rest say which flow it is)
SOLVER_KEYS = ("method", "steps", "grid_power", "rtol", "atol")


def solver_problem(solver: dict) -> str | None:
    """Why a solver setting (some of :data:`SOLVER_KEYS`, e.g. read from a manifest or a command line)
    is not one a spec's ``cnf(...)`` may ask for (bounds, time grid), or None."""
    cnf = FLOWS["cnf"]
    try:
        return cnf.size_problem(1, cnf.complete({"weights": "w", **{k: solver[k] for k in SOLVER_KEYS
                                                                   if k in solver}}))
    except ValueError as err:
        return str(err)


LEARNED = learned()
#: the shipped fashion weights' solver (rk4 on a grid refined toward t = 1; docs/flows.md, "Choosing the solver")
FASHION_SOLVER = {"steps": 48, "grid_power": 1.25}


#: ``convention`` of the flows BMI (Beyond Normal, the ``benchmark-mi`` package) defines differently.
CONVENTION = Arg("convention", "str", "mmmic", choices=("mmmic", "bmi"),
                 help='"bmi": the map of the BMI benchmark of the same name')


def _spiral_plane(size: int, args: dict) -> str | None:
    """BMI's spiral turns the coordinates (plane, plane + 1): both must exist."""
    if args["convention"] == "bmi" and int(args["plane"]) + 1 > size:
        return (f"spiral(convention = \"bmi\", plane = {args['plane']}) turns coordinates {args['plane']} and "
                f"{int(args['plane']) + 1}; the latent has {size}")
    return None


def _analytic(name: str, cls: str, summary: str, *keywords: Arg, **kw) -> Builtin:
    return Builtin(name, "flow", summary, keywords=keywords, implementation=f"mmmi_dsl.flows.analytic:{cls}", **kw)


FLOWS: dict[str, Builtin] = {b.name: b for b in (
    _analytic("identity", "Identity", "x = z", linear=True),
    _analytic("affine", "Affine", "x = W z + b with a seeded, well-conditioned W (condition number <= e)",
              SEED, Arg("scale", "float", 1.0, low=1e-6, high=1e6, magnitude=True, nonzero=True,
                        help="the overall scale of W"), max_size=MAX_DENSE_SIZE, linear=True),
    _analytic("asinh", "Asinh", "x = asinh(z), elementwise"),
    _analytic("sinh", "Sinh", "x = sinh(z), elementwise", standardize="scale"),
    _analytic("half_cube", "HalfCube", "x = z^3 / 2, elementwise (convention = \"bmi\": BMI's x = z sqrt(|z|))",
              CONVENTION, standardize="scale"),
    _analytic("normal_cdf", "NormalCdf", "x = Phi(z) in (0, 1), elementwise", standardize="scale"),
    _analytic("spiral", "Spiral", "a norm-preserving spiral x = exp(speed ||z||^2 A) z (convention = \"bmi\": "
              "BMI's, A the generator of one coordinate plane and speed divided by the latent's size)",
              Arg("speed", "float", 1.0, low=0.0, high=1e3, magnitude=True, help="how fast the planes turn"),
              SEED, CONVENTION,
              Arg("plane", "int", 1, low=1, high=MAX_DENSE_SIZE,
                  help='with convention = "bmi": the plane of coordinates plane, plane + 1 (1-based)'),
              max_size=MAX_DENSE_SIZE, rule=_spiral_plane),
    _analytic("wiggly", "Wiggly", "BMI's wiggly maps, elementwise: x = z + a sum of three sines (increasing)",
              Arg("variant", "str", "x", choices=("x", "y"), help="BMI's wiggly_x or wiggly_y"), standardize="scale"),
    _analytic("bimodal", "Bimodal", "BMI's bimodal map, elementwise: x = F^-1(Phi(z)), F the CDF of "
              "weight N(mean1, 1) + (1 - weight) N(mean2, 1)",
              Arg("weight", "float", 0.5, low=0.0, high=1.0, help="the first component's weight"),
              Arg("mean1", "float", -1.0, low=-1e3, high=1e3, help="the first component's mean"),
              Arg("mean2", "float", 3.0, low=-1e3, high=1e3, help="the second's (both unit variance)"),
              standardize="scale"),
    _analytic("swissroll", "Swissroll", "BMI's swiss roll, per entry: u -> (t cos t, t sin t) / 21 with "
              "t = 1.5 pi (1 + 2 u), an injective map from R to R^2 (one-to-one for u > -1/2; BMI takes u in (0, 1))",
              expands=2),
    _analytic("coupling", "Coupling", "a fixed random RealNVP of affine couplings",
              Arg("layers", "int", 4, low=1, high=64), SEED, Arg("hidden", "int", 64, low=1, high=4_096),
              min_size=2, rule=_coupling_memory),
    Builtin("cnf", "flow", "a learned class-conditional ODE flow from your safetensors weights",
            keywords=(Arg("weights", "file", help="a .safetensors file relative to the spec"), *LEARNED),
            implementation="mmmi_dsl.flows.cnf:CNF", weights="weights", standardize="whiten",
            rule=_time_grid),
    Builtin("digits", "flow", "the shipped 8x8 handwritten-digits flow (a cnf), image[1x8x8]",
            keywords=LEARNED, implementation="mmmi_dsl.flows.cnf:Digits", weights="shipped:digits", rule=_time_grid,
            standardize="whiten"),
    # convolutional: one scale per modality keeps where templates put a cause (whitening would erase it)
    Builtin("fashion", "flow", "the shipped Fashion-MNIST flow (a convolutional cnf), image[1x28x28]",
            keywords=learned(**FASHION_SOLVER), implementation="mmmi_dsl.flows.cnf:Fashion", weights="shipped:fashion",
            rule=_time_grid,
            standardize="radius"),
)}
