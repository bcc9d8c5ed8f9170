"""The docs build: every page and picture builds from specs/, committed pages are fresh,
the highlighters agree with the grammar, and the language reference covers every word."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.mmi"))


def _load_build():
    spec = importlib.util.spec_from_file_location("docs_build", ROOT / "docs" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """One full docs build (pages, pictures, grammar, HTML site) into a temp dir."""
    out = tmp_path_factory.mktemp("docs")
    build.build(out, html_site=True, log=lambda m: None)
    return out


def test_every_spec_has_a_page_and_pictures(fresh):
    index = (fresh / "docs/specs/index.md").read_text()
    for spec in SPECS:
        page = (fresh / f"docs/specs/{spec.stem}.md").read_text()
        assert spec.read_text().rstrip("\n") in page, f"{spec.name}: the page lacks the source"
        assert f"mmmic mi specs/{spec.name}" in page and "## Closed forms" in page
        assert "```math" in page or "No closed form" in page, f"{spec.name}: no formula and no reason"
        assert f"]({spec.stem}.md)" in index
        for pic in (f"{spec.stem}-dag.png", f"{spec.stem}-mi.png"):
            assert f"]({pic})" in page
            with Image.open(fresh / "docs/specs" / pic) as im:
                im.load()
                assert im.width >= 300 and im.height >= 200, f"{pic}: {im.size}"
                assert sum(1 for c in im.convert("L").histogram() if c) > 8, f"{pic}: blank"


def test_html_site_uses_the_mmi_lexer(fresh):
    site = fresh / "docs/_site"
    for spec in SPECS:
        html = (site / f"specs/{spec.stem}.html").read_text()
        assert '<span class="k">model</span>' in html, f"{spec.stem}.html: .mmi code not highlighted"
        assert (site / f"specs/{spec.stem}-dag.png").is_file()
    for md in (ROOT / "docs").glob("*.md"):
        assert (site / md.with_suffix(".html").name).is_file(), md.name
    assert 'href="tutorial.html"' in (site / "index.html").read_text()
    assert '<div class="math">' in (site / "specs/two_views.html").read_text()
    assert '<span class="k">model</span>' in (site / "specs/two_views.mmi.html").read_text()
    for page in site.rglob("*.html"):  # every relative link and picture resolves
        for href in re.findall(r'(?:href|src)="([^"#]+)', page.read_text()):
            if not re.match(r"[a-z]+:", href):
                assert (page.parent / href).exists(), f"{page.relative_to(site)}: broken link {href}"


def test_committed_docs_are_up_to_date(fresh):
    problems = build.check(fresh, ROOT)
    assert not problems, ("stale generated docs; run `python docs/build.py` and commit:\n  "
                          + "\n  ".join(problems))


def test_check_finds_drift(fresh, tmp_path):
    copy = tmp_path / "repo"
    for rel in build.generated_files(SPECS):
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fresh / rel, copy / rel)
    assert build.check(fresh, copy) == []
    page = copy / "docs/specs/two_views.md"
    page.write_text(page.read_text() + "edited by hand\n")
    (copy / "docs/specs/decay-mi.png").write_bytes(b"not a png")
    (copy / "docs/specs/removed.md").write_text("# a spec that is gone\n")
    (copy / "docs/cli.md").unlink()
    problems = "\n".join(build.check(fresh, copy))
    for what in ("two_views.md: differs", "decay-mi.png: not a readable picture", "removed.md: not generated",
                 "cli.md: missing"):
        assert what in problems, problems


def test_check_command_exit_codes(fresh, monkeypatch, capsys):
    def copy_fresh(out, html_site=True, log=print):
        shutil.copytree(fresh, out, dirs_exist_ok=True)
        return build.generated_files(SPECS)
    monkeypatch.setattr(build, "build", copy_fresh)
    assert build.main(["--check", "--no-html"]) == 0
    monkeypatch.setattr(build, "ROOT", fresh / "nowhere")
    assert build.main(["--check", "--no-html"]) == 1
    assert "python docs/build.py" in capsys.readouterr().err


def test_cli_reference_lists_every_command_and_option(fresh):
    import argparse

    from mmmi_dsl.cli import build_parser

    text = (fresh / "docs/cli.md").read_text()
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        assert f"## mmmic {name}\n" in text, name
        section = text.split(f"## mmmic {name}\n", 1)[1].split("\n## ", 1)[0]
        for action in p._actions:
            for opt in action.option_strings:
                if opt not in ("-h", "--help"):
                    assert f"`{opt}" in section, f"mmmic {name}: {opt} not documented"


def test_story_markdown():
    src = "# Title line.\n#\n# Text with a formula:\n#   I(a; b) = 1\n# more text\nmodel m\n# not the story\n"
    assert build.story_markdown(src) == "Title line.\n\nText with a formula:\n\n    I(a; b) = 1\n\nmore text"


# ---------------------------------------------------------------- highlighting


def test_lexer_is_registered_and_lexes_every_spec_without_errors():
    from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
    from pygments.token import Error, Keyword, Name

    from mmmi_dsl.highlight import MmiLexer

    assert isinstance(get_lexer_by_name("mmi"), MmiLexer)  # through the pygments.lexers entry point
    assert isinstance(get_lexer_for_filename("x.mmi"), MmiLexer)
    for spec in SPECS:
        tokens = list(MmiLexer().get_tokens(spec.read_text()))
        bad = [v for t, v in tokens if t in Error]
        assert not bad, f"{spec.name}: error tokens {bad[:5]}"
        assert "".join(v for _, v in tokens) == spec.read_text()
    tokens = dict((v, t) for t, v in MmiLexer().get_tokens(
        'flow x = affine(z, seed = 1) : image[1x8x8]\nreport I(x; y | z) bits\nlatent ones = 2 * ones(d)\n'))
    assert tokens["flow"] in Keyword and tokens["affine"] in Name.Builtin and tokens["I"] in Keyword
    assert tokens["image"] in Keyword.Type and tokens["bits"] in Keyword


EVERY_CONSTRUCT = """\
model every   # every construct
param a = 1.5e-1 in [0, 10)
param b = .5 in (0, 1]
c := sqrt(a) * 2 ^ -1
dim N = 3
dim img = 1x4x4
dim d = size(img)
proto u : scalar
proto v : scalar
proto n[1..N] : vector[d]
template T = normalize(blob(img, 2, 2.5, 1))
template W : vector[d] = random(d, 7)
matrix M : matrix[d, d] = orthogonal(d, seed = 3)
target theta = a * u - b * v
for i in 1..N {
  latent z[i] = c * u * T + \
      sum(j in 1..N, 0.5 ^ abs(i - j) * n[j])
}
latent h = M @ z[1] + (b
    * v * ones(d))
latent s = dot(W, z[2])
flow x[1] = identity(h) : image[img]
for i in 2..N: flow x[i] = spiral(affine(z[i], seed = i), speed = 0.1)
label y = s >= 0
report I(theta; x[1], x[2] | x[3]) bits
report TC(x[1]; x[2]; x[3])
report II(theta; x[1]; x[2]) nats
report I(y; x[1])
solve a in (0.01, 10) such that I(theta; x[1]) = 0.5 bits
sweep b in linspace(0.1, 0.9, 3): report I(theta; x[2])
sweep a in [0.5, 1]: report I(theta; x[2])
proto e : uniform[-b, b]
proto w : scalar
latent t = 2 * w
student(4): t
report I(e; t)
"""


def test_lexer_on_every_construct():
    """A valid spec using every statement, bracket kind, continuation and query kind lexes cleanly."""
    from pygments.token import Error, Number

    from mmmi_dsl import loads
    from mmmi_dsl.highlight import MmiLexer

    loads(EVERY_CONSTRUCT)  # valid
    for text in (EVERY_CONSTRUCT, 'template P = image("dir/file #1.png", mode = "L")\n'):
        tokens = list(MmiLexer().get_tokens(text))
        assert not [v for t, v in tokens if t in Error], text
    kinds = {v: t for t, v in MmiLexer().get_tokens(EVERY_CONSTRUCT)}
    assert kinds["1x4x4"] in Number and kinds["1.5e-1"] in Number and kinds[".5"] in Number


def test_lexer_words_match_the_grammar():
    """The words read from grammar/mmi.lark by regex equal those Lark itself sees."""
    import lark

    from mmmi_dsl.builtins import CONSTANT_FUNCTIONS, DISTRIBUTIONS, EQUATION_FUNCTIONS, FLOWS, MATRICES, TEMPLATES
    from mmmi_dsl.highlight import grammar_words
    from mmmi_dsl.ir import MATH_FUNCTIONS
    from mmmi_dsl.lang.parse import grammar_text

    g = lark.Lark(grammar_text(), parser="lalr", start=["start", "query_only"])
    words = set()
    for t in g.terminals:
        if t.pattern.type == "str" and t.pattern.value.isalpha():
            words.add(t.pattern.value)
    unit = next(t for t in g.terminals if t.name == "UNIT").pattern.to_regexp()
    units = {w for w in ("bits", "nats") if re.fullmatch(unit, w)}
    w = grammar_words()
    assert set(w["keywords"]) | set(w["units"]) >= words and set(w["units"]) == units
    assert set(w["keywords"]) == words - units
    op = next(t for t in g.terminals if t.name == "QUERY_OP").pattern.to_regexp()
    assert all(re.match(op, q + "(") for q in w["query_ops"])
    assert set(w["query_ops"]) == {"I", "TC", "II", "MMSE", "RMSE", "ACC"}
    expected = set(TEMPLATES) | set(MATRICES) | set(FLOWS) | set(MATH_FUNCTIONS) | set(DISTRIBUTIONS)
    assert set(w["builtins"]) == expected | set(EQUATION_FUNCTIONS) | set(CONSTANT_FUNCTIONS)


def _regexes(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("match", "begin", "end") and isinstance(value, str):
                yield value
            else:
                yield from _regexes(value)
    elif isinstance(node, list):
        for item in node:
            yield from _regexes(item)


def test_textmate_grammar():
    from mmmi_dsl.highlight import grammar_words

    path = ROOT / "grammar/mmi.tmLanguage.json"
    tm = json.loads(path.read_text())
    assert tm["scopeName"] == "source.mmi" and tm["fileTypes"] == ["mmi"]
    regexes = list(_regexes(tm))
    assert len(regexes) >= 10
    for rx in regexes:
        re.compile(rx)  # Python's re as an approximation of Oniguruma
    for include in re.findall(r'"#(\w+)"', path.read_text()):
        assert include in tm["repository"], include
    repo = tm["repository"]
    for word in grammar_words()["keywords"]:
        assert re.search(repo["keyword"]["match"], f" {word} "), word
    for word in grammar_words()["builtins"]:
        assert re.search(repo["builtin"]["match"], f"{word}(x)"), word
    assert re.match(repo["query"]["begin"], "I(x1; x2 | theta)")
    assert re.fullmatch(repo["comment"]["match"], "# a comment")
    assert re.fullmatch(repo["number"]["match"], "3x32x32") and re.fullmatch(repo["number"]["match"], "1e-3")


# ---------------------------------------------------------------- the language reference


def test_language_reference_documents_every_statement_and_builtin():
    from mmmi_dsl.builtins import FLOWS, MATRICES, TEMPLATES, TYPES
    from mmmi_dsl.highlight import grammar_words

    text = (ROOT / "docs/language.md").read_text()
    code = " ".join(re.findall(r"`([^`]+)`", text))  # every code span
    w = grammar_words()
    names = set(w["keywords"]) | set(w["units"]) | set(w["query_ops"]) | set(w["builtins"]) | set(TYPES)
    missing = sorted(n for n in names if not re.search(rf"(?<![A-Za-z_0-9]){re.escape(n)}(?![A-Za-z_0-9])", code))
    assert not missing, f"docs/language.md does not document: {missing}"
    for builtin in [*FLOWS.values(), *MATRICES.values(), *TEMPLATES.values()]:
        for k in (a.name for a in builtin.keywords):
            assert re.search(rf"(?<![A-Za-z_]){k}(?![A-Za-z_])", code), f"keyword argument {k} not documented"
    assert ":=" in code


def test_docs_index_links_every_page():
    index = (ROOT / "docs/index.md").read_text()
    for md in (ROOT / "docs").glob("*.md"):
        if md.name != "index.md":
            assert f"]({md.name})" in index, f"docs/index.md does not link {md.name}"
    assert "](specs/index.md)" in index
    readme = (ROOT / "README.md").read_text()
    assert "docs/index.md" in readme and "docs/tutorial.md" in readme
