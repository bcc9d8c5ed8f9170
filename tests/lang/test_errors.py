"""A table of bad specs, one per error kind: each must give its code at its exact position.

Each case is (code, spec text, line, column). The spec text is written so that the
offending token is easy to count; `^` markers in comments are for the reader only.
"""

from __future__ import annotations

import pytest

from mmmi_dsl import loads
from mmmi_dsl.errors import CODES, SpecError, UsageError

PRELUDE = """model t
param rho = 0.5 in (0, 1)
dim d = 4
proto u : scalar
proto n[1..3] : vector[d]
"""  # 5 lines: the bad statement of each case is on line 6 unless said otherwise

CASES = [
    # syntax: a missing operator
    ("E0001", "latent z = rho u + n[1]\n", 6, 16),
    # syntax: `|` outside a query
    ("E0001", "latent z = |rho| * n[1]\n", 6, 12),
    # unknown name with a did-you-mean
    ("E0101", "latent z = rhoo * n[1]\n", 6, 12),
    # unknown name in a query
    ("E0101", "latent z = n[1]\nreport I(z; zz)\n", 7, 13),
    # duplicate definitions
    ("E0102", "latent z = n[1]\nlatent z = n[2]\n", 7, 8),
    ("E0102", "param rho = 0.2\n", 6, 7),
    # a template used as a variable / a modality inside an equation
    ("E0103", "latent z = n[1]\nflow x = identity(z)\nlatent w = x + n[2]\n", 8, 12),
    # not linear: proto times proto
    ("E0201", "latent z = rho * u * n[1] + n[2]\n", 6, 12),
    # not linear: a constant offset
    ("E0201", "latent z = n[1] + 1\n", 6, 12),
    # not linear: a template on a vector
    ("E0201", "latent z = n[1] * ones(d)\n", 6, 12),
    # a coefficient that is a function of a variable
    ("E0202", "latent z = sqrt(n[1])\n", 6, 17),
    # dimension mismatch: template length
    ("E0203", "latent z = u * ones(5) + n[1]\n", 6, 26),
    # dimension mismatch: vectors of different sizes
    ("E0203", "proto m : vector[3]\nlatent z = n[1] + m\n", 7, 19),
    # dimension mismatch: matrix shape
    ("E0203", "matrix M = uniform(4, 3, seed = 1)\nlatent z = M @ concat(n[1], n[2])\n", 7, 12),
    # dimension mismatch: flow output size
    ("E0203", "latent z = n[1]\nflow x = identity(z) : image[2x3]\n", 7, 24),
    # target not scalar
    ("E0204", "target theta = n[1]\n", 6, 8),
    # a cycle
    ("E0205", "latent a = b + n[1]\nlatent b = a + n[2]\n", 6, 8),
    # bad ranges: empty, out of the family
    ("E0206", "proto m[3..1] : scalar\n", 6, 7),
    ("E0206", "latent z = n[7]\n", 6, 14),
    # out-of-bound default (line 2 of the prelude is replaced)
    ("E0207", "param tau = 2 in (0, 1)\n", 6, 13),
    # missing file
    ("E0208", "template T = image(\"nope.png\")\n", 6, 20),
    # bad call of a built-in
    ("E0209", "template T = onehot(d)\n", 6, 14),
    ("E0209", "latent z = sqrtt(2) * n[1]\n", 6, 12),
    # unknown flow
    ("E0210", "latent z = n[1]\nflow x = idenity(z)\n", 7, 10),
    # bad query: one group, and a label in a TC
    ("E0211", "latent z = n[1]\nreport I(z)\n", 7, 8),
    # bad number: division by zero in a dim
    ("E0212", "dim k = 4 / 0\n", 6, 9),
    # bad label: thresholding a constant
    ("E0213", "label y = 3 > 1\n", 6, 11),
    # statement in the wrong place
    ("E0214", "for i in 1..2: dim k = 1\n", 6, 16),
    # resource limit
    ("E0215", "dim huge = 1000000000\n", 6, 12),
    # a file outside the spec's directory (here the cwd) without allow_paths
    ("E0216", "template T = npy(\"/etc/passwd\")\n", 6, 18),
    # a Student-t latent plus Gaussian noise: no closed form (the term of the other law)
    ("E0220", "latent t = n[1]\nstudent(3): t\nlatent z = t + n[2]\n", 8, 16),
]


@pytest.mark.parametrize("code,body,line,column", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_error_code_and_position(code, body, line, column):
    with pytest.raises(SpecError) as info:
        loads(PRELUDE + body, file="bad.mmi")
    diags = info.value.diagnostics
    assert diags, "no diagnostic"
    first = diags[0]
    assert (first.code, first.span.line, first.span.column) == (code, line, column), info.value.render()
    text = info.value.render()
    assert f"error[{code}]" in text and f"--> bad.mmi:{line}:{column}" in text
    assert "^" in text  # the caret line
    assert "Traceback" not in text


def test_every_code_has_a_case():
    covered = {c[0] for c in CASES} | {"E0002", "E0104"}  # E0002: unreadable files (test_cli); E0104: --set
    assert set(CODES) <= covered


def test_errors_are_collected_not_first_only():
    body = "latent a = rhoo * n[1]\nlatent b = u * n[1]\ntarget t = n[2]\nflow x = nope(a)\n"
    with pytest.raises(SpecError) as info:
        loads(PRELUDE + body, file="bad.mmi")
    codes = [d.code for d in info.value.diagnostics]
    assert codes == ["E0101", "E0201", "E0210"], info.value.render()


def test_syntax_errors_are_collected():
    with pytest.raises(SpecError) as info:
        loads(PRELUDE + "latent z = rho u\nlatent w = (n[1]\nproto : scalar\n", file="bad.mmi")
    assert [d.span.line for d in info.value.diagnostics] == [6, 7, 8]


def test_did_you_mean_hint():
    with pytest.raises(SpecError) as info:
        loads(PRELUDE + "latent z = rhoo * n[1]\n", file="bad.mmi")
    assert "did you mean `rho`?" in info.value.render()


def test_cycle_message_shows_the_cycle():
    with pytest.raises(SpecError) as info:
        loads(PRELUDE + "latent a = b + n[1]\nlatent b = c + n[2]\nlatent c = a + n[3]\n", file="bad.mmi")
    assert "a -> b -> c -> a" in info.value.render()


def test_caret_underlines_the_whole_term():
    with pytest.raises(SpecError) as info:
        loads(PRELUDE + "latent z = rho * u * n[1] + n[2]\n", file="bad.mmi")
    lines = info.value.render().splitlines()
    src = next(i for i, l in enumerate(lines) if l.startswith("6 | "))
    caret = lines[src + 1]
    assert caret.index("^") == len("6 | latent z = ") and caret.count("^") == len("rho * u * n[1]")
    assert "multiplies proto `u` by proto `n[1]`" in caret


@pytest.mark.parametrize("sets,needle", [
    ({"nope": "1"}, "known parameters and dims: d, rho"),
    ({"rho": "abc"}, "not a number"),
    ({"rho": "5"}, "outside the bounds"),
    ({"d": "-3"}, "positive integer"),
])
def test_bad_set_is_a_usage_error(sets, needle):
    with pytest.raises(UsageError) as info:
        loads(PRELUDE, sets, file="bad.mmi")
    assert needle in str(info.value)
