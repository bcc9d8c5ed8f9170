"""The grammar and its LALR parser: loaded from tables shipped as JSON, or built from ``grammar/mmi.lark``.

Building the LALR(1) tables takes ~150 ms a process. Lark's own cache (``cache=True``) is not used:
it pickles the tables into the world-writable temp dir under a predictable name and unpickles that
file on the next start, so another local user could plant a pickle that runs code for anyone who
runs ``mmmic``. Instead the tables ship inside the package as ``mmi_lalr_tables.json``: read with
:mod:`json`, rebuilt with ``lark.Lark._load_from_dict`` (as lark's standalone tool does), which
makes only lark's own serialisable classes (rules, terminals, patterns) and runs no code from the file.

The file records the sha256 of the grammar text, lark's version and the parser's options; if any
differs from the running ones (an edited grammar, another lark), the parser is built from the
grammar instead, never from stale tables. Regenerate after editing the grammar or upgrading lark::

    python -m mmmi_dsl.lang.grammar --write-tables

Encoding: plain JSON, except two tagged objects JSON has no form for, so that decoding gives back
exactly what lark serialised: ``{"#": [[k, v], ...]}`` is a dict with int keys (memo ids, parser
states, token indices) and ``{"()": [...]}`` a tuple. ``encode`` refuses a str-keyed dict that would
read as a tag.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from collections import deque
from importlib import resources
from pathlib import Path

import lark
from lark.grammar import Rule
from lark.lexer import TerminalDef

#: How the parser is built (besides ``postlex``, an object, recorded by its class and terminals).
OPTIONS = {"parser": "lalr", "propagate_positions": True, "start": ["start", "query_only"],
           "maybe_placeholders": True}
TABLES = "mmi_lalr_tables.json"
FORMAT = "mmmic-lalr-tables-1"
REGENERATE = "python -m mmmi_dsl.lang.grammar --write-tables"


def grammar_text() -> str:
    """The grammar: the packaged copy in a wheel, else the repository's ``grammar/``."""
    packaged = resources.files("mmmi_dsl").joinpath("grammar/mmi.lark")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / "grammar" / "mmi.lark").read_text(encoding="utf-8")


class BracketNewlines:
    """Post-lexer: drop newlines inside ( ) and [ ] so expressions may span lines."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        for tok in stream:
            if tok.type in ("LPAR", "LSQB"):
                depth += 1
            elif tok.type in ("RPAR", "RSQB"):
                depth = max(0, depth - 1)
            elif tok.type == "_NL" and depth > 0:
                continue
            yield tok


def stamp(grammar: str) -> dict:
    """What the tables depend on: the grammar's sha256, lark's version, the options."""
    return {"grammar_sha256": hashlib.sha256(grammar.encode("utf-8")).hexdigest(), "lark_version": lark.__version__,
            "options": {**OPTIONS, "postlex": BracketNewlines.__name__,
                        "always_accept": list(BracketNewlines.always_accept)}}


def build_parser(grammar: str) -> lark.Lark:
    """The parser built from the grammar text, with no cache (nothing written anywhere)."""
    return lark.Lark(grammar, **OPTIONS, postlex=BracketNewlines())


# ---------------------------------------------------------------- the JSON encoding


def encode(x):
    """Lark's serialised data -> JSON-able data (int-keyed dicts and tuples tagged; see the module doc)."""
    if isinstance(x, dict):
        if x and all(isinstance(k, int) and not isinstance(k, bool) for k in x):
            return {"#": [[k, encode(v)] for k, v in x.items()]}
        if not all(isinstance(k, str) for k in x) or (len(x) == 1 and next(iter(x)) in ("#", "()")):
            raise ValueError(f"cannot encode a dict with keys {list(x)[:5]}")
        return {k: encode(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return {"()": [encode(v) for v in x]}
    if isinstance(x, list):
        return [encode(v) for v in x]
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    raise ValueError(f"cannot encode a {type(x).__name__}")


def decode_object(d: dict):
    """``json`` object hook: undo :func:`encode`'s tags."""
    if len(d) == 1:
        if "#" in d:
            return {k: v for k, v in d["#"]}
        if "()" in d:
            return tuple(d["()"])
    return d


def canonical(table: dict) -> dict:
    """Lark's serialised parse table renumbered: tokens in name order, states breadth-first from the start states.

    Lark numbers states in memory order, which changes from run to run; renumbered, the same grammar
    and lark always give the same file. Actions are ``(0, state)`` (shift) or ``(1, rule)`` (reduce).
    """
    tokens, states = table["tokens"], table["states"]
    names = sorted(set(tokens.values()))
    token_id = {n: i for i, n in enumerate(names)}
    order: dict[int, int] = {}
    queue = deque(table["start_states"][s] for s in sorted(table["start_states"]))
    while queue:
        state = queue.popleft()
        if state not in order:
            order[state] = len(order)
            queue.extend(arg for t, (action, arg) in sorted(states[state].items(), key=lambda a: tokens[a[0]])
                         if action == 0)
    if len(order) != len(states):
        raise ValueError(f"{len(states) - len(order)} parser states cannot be reached from the start states")
    new_states = {order[s]: {token_id[tokens[t]]: (action, order[arg] if action == 0 else arg)
                             for t, (action, arg) in sorted(states[s].items(), key=lambda a: tokens[a[0]])}
                  for s in sorted(order, key=order.__getitem__)}
    return {"tokens": dict(enumerate(names)), "states": new_states,
            "start_states": {k: order[v] for k, v in sorted(table["start_states"].items())},
            "end_states": {k: order[v] for k, v in sorted(table["end_states"].items())}}


def tables_for(parser: lark.Lark, grammar: str) -> dict:
    """The file's content for a parser built by :func:`build_parser` from ``grammar``."""
    data, memo = parser.memo_serialize([TerminalDef, Rule])
    data["parser"]["parser"] = canonical(data["parser"]["parser"])
    data, memo = _sorted_flags(data), _sorted_flags(memo)
    # the post-lexer is an object, passed again at load (it shaped the tables: recorded in the stamp)
    data["options"] = {k: v for k, v in data["options"].items() if k != "postlex"}
    return {"format": FORMAT, **stamp(grammar), "regenerate": REGENERATE, "data": data, "memo": memo}


def _sorted_flags(x):
    """``x`` with every pattern's regex flags sorted: lark writes a frozenset's order, which the hash seed sets."""
    if isinstance(x, dict):
        out = {k: _sorted_flags(v) for k, v in x.items()}
        if str(out.get("__type__", "")).startswith("Pattern") and isinstance(out.get("flags"), list):
            out["flags"] = sorted(out["flags"])
        return out
    if isinstance(x, list):
        return [_sorted_flags(v) for v in x]
    return x


def read_tables() -> dict | None:
    """The shipped tables, decoded; None when the file is missing or not valid JSON."""
    try:
        text = resources.files("mmmi_dsl.lang").joinpath(TABLES).read_text(encoding="utf-8")
        return json.loads(text, object_hook=decode_object)
    except (OSError, ValueError):
        return None


def load_parser(tables: dict | None, grammar: str) -> lark.Lark | None:
    """The parser from ``tables``; None unless they were built from ``grammar`` by this lark with these options."""
    if not isinstance(tables, dict) or tables.get("format") != FORMAT:
        return None
    if any(tables.get(k) != v for k, v in stamp(grammar).items()):
        return None
    try:
        return lark.Lark._load_from_dict(tables["data"], tables["memo"], postlex=BracketNewlines())
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):  # a current stamp on damaged data
        return None


@functools.lru_cache(maxsize=1)
def parser() -> lark.Lark:
    """The parser: from the shipped tables when they are current, else built from the grammar."""
    grammar = grammar_text()
    return load_parser(read_tables(), grammar) or build_parser(grammar)


def write_tables(path: Path | None = None) -> Path:
    """Build the parser from the grammar and write its tables (default: beside this module)."""
    grammar = grammar_text()
    path = Path(path) if path else Path(__file__).with_name(TABLES)
    text = json.dumps(encode(tables_for(build_parser(grammar), grammar)), separators=(",", ":"))
    path.write_text(text + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["--write-tables"]:
        print(f"usage: {REGENERATE}", file=sys.stderr)
        return 2
    print(f"wrote {write_tables()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
