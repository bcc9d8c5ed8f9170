"""The parser's shipped LALR tables (mmmi_dsl/lang/mmi_lalr_tables.json, see mmmi_dsl.lang.grammar): current,
loaded without pickle or a temp-dir cache, parsing exactly as a freshly built parser, and ignored when stale."""

from __future__ import annotations

import json
import tempfile

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lark import Token, Tree
from lark.exceptions import UnexpectedInput

from mmmi_dsl.errors import SpecError
from mmmi_dsl.lang import grammar, parse
from mmmi_dsl.lang.parse import parse_file

from ..conftest import ROOT

SOURCES = sorted([*(ROOT / "specs").rglob("*.mmi"), *(ROOT / "tests").rglob("*.mmi")])
SHIPPED = ROOT / "mmmi_dsl" / "lang" / grammar.TABLES
LOADED = "<deserialized>"  # lark's source_path of a parser loaded from tables
#: The tables are lark-version specific: under another lark (a release after the file was written) the
#: parser is built from the grammar, correctly but slower, and the tests of the loaded tables skip.
SAME_LARK = pytest.mark.skipif(json.loads(SHIPPED.read_text())["lark_version"] != __import__("lark").__version__,
                               reason=f"the shipped tables are for another lark: run `{grammar.REGENERATE}`")


@pytest.fixture(scope="module")
def built():
    """The parser built from the grammar, as without the tables."""
    return grammar.build_parser(grammar.grammar_text())


@pytest.fixture
def fresh_cache():
    """grammar.parser() chosen again in the test, and again (from the real files) after it."""
    grammar.parser.cache_clear()
    yield
    grammar.parser.cache_clear()


def test_the_shipped_tables_are_those_of_the_current_grammar():
    """A grammar or option edit without regenerating fails here, under any lark."""
    tables = grammar.read_tables()
    assert tables is not None, f"{SHIPPED} is missing or not JSON: run `{grammar.REGENERATE}`"
    current = grammar.stamp(grammar.grammar_text())
    stale = {k: (tables.get(k), v) for k, v in current.items() if tables.get(k) != v and k != "lark_version"}
    assert not stale, f"the shipped parser tables are stale {stale}: run `{grammar.REGENERATE}` and commit the file"


@SAME_LARK
def test_the_shipped_tables_are_those_of_this_lark(tmp_path):
    tables = grammar.read_tables()
    current = grammar.stamp(grammar.grammar_text())
    stale = {k: (tables.get(k), v) for k, v in current.items() if tables.get(k) != v}
    assert not stale, f"the shipped parser tables are stale {stale}: run `{grammar.REGENERATE}` and commit the file"
    # regenerated, the file is byte for byte the same (the state numbering is canonical). Python before
    # 3.11.7 writes another width for unbounded terminals (re's MAXREPEAT, not MAXWIDTH): same parser
    import re._parser as sre

    if getattr(sre, "MAXWIDTH", None) != 2 ** 64:
        pytest.skip("this Python writes other (equivalent) terminal widths than the shipped file's")
    assert grammar.write_tables(tmp_path / "t.json").read_text() == SHIPPED.read_text(), \
        f"the shipped tables differ from a fresh build: run `{grammar.REGENERATE}`"


@SAME_LARK
def test_the_parser_is_loaded_from_the_tables(fresh_cache):
    p = grammar.parser()
    assert p.source_path == LOADED and p.options.cache is False
    assert parse._parser() is p


def dump(node):
    """A tree as nested tuples, with every node's and token's position (lark's == ignores positions)."""
    if isinstance(node, Token):
        return ("token", node.type, str(node), node.line, node.column, node.end_line, node.end_column)
    if isinstance(node, Tree):
        m = node.meta
        where = (m.line, m.column, m.end_line, m.end_column) if not m.empty else None
        return (str(node.data), where, tuple(dump(c) for c in node.children))
    return node  # None: a maybe-placeholder


def outcome(p, text: str, start: str):
    try:
        return dump(p.parse(text, start=start))
    except UnexpectedInput as err:
        return (type(err).__name__, err.line, err.column, sorted(getattr(err, "expected", None) or []),
                sorted(getattr(err, "allowed", None) or []), str(getattr(err, "token", "")))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_spec_parses_the_same_with_the_tables_and_a_built_parser(path, built, fresh_cache, monkeypatch):
    loaded = grammar.parser()
    assert loaded.source_path == LOADED
    text = path.read_bytes().decode("utf-8", errors="replace")
    work = text if text.endswith("\n") else text + "\n"
    assert outcome(loaded, work, "start") == outcome(built, work, "start")

    def program(p):
        monkeypatch.setattr(parse, "_parser", lambda: p)
        try:
            return parse_file(path)
        except SpecError as err:
            return [str(d) for d in err.diagnostics]  # the syntax errors' full messages and spans

    assert program(loaded) == program(built)


#: Texts the specs do not exercise: expressions over lines (the post-lexer) and syntax errors of each kind.
SNIPPETS = [
    "model m\nlatent w = f(\n  1,\n  2)\nmatrix M = uniform(\n  4, 3,\n  seed = 1)\nlatent z = a + \\\n  b\n",
    "model m\r\nparam a = 1\r\nlatent z = a * u\r\n",
    "model m\nlatent z = rho u\nparam = 1\nlatent w = a b\n",
    "latent z = (a +\n",
    "latent z = a $ b\n",
    "latent z = " + "-(" * 150 + "n" + ")" * 150 + "\n",
    "for i in 1..N: latent z[i] = n[i]\nreport I(a, b[2]; c | d, e) bits\nreport TC(a; b; c)\n",
    'template T = image("a b.png"\n',
]


@pytest.mark.parametrize("text", SNIPPETS)
def test_snippets_parse_the_same(text, built, fresh_cache, monkeypatch):
    assert outcome(grammar.parser(), text, "start") == outcome(built, text, "start")
    results = []
    for p in (grammar.parser(), built):
        monkeypatch.setattr(parse, "_parser", lambda p=p: p)
        try:
            results.append(parse.parse_text(text, "f.mmi"))
        except SpecError as err:
            results.append(err.render())
    assert results[0] == results[1]


@pytest.mark.parametrize("query", ["I(x1; x2)", "I(x1, x2; y | z)", "H(x", "I(x1;; x2)", "mmse(theta | x[1])"])
def test_queries_parse_the_same(query, built, fresh_cache):
    assert outcome(grammar.parser(), query + "\n", "query_only") == outcome(built, query + "\n", "query_only")


@pytest.mark.parametrize("key, value", [("grammar_sha256", "0" * 64), ("lark_version", "0.0.1"),
                                        ("options", {"parser": "earley"}), ("format", "mmmic-lalr-tables-0")])
def test_stale_tables_are_never_used(key, value, fresh_cache, monkeypatch, built):
    tables = {**grammar.read_tables(), key: value}
    monkeypatch.setattr(grammar, "read_tables", lambda: tables)
    p = grammar.parser()
    assert p.source_path != LOADED  # built from the grammar instead
    text = (ROOT / "specs" / "two_views.mmi").read_text()
    assert outcome(p, text, "start") == outcome(built, text, "start")


def test_an_edited_grammar_or_another_lark_builds_the_parser(fresh_cache, monkeypatch):
    original = grammar.grammar_text
    monkeypatch.setattr(grammar, "grammar_text", lambda: original() + "\n// edited\n")
    assert grammar.parser().source_path != LOADED
    monkeypatch.undo()
    grammar.parser.cache_clear()
    monkeypatch.setattr(grammar.lark, "__version__", "9.9.9")
    assert grammar.parser().source_path != LOADED


def test_missing_or_malformed_tables_build_the_parser(fresh_cache, monkeypatch):
    monkeypatch.setattr(grammar, "TABLES", "absent.json")
    assert grammar.read_tables() is None and grammar.parser().source_path != LOADED
    monkeypatch.setattr(grammar, "TABLES", "__init__.py")  # a file that is not JSON
    assert grammar.read_tables() is None


def test_parsing_writes_nothing_to_the_temp_dir(tmp_path, fresh_cache, monkeypatch):
    """lark's cache=True would pickle the tables into the temp dir and unpickle them on the next start."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    assert "cache" not in grammar.OPTIONS
    parse.parse_text("dim d = 3\n")  # from the tables
    grammar.parser.cache_clear()
    monkeypatch.setattr(grammar, "read_tables", lambda: None)
    p = grammar.parser()  # built from the grammar
    assert p.source_path != LOADED and p.options.cache is False
    parse.parse_text("dim d = 3\n")
    assert list(temp.iterdir()) == []


# ---------------------------------------------------------------- the encoding

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
str_keys = st.text(max_size=4).filter(lambda k: k not in ("#", "()"))
values = st.recursive(scalars, lambda inner: (
    st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple)
    | st.dictionaries(st.integers(), inner, max_size=4) | st.dictionaries(str_keys, inner, max_size=4)), max_leaves=20)


def typed(x):
    """``x`` with its containers' types spelled out (so a tuple read back as a list, or 1 as "1", differs)."""
    if isinstance(x, dict):
        return ("dict", [(type(k).__name__, k, typed(v)) for k, v in x.items()])
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [typed(v) for v in x])
    return (type(x).__name__, x)


@given(values)
def test_the_encoding_round_trips_exactly(x):
    back = json.loads(json.dumps(grammar.encode(x)), object_hook=grammar.decode_object)
    assert typed(back) == typed(x)


@pytest.mark.parametrize("bad", [{"#": 1}, {"()": [1]}, {1: "a", "b": 2}, {True: 1}, {"x": {1, 2}}])
def test_the_encoding_refuses_what_it_cannot_read_back(bad):
    with pytest.raises(ValueError, match="cannot encode"):
        grammar.encode(bad)


def test_the_regenerate_entry_refuses_other_arguments(capsys):
    assert grammar.main([]) == 2
    assert grammar.REGENERATE in capsys.readouterr().err
