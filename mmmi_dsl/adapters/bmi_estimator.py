"""Run one of BMI's estimators on two .npy files and print the estimate (nats): a standalone script.

    PYTHON bmi_estimator.py NAME X.npy Y.npy [key=value ...]

NAME: ksg, cca, histogram, kde, mine, infonce, nwj, dv (``bmi.estimators``, benchmark-mi 0.1.3). It
imports only numpy and bmi, so it runs in the environment that has BMI (BMI needs jax and pinned
versions; docs/bmi.md), e.g. as ``--estimator-cmd "/work/bmi-venv/bin/python .../bmi_estimator.py ksg
{x} {y}"`` or through :func:`mmmi_dsl.adapters.benchmark_mi.estimate`. Option values are numbers, true/false
or text; ``neighborhoods=5/10``, ``hidden_layers=16/8`` and ``neighborhoods=5/`` are lists.
"""

import sys

NAMES = {"ksg": "KSGEnsembleFirstEstimator", "cca": "CCAMutualInformationEstimator",
         "histogram": "HistogramEstimator", "kde": "KDEMutualInformationEstimator", "mine": "MINEEstimator",
         "infonce": "InfoNCEEstimator", "nwj": "NWJEstimator", "dv": "DonskerVaradhanEstimator"}


def value(text):
    if "/" in text:
        return [value(t) for t in text.split("/") if t]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(argv):
    if len(argv) < 3 or argv[0] not in NAMES:
        sys.exit(f"usage: bmi_estimator.py {{{','.join(NAMES)}}} X.npy Y.npy [key=value ...]")
    import numpy as np
    from bmi import estimators

    options = dict(item.split("=", 1) for item in argv[3:])
    est = getattr(estimators, NAMES[argv[0]])(**{k: value(v) for k, v in options.items()})
    x, y = np.load(argv[1]), np.load(argv[2])
    print(float(est.estimate(x, y)))


if __name__ == "__main__":
    main(sys.argv[1:])
